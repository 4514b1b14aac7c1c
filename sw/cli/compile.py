"""``bitline compile``, ``bitline report`` and ``bitline compare``: the mapping compiler's CLI.

The library halves are in :mod:`bitline.sw.flow` (the declared compile steps and
:func:`~bitline.sw.flow.compare_strategies`); these commands parse, call it and print.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from bitline.hw.spec.program import STRATEGIES
from bitline.sw.flow import (
    COMPILE_SIDECAR,
    DEFAULT_PRESET,
    DEFAULT_SPECS,
    SYNTHETIC_CALIB_SAMPLES,
    calibration_inputs,
    compare_strategies,
    compile_bundle,
    load_config,
    model_labels,
    strategy_specs,
)

__all__ = ["comparison_table", "compile_cmd", "report", "compare"]


def comparison_table(rows: list[dict], title: str):
    """Return a rich table of :func:`compare_strategies` rows."""
    from rich.table import Table

    table = Table(title=title)
    paper = any("speedup_vs_isaac_paper" in row for row in rows)
    columns = ["strategy", "quant", "config", "xbars", "OU reads", "ADC conv", "cycles",
               "energy uJ", "speedup", "E saving", "eff"]
    if paper:
        columns += ["speedup vs paper", "E saving vs paper"]
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
                 f"{row['energy_pj'] / 1e6:,.3f}", ratio(row["speedup_vs_isaac"]),
                 ratio(row["energy_saving_vs_isaac"]), f"{row['efficiency']:.2f}"]
        if paper:
            cells += [ratio(row.get("speedup_vs_isaac_paper")),
                      ratio(row.get("energy_saving_vs_isaac_paper"))]
        table.add_row(*cells)
    return table


# ------------------------------------------------------------------------------ commands
def _resolve(model_name: str):
    from bitline.sw.models import resolve_model

    return resolve_model(model_name)


def _console():
    import sys

    from rich.console import Console

    # Tables are wide; never squeeze them below 140 columns (pipes and CI logs).
    return Console(file=sys.stdout, width=max(140, Console(file=sys.stdout).width))


_config_options = [
    click.option("--config", "config_path", type=click.Path(dir_okay=False),
                 help="Accelerator config TOML file."),
    click.option("--preset", "preset_name", help=f"Config preset (default {DEFAULT_PRESET})."),
    click.option("--xbars", default="auto", show_default=True,
                 help="Crossbar units: 'auto' (sized by the mapper) or a count."),
    click.option("--calib-dataset", default=None,
                 help="Calibration data set (default: digits for digits-* models, "
                      "seeded random inputs otherwise)."),
    click.option("--calib-samples", default=SYNTHETIC_CALIB_SAMPLES, show_default=True,
                 help="Random calibration inputs for models without a data set."),
]


def _with_config_options(function):
    for option in reversed(_config_options):
        function = option(function)
    return function


@click.command("compile")
@click.argument("model")
@click.option("--strategy", "-s", required=True, type=click.Choice(STRATEGIES),
              help="Mapping strategy.")
@click.option("--quant", "spec", default="int8", show_default=True,
              help="Quantization spec: a file or a shorthand (int8, varied4, bwq3, ...).")
@_with_config_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Bundle directory to write.")
def compile_cmd(model, strategy, spec, config_path, preset_name, xbars, calib_dataset,
                calib_samples, output):
    """Quantize MODEL, map it with a strategy and write the program bundle to OUTPUT."""
    from bitline.sw.perf import analyze

    config = load_config(config_path, preset_name)
    result, sidecar = compile_bundle(
        model, strategy, spec, config, output, xbars=xbars, dataset=calib_dataset,
        calib_samples=calib_samples,
        config_label=str(config_path) if config_path else (preset_name or DEFAULT_PRESET))
    report = analyze(result.program, result.qmodel, labels=sidecar["labels"])
    seconds = sidecar["seconds"]
    console = _console()
    console.print(
        f"compiled [bold]{model}[/] with [bold]{strategy}[/] ({spec}) onto "
        f"{result.program.xbars_used} crossbars -> {output}  "
        f"(size {seconds['size']:.2f} s, quantize {seconds['quantize']:.2f} s, "
        f"map {seconds['map']:.2f} s, write {seconds['write']:.2f} s)")
    for note in result.notes:
        console.print(f"note: {note}")
    for table in report.tables():
        console.print(table)


@click.command("report")
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def report(bundle_dir, as_json):
    """Print the performance report of the program bundle in BUNDLE_DIR."""
    from bitline.sw.bundle import read_bundle
    from bitline.sw.perf import analyze

    bundle = read_bundle(bundle_dir)
    sidecar = Path(bundle_dir) / COMPILE_SIDECAR
    labels = json.loads(sidecar.read_text()).get("labels", {}) if sidecar.exists() else {}
    perf = analyze(bundle.program, bundle.qmodel, labels=labels)
    if as_json:
        click.echo(json.dumps(perf.to_dict(), indent=2))
        return
    console = _console()
    for table in perf.tables():
        console.print(table)


@click.command("compare")
@click.argument("model")
@click.option("--strategies", default=",".join(STRATEGIES), show_default=True,
              help="Comma-separated strategies to compare.")
@click.option("--quant", "quant", multiple=True,
              help="Override a spec: SPEC for all strategies or STRATEGY=SPEC (repeatable). "
                   "Defaults: " + ", ".join(f"{k}={v}" for k, v in DEFAULT_SPECS.items()))
@_with_config_options
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Add ISAAC as its paper ran it (isaac preset, 16- and 8-bit weights).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
def compare(model, strategies, quant, config_path, preset_name, xbars, calib_dataset,
            calib_samples, baselines, as_json):
    """Compile MODEL under several strategies and compare cycles and energy with ISAAC."""
    names = [name.strip() for name in strategies.split(",") if name.strip()]
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        raise ValueError(f"--strategies: unknown strategy {unknown[0] if unknown else ''!r}; "
                         f"choose from {', '.join(STRATEGIES)}")
    config = load_config(config_path, preset_name)
    ir_model = _resolve(model)
    calib_x, calib_label = calibration_inputs(ir_model, calib_dataset, model_name=model,
                                              samples=calib_samples)
    labels = model_labels(model, calib_label)
    rows = compare_strategies(ir_model, names, strategy_specs(names, quant), config=config,
                              calib_x=calib_x, xbars=xbars, baselines=baselines,
                              labels=labels, keep_going=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    title = f"{model}: strategies vs isaac" + (" (synthetic weights)"
                                               if labels.get("weights") else "")
    console = _console()
    console.print(comparison_table(rows, title))
    for row in rows:
        for note in row["notes"]:
            console.print(f"note ({row['strategy']}): {note}")
        if row.get("error"):
            console.print(f"failed ({row['strategy']}): {row['error']}")
