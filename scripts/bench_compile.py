#!/usr/bin/env python3
"""Time the mapping compiler on ResNet-18 shapes: quantize, map and write per strategy.

Usage::

    python scripts/bench_compile.py [--model resnet18-cifar] [--strategies isaac,bwq]
                                    [--xbars auto] [--no-write] [--json]

Each strategy is quantized with its default spec of ``bitline compare`` (docs/performance.md
section 6) on seeded random calibration inputs (ResNet-18 is a synthetic model) and mapped
onto the ``bwq`` preset; the table shows the seconds of each step and the total against the
10 s target. Timing comes from this script, never from the test suite (STYLE.md).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import click
from rich.console import Console
from rich.table import Table

from bitline.sw.cli_compile import (
    DEFAULT_SPECS, calibration_inputs, compile_model, load_config,
)
from bitline.sw.mapping.program import STRATEGIES
from bitline.sw.models import resolve_model
from bitline.sw.perf import analyze

TARGET_S = 10.0


@click.command()
@click.option("--model", default="resnet18-cifar", show_default=True)
@click.option("--strategies", default=",".join(STRATEGIES), show_default=True)
@click.option("--preset", "preset_name", default="bwq", show_default=True)
@click.option("--xbars", default="auto", show_default=True)
@click.option("--write/--no-write", default=True, show_default=True,
              help="Also write the bundle (to a temporary directory).")
@click.option("--json", "as_json", is_flag=True)
def main(model, strategies, preset_name, xbars, write, as_json):
    """Print compile times per strategy."""
    config = load_config(None, preset_name)
    start = time.perf_counter()
    ir_model = resolve_model(model)
    calib_x, calib_label = calibration_inputs(ir_model, model_name=model)
    load_s = time.perf_counter() - start
    rows = []
    for strategy in [name.strip() for name in strategies.split(",") if name.strip()]:
        spec = DEFAULT_SPECS[strategy]
        result = compile_model(ir_model, strategy, spec, config, calib_x, xbars=xbars)
        write_s = 0.0
        if write:
            from bitline.sw.bundle import write_bundle

            with tempfile.TemporaryDirectory() as folder:
                begin = time.perf_counter()
                write_bundle(folder, result.program, result.qmodel)
                write_s = time.perf_counter() - begin
        begin = time.perf_counter()
        report = analyze(result.program, result.qmodel)
        perf_s = time.perf_counter() - begin
        total = result.quantize_s + result.map_s + write_s
        rows.append({
            "strategy": strategy, "quant": spec, "crossbars": report.crossbars,
            "entries": int(sum(layer.entries for layer in report.layers)),
            "quantize_s": result.quantize_s, "map_s": result.map_s, "write_s": write_s,
            "perf_s": perf_s, "total_s": total, "within_target": total <= TARGET_S,
        })
    if as_json:
        click.echo(json.dumps({"model": model, "calibration": calib_label,
                               "load_s": load_s, "rows": rows}, indent=2))
        return
    table = Table(title=f"Compile times, {model} (synthetic weights, calibration "
                        f"{calib_label}; model load {load_s:.2f} s)")
    for column in ("strategy", "quant", "xbars", "entries", "quantize s", "map s", "write s",
                   "perf s", "total s", f"<= {TARGET_S:.0f} s"):
        table.add_column(column, justify="left" if column in ("strategy", "quant") else "right")
    for row in rows:
        table.add_row(row["strategy"], row["quant"], str(row["crossbars"]),
                      f"{row['entries']:,}", f"{row['quantize_s']:.2f}", f"{row['map_s']:.2f}",
                      f"{row['write_s']:.2f}", f"{row['perf_s']:.2f}", f"{row['total_s']:.2f}",
                      "yes" if row["within_target"] else "NO")
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
