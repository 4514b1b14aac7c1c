"""The compile steps 3-7 (see :mod:`bitline.sw.flow`): size the hardware, quantize, map,
validate, write the bundle."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import STRATEGIES, Program
from bitline.sw.flow.inputs import (
    DEFAULT_PRESET,
    SYNTHETIC_CALIB_SAMPLES,
    calibration_inputs,
    model_labels,
    parse_xbars,
    resolve_target,
)

__all__ = ["WIDEST_WEIGHT_BITS", "COMPILE_SIDECAR", "COMPILE_STEPS", "Sizing", "HardwarePlan",
           "CompileResult", "sized_quantization", "size_hardware", "quantize", "resolve_spec",
           "map_program", "validate", "compile_model", "allocate_copies", "compile_bundle"]

#: The widest ``max_weight_bits`` an :class:`AcceleratorConfig` accepts.
WIDEST_WEIGHT_BITS = 16
#: Side file ``bitline compile`` writes into the bundle (model, strategy, labels, sizing).
COMPILE_SIDECAR = "compile.json"

#: The compile steps in order: (name, function name in this module or where it lives).
COMPILE_STEPS: tuple[tuple[str, str], ...] = (
    ("resolve model", "resolve_target"),
    ("calibration inputs", "calibration_inputs"),
    ("size hardware", "size_hardware"),
    ("quantize", "quantize"),
    ("map", "map_program"),
    ("validate", "validate"),
    ("bundle", "bitline.sw.bundle.write_bundle"),
)


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Sizing:
    """One config field :func:`size_hardware` chose.

    Attributes
    ----------
    field:
        The :class:`AcceleratorConfig` field.
    requested:
        Its value in the requested config (preset or file).
    chosen:
        The value the program is compiled for.
    reason:
        Why, in words (printed by the CLI).
    """

    field: str
    requested: int
    chosen: int
    reason: str

    @property
    def note(self) -> str:
        """One line for the CLI: ``"<field> raised from A to B (reason)"``."""
        verb = "raised" if self.chosen > self.requested else "set"
        return f"{self.field} {verb} from {self.requested} to {self.chosen} ({self.reason})"

    def to_dict(self) -> dict:
        return {"field": self.field, "requested": self.requested, "chosen": self.chosen,
                "reason": self.reason}


@dataclass(frozen=True)
class HardwarePlan:
    """What :func:`size_hardware` returns.

    Attributes
    ----------
    config:
        The config every later step uses.
    sizing:
        One :class:`Sizing` per field that differs from the requested config.
    qmodel:
        The quantized model measured on the way, when its quantization equals what
        :func:`quantize` gives for :attr:`config` (reused instead of quantizing again);
        else ``None``.
    layers:
        The layer programs of the mapping measured on the way (``--xbars auto``), else
        ``None``. The mapper reads ``n_xbars`` and ``max_entries`` only to reject, so they
        are the layers :func:`map_program` gives for :attr:`config` (tests/e2e/test_flow.py
        maps again and compares); :func:`compile_model` reuses them instead of mapping twice.
    """

    config: AcceleratorConfig
    sizing: tuple[Sizing, ...] = ()
    qmodel: object = None
    layers: tuple = None


@dataclass
class CompileResult:
    """The products of :func:`compile_model` and how long each step took (seconds)."""

    qmodel: object
    program: object
    config: AcceleratorConfig
    sizing: tuple[Sizing, ...]
    size_s: float
    quantize_s: float
    map_s: float

    @property
    def notes(self) -> list[str]:
        """One line per :class:`Sizing` record."""
        return [record.note for record in self.sizing]


# ------------------------------------------------------------------------ compile steps
def _capacity_sizing(model, config: AcceleratorConfig) -> list[Sizing]:
    """Layer-job capacity: ``max_in_features`` / ``max_out_channels`` of the largest layer.

    A layer's input vector (``K``; a depthwise conv's block-diagonal matrix has
    ``C * KH * KW`` inputs) and output channels must fit the config's layer-job capacity.
    """
    largest_k = largest_o = 1
    for layer in model.compute_layers:
        weight = layer.weight
        groups = int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1
        largest_k = max(largest_k, int(np.prod(weight.shape[1:])) * groups)
        largest_o = max(largest_o, int(weight.shape[0]))
    records = []
    for name, need, what in (("max_in_features", largest_k, "largest layer input"),
                             ("max_out_channels", largest_o, "largest layer output")):
        if need > getattr(config, name):
            records.append(Sizing(name, getattr(config, name), need, what))
    return records


def _apply(config: AcceleratorConfig, records) -> AcceleratorConfig:
    changes = {record.field: record.chosen for record in records}
    return config.replace(**changes) if changes else config


def _weight_sizing(model, spec, calib_x, config: AcceleratorConfig):
    """Quantize to measure the weight planes; return ``(qmodel, records)``.

    A spec whose weights need more magnitude bit planes than ``config.max_weight_bits``
    allows (varied schemes such as power-of-two or adaptive float reach high magnitudes) is
    quantized with the widest weights a config holds, and ``max_weight_bits`` is chosen as
    exactly what the weights need.
    """
    try:
        return quantize(model, spec, calib_x, config), []
    except ValueError:
        if config.max_weight_bits >= WIDEST_WEIGHT_BITS:
            raise
        qmodel = quantize(model, spec, calib_x,
                          config.replace(max_weight_bits=WIDEST_WEIGHT_BITS))
    planes = max((qlayer.weight.magnitude_bits for qlayer in qmodel.compute_layers
                  if qlayer.weight is not None), default=1)
    needed = max(config.max_weight_bits, planes + 1)
    return qmodel, [Sizing("max_weight_bits", config.max_weight_bits, needed,
                           f"{planes} magnitude bit planes")]


def sized_quantization(model, spec, calib_x: np.ndarray, config: AcceleratorConfig, *,
                       qmodels: dict | None = None):
    """The quantizing half of :func:`size_hardware` (``--xbars auto``).

    Raises the layer-job capacity and ``max_weight_bits`` as the network and the spec need
    and quantizes (once per ``(spec, config digest)`` in ``qmodels``; only specs given by
    name or path are cached, a spec object may be edited later). Returns
    ``(config, qmodel, records)``: the config with those fields raised, the quantized
    model and the :class:`Sizing` records. ``scripts/bench_compile.py`` times it as the
    ``quantize`` step.
    """
    from bitline.sw.quant import load_spec

    records = _capacity_sizing(model, config)
    config = _apply(config, records)
    cache = qmodels if qmodels is not None and isinstance(spec, (str, Path)) else {}
    key = (str(spec), config.digest)
    if key not in cache:
        cache[key] = _weight_sizing(model, None if spec is None else load_spec(spec),
                                    calib_x, config)
    qmodel, weight_records = cache[key]
    return _apply(config, weight_records), qmodel, records + list(weight_records)


def size_hardware(model, spec, calib_x: np.ndarray, config: AcceleratorConfig, strategy: str,
                  *, xbars: str | int = "auto", qmodels: dict | None = None,
                  encoding: str = "differential") -> HardwarePlan:
    """Choose the config the program is compiled for (compile step 3).

    With ``xbars="auto"`` the machine is sized to the network, each field raised only when
    the requested config is too small: ``max_in_features`` / ``max_out_channels`` (largest
    layer), ``max_weight_bits`` (quantizing to measure the weight planes), ``n_xbars`` (the
    units the mapping needs; set, not only raised) and ``max_entries`` (the mapping's OU
    entries; mapping to measure). With a unit count, ``n_xbars`` is that count and nothing
    else changes. The quantizer and the mapper read none of ``max_weight_bits`` (except to
    reject), ``n_xbars`` and ``max_entries``, so measuring under the requested values gives
    exactly the program the later steps build under the chosen ones.

    Parameters
    ----------
    qmodels:
        Optional cache ``(spec, config digest) -> (qmodel, records)`` shared between calls
        (:func:`compare_strategies` quantizes once per spec).
    encoding:
        Weight encoding of the mapping (:data:`bitline.hw.spec.program.ENCODINGS`).

    Raises
    ------
    ValueError
        From the quantizer or the mapper, when the network cannot fit any config.
    """
    from bitline.sw.mapping import map_model

    xbars = parse_xbars(xbars)
    if xbars != "auto":
        sizing = ()
        if xbars != config.n_xbars:
            sizing = (Sizing("n_xbars", config.n_xbars, xbars, "--xbars"),)
        return HardwarePlan(_apply(config, sizing), sizing)
    config, qmodel, records = sized_quantization(model, spec, calib_x, config, qmodels=qmodels)
    probe = map_model(qmodel, config, strategy, xbars="auto", encoding=encoding)
    if probe.config.n_xbars != config.n_xbars:
        records.append(Sizing("n_xbars", config.n_xbars, probe.config.n_xbars,
                              f"units the {strategy} mapping needs"))
    entries = sum(len(layer.entries) for layer in probe.layers)
    if entries > config.max_entries:
        records.append(Sizing("max_entries", config.max_entries, entries,
                              "OU entries of the program"))
    return HardwarePlan(_apply(config, records), tuple(records), qmodel, tuple(probe.layers))


def quantize(model, spec, calib_x: np.ndarray, config: AcceleratorConfig):
    """Quantize ``model`` with ``spec`` for ``config`` (compile step 4).

    ``spec=None`` takes the quantization of a model read from a quantized file (QDQ /
    QONNX, ``model.quantization``; :func:`bitline.sw.quant.prequantized.quantized_from_file`)
    and needs no calibration; :func:`resolve_spec` chooses ``spec``.
    """
    if spec is None:
        from bitline.sw.quant.prequantized import quantized_from_file

        return quantized_from_file(model, config)
    from bitline.sw.quant import quantize_model

    return quantize_model(model, spec, calib_x, config)


def resolve_spec(model, spec, requantize: bool = False):
    """Return ``(model, spec)`` for the quantize step: the file's quantization or a spec.

    A model read from a quantized file (``model.quantization``) is mapped as it is
    (``spec=None``); a ``spec`` with such a model is an error unless ``requantize``, which
    quantizes its float graph (the file's weights dequantized) with ``spec`` (default
    ``int8``). A float model gets ``spec`` (default ``int8``).

    Raises
    ------
    ValueError
        ``spec`` given for a quantized model without ``requantize``, or ``requantize`` for a
        model that is not quantized.
    """
    from dataclasses import replace

    quantized = getattr(model, "quantization", None) is not None
    if quantized and spec is not None and not requantize:
        raise ValueError(
            f"model {model.name} is already quantized ({model.quantization.format} in "
            f"{model.source}); it is mapped with its own quantization: drop --quant, or pass "
            "--requantize to quantize its float weights again with that spec")
    if requantize and not quantized:
        raise ValueError(f"--requantize: model {model.name} is not a quantized model (no QDQ "
                         "or QONNX quantization nodes); use --quant alone")
    if quantized and not requantize:
        return model, None
    if quantized:
        model = replace(model, quantization=None)
    return model, "int8" if spec is None else spec


def map_program(qmodel, config: AcceleratorConfig, strategy: str,
                encoding: str = "differential"):
    """Map ``qmodel`` onto exactly ``config`` with ``strategy`` and ``encoding`` (step 5).

    Raises
    ------
    ValueError
        If the network does not fit ``config`` (too many units, layers, ...).
    """
    from bitline.sw.mapping import map_model

    return map_model(qmodel, config, strategy, xbars="config", encoding=encoding)


def validate(program) -> None:
    """Check ``program`` with the one OU-program validator (compile step 6).

    :func:`bitline.hw.spec.validate.validate_program` on the program's own config: every
    table fits its field and the config (accumulator width, entry counts, ...), as the
    bundle reader, the hardware generation and the executor check it.

    Raises
    ------
    bitline.hw.spec.program.ProgramError
        A ``ValueError`` naming the layer and field that break the contract.
    """
    from bitline.hw.spec.validate import validate_program

    validate_program(program, program.config)


def compile_model(model, strategy: str, spec, config: AcceleratorConfig, calib_x: np.ndarray,
                  *, xbars: str | int = "auto", qmodels: dict | None = None,
                  encoding: str = "differential") -> CompileResult:
    """Size, quantize, map and validate (compile steps 3-6).

    ``xbars`` is ``"auto"`` (the machine is sized to the network, :func:`size_hardware`) or
    a unit count that replaces ``config.n_xbars``. ``qmodels`` is the optional cache of
    :func:`size_hardware`. ``encoding`` is the weight encoding
    (:data:`bitline.hw.spec.program.ENCODINGS`; ``offset`` is ISAAC's, ``isaac`` only).

    Raises
    ------
    ValueError
        If the strategy or encoding is unknown, the strategy does not support the
        encoding, or a step rejects the model, spec or config.
    """
    from bitline.sw.mapping import check_encoding

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    check_encoding(encoding, strategy)
    start = time.perf_counter()
    plan = size_hardware(model, spec, calib_x, config, strategy, xbars=xbars, qmodels=qmodels,
                         encoding=encoding)
    sized = time.perf_counter()
    # The sizing's measured quantization is the one quantize() gives for plan.config (the
    # quantizer reads max_weight_bits only to reject wider weights), so it is reused.
    qmodel = plan.qmodel if plan.qmodel is not None else quantize(model, spec, calib_x,
                                                                   plan.config)
    quantized = time.perf_counter()
    if plan.layers is not None and plan.qmodel is not None:
        program = Program(plan.config, strategy, list(plan.layers))
    else:
        program = map_program(qmodel, plan.config, strategy, encoding)
    validate(program)
    return CompileResult(qmodel, program, plan.config, plan.sizing, sized - start,
                         quantized - sized, time.perf_counter() - quantized)


def allocate_copies(result: CompileResult, budget) -> tuple[CompileResult, object]:
    """Give the program's layers copies at ``budget`` (the ``--budget`` of ``compile``).

    :func:`bitline.sw.perf.pipeline.pipeline_report` chooses the copies per layer that make
    the slowest pipeline stage as fast as the budget allows; the program gets them
    (:meth:`~bitline.hw.spec.program.Program.with_copies`, fresh units after the mapped
    ones) and is validated again. ``n_xbars`` grows to the units the copies use, recorded as
    a :class:`Sizing`. Returns the new result and the
    :class:`~bitline.sw.perf.pipeline.PipelineReport`.

    Raises
    ------
    ValueError
        When the budget cannot hold one copy of every layer, or is not ``xbars:N`` /
        ``area:MM2``.
    """
    from dataclasses import replace

    from bitline.sw.perf import analyze, parse_budget, pipeline_report

    budget = parse_budget(budget) if isinstance(budget, str) else budget
    pipe = pipeline_report(analyze(result.program, result.qmodel), budget)
    program = result.program.with_copies(pipe.copies)
    validate(program)
    sizing = result.sizing
    if program.config.n_xbars != result.config.n_xbars:
        sizing += (Sizing("n_xbars", result.config.n_xbars, program.config.n_xbars,
                          f"layer copies at --budget {budget.label}"),)
    if program.config.max_copies != result.config.max_copies:
        sizing += (Sizing("max_copies", result.config.max_copies, program.config.max_copies,
                          f"layer copies at --budget {budget.label}"),)
    return replace(result, program=program, config=program.config, sizing=sizing), pipe


def compile_bundle(model_name: str, strategy: str, spec, config: AcceleratorConfig,
                   output: str | Path, *, xbars: str | int = "auto", dataset: str | None = None,
                   calib_samples: int = SYNTHETIC_CALIB_SAMPLES,
                   config_label: str = DEFAULT_PRESET,
                   budget=None, encoding: str = "differential",
                   requantize: bool = False) -> tuple[CompileResult, dict]:
    """Run the whole compile flow (:data:`COMPILE_STEPS`) and write the bundle to ``output``.

    ``dataset`` is the calibration data set (:func:`calibration_inputs`); ``config_label``
    names the config in the side file (preset name or config path). Returns the
    :class:`CompileResult` and the ``compile.json`` side file written next to the bundle:
    ``model``, ``strategy``, ``encoding``, ``quant``, ``config``, ``xbars``, ``labels``,
    ``sizing`` (the
    :class:`Sizing` records as dicts) and ``seconds`` (``size``, ``quantize``, ``map``,
    ``write``). ``spec`` and ``requantize`` go through :func:`resolve_spec` (``spec=None``:
    a quantized file's own quantization, else ``int8``). With a ``budget`` (``xbars:N`` /
    ``area:MM2``) the layers get copies before
    the bundle is written (:func:`allocate_copies`) and the side file also holds
    ``budget`` and ``pipeline`` (the :class:`~bitline.sw.perf.pipeline.PipelineReport`).
    """
    from bitline.sw.bundle import write_bundle

    target = resolve_target(model_name)
    model, spec = resolve_spec(target.require("model", "bitline compile"), spec, requantize)
    calib_x, calib_label = calibration_inputs(model, dataset, model_name=model_name,
                                              samples=calib_samples)
    result = compile_model(model, strategy, spec, config, calib_x, xbars=xbars,
                           encoding=encoding)
    pipe = None
    if budget is not None:
        result, pipe = allocate_copies(result, budget)
    out = Path(output)
    start = time.perf_counter()
    write_bundle(out, result.program, result.qmodel)
    sidecar = {
        "model": model_name, "strategy": strategy, "encoding": encoding,
        "quant": str(spec) if spec is not None else f"file ({model.quantization.format})",
        "config": config_label,
        "xbars": parse_xbars(xbars), "labels": model_labels(model_name, calib_label),
        "sizing": [record.to_dict() for record in result.sizing],
        "seconds": {"size": result.size_s, "quantize": result.quantize_s,
                    "map": result.map_s, "write": time.perf_counter() - start},
    }
    if pipe is not None:
        sidecar.update(budget=pipe.budget.label, pipeline=pipe.to_dict())
    (out / COMPILE_SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    return result, sidecar
