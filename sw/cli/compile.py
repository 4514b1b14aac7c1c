"""``bitline compile``, ``bitline report`` and ``bitline compare``: the mapping compiler's CLI.

The library halves are in :mod:`bitline.sw.flow` (the declared compile steps and
:func:`~bitline.sw.flow.compare_strategies`); these commands parse, call it and print.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bitline.hw.spec.program import ENCODINGS
from bitline.sw.cli.common import (
    NamedChoice,
    command_line,
    config_options,
    console,
    cost_options,
    dataset_option,
    echo_json,
    json_option,
    print_table,
    quiet_option,
    strategies_option,
    strategy_option,
)
from bitline.sw.flow import (
    BASELINE_BUDGETS,
    COMPILE_SIDECAR,
    DEFAULT_PRESET,
    ROW_NAMES,
    SYNTHETIC_CALIB_SAMPLES,
    calibration_inputs,
    compare_strategies,
    compile_bundle,
    load_config,
    model_labels,
    resolve_target,
    strategy_specs,
)

__all__ = ["comparison_table", "pipeline_table", "compile_cmd", "report", "compare"]


def comparison_table(rows: list[dict], title: str):
    """Return a rich table of :func:`compare_strategies` rows.

    One ``speedup / E saving vs B`` column per reference row ``B`` the rows carry ratios
    against (``speedup_vs_B`` and ``energy_saving_vs_B``): the ``isaac`` strategy row and
    each named baseline, in the rows' order.
    """
    from rich.table import Table

    table = Table(title=title)      # printed wide enough that names are never cut
    references = list(dict.fromkeys(key.removeprefix("speedup_vs_") for row in rows
                                    for key in row if key.startswith("speedup_vs_")))
    columns = ["strategy", "quant", "config", "xbars", "OU reads", "ADC conv", "cycles",
               "energy uJ", "eff"] + [f"speedup / E saving vs {name}" for name in references]
    for column in columns:
        table.add_column(column, justify="left" if column in ("strategy", "quant", "config")
                         else "right")

    def ratio(value):
        return "-" if value is None else f"{value:.2f}x"

    for row in rows:
        if row.get("error"):
            table.add_row(row["strategy"], row["quant"], row["config"],
                          *["-"] * (len(columns) - 3))
            continue
        cells = [row["strategy"], row["quant"], row["config"], str(row["crossbars"]),
                 f"{row['ou_reads']:,}", f"{row['adc_conversions']:,}", f"{row['cycles']:,}",
                 f"{row['energy_pj'] / 1e6:,.3f}", f"{row['efficiency']:.2f}"]
        cells += [f"{ratio(row.get(f'speedup_vs_{name}'))} / "
                  f"{ratio(row.get(f'energy_saving_vs_{name}'))}" for name in references]
        table.add_row(*cells)
    return table


def _baselines_help() -> str:
    """``--baselines`` help: one line per named baseline (sw/flow/baselines.py)."""
    from bitline.sw.flow.baselines import BASELINES

    return ("Add the named ISAAC baseline rows; every ratio names the row it is relative "
            "to (speedup_vs_<row>, energy_saving_vs_<row>): " + "; ".join(
                f"{run.label} = {run.description} [{run.strategy}, {run.spec}, "
                f"{run.hardware} hardware, {run.encoding}]" for run in BASELINES) + ".")


def pipeline_table(rows: list[dict], title: str):
    """Return a rich table of the layer-pipeline fields of :func:`compare_strategies` rows.

    Columns: the budget, the crossbar units the copies use, images/s (clock / slowest
    stage), single-image latency (sum of the stages), energy per image, the bottleneck layer
    and its stage cycles, the most copies of any layer, and the throughput ratio against
    each baseline with both sides at that baseline's budget.
    """
    from rich.table import Table

    table = Table(title=title)
    ratios = sorted({key for row in rows for key in row
                     if key.startswith("throughput_speedup_vs_")},
                    key=lambda key: [k for row in rows for k in row].index(key))
    columns = ["strategy", "budget", "units", "img/s", "latency us", "uJ/img", "bottleneck",
               "stage cycles", "max copies"] + [
        "speedup vs " + key.removeprefix("throughput_speedup_vs_") for key in ratios]
    for column in columns:
        table.add_column(column, overflow="fold" if column == "bottleneck" else None,
                         justify="left" if column in ("strategy", "budget", "bottleneck")
                         else "right")
    for row in rows:
        if row.get("throughput_ips") is None:
            reason = "over budget" if row.get("pipeline_error") else "failed"
            table.add_row(row["strategy"], reason, *["-"] * (len(columns) - 2))
            continue
        table.add_row(
            row["strategy"], row["budget"], str(row["pipeline_units"]),
            f"{row['throughput_ips']:,.0f}", f"{row['pipeline_latency_s'] * 1e6:,.2f}",
            f"{row['energy_per_image_pj'] / 1e6:,.3f}", row["bottleneck"],
            f"{row['bottleneck_cycles']:,}", str(max(row["copies"].values(), default=0)),
            *["-" if row.get(key) is None else f"{row[key]:.2f}x" for key in ratios])
    return table


def _print_pipeline(pipe: dict) -> None:
    """Print the per-layer placements, copies and stage times of compile's pipeline (the
    ``pipeline`` of compile.json: :meth:`PipelineReport.to_dict`)."""
    from rich.table import Table

    table = Table(title=f"Layer pipeline at {pipe['budget']}: {pipe['units']} units, "
                        f"{pipe['throughput_ips']:,.0f} images/s, latency "
                        f"{pipe['pipeline_latency_s'] * 1e6:,.2f} us, "
                        f"bottleneck {pipe['bottleneck']}")
    for column in ("layer", "placement", "units/copy", "copies", "stage cycles"):
        table.add_column(column, overflow="fold" if column == "layer" else None,
                         justify="left" if column in ("layer", "placement") else "right")
    for layer in pipe["layers"]:
        table.add_row(layer["name"], layer["placement"], str(layer["units_per_copy"]),
                      str(layer["copies"]), f"{layer['stage_cycles']:,}")
    print_table(table)


def _replicate_option(text: str | None) -> dict[str, int] | None:
    """``--replicate NAME=R[,NAME=R...]`` as a dict; a malformed item is a usage error."""
    if text is None:
        return None
    replicas = {}
    for item in text.split(","):
        name, sep, count = item.strip().partition("=")
        if not sep or not name or not count.strip().isdigit():
            raise click.UsageError(f"--replicate {text}: {item.strip()!r} is not NAME=R (R "
                                   "replicas: 1, 2, 4 or 8)")
        if name in replicas:
            raise click.UsageError(f"--replicate {text}: layer {name!r} appears twice")
        replicas[name] = int(count)
    return replicas


_budget_help = ("Resources for layer copies in the inter-layer pipeline: xbars:N (crossbar "
                "units) or area:MM2 (square millimetres of units)")


# ------------------------------------------------------------------------------ commands
_calibration_options = [
    dataset_option("Calibration data set (its 'calib' split; default: the one the model "
                   "declares, digits for digits-*, mnist5k for mnist-*; seeded random "
                   "inputs otherwise)."),
    click.option("--calib-samples", default=SYNTHETIC_CALIB_SAMPLES, show_default=True,
                 type=click.IntRange(min=1),
                 help="Random calibration inputs for models without a data set."),
]


def _calibration(function):
    for option in reversed(_calibration_options):
        function = option(function)
    return function


def _config_label(config_path, preset_name) -> str:
    return str(config_path) if config_path else (preset_name or DEFAULT_PRESET)


def _print_report(report) -> None:
    for table in report.tables():
        print_table(table)


def _file_quantization_notes(spec: dict) -> list[str]:
    """Where a quantized file's rounding is not repeated exactly (docs/frontend.md)."""
    if not isinstance(spec, dict) or spec.get("mode") != "file":
        return []
    notes = []
    if spec.get("regridded"):
        notes.append("file quantization: these layers keep their input's grid instead of the "
                     f"file's: {', '.join(spec['regridded'])}")
    if spec.get("rescaled"):
        notes.append("file quantization: a folded per-channel factor (BatchNorm, Mul) moved "
                     f"into the weight scales of: {', '.join(spec['rescaled'])} (exact)")
    if spec.get("dropped"):
        notes.append("file quantization: these quantized tensors were merged into the next "
                     f"layer (their rounding is not repeated): {', '.join(spec['dropped'])}")
    return notes


@click.command("compile")
@click.argument("model")
@strategy_option
@click.option("--quant", "spec", default=None, metavar="SPEC",
              help="Quantization spec: a file or a shorthand (int8, varied4, bwq3, ...); "
                   "default int8, or for an already-quantized model (QDQ / QONNX) its own "
                   "quantization (--quant is then an error without --requantize).")
@click.option("--requantize", is_flag=True,
              help="Quantize an already-quantized model again with --quant (default int8), "
                   "starting from its dequantized float weights.")
@config_options(xbars=True)
@_calibration
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Bundle directory to write (image.bin, manifest.json, reference.npz, "
                   "compile.json): a new or empty folder, or a previous bundle, which is "
                   "replaced as a whole; any other non-empty folder is refused. Written "
                   "into a temporary sibling and renamed, so a failed compile leaves none.")
@click.option("--budget", default=None, metavar="xbars:N|area:MM2",
              help=_budget_help + "; prints the placement and copies per layer, throughput "
                   "and latency.")
@click.option("--spread/--no-spread", default=True, show_default=True,
              help="With --budget: let a layer get a spread placement (each unit filled to "
                   "1/2 or 1/4; docs/mapping.md); --no-spread keeps every layer dense.")
@click.option("--encoding", type=NamedChoice(ENCODINGS, "encoding"), default="differential",
              show_default=True,
              help="Weight encoding: differential (sign-magnitude, positive and negative "
                   "columns) or offset (ISAAC's biased weights w + 2^(b-1) in one column set, "
                   "the output path subtracts the offset times the input sum; strategy isaac "
                   "only).")
@click.option("--faults", "faults_spec", default=None, metavar="FILE.npz|chip:SEED:RATE",
              help="Place the weights for a chip's stuck cells (docs/analog.md, 'Fault-aware "
                   "mapping'): a stuck-map .npz, or the analog model's seeded chip with RATE "
                   "stuck cells (half at 0, half at 1; chip:SEED:SA0:SA1 to split). Prints "
                   "the wrong cells per layer before and after; compile.json holds 'faults'.")
@click.option("--network", is_flag=True,
              help="Whole-network mode (docs/network.md): the image gets the layer graph as "
                   "NETWORK node records, so the accelerator runs every layer from one start "
                   "command; sizes act_buffer_depth, max_nodes and max_map_channels/height/"
                   "width (unless the config sets them). Runs conv, gemm, maxpool, avgpool, "
                   "gap, add and flatten, one copy per layer (not with --budget).")
@click.option("--pipeline", is_flag=True,
              help="With --network: the inter-layer pipeline (docs/network.md section 6): "
                   "one stage engine per node (or the config's pipeline_stages, nodes "
                   "grouped to balance the engines), successive images at once, every "
                   "feature map with its own copies; sizes pipeline_stages and "
                   "act_buffer_depth (unless the config sets them). With --budget "
                   "xbars:N the bottleneck layer's replicas are doubled while they fit.")
@click.option("--replicate", default=None, metavar="NAME=R[,NAME=R...]",
              help="With --pipeline: give compute layer NAME R replicas (1, 2, 4 or 8) on "
                   "fresh crossbar units, each on its own engine, taking turns by image "
                   "(docs/network.md section 7).")
@json_option
@quiet_option
def compile_cmd(model, strategy, spec, requantize, config_path, preset_name, xbars, dataset,
                calib_samples, output, budget, spread, encoding, faults_spec, network,
                pipeline, replicate, as_json, quiet):
    """Quantize MODEL, map it with a strategy and write the program bundle to OUTPUT.

    With --xbars auto the machine is sized to the network before mapping; every config
    field chosen that way is printed as a note (and kept in compile.json as "sizing").
    --json prints compile.json plus "bundle", "crossbars" and "report" (the performance
    report of `bitline report --json`). With --budget the layers get their placement
    (dense or spread-<s>) and copies (the bundle records them; the executor runs them) and
    compile.json holds "budget" and "pipeline" (budget, units, throughput_ips,
    pipeline_latency_s, energy_per_image_pj, bottleneck, copies, placements, layers).
    With --network the bundle carries the whole-network node records (compile.json holds
    "network": true). With --pipeline too the nodes are laid out for the inter-layer
    pipeline (compile.json holds "pipeline_stages"); --replicate and --budget xbars:N
    give layers replicas (compile.json holds "replicas").
    """
    from bitline.sw.perf import parse_budget

    if pipeline and not network:
        raise click.UsageError("--pipeline pipelines the whole-network mode's nodes: it "
                               "needs --network")
    if replicate is not None and not pipeline:
        raise click.UsageError("--replicate gives layers replicas in the inter-layer "
                               "pipeline: it needs --network --pipeline")
    replicas = _replicate_option(replicate)
    if network and budget is not None and not pipeline:
        raise click.UsageError("--network runs one copy of each layer; --budget allocates "
                               "layer copies: use one of them")

    budget = parse_budget(budget) if budget is not None else None
    config = load_config(config_path, preset_name)
    faults = _faults(faults_spec)
    try:
        result, sidecar = compile_bundle(
            model, strategy, spec, config, output, xbars=xbars, dataset=dataset,
            calib_samples=calib_samples, config_label=_config_label(config_path, preset_name),
            budget=budget, encoding=encoding, requantize=requantize, spread=spread,
            faults=faults, network=network, pipeline=pipeline, replicate=replicas)
    except ValueError as error:
        # a field the config file pins, refused by compile's sizing: name the file
        if config_path and "the config sets" in str(error):
            raise ValueError(str(error).replace("the config sets", f"{config_path} sets")
                             .replace("in the config file", "in that file")) from None
        raise
    report = _analyze(result.program, result.qmodel, labels=sidecar["labels"])
    # The allocation compile applied (placements and copies), not one re-made on the result.
    pipe = sidecar.get("pipeline")
    if as_json:
        echo_json({"bundle": str(output), **sidecar,
                   "crossbars": result.program.xbars_used, "report": report.to_dict()})
        return
    if quiet:
        return
    seconds = sidecar["seconds"]
    out = console()
    out.print(
        f"compiled [bold]{model}[/] with [bold]{strategy}[/] ({sidecar['quant']}) onto "
        f"{result.program.xbars_used} crossbars -> {output}  "
        f"(size {seconds['size']:.2f} s, quantize {seconds['quantize']:.2f} s, "
        f"map {seconds['map']:.2f} s, write {seconds['write']:.2f} s)", soft_wrap=True)
    for note in result.notes:
        out.print(f"note: {note}", soft_wrap=True)
    for note in _file_quantization_notes(result.qmodel.spec):
        out.print(f"note: {note}", soft_wrap=True)
    _print_report(report)
    network = _network_summary(result.program)
    if network:
        click.echo(f"{network[2]}; `bitline report` shows it again):")
        click.echo(network[0])
    if pipe is not None:
        _print_pipeline(pipe)
    if "faults" in sidecar:
        _print_faults(sidecar["faults"])


def _print_faults(faults: dict) -> None:
    """Print the fault-aware placement's per-layer counts (compile.json's ``faults``)."""
    from rich.table import Table

    table = Table(title=f"stuck cells of {faults['source']} read with a wrong value, "
                        f"before -> after fault-aware placement")
    keys = ["stuck_cells", "read_stuck", "wrong_before", "wrong_after", "error_before",
            "error_after"]
    for name in ["layer", "stuck", "read", "wrong before", "wrong after",
                 "error before", "error after"]:
        table.add_column(name, justify="left" if name == "layer" else "right")
    for row in faults["layers"]:
        table.add_row(str(row["layer"]), *(str(row[key]) for key in keys))
    print_table(table)


def _faults(spec: str | None):
    """The ``faults`` of :func:`~bitline.sw.flow.compile_bundle` for ``--faults`` (checked
    before compiling): a loaded stuck map, or a draw of the analog model's seeded chip over
    the compiled program's units."""
    if spec is None:
        return None
    if str(spec).startswith("chip:"):
        from bitline.sim.analog import chip_stuck_map, parse_chip_spec

        parse_chip_spec(spec)
        return lambda config: chip_stuck_map(config, spec, config.n_xbars)
    from bitline.sw.mapping.faults import StuckMap

    return StuckMap.load(spec)


@click.command("report")
@click.argument("bundle_dir", metavar="OUT/", type=click.Path(exists=True, file_okay=False))
@cost_options
@json_option
@quiet_option
def report(bundle_dir, costs_path, adc_model, as_json, quiet):
    """Print the performance report of the program bundle in OUT/.

    --json prints the report object (perf.to_dict(): "strategy", "totals", "energy_pj",
    "layers": [...], ...). --costs / --adc-model price it with other energies and areas
    (docs/performance.md section 8). A bundle compiled with --network also gets its
    whole-network run (cycles per node and per image, latency and images/s at the config's
    clock; in --json "network": {"nodes", "cycles_per_image", "clock_mhz", "latency_us",
    "images_per_second", "pipeline_model_images_per_second"}). A bundle compiled with
    --network --pipeline gets its pipelined run instead (docs/network.md section 6: per node
    its engine and copies, latency, steady interval and images/s, a batch's images/s, the
    stage model's T_max with the deviation and its cause; in --json "network" also holds
    "pipeline": {"n_images", "engines", "cycles", "latency", "interval", "latency_us",
    "images_per_second", "batch_images_per_second", "t_max", "sum_t_l",
    "deviation_cycles", "cause"}).
    """
    from bitline.sw.bundle import read_bundle
    from bitline.sw.perf import cost_model

    costs = cost_model(costs_path, adc_model)
    bundle = read_bundle(bundle_dir)
    labels, problem = _sidecar_labels(Path(bundle_dir) / COMPILE_SIDECAR,
                                      bundle.manifest["files"]["image_sha256"])
    if problem:
        click.echo(f"warning: {problem}", err=True)
    perf = _analyze(bundle.program, bundle.qmodel, labels=labels, costs=costs)
    network = _network_summary(bundle.program)
    if as_json:
        echo_json(perf.to_dict() | ({"network": network[1]} if network else {}))
    elif not quiet:
        _print_report(perf)
        if network:
            click.echo(f"{network[2]}):")
            click.echo(network[0])


def _analyze(program, qmodel, **kwargs):
    """:func:`~bitline.sw.perf.analyze` of ``program``, a layer replica group
    (docs/network.md section 7) counted once in the per-image figures (an image runs on
    one replica) and with all its units in the used area."""
    from dataclasses import replace

    from bitline.hw.spec.program import Program
    from bitline.sw.perf import analyze

    replicas = {int(node.layer) for node in program.nodes or () if int(node.phase)}
    if not replicas:
        return analyze(program, qmodel, **kwargs)
    single = Program(program.config, program.strategy,
                     [layer for index, layer in enumerate(program.layers)
                      if index not in replicas])
    report = analyze(single, qmodel, **kwargs)
    scale = program.xbars_used / single.xbars_used
    return replace(report, used_area_mm2={key: value * scale
                                          for key, value in report.used_area_mm2.items()})


def _network_summary(program) -> tuple[str, dict, str] | None:
    """The whole-network figures of a ``--network`` program (``sw/perf/network``): the
    text table, a JSON object and the title's start (pipelined programs get the pipelined
    run, :func:`~bitline.sw.perf.network.pipelined_report`); ``None`` for a per-layer
    program."""
    if not program.nodes:
        return None
    from bitline.sw.perf.network import (
        format_network_report, format_pipelined_report, network_report, pipeline_comparison,
        pipelined_report,
    )

    run = network_report(program)
    pipeline = pipeline_comparison(program)
    summary = {"nodes": [{"name": node.name, "kind": node.kind.name, "cycles": node.cycles,
                          "ou_reads": node.ou_reads} for node in run.nodes],
               "cycles_per_image": run.cycles, "clock_mhz": run.clock_mhz,
               "latency_us": run.latency_us(), "images_per_second": run.images_per_second(),
               "pipeline_model_images_per_second": pipeline.images_per_second(run.clock_mhz)}
    if not program.config.pipeline_stages:
        return (format_network_report(run, pipeline=pipeline), summary,
                "Whole-network run (compiled --network; docs/network.md section 5")
    try:
        piped = pipelined_report(program)
    except ValueError as error:     # replicas the schedule does not model: said, not faked
        summary["pipeline"] = {"error": str(error)}
        return (f"pipelined figures not available: {error}", summary,
                "Pipelined whole-network run (compiled --network --pipeline; docs/network.md "
                "section 7")
    names = [node.name for node in run.nodes]
    replicas = piped.replicas or [1] * len(piped.stages)
    for item, stage, copies, count in zip(summary["nodes"], piped.stages, piped.copies,
                                          replicas):
        item.update(engine=stage, copies=copies, replicas=count)
    # one image's figures of a pipelined run are the batch's image 0 and steady state
    summary.update(cycles_per_image=piped.steady_cycles, latency_us=piped.latency_us(),
                   images_per_second=piped.images_per_second())
    summary["pipeline"] = {
        "n_images": piped.n_images, "engines": piped.engines, "cycles": piped.cycles,
        "latency": piped.latency, "interval": piped.interval,
        "steady_cycles": piped.steady_cycles, "latency_us": piped.latency_us(),
        "images_per_second": piped.images_per_second(),
        "batch_images_per_second": piped.batch_images_per_second(),
        "t_max": pipeline.bottleneck_cycles, "sum_t_l": pipeline.latency_cycles,
        "deviation_cycles": piped.deviation_cycles, "cause": piped.cause(names)}
    return (format_pipelined_report(run, piped), summary,
            f"Pipelined whole-network run of {piped.n_images} images (compiled --network "
            "--pipeline; docs/network.md section 6")


def _sidecar_labels(path: Path, image_sha256: str) -> tuple[dict, str | None]:
    """Return the report labels of ``compile.json`` and why they were left out, if so.

    The side file is not authenticated like the bundle (nothing in it changes a result), so
    it is used only when it names this bundle's image (``image_sha256``); a missing, broken
    or foreign one leaves the labels out with a warning, never another compile's names.
    """
    if not path.is_file():
        return {}, f"{path}: not found; the report has no labels"
    try:
        sidecar = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        return {}, f"{path}: not valid JSON ({error}); the report has no labels"
    labels = sidecar.get("labels") if isinstance(sidecar, dict) else None
    if not isinstance(sidecar, dict) or sidecar.get("image_sha256") != image_sha256:
        return {}, (f"{path} is not this bundle's (its image_sha256 differs: from another "
                    "compile, or edited); the report has no labels")
    if not isinstance(labels, dict) or not all(isinstance(value, str)
                                               for value in labels.values()):
        return {}, f"{path}: labels must be an object of strings; the report has no labels"
    return labels, None


@click.command("compare")
@click.argument("model")
@strategies_option("Strategies (and variant rows: bwq-a = BWQ with BWQ-A block-wise "
                   "activation widths) to compare.", choices=ROW_NAMES)
@click.option("--quant", "quant", multiple=True, metavar="SPEC|STRATEGY=SPEC",
              help="Override a spec: SPEC for all strategies or STRATEGY=SPEC (repeatable; "
                   "baselines keep theirs). Defaults: "
                   + ", ".join(f"{k}={v}" for k, v in strategy_specs(ROW_NAMES).items()))
@config_options(xbars=True)
@_calibration
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help=_baselines_help())
@click.option("--budget", default="baseline", show_default=True,
              metavar="baseline|baseline-area|xbars:N|area:MM2",
              help=_budget_help + "; 'baseline' gives every row the crossbar units of each "
                   "baseline (equal crossbars), 'baseline-area' their area (equal area).")
@click.option("--spread/--no-spread", default=True, show_default=True,
              help="Let the pipeline allocator give a layer a spread placement (each unit "
                   "filled to 1/2 or 1/4: more units, shorter compute per vector; "
                   "docs/mapping.md); --no-spread keeps every layer dense.")
@cost_options
@click.option("--per-layer", is_flag=True,
              help="Add a per-layer table (and JSON \"layers\" per row): layer, crossbars, "
                   "copies, OU reads, ADC conversions, cycles, stage cycles, energy by "
                   "component.")
@click.option("--csv", "csv_path", default=None, metavar="FILE.csv",
              help="Write one CSV line per row (per row and layer with --per-layer).")
@click.option("--plot", "plot_path", default=None, metavar="FILE.png",
              help="Plot speedup and energy saving per baseline (and, with --per-layer, "
                   "stage cycles per layer to FILE-layers.png).")
@click.option("--report", "report_path", default=None, metavar="FILE.md",
              help="Write a Markdown report with the tables, the plots (next to it), the "
                   "command, the config and the versions.")
@json_option
@quiet_option
def compare(model, strategies, quant, config_path, preset_name, xbars, dataset,
            calib_samples, baselines, budget, spread, costs_path, adc_model, per_layer,
            csv_path, plot_path, report_path, as_json, quiet):
    """Compile MODEL under several strategies and compare cycles and energy with ISAAC.

    --json prints {"model", "labels", "rows": [one object per run: strategy, mapping,
    quant, config, cycles, energy_pj, ou_reads, adc_conversions, crossbars, efficiency,
    speedup_vs_<R> and energy_saving_vs_<R> for every reference row R (the isaac strategy
    row and each baseline: isaac-ou-16b, isaac-ou-8b, isaac-paper), ..., sizing, notes,
    error, and the layer
    pipeline at --budget: budget, budget_units, pipeline_units, throughput_ips,
    pipeline_latency_s, energy_per_image_pj, bottleneck, bottleneck_cycles, copies and
    placements (per layer: dense or spread-<s>), pipeline_error,
    throughput_speedup_vs_<baseline>]}. Cycles, speedup and energy
    are one image with one copy per layer, layers in sequence; the pipeline table gives
    throughput (images/s) with the layers' copies at the budget. With --per-layer each
    row has "layers": [one object per layer: layer, n_inputs, n_outputs, n_vectors,
    crossbars, ou_reads, adc_conversions, cycles, latency_s, energy_pj and
    energy_<component>_pj]; the per-layer table adds placement, copies and stage_cycles
    from the pipeline. --costs / --adc-model change the prices (docs/performance.md). The column
    legend is printed under the tables and written into --report.
    """
    from bitline.sw.perf import cost_model, parse_budget

    costs = cost_model(costs_path, adc_model)   # a bad costs file fails before compiling

    if budget not in BASELINE_BUDGETS:
        parse_budget(budget)            # a usage error before any compilation
    config = load_config(config_path, preset_name)
    ir_model = resolve_target(model).require("model", "bitline compare")
    calib_x, calib_label = calibration_inputs(ir_model, dataset, model_name=model,
                                              samples=calib_samples)
    labels = model_labels(model, calib_label)
    rows = compare_strategies(ir_model, strategies, strategy_specs(strategies, quant),
                              config=config, calib_x=calib_x, xbars=xbars,
                              baselines=baselines, labels=labels, keep_going=True,
                              budget=budget, costs=costs, per_layer=per_layer,
                              spread=spread)
    written = _export(rows, model, config, costs, per_layer, csv_path, plot_path,
                      report_path)
    if as_json:
        echo_json({"model": model, "labels": labels, "rows": rows})
        return
    if quiet:
        return
    title = f"{model}: strategies vs isaac and the ISAAC baselines" + (" (synthetic weights)"
                                               if labels.get("weights") else "")
    print_table(comparison_table(rows, title))
    print_table(pipeline_table(rows, f"{model}: layer pipeline at equal resources"))
    out = console()
    for row in rows:
        for note in row["notes"]:
            out.print(f"note ({row['strategy']}): {note}", soft_wrap=True)
        if row.get("pipeline_error"):
            out.print(f"pipeline ({row['strategy']}): {row['pipeline_error']}", soft_wrap=True)
        if row.get("error"):
            out.print(f"failed ({row['strategy']}): {row['error']}", soft_wrap=True)
    if per_layer:
        _print_layers(rows, f"{model}: per layer")
    for path in written:
        out.print(f"wrote {path}", soft_wrap=True)


def _export(rows, model, config, costs, per_layer, csv_path, plot_path, report_path) -> list:
    """Write the files --csv, --plot and --report ask for; return their paths."""
    from bitline.sw.flow.report import (
        markdown_report, plot_comparison, plot_stages, rows_to_csv,
    )

    written = []
    title = f"{model}: strategies and baselines"
    if csv_path:
        written.append(rows_to_csv(rows, csv_path, per_layer=per_layer))
    if plot_path:
        written.append(plot_comparison(rows, plot_path, title))
        if per_layer:
            plot_path = Path(plot_path)
            written.append(plot_stages(rows, plot_path.with_name(plot_path.stem
                                                                 + "-layers.png"), title))
    if report_path:
        notes = [f"{row['strategy']}: {note}" for row in rows for note in row["notes"]]
        notes += [f"{row['strategy']} failed: {row['error']}" for row in rows if row["error"]]
        written.append(markdown_report(rows, report_path, command=command_line(),
                                       config=config, costs=costs,
                                       title=f"bitline compare {model}",
                                       per_layer=per_layer, notes=notes))
    return written


def _print_layers(rows, title) -> None:
    """Print the per-layer table and the legend of its columns."""
    from rich.table import Table

    from bitline.sw.flow.report import LEGEND, layer_table

    columns, cells = layer_table(rows, compact=True)
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("strategy", "layer") else "right")
    for line in cells:
        table.add_row(*line)
    print_table(table)
    out = console()
    for key in ("placement", "copies", "stage_cycles", "cycles", "energy_pj"):
        out.print(f"{key}: {LEGEND[key]}", soft_wrap=True)
    out.print("adc ... edram: energy_<component>_pj of the layer (docs/performance.md "
              "section 3)", soft_wrap=True)
