#!/usr/bin/env python3
"""Print the README comparison tables: every strategy vs ISAAC, next to the papers' claims.

Usage::

    python scripts/compare_table.py [--models digits-cnn,resnet18-cifar,vgg16,mobilenetv2]
                                    [--format markdown|rich] [--json FILE]

For each model, :func:`bitline.sw.flow.compare_strategies` compiles the five
strategies with their default specs on the ``bwq`` preset (9 x 8 OU, 4-bit ADCs) plus the
named ISAAC baselines (``isaac-ou-16b``, ``isaac-ou-8b``, ``isaac-paper``: docs/performance.md
section 6). ``digits-cnn`` has trained
weights and is calibrated on the digits ``calib`` split; ``resnet18-cifar``, ``vgg16`` and
``mobilenetv2`` have generated weights and random calibration inputs, and are labelled
*synthetic*. A last table puts the measured speedup and energy saving of the best IVQ
strategy and of BWQ next to the seeds' claims (IVQ 19.7x / 17.7x, BWQ 6.08x / 17.47x vs
ISAAC).
"""

from __future__ import annotations

import json
import sys
import time

import click

from bitline.hw.spec.program import STRATEGIES
from bitline.sw.flow import (
    calibration_inputs,
    compare_strategies,
    is_synthetic,
    load_config,
    strategy_specs,
)
from bitline.sw.models import resolve_model

MODELS = ("digits-cnn", "resnet18-cifar", "vgg16", "mobilenetv2")

#: The papers' claims vs ISAAC (speedup, energy saving), from the seeds.
CLAIMS = {
    "IVQ (TCAD 2022)": ("ivq", 19.7, 17.7),
    "BWQ (TCAD 2024)": ("bwq", 6.08, 17.47),
}


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def model_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Return the headers and cells of one model's comparison table."""
    headers = ["strategy", "quant", "config", "xbars", "OU reads", "ADC conv", "cycles",
               "energy (uJ)", "speedup", "energy saving", "speedup vs isaac-paper",
               "energy saving vs isaac-paper", "efficiency"]
    cells = []
    for row in rows:
        if row.get("error"):
            cells.append([row["strategy"], row["quant"], row["config"], "does not fit",
                          *["-"] * (len(headers) - 4)])
            continue
        cells.append([
            row["strategy"], row["quant"], row["config"], f"{row['crossbars']:,}",
            f"{row['ou_reads']:,}", f"{row['adc_conversions']:,}", f"{row['cycles']:,}",
            f"{row['energy_pj'] / 1e6:,.3f}", _ratio(row["speedup_vs_isaac"]),
            _ratio(row["energy_saving_vs_isaac"]), _ratio(row.get("speedup_vs_isaac-paper")),
            _ratio(row.get("energy_saving_vs_isaac-paper")), f"{row['efficiency']:.2f}",
        ])
    return headers, cells


def claims_table(results: dict[str, list[dict]]) -> tuple[list[str], list[list[str]]]:
    """Return the claims-vs-measured table (fastest IVQ strategy and BWQ per model)."""
    headers = ["work", "claimed speedup / energy saving vs ISAAC", "model: strategy",
               "measured vs isaac (same 9x8 OU hardware)",
               "measured vs isaac-paper (16/16 b)"]
    cells = []
    for work, (family, speedup, saving) in CLAIMS.items():
        for model, rows in results.items():
            candidates = [row for row in rows if row["mapping"].startswith(family)
                          and not row["strategy"].startswith("isaac") and row["cycles"]]
            if not candidates:
                continue
            best = min(candidates, key=lambda row: row["cycles"])
            label = f"{model} (synthetic)" if is_synthetic(model) else model
            cells.append([
                work, f"{speedup}x / {saving}x", f"{label}: {best['strategy']}",
                f"{_ratio(best['speedup_vs_isaac'])} / "
                f"{_ratio(best['energy_saving_vs_isaac'])}",
                f"{_ratio(best.get('speedup_vs_isaac-paper'))} / "
                f"{_ratio(best.get('energy_saving_vs_isaac-paper'))}",
            ])
    return headers, cells


def _print(fmt: str, title: str, headers: list[str], cells: list[list[str]],
           notes: list[str]) -> None:
    if fmt == "markdown":
        click.echo(f"\n#### {title}\n")
        click.echo(_markdown(headers, cells))
        if notes:
            click.echo("")
        for note in notes:
            click.echo(f"* {note}")
        sys.stdout.flush()
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(160, Console().width))
    table = Table(title=title)
    for header in headers:
        table.add_column(header)
    for row in cells:
        table.add_row(*row)
    console.print(table)
    for note in notes:
        console.print(f"note: {note}")


@click.command()
@click.option("--models", default=",".join(MODELS), show_default=True)
@click.option("--strategies", default=",".join(STRATEGIES), show_default=True)
@click.option("--preset", "preset_name", default="bwq", show_default=True)
@click.option("--xbars", default="auto", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["markdown", "rich"]), default="markdown",
              show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also save all rows as JSON.")
def main(models, strategies, preset_name, xbars, fmt, json_path):
    """Print the comparison tables for the README."""
    config = load_config(None, preset_name)
    names = [name.strip() for name in strategies.split(",") if name.strip()]
    results: dict[str, list[dict]] = {}
    for model in [name.strip() for name in models.split(",") if name.strip()]:
        start = time.perf_counter()
        ir_model = resolve_model(model)
        calib_x, calib_label = calibration_inputs(ir_model, model_name=model)
        labels = {"model": model, "calibration": calib_label}
        if is_synthetic(model):
            labels["weights"] = "synthetic"
        rows = compare_strategies(ir_model, names, strategy_specs(names), config=config,
                                  calib_x=calib_x, xbars=xbars, baselines=True, labels=labels,
                                  keep_going=True)
        results[model] = rows
        kind = ("synthetic weights, random calibration" if is_synthetic(model)
                else f"trained weights, calibration {calib_label}")
        title = f"{model} ({kind}; {time.perf_counter() - start:.0f} s)"
        notes = [f"{row['strategy']}: {note}" for row in rows for note in row["notes"]]
        notes += [f"{row['strategy']}: failed: {row['error']}" for row in rows if row["error"]]
        _print(fmt, title, *model_table(rows), notes)
        if json_path:
            with open(json_path, "w") as handle:
                json.dump(results, handle, indent=2)
    _print(fmt, "Claims (seeds) vs measured", *claims_table(results), [])


if __name__ == "__main__":
    sys.exit(main())
