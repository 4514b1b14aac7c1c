"""`bitline info` and `bitline run`: inspect a model and run it on a backend.

``MODEL`` is a builtin model name (:data:`bitline.sw.models.BUILTIN_MODELS`), the path of an
``.onnx`` file, or (for backends that execute compiled programs) a program-bundle directory
holding ``manifest.json``. :class:`Target` is that resolved argument.

Backends are plain functions in :data:`BACKENDS`, ``backend(target, x, options) -> y``: ``x``
is the float32 input batch ``(N, *input_shape)`` (already validated when the target knows its
input shape), ``options`` the ``-O KEY=VALUE`` pairs, ``y`` the output batch. A backend
that cannot run a kind of target raises :class:`BackendError` naming both. Simulation code is
imported inside the backend that needs it, so ``bitline info`` stays light.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click
import numpy as np

from bitline.sw.frontend.ir import Model
from bitline.sw.models import BUILTIN_MODELS, resolve_model

__all__ = ["info", "run", "Target", "resolve_target", "BACKENDS", "BackendError",
           "model_summary", "load_input"]

#: File that marks a directory as a compiled program bundle.
BUNDLE_MANIFEST = "manifest.json"


class BackendError(ValueError):
    """An unknown backend, or a backend that cannot run the given target."""


@dataclass(frozen=True)
class Target:
    """What ``MODEL`` on the command line names: a float IR model or a compiled bundle.

    Attributes
    ----------
    spec:
        The argument as typed.
    model:
        The IR model, when ``spec`` is a builtin name or an ``.onnx`` file.
    bundle:
        The bundle directory, when ``spec`` is one (it holds ``manifest.json``).
    """

    spec: str
    model: Model | None = None
    bundle: Path | None = None

    @property
    def kind(self) -> str:
        """``"model"`` or ``"bundle"``."""
        return "bundle" if self.bundle is not None else "model"

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Input shape without batch, or ``None`` when the backend checks it itself."""
        return tuple(self.model.input_shape) if self.model is not None else None

    def require(self, kind: str, user: str):
        """Return the model (``kind="model"``) or bundle path (``"bundle"``).

        ``user`` names who asks (e.g. ``"backend 'float'"``) for the :class:`BackendError`
        raised when the target is of the other kind.
        """
        if kind != self.kind:
            wanted = {
                "model": "a model (builtin name or .onnx file)",
                "bundle": "a compiled bundle directory",
            }
            raise BackendError(
                f"{user} needs {wanted[kind]}, but {self.spec!r} is {wanted[self.kind]}"
            )
        return self.model if kind == "model" else self.bundle


def resolve_target(spec: str) -> Target:
    """Resolve a ``MODEL`` argument: bundle directory, builtin name or ``.onnx`` path.

    Raises
    ------
    ValueError
        For a directory without ``manifest.json``, an unknown name or an ONNX import error.
    """
    path = Path(spec)
    if path.is_dir():
        if not (path / BUNDLE_MANIFEST).is_file():
            raise ValueError(
                f"{spec}: a directory but not a compiled bundle (no {BUNDLE_MANIFEST})"
            )
        return Target(spec, bundle=path)
    return Target(spec, model=resolve_model(spec))


# -- backends ---------------------------------------------------------------------------

Backend = Callable[[Target, np.ndarray, dict], np.ndarray]


def _float_backend(target: Target, x: np.ndarray, options: dict) -> np.ndarray:
    """Float32 reference of the IR (:func:`bitline.sw.frontend.float_model.run_float`)."""
    model = target.require("model", "backend 'float'")
    if options:
        raise BackendError(f"backend 'float' takes no options, not {sorted(options)}")
    from bitline.sw.frontend.float_model import run_float

    return run_float(model, x)


#: backend name -> ``backend(target, x, options) -> y``; later stages register theirs here.
BACKENDS: dict[str, Backend] = {
    "float": _float_backend,
}


def get_backend(name: str) -> Backend:
    """Return backend ``name`` (:class:`BackendError` listing the known ones otherwise)."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return BACKENDS[name]


# -- helpers ----------------------------------------------------------------------------

def model_summary(model: Model) -> dict:
    """Return the per-layer summary that ``bitline info --json`` prints.

    Keys: ``model``, ``source``, ``input_shape``, ``output_shape``, ``layers`` (each with
    ``name``, ``op``, ``activation``, ``input_shape``, ``output_shape``, ``weights`` (weight
    elements, biases excluded) and ``macs`` (per sample)), ``total_weights``, ``total_macs``.
    """
    layers = [
        {
            "name": layer.name,
            "op": layer.op,
            "activation": layer.activation,
            "input_shape": list(layer.input_shape),
            "output_shape": list(layer.output_shape),
            "weights": int(layer.weight.size) if layer.weight is not None else 0,
            "macs": int(layer.macs),
        }
        for layer in model.layers
    ]
    return {
        "model": model.name,
        "source": model.source,
        "input_shape": list(model.input_shape),
        "output_shape": list(model.output_shape),
        "layers": layers,
        "total_weights": sum(layer["weights"] for layer in layers),
        "total_macs": sum(layer["macs"] for layer in layers),
    }


def load_input(path: str, input_shape: tuple[int, ...] | None) -> np.ndarray:
    """Load an input batch from ``.npy`` (or ``.npz`` with key ``input`` or one array).

    An array of exactly ``input_shape`` is one sample and gets a batch axis of 1. Returns
    float32 ``(N, *input_shape)``. Raises ``ValueError`` naming the file and the expected shape.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such input file")
    try:
        loaded = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a numpy .npy/.npz file ({error})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if "input" in keys:
                key = "input"
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise ValueError(f"{path}: .npz needs an array named 'input', has {keys}")
            x = loaded[key]
    else:
        x = loaded
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise ValueError(f"{path}: input must be numeric, not dtype {x.dtype}")
    if input_shape is not None:
        input_shape = tuple(input_shape)
        if tuple(x.shape) == input_shape:
            x = x[None]
        elif tuple(x.shape[1:]) != input_shape:
            expected = ", ".join(["N", *map(str, input_shape)])
            raise ValueError(
                f"{path}: input has shape {tuple(x.shape)}; the model expects ({expected}) or "
                f"a single sample {input_shape}"
            )
    return np.asarray(x, dtype=np.float32)


def _parse_options(pairs: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"option {pair!r} must be KEY=VALUE")
        options[key] = value
    return options


def _shape(shape) -> str:
    return "x".join(map(str, shape))


# -- commands ---------------------------------------------------------------------------

_MODEL_HELP = f"builtin name ({', '.join(BUILTIN_MODELS)}) or path to an .onnx file"


@click.command()
@click.argument("model", metavar="MODEL")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(model: str, as_json: bool):
    """Print the layers of MODEL with shapes, weights and MACs.

    MODEL is a builtin name (digits-cnn, digits-resnet, resnet18-cifar, vgg16, mobilenetv2)
    or the path of an .onnx file. Weights count weight elements (biases excluded); MACs are
    per input sample.
    """
    target = resolve_target(model)
    summary = model_summary(target.require("model", "bitline info"))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['model']}  ({summary['source']})")
    table.add_column("layer", overflow="fold")
    table.add_column("op")
    table.add_column("input")
    table.add_column("output")
    table.add_column("weights", justify="right")
    table.add_column("MACs", justify="right")
    for layer in summary["layers"]:
        op = layer["op"] + (f"+{layer['activation']}" if layer["activation"] else "")
        table.add_row(
            layer["name"], op, _shape(layer["input_shape"]), _shape(layer["output_shape"]),
            f"{layer['weights']:,}", f"{layer['macs']:,}",
        )
    table.add_section()
    table.add_row(
        f"total ({len(summary['layers'])} layers)", "", _shape(summary["input_shape"]),
        _shape(summary["output_shape"]), f"{summary['total_weights']:,}",
        f"{summary['total_macs']:,}",
    )
    Console(file=sys.stdout, width=max(100, Console(file=sys.stdout).width)).print(table)


@click.command()
@click.argument("model", metavar="MODEL")
@click.option("--input", "-i", "input_path", required=True,
              help="Input batch .npy of shape (N, *input_shape), or one sample.")
@click.option("--output", "-o", "output_path", required=True,
              help="Output .npz; the result is stored under key 'output'.")
@click.option("--backend", "-b", default="float", show_default=True,
              help="Execution backend (float; golden, executor and rtl run a bundle "
                   "directory).")
@click.option("--option", "-O", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="Backend option (repeatable).")
@click.option("--all-layers", is_flag=True,
              help="Bundle backends: also store every layer's integer output as "
                   "'layer/<name>' (same as -O all_layers=1).")
@click.option("--analog", "analog", metavar="PARAMS",
              help="Backend rtl: analog crossbar parameters (TOML file, or an example name: "
                   "ideal, typical) answer the crossbar ports (same as -O analog=PARAMS).")
@click.option("--seed", type=int,
              help="Backend rtl: seed of the analog chip (same as -O seed=SEED).")
def run(model: str, input_path: str, output_path: str, backend: str,
        option_pairs: tuple[str, ...], all_layers: bool, analog: str | None,
        seed: int | None):
    """Run MODEL on the inputs in --input with a backend and write the outputs to --output.

    MODEL is a builtin name, an .onnx file or (for backends that run compiled programs) a
    bundle directory. Bundle backends also store ``output_int`` (integer codes).
    """
    run_backend = get_backend(backend)
    options = _parse_options(option_pairs)
    if all_layers:
        options.setdefault("all_layers", "1")
    if analog:
        options.setdefault("analog", analog)
    if seed is not None:
        options.setdefault("seed", str(seed))
    target = resolve_target(model)
    x = load_input(input_path, target.input_shape)
    result = run_backend(target, x, options)
    # A backend returns the output array, or a dict of named arrays that includes "output".
    arrays = ({key: np.asarray(value) for key, value in result.items()}
              if isinstance(result, dict) else {"output": np.asarray(result)})
    y = arrays["output"]
    with open(output_path, "wb") as file:
        np.savez(file, **arrays)
    others = [key for key in arrays if key != "output"]
    more = f" (+ {len(others)} more: {', '.join(others[:2])}{', ...' if len(others) > 2 else ''})" \
        if others else ""
    click.echo(f"{output_path}: output {_shape(y.shape)} {y.dtype}{more} (backend {backend})")


# Backends that run compiled program bundles (bitline.sw.cli.compile).
from bitline.sw.cli.compile import executor_backend, golden_backend  # noqa: E402

BACKENDS["golden"] = golden_backend
BACKENDS["executor"] = executor_backend


def _rtl_backend(target: Target, x: np.ndarray, options: dict):
    """The bundle on the generated Verilog in cocotb (:func:`bitline.sim.rtl.rtl_backend`)."""
    from bitline.sim.rtl import rtl_backend

    return rtl_backend(target, x, options)


BACKENDS["rtl"] = _rtl_backend
