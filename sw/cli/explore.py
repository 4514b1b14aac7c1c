"""``bitline explore ou|adc|xbar|cells MODEL``: hardware sweeps like the papers' figures.

The library half is :mod:`bitline.sw.flow.explore` (the axes, the per-point config rules
and the sweep); each subcommand parses, calls it and prints a table (and writes a plot or
CSV). ``bitline sweep`` is the other sweep: accuracy under analog non-idealities.
"""

from __future__ import annotations

import click

from bitline.hw.spec.program import STRATEGIES
from bitline.sw.cli.common import (
    NamedChoice,
    config_options,
    console,
    cost_options,
    dataset_option,
    echo_json,
    json_option,
    print_table,
    quiet_option,
    strategies_option,
)
from bitline.sw.flow.explore import ADC_POLICIES, AXES
from bitline.sw.flow.inputs import SYNTHETIC_CALIB_SAMPLES

__all__ = ["explore"]

_HELP = {
    "ou": "Sweep the OU size (ROWSxCOLS: ou_rows x ou_cols) of MODEL, per strategy.",
    "adc": "Sweep the ADC resolution (adc_bits) of MODEL, per strategy.",
    "xbar": "Sweep the crossbar size (ROWSxCOLS, or N for NxN) of MODEL, per strategy.",
    "cells": "Sweep the bits per ReRAM cell (cell_bits) of MODEL, per strategy.",
}

_EPILOG = (
    "Each point's config is the base preset/config with the swept field(s) replaced; with "
    "--adc-bits exact (default) adc_bits follows so that every OU row stays exact, and on "
    "the ou axis adcs_per_xbar follows the OU width (same conversions per read). Columns: "
    "value (the swept value), adc_bits / adcs_per_xbar (the point's ADC), crossbars (units "
    "holding weights), cycles and energy_pj (one image, layers in sequence), area_mm2 (used "
    "units), throughput_ips (layer pipeline at the isaac row's crossbars when isaac is "
    "compared), speedup_vs_B / energy_saving_vs_B (baseline B at the same point: cycles_B / cycles, E_B / E). --json "
    "prints {\"axis\", \"values\", \"baseline\", ..., \"points\": [one object per value and "
    "strategy]}."
)


@click.group("explore")
def explore():
    """Hardware sweeps: OU size, ADC resolution, crossbar size, cell bits (one each)."""


def _axis_command(axis_name: str) -> click.Command:
    axis = AXES[axis_name]

    # click passes options by name; the adc axis has no --adc-bits (it sweeps adc_bits).
    def run(model, values, strategies, quant, baseline, config_path, preset_name, xbars,
            dataset, calib_samples, costs_path, adc_model, plot_path, csv_path, as_json,
            quiet, adc="fixed"):
        from bitline.sw.flow import (
            calibration_inputs, load_config, model_labels, resolve_target, strategy_specs,
        )
        from bitline.sw.flow.explore import explore as run_explore
        from bitline.sw.flow.explore import explore_table, parse_values, plot_explore
        from bitline.sw.flow.report import rows_to_csv
        from bitline.sw.perf import cost_model

        config = load_config(config_path, preset_name)
        costs = cost_model(costs_path, adc_model)              # a bad file fails first
        texts = parse_values(axis_name, values)
        ir_model = resolve_target(model).require("model", f"bitline explore {axis_name}")
        calib_x, calib_label = calibration_inputs(ir_model, dataset, model_name=model,
                                                  samples=calib_samples)
        labels = model_labels(model, calib_label)
        compiled = list(dict.fromkeys([*strategies, baseline]))    # the baseline runs too
        result = run_explore(
            ir_model, axis_name, texts, strategies, strategy_specs(compiled, quant),
            config=config, calib_x=calib_x, baseline=baseline, adc=adc, xbars=xbars,
            costs=costs, labels=labels,
            progress=None if as_json or quiet else (lambda line: click.echo(line, err=True)))
        result = {"model": model, **result}
        if plot_path:
            plot_explore(result, plot_path)
        if csv_path:
            columns, _ = explore_table(result)
            rows_to_csv(result["points"], csv_path, columns=columns)
        if as_json:
            echo_json(result)
            return
        if quiet:
            return
        columns, cells = explore_table(result)
        from rich.table import Table

        table = Table(title=f"{model}: {axis.unit} sweep, ratios vs {baseline} at each point"
                      + (" (synthetic weights)" if labels.get("weights") else ""))
        for column in columns:
            table.add_column(column, justify="left" if column in ("value", "strategy", "quant")
                             else "right")
        for row in cells:
            table.add_row(*row)
        print_table(table)
        out = console()
        for point in result["points"]:
            if point.get("error"):
                out.print(f"failed ({point['value']}, {point['strategy']}): {point['error']}",
                          soft_wrap=True)
        for path in (plot_path, csv_path):
            if path:
                out.print(f"wrote {path}", soft_wrap=True)

    options = [
        click.argument("model"),
        click.option("--values", default=axis.default, show_default=True,
                     help=f"Comma-separated {axis.unit} values"
                          + (" (ROWSxCOLS)." if len(axis.fields) == 2 else ".")),
        strategies_option("Strategies to compile at every point."),
        click.option("--quant", "quant", multiple=True, metavar="SPEC|STRATEGY=SPEC",
                     help="Override a spec (as in `bitline compare`)."),
        click.option("--baseline", default="isaac", show_default=True,
                     type=NamedChoice(STRATEGIES, "strategy"),
                     help="Strategy the ratios are relative to, at the same point (compiled "
                          "even when not in --strategies). Choices: " + ", ".join(STRATEGIES)
                          + "."),
    ]
    if axis_name != "adc":
        options.append(click.option(
            "--adc-bits", "adc", default="exact", show_default=True,
            type=NamedChoice(ADC_POLICIES, "ADC policy"),
            help="exact: adc_bits follows so every OU row is exact; fixed: keep the base "
                 "config's. Choices: " + ", ".join(ADC_POLICIES) + "."))
    options += [
        config_options(xbars=True),
        dataset_option("Calibration data set (default: digits for digits-* models, seeded "
                       "random inputs otherwise)."),
        click.option("--calib-samples", default=SYNTHETIC_CALIB_SAMPLES, show_default=True,
                     type=click.IntRange(min=1),
                     help="Random calibration inputs for models without a data set."),
        cost_options,
        click.option("--plot", "plot_path", default=None, metavar="FILE.png",
                     help="Write cycles, energy, area and speedup against the value."),
        click.option("--csv", "csv_path", default=None, metavar="FILE.csv",
                     help="Write the table as CSV (one line per value and strategy)."),
        json_option,
        quiet_option,
    ]
    function = run
    for option in reversed(options):
        function = option(function)
    return click.command(axis_name, help=_HELP[axis_name] + "\n\n" + _EPILOG)(function)


for _name in AXES:
    explore.add_command(_axis_command(_name))
