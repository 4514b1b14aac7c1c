"""``bitline info`` and ``bitline run``: inspect a model and run a model or bundle on a backend.

``MODEL`` is a builtin model name (:data:`bitline.sw.models.BUILTIN_MODELS`), the path of an
``.onnx`` file, or (for ``run``) a program-bundle directory holding ``manifest.json``
(:func:`bitline.sw.flow.resolve_target`). The backends are the registry of
:mod:`bitline.sim.backends` (imported when ``run`` runs: ``sw`` imports ``sim`` only inside
CLI commands).
"""

from __future__ import annotations

from pathlib import Path

import click

from bitline.sw.cli.common import RunFailed, echo_json, json_option, print_table, quiet_option
from bitline.sw.flow import load_input, model_summary, resolve_target

__all__ = ["info", "run"]

#: The backends ``--backend`` lists (the registry of bitline.sim.backends, without
#: importing it for ``--help``).
BACKEND_NAMES = ("float", "golden", "executor", "rtl")


def _shape(shape) -> str:
    return "x".join(map(str, shape))


@click.command()
@click.argument("model", metavar="MODEL")
@json_option
@quiet_option
def info(model: str, as_json: bool, quiet: bool):
    """Print the layers of MODEL with shapes, weights and MACs.

    MODEL is a builtin name (digits-cnn, digits-resnet, mnist-lenet5, mnist-resnet,
    resnet18-cifar, vgg16, mobilenetv2) or the path of an .onnx file. Weights count weight elements (biases excluded); MACs are
    per input sample. --json prints {"model", "source", "input_shape", "output_shape",
    "layers": [{"name", "op", "activation", "input_shape", "output_shape", "weights",
    "macs"}], "total_weights", "total_macs"}.
    """
    summary = model_summary(resolve_target(model).require("model", "bitline info"))
    if as_json:
        echo_json(summary)
        return
    if quiet:
        return
    from rich.table import Table

    table = Table(title=f"{summary['model']}  ({summary['source']})")
    table.add_column("layer", no_wrap=True)
    for column in ("op", "input", "output"):
        table.add_column(column, no_wrap=True)
    table.add_column("weights", justify="right")
    table.add_column("MACs", justify="right")
    for layer in summary["layers"]:
        op = layer["op"] + (f"+{layer['activation']}" if layer["activation"] else "")
        table.add_row(layer["name"], op, _shape(layer["input_shape"]),
                      _shape(layer["output_shape"]), f"{layer['weights']:,}",
                      f"{layer['macs']:,}")
    table.add_section()
    table.add_row(f"total ({len(summary['layers'])} layers)", "",
                  _shape(summary["input_shape"]), _shape(summary["output_shape"]),
                  f"{summary['total_weights']:,}", f"{summary['total_macs']:,}")
    print_table(table)


class BackendName(click.ParamType):
    """A backend name checked against the live registry of :mod:`bitline.sim.backends`."""

    name = "backend"

    def get_metavar(self, param, ctx=None):
        return "[" + "|".join(BACKEND_NAMES) + "]"

    def convert(self, value, param, ctx):
        from bitline.sim.backends import BACKENDS

        if value not in BACKENDS:
            self.fail(f"unknown backend {value!r}; available: {', '.join(BACKENDS)}", param,
                      ctx)
        return value


def _parse_pairs(ctx, param, pairs: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"option {pair!r} must be KEY=VALUE", ctx=ctx, param=param)
        options[key] = value
    return options


def _progress_bar():
    """Return ``(context manager, progress callback)``: a rich bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]run[/] {task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
                   TextColumn("{task.fields[cycles]:,} cycles"), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task("building and starting the simulator", total=None, cycles=0,
                        unit="vectors")

    def progress(state: dict) -> None:
        # layer jobs count vectors per layer; whole-network runs count images
        images = state.get("unit") == "images"
        bar.update(task, completed=state["done"], total=state["total"],
                   description=state["layer"] if images else f"layer {state['layer']}",
                   cycles=int(state["cycles"]), unit=state.get("unit", "vectors"))

    return bar, progress


@click.command()
@click.argument("model", metavar="MODEL")
@click.option("--input", "-i", "input_path", required=True,
              help="Input batch .npy of shape (N, *input_shape), or one sample.")
@click.option("--output", "-o", "output_path", required=True,
              help="Output file (.npz); the result is stored under key 'output'.")
@click.option("--backend", "-b", type=BackendName(), default=None,
              help="Execution backend: float (a model; the default for models); golden, "
                   "executor (the default for bundles) and rtl run a bundle directory.")
@click.option("--option", "-O", "options", multiple=True, metavar="KEY=VALUE",
              callback=_parse_pairs,
              help="Backend option (repeatable), e.g. -O seed=3. golden, executor: "
                   "all_layers; rtl: analog, seed, max_vectors, check, layer_jobs, "
                   "clock_mhz, all_layers.")
@click.option("--all-layers", is_flag=True,
              help="Bundle backends: also store every layer's integer output as "
                   "'layer/<name>' (same as -O all_layers=1).")
@click.option("--analog", "analog", metavar="PARAMS",
              help="Backend rtl: analog crossbar parameters (TOML file, or an example name: "
                   "ideal, typical) answer the crossbar ports (same as -O analog=PARAMS).")
@click.option("--seed", type=int,
              help="Backend rtl: seed of the analog chip (same as -O seed=SEED).")
@click.option("--layer-jobs", is_flag=True,
              help="Backend rtl, a bundle compiled --network: one layer job per compute "
                   "layer (the host does the rest) instead of one whole-network run per "
                   "image (same as -O layer_jobs=1).")
@click.option("--clock-mhz", type=float, metavar="MHZ",
              help="Backend rtl, whole-network runs: the clock of the printed latency and "
                   "images/s (default: the config's clock_mhz; same as -O clock_mhz=MHZ).")
@click.option("--strict", is_flag=True,
              help="Bundles: refuse inputs outside the calibrated input range (by default "
                   "they are clamped as the hardware does, with a warning giving the count).")
@json_option
@quiet_option
def run(model: str, input_path: str, output_path: str, backend: str | None,
        options: dict[str, str], all_layers: bool, analog: str | None, seed: int | None,
        layer_jobs: bool, clock_mhz: float | None, strict: bool, as_json: bool,
        quiet: bool):
    """Run MODEL on the inputs in --input with a backend and write the outputs to --output.

    MODEL is a builtin name, an .onnx file or a compiled bundle directory (detected by its
    manifest.json; it runs on the executor unless --backend says otherwise). Bundle
    backends also store 'output_int' (integer codes). A bundle is authenticated first
    (every file against the compile that wrote it, docs/bundle.md "Integrity"). The input
    must be a real numeric array of the model's shape with finite values; values outside
    the calibrated input range are clamped with a warning (--strict: an error). --json
    prints {"output": FILE, "backend", "arrays": [{"name", "shape", "dtype"}]}.

    On the rtl backend a bundle compiled with --network runs whole-network, one run per
    image: only the input image crosses the host interface; the cycles per image and the
    images/s at --clock-mhz are printed (--layer-jobs runs per-layer jobs instead).
    """
    from bitline.sim.backends import default_backend, run_backend

    options = dict(options)
    for key, value in (("all_layers", "1" if all_layers else None), ("analog", analog),
                       ("seed", None if seed is None else str(seed)),
                       ("layer_jobs", "1" if layer_jobs else None),
                       ("clock_mhz", None if clock_mhz is None else str(clock_mhz))):
        if value is not None:
            options.setdefault(key, value)
    target = resolve_target(model)
    backend = backend or default_backend(target)
    # A bundle's input is checked by run_backend against the authenticated bundle's shape.
    x = load_input(input_path, target.input_shape, check=target.kind == "model")
    talk = not (quiet or as_json)
    log = click.echo if talk else None
    checks = {"source": str(input_path), "strict": strict,
              "warn": lambda message: click.echo(f"warning: {message}", err=True)}
    try:
        if talk and backend == "rtl":
            bar, progress = _progress_bar()
            with bar:
                arrays = run_backend(backend, target, x, options, progress=progress, log=log,
                                     **checks)
        else:
            arrays = run_backend(backend, target, x, options, log=log, **checks)
    except (RuntimeError, AssertionError) as error:     # a simulation or build that failed
        raise RunFailed(f"backend {backend!r}: {error}") from None
    import numpy as np

    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    with open(output_path, "wb") as file:
        np.savez(file, **arrays)
    if as_json:
        echo_json({"output": str(output_path), "backend": backend, "arrays": [
            {"name": key, "shape": list(value.shape), "dtype": str(value.dtype)}
            for key, value in arrays.items()]})
    elif not quiet:
        y = arrays["output"]
        others = [key for key in arrays if key != "output"]
        more = (f" (+ {len(others)} more: {', '.join(others[:2])}"
                f"{', ...' if len(others) > 2 else ''})") if others else ""
        click.echo(f"{output_path}: output {_shape(y.shape)} {y.dtype}{more} "
                   f"(backend {backend})")

