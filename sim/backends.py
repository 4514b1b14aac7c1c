"""The run backends of ``bitline run``: an explicit registry and one typed option parser.

A backend runs a :class:`~bitline.sw.flow.Target` (a float model or a compiled bundle) on a
float32 input batch ``(N, *input_shape)`` and returns named arrays, at least ``output``.
:data:`BACKENDS` lists them all: ``float`` (the float32 IR reference), ``golden`` (the
integer golden model of a bundle), ``executor`` (the bundle's OU program on the
crossbar-level executor) and ``rtl`` (the bundle on the generated Verilog in cocotb).

Run options (``-O KEY=VALUE``) are declared per backend as :class:`RunOption` and parsed by
:func:`parse_run_options` (typed; an error names the backend, the option and the value).
Progress and the summary line of long runs reach the caller through callbacks
(:func:`run_backend`'s ``progress`` and ``log``): nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from bitline.sw.flow import Target

__all__ = ["RunOption", "Backend", "BackendError", "BACKENDS", "get_backend",
           "parse_run_options", "run_backend", "check_run_input", "default_backend",
           "network_summary"]


class BackendError(ValueError):
    """An unknown backend, a bad run option, or a backend that cannot run the target."""


@dataclass(frozen=True)
class RunOption:
    """One ``-O KEY=VALUE`` option of a backend.

    Attributes
    ----------
    name:
        The key.
    kind:
        ``bool`` (``0/1``, ``true/false``, ``yes/no``), ``int``, ``float`` or ``str``.
    default:
        Value when the option is not given (or given empty).
    help:
        One line for the help text.
    """

    name: str
    kind: type
    default: object = None
    help: str = ""

    def parse(self, backend: str, text: str):
        """Return ``text`` as :attr:`kind` (``BackendError`` naming backend, option, value)."""
        if text == "":
            return self.default
        if self.kind is bool:
            value = text.strip().lower()
            if value not in ("0", "1", "true", "false", "yes", "no"):
                raise BackendError(f"backend {backend!r}: option {self.name} must be 0 or 1, "
                                   f"not {text!r}")
            return value in ("1", "true", "yes")
        try:
            return self.kind(text)
        except ValueError:
            raise BackendError(f"backend {backend!r}: option {self.name} must be "
                               f"{self.kind.__name__}, not {text!r}") from None


@dataclass(frozen=True)
class Backend:
    """A registered backend.

    Attributes
    ----------
    name:
        Registry key (``--backend NAME``).
    target:
        ``"model"`` or ``"bundle"``: what it runs.
    run:
        ``run(target, x, options) -> dict[str, ndarray] | ndarray``; with
        :attr:`callbacks` also keyword arguments ``progress`` and ``log``.
    options:
        The :class:`RunOption` it accepts.
    summary:
        One line for the help text.
    callbacks:
        Whether :attr:`run` takes ``progress`` (called with a state dict) and ``log``
        (called with one line of text).
    """

    name: str
    target: str
    run: Callable
    options: tuple[RunOption, ...] = ()
    summary: str = ""
    callbacks: bool = False


#: Internal key of the parsed options: the bundle :func:`run_backend` read.
_BUNDLE = "_bundle"

ALL_LAYERS = RunOption("all_layers", bool, False,
                       "also return every layer's integer output as layer/<name>")


def _float(target: Target, x: np.ndarray, options: dict) -> np.ndarray:
    from bitline.sw.frontend.qdq import run_fake_quant

    # A model read from a quantized file runs with its grids (fake-quant, as onnxruntime
    # runs the QDQ graph); any other model is plain run_float. The inputs are finite
    # (check_run_input), so a non-finite output is a float32 overflow of the weights: an
    # error naming it, not inf / NaN logits with exit 0 (nor numpy's RuntimeWarning).
    with np.errstate(over="ignore", invalid="ignore"):
        y = run_fake_quant(target.model, x)
    bad = ~np.isfinite(y)
    if bad.any():
        raise BackendError(f"backend 'float': model {target.model.name}: {int(bad.sum())} of "
                           f"{y.size} output values are not finite (a float32 overflow of "
                           "the weights on these inputs)")
    return y


def _bundle_arrays(result, all_layers: bool) -> dict[str, np.ndarray]:
    arrays = {"output": np.asarray(result.output), "output_int": np.asarray(result.output_int)}
    if all_layers:
        for name, value in result.layers.items():
            arrays[f"layer/{name}"] = np.asarray(value)
    return arrays


def _read(target: Target, options: dict):
    """The bundle :func:`run_backend` already read (and checked the input against)."""
    from bitline.sw.bundle import read_bundle

    return options.get(_BUNDLE) or read_bundle(target.bundle)


def _golden(target: Target, x: np.ndarray, options: dict) -> dict[str, np.ndarray]:
    from bitline.sim.golden import run_golden

    bundle = _read(target, options)
    result = run_golden(bundle.qmodel, x, return_all=options["all_layers"])
    return _bundle_arrays(result, options["all_layers"])


def _executor(target: Target, x: np.ndarray, options: dict) -> dict[str, np.ndarray]:
    from bitline.sim.executor import run_executor

    bundle = _read(target, options)
    result = run_executor(bundle.program, bundle.qmodel, x, return_all=options["all_layers"])
    return _bundle_arrays(result, options["all_layers"])


def network_summary(cycles: list[int], clock_mhz: float) -> str:
    """One line on whole-network runs: cycles per image, latency and images/s at a clock.

    ``cycles`` are the CYCLES counters of the runs (one image each; nodes run one at a
    time, so images/s is ``clock / cycles``). Raises ``ValueError`` for a clock that is
    not positive.
    """
    if not clock_mhz > 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz}")
    shown = ", ".join(f"{value:,}" for value in cycles[:4]) + (", ..." if len(cycles) > 4
                                                              else "")
    mean = sum(cycles) / len(cycles)
    return (f"whole network: {len(cycles)} image(s), cycles per image {shown}; at "
            f"{clock_mhz:g} MHz {mean / clock_mhz:,.2f} us per image, "
            f"{clock_mhz * 1e6 / mean:,.0f} images/s (sequential nodes)")


def _rtl(target: Target, x: np.ndarray, options: dict, *, progress=None,
         log=None) -> dict[str, np.ndarray]:
    from bitline.sim.rtl import run_rtl

    bundle = _read(target, options)
    network = bool(bundle.program.nodes) and not options["layer_jobs"]
    if network and options["all_layers"]:
        raise BackendError("backend 'rtl': a whole-network run keeps the inner layers on "
                           "chip, so all_layers needs per-layer jobs (-O layer_jobs=1, "
                           "--layer-jobs)")
    if options["layer_jobs"] and not bundle.program.nodes:
        raise BackendError("backend 'rtl': layer_jobs is for a bundle compiled with "
                           "--network; this bundle runs as layer jobs anyway")
    clock_mhz = options["clock_mhz"] or bundle.program.config.clock_mhz or 100.0
    if not clock_mhz > 0:
        raise BackendError(f"backend 'rtl': option clock_mhz must be positive, not "
                           f"{clock_mhz}")
    result = run_rtl(target.bundle, x, analog=options["analog"] or None,
                     seed=options["seed"], max_vectors=options["max_vectors"],
                     check=options["check"], progress=progress,
                     mode="network" if network else "layers")
    if log is not None:
        mode = "analog model" if options["analog"] else "digital crossbar emulators"
        build = ("cached build" if result.build_seconds == 0
                 else f"build {result.build_seconds:.1f} s")
        work = (f"{len(result.runs)} whole-network runs" if result.runs
                else f"{len(result.jobs)} layer jobs")
        log(f"rtl ({result.simulator}, {mode}, {build}): simulated "
            f"{result.simulated_cycles:,} cycles in {result.run_seconds:.2f} s wall "
            f"({result.cycles_per_second:,.0f} simulated cycles/s); {work}, "
            f"{result.counters().get('ou_reads', 0):,} OU reads")
        if result.pipelined:
            from bitline.sim.rtl import pipeline_summary

            log(pipeline_summary(result.runs, bundle.program, clock_mhz))
        elif result.runs:
            log(network_summary([run["cycles"] for run in result.runs], clock_mhz))
    return _bundle_arrays(result, options["all_layers"])


#: backend name -> :class:`Backend`, in the order help texts list them.
BACKENDS: dict[str, Backend] = {
    "float": Backend("float", "model", _float,
                     summary="float32 reference of the IR (a model)"),
    "golden": Backend("golden", "bundle", _golden, (ALL_LAYERS,),
                      summary="integer golden model of a bundle's quantized model"),
    "executor": Backend("executor", "bundle", _executor, (ALL_LAYERS,),
                        summary="a bundle's OU program on the crossbar-level executor"),
    "rtl": Backend("rtl", "bundle", _rtl, (
        RunOption("analog", str, None, "AnalogParams TOML file or example name (ideal, "
                  "typical): external crossbars answered by the analog model"),
        RunOption("seed", int, 0, "seed of the analog chip"),
        RunOption("max_vectors", int, None, "largest layer job (vectors)"),
        RunOption("check", bool, False, "compare every layer with the golden model (or, "
                  "with analog, the executor) inside the bench"),
        RunOption("layer_jobs", bool, False, "a bundle compiled --network: run per-layer "
                  "jobs instead of whole-network runs (debugging; all_layers needs it)"),
        RunOption("clock_mhz", float, None, "clock for the images/s of whole-network runs "
                  "(default: the config's clock_mhz, else 100)"),
        ALL_LAYERS,
    ), summary="a bundle on the generated Verilog in cocotb (Verilator or Icarus)",
        callbacks=True),
}


def get_backend(name: str) -> Backend:
    """Return backend ``name`` (:class:`BackendError` listing the known ones otherwise)."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def default_backend(target: Target) -> str:
    """``executor`` for a compiled bundle, ``float`` for a model."""
    return "executor" if target.kind == "bundle" else "float"


def parse_run_options(name: str, pairs: Mapping[str, str]) -> dict:
    """Return backend ``name``'s options: every declared one, typed, defaults filled in.

    Raises
    ------
    BackendError
        For an unknown backend or option, or a value of the wrong type (the message names
        the backend, the option and the value).
    """
    backend = get_backend(name)
    known = {option.name: option for option in backend.options}
    unknown = sorted(set(pairs) - set(known))
    if unknown:
        raise BackendError(f"backend {name!r}: unknown option(s) {', '.join(unknown)}; known: "
                           f"{', '.join(known) or 'none'}")
    return {key: option.parse(name, str(pairs[key])) if key in pairs else option.default
            for key, option in known.items()}


def check_run_input(target: Target, x, *, source: str = "input", strict: bool = False,
                    warn: Callable[[str], None] | None = None, bundle=None) -> np.ndarray:
    """Validate ``x`` for ``target`` (:func:`~bitline.sw.flow.inputs.check_input`); return
    it as float32 ``(N, *input_shape)``.

    For a bundle (``bundle``: the read :class:`~bitline.sw.bundle.Bundle`) the values that
    fall outside the calibrated input range are counted: the quantizer clamps them, as the
    hardware's input codes do; the count goes to ``warn`` (default: ``warnings.warn`` with
    :class:`~bitline.sw.flow.inputs.InputClampWarning`), or with ``strict`` is an error.

    Raises
    ------
    InputError
        A ``ValueError`` naming ``source``, what is expected and what was found.
    """
    from bitline.sw.flow.inputs import check_input, report_clamped

    model = bundle.qmodel.model if bundle is not None else target.model
    x = check_input(x, tuple(model.input_shape) if model is not None else None, source)
    if bundle is not None:
        report_clamped(x, bundle.qmodel.input, source=source, strict=strict, warn=warn)
    return x


def run_backend(name: str, target: Target, x: np.ndarray, options: Mapping[str, str], *,
                progress: Callable[[dict], None] | None = None,
                log: Callable[[str], None] | None = None, source: str = "input",
                strict: bool = False,
                warn: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Run ``target`` on backend ``name`` with ``-O`` options; return named arrays.

    ``options`` are the raw ``KEY=VALUE`` strings (:func:`parse_run_options`). The input is
    checked first (:func:`check_run_input`; ``source`` names it in errors, ``strict`` and
    ``warn`` handle clamped values); a bundle is read (and authenticated) once, before. The
    result always holds ``output``; bundle backends add ``output_int`` (and
    ``layer/<name>``).

    Raises
    ------
    BackendError
        For an unknown backend, a bad option or a target of the wrong kind.
    InputError, BundleError
        For an input :func:`check_run_input` refuses, or a bundle that does not read back.
    """
    backend = get_backend(name)
    parsed = parse_run_options(name, options)
    try:
        target.require(backend.target, f"backend {name!r}")
    except ValueError as error:
        raise BackendError(str(error)) from None
    bundle = None
    if target.kind == "bundle":
        from bitline.sw.bundle import read_bundle

        bundle = read_bundle(target.bundle)
        parsed[_BUNDLE] = bundle
    x = check_run_input(target, x, source=source, strict=strict, warn=warn, bundle=bundle)
    extra = {"progress": progress, "log": log} if backend.callbacks else {}
    result = backend.run(target, x, parsed, **extra)
    if isinstance(result, dict):
        return {key: np.asarray(value) for key, value in result.items()}
    return {"output": np.asarray(result)}
