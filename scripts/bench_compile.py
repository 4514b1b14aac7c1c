#!/usr/bin/env python3
"""Time the mapping compiler on ResNet-18 shapes: quantize, map and write per strategy.

Usage::

    python scripts/bench_compile.py [--model resnet18-cifar] [--strategies isaac,bwq]
                                    [--quant int8] [--no-write] [--json]

Each strategy is quantized with its default spec of ``bitline compare`` (docs/performance.md
section 6; ``--quant`` overrides) on seeded random calibration inputs (ResNet-18 is a
synthetic model) and mapped onto the ``bwq`` preset with ``--xbars auto``. The table shows
the seconds of each step; the 10 s target applies to the compiler proper (map + bundle
write); quantization is reported beside it. A network that needs more crossbar units than
any config holds is mapped layer by layer (noted; no bundle). Timing comes from this
script, never from the test suite (STYLE.md).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import click
from rich.console import Console
from rich.table import Table

from bitline.hw.spec.program import STRATEGIES
from bitline.sw.bundle import write_bundle
from bitline.sw.flow import (
    calibration_inputs,
    compile_model,
    is_synthetic,
    load_config,
    strategy_specs,
)
from bitline.sw.models import resolve_model
from bitline.sw.perf import analyze

TARGET_S = 10.0


@click.command()
@click.option("--model", default="resnet18-cifar", show_default=True)
@click.option("--strategies", default=",".join(STRATEGIES), show_default=True)
@click.option("--quant", "quant", multiple=True,
              help="Spec override, SPEC or STRATEGY=SPEC (default: compare's specs).")
@click.option("--preset", "preset_name", default="bwq", show_default=True)
@click.option("--write/--no-write", default=True, show_default=True,
              help="Also write the bundle (to a temporary directory).")
@click.option("--json", "as_json", is_flag=True)
def main(model, strategies, quant, preset_name, write, as_json):
    """Print compile times per strategy (map + write against the 10 s target)."""
    names = [name.strip() for name in strategies.split(",") if name.strip()]
    specs = strategy_specs(names, quant)
    start = time.perf_counter()
    ir_model = resolve_model(model)
    calib_x, calib_label = calibration_inputs(ir_model, model_name=model)
    config = load_config(None, preset_name)
    notes: list[str] = []
    load_s = time.perf_counter() - start
    qmodels: dict = {}          # quantized once per spec, shared by the strategies
    rows = []
    for strategy in names:
        spec = specs[strategy]
        result = compile_model(ir_model, strategy, spec, config, calib_x, qmodels=qmodels)
        program, qmodel, more = result.program, result.qmodel, result.notes
        # size_hardware quantizes (once per spec) and maps once to measure the machine.
        quantize_s = result.size_s + result.quantize_s
        map_s = result.map_s
        write_s = None
        if write:
            with tempfile.TemporaryDirectory() as folder:
                begin = time.perf_counter()
                write_bundle(folder, program, qmodel)
                write_s = time.perf_counter() - begin
        begin = time.perf_counter()
        report = analyze(program, qmodel)
        perf_s = time.perf_counter() - begin
        compile_s = map_s + (write_s or 0.0)
        rows.append({
            "strategy": strategy, "quant": spec, "crossbars": report.crossbars,
            "entries": int(sum(layer.entries for layer in report.layers)),
            "quantize_s": quantize_s, "map_s": map_s, "write_s": write_s, "perf_s": perf_s,
            "compile_s": compile_s, "within_target": compile_s <= TARGET_S, "notes": more,
        })
    if as_json:
        click.echo(json.dumps({"model": model, "calibration": calib_label, "load_s": load_s,
                               "notes": notes, "rows": rows}, indent=2))
        return
    synthetic = " (synthetic weights)" if is_synthetic(model) else ""
    table = Table(title=f"Compile times, {model}{synthetic}; calibration {calib_label}; "
                        f"model load {load_s:.2f} s")
    for column in ("strategy", "quant", "xbars", "entries", "quantize s*", "map s", "write s",
                   "perf s", "map+write s", f"<= {TARGET_S:.0f} s"):
        table.add_column(column, justify="left" if column in ("strategy", "quant") else "right")
    for row in rows:
        table.add_row(row["strategy"], row["quant"], f"{row['crossbars']:,}",
                      f"{row['entries']:,}", f"{row['quantize_s']:.2f}", f"{row['map_s']:.2f}",
                      "-" if row["write_s"] is None else f"{row['write_s']:.2f}",
                      f"{row['perf_s']:.2f}", f"{row['compile_s']:.2f}",
                      "yes" if row["within_target"] else "NO")
    console = Console(width=max(140, Console().width))
    console.print(table)
    console.print("* sizing the hardware: quantization (once per spec; strategies sharing "
                  "a spec reuse it) and a measuring map.")
    for note in notes:
        console.print(f"note: {note}")
    for row in rows:
        for note in row["notes"]:
            console.print(f"note ({row['strategy']}): {note}")


if __name__ == "__main__":
    sys.exit(main())
