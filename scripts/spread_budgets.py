#!/usr/bin/env python3
"""What spread placements change in the layer pipeline: allocator with and without them.

Usage::

    python scripts/spread_budgets.py [MODEL] [--factors 1,2,4] [--json FILE]

Every row ``bitline compare MODEL`` prints by default (the five strategies, ``bwq-a`` and
the named baselines, on the ``bwq`` preset with their default specs) is compiled once; its
spread variants are counted (:func:`bitline.sw.flow.compile.spread_placements`), and the
allocator runs at each budget twice: dense placements only (``compare --no-spread``) and
dense or spread per layer (``compare``'s default). The budgets are multiples of the crossbar
units the ``isaac`` row uses with one copy of each layer. Per budget and row the table gives
the layers that got a spread placement, throughput, single-image latency and energy per
image of both allocations; the last line the CPU time of counting the spread variants
against that of compiling and analyzing the rows (docs/performance.md sections 7 and 11).
"""

from __future__ import annotations

import json
import time

import click

from bitline.hw.spec.config import preset
from bitline.sw.flow import calibration_inputs, compile_model, resolve_target, strategy_specs
from bitline.sw.flow.compare import DEFAULT_ROWS, _baselines, _runs
from bitline.sw.flow.compile import spread_placements
from bitline.sw.perf import analyze
from bitline.sw.perf.pipeline import pipeline_report


def _compile_rows(model, calib_x):
    """Return ``({label: (report, variants)}, compile CPU s, spread CPU s)``."""
    runs = _runs(DEFAULT_ROWS, strategy_specs(DEFAULT_ROWS), preset("bwq"), "bwq",
                 _baselines(True))
    qmodels, rows = {}, {}
    compile_s = spread_s = 0.0
    for label, strategy, spec, config, _, encoding in runs:
        start = time.process_time()
        try:
            result = compile_model(model, strategy, spec, config, calib_x, qmodels=qmodels,
                                   encoding=encoding)
        except ValueError as error:
            print(f"{label}: {error}")
            continue
        report = analyze(result.program, result.qmodel)
        counted = time.process_time()
        rows[label] = (report, spread_placements(result.program, result.qmodel, report=report))
        compile_s += counted - start
        spread_s += time.process_time() - counted
        del result
    return rows, compile_s, spread_s


@click.command()
@click.argument("model", default="resnet18-cifar")
@click.option("--factors", default="1,2,4", show_default=True,
              help="Budgets as multiples of the isaac row's crossbar units.")
@click.option("--json", "json_path", default=None, help="Also write the results to FILE.")
def main(model, factors, json_path):
    ir_model = resolve_target(model).require("model", "spread_budgets")
    calib_x, _ = calibration_inputs(ir_model, None, model_name=model)
    rows, compile_s, spread_s = _compile_rows(ir_model, calib_x)
    base = rows["isaac"][0].crossbars
    out = {}
    for factor in (float(f) for f in factors.split(",")):
        units = int(base * factor)
        for label, (report, variants) in rows.items():
            try:
                dense = pipeline_report(report, units)
            except ValueError:
                print(f"{factor:g}x {units:>7,} {label:14s} over budget")
                continue
            spread = pipeline_report(report, units, variants=variants)
            chosen = {name: p for name, p in spread.placements.items() if p != "dense"}
            record = {
                "units": units, "layers": len(report.layers), "spread": chosen,
                "dense_ips": dense.throughput_ips, "spread_ips": spread.throughput_ips,
                "dense_latency_us": dense.pipeline_latency_s * 1e6,
                "spread_latency_us": spread.pipeline_latency_s * 1e6,
                "dense_energy_uj": dense.energy_per_image_pj / 1e6,
                "spread_energy_uj": spread.energy_per_image_pj / 1e6,
            }
            out[f"{factor:g}x/{label}"] = record
            print(f"{factor:g}x {units:>7,} {label:14s} spread {len(chosen):>2}/"
                  f"{len(report.layers):<3} img/s {dense.throughput_ips:>11,.0f} -> "
                  f"{spread.throughput_ips:>11,.0f} "
                  f"({spread.throughput_ips / dense.throughput_ips:.3f}x)  latency "
                  f"{record['dense_latency_us']:>9,.1f} -> {record['spread_latency_us']:>9,.1f}"
                  f" us  energy {record['dense_energy_uj']:,.2f} -> "
                  f"{record['spread_energy_uj']:,.2f} uJ")
    print(f"CPU: compile + analyze {compile_s:.1f} s, spread variants {spread_s:.1f} s")
    if json_path:
        with open(json_path, "w") as handle:
            json.dump({"rows": out, "compile_cpu_s": compile_s, "spread_cpu_s": spread_s},
                      handle, indent=1)


if __name__ == "__main__":
    main()
