#!/usr/bin/env python3
"""Print the layer-pipeline throughput of every strategy at several crossbar budgets.

Usage::

    python scripts/pipeline_budgets.py [MODEL] [--factors 1,1.5,2,4] [--json FILE]

Each strategy is compiled once with its default spec on the ``bwq`` preset
(:data:`bitline.sw.flow.DEFAULT_SPECS`); the budgets are multiples of the crossbar units the
``isaac`` row uses with one copy of each layer, and every strategy gets the same budget
(equal crossbars). At factor 1 ISAAC has no unit to spare and cannot balance its pipeline;
from about 2 on both sides balance theirs, so the ratio measures the mappings rather than
the balancing (docs/performance.md section 7). The table gives, per budget and strategy,
the units the copies use, images/s, the throughput ratio against ``isaac``, the
bottleneck layer and its stage cycles, and the most copies of any layer.
"""

from __future__ import annotations

import json
import time

import click

from bitline.hw.spec.config import preset
from bitline.hw.spec.program import STRATEGIES
from bitline.sw.flow import DEFAULT_SPECS, calibration_inputs, compile_model, resolve_target


@click.command()
@click.argument("model", default="resnet18-cifar")
@click.option("--factors", default="1,1.5,2,4", show_default=True,
              help="Budgets as multiples of the isaac row's crossbar units.")
@click.option("--json", "json_path", default=None, help="Also write the results to FILE.")
def main(model, factors, json_path):
    from bitline.sw.perf import analyze, pipeline_report

    ir_model = resolve_target(model).require("model", "pipeline_budgets")
    calib_x, _ = calibration_inputs(ir_model, None, model_name=model)
    config = preset("bwq")
    reports, qmodels = {}, {}
    for strategy in STRATEGIES:
        start = time.perf_counter()
        result = compile_model(ir_model, strategy, DEFAULT_SPECS[strategy], config, calib_x,
                               qmodels=qmodels)
        reports[strategy] = analyze(result.program, result.qmodel)
        click.echo(f"compiled {strategy} ({DEFAULT_SPECS[strategy]}) in "
                   f"{time.perf_counter() - start:.1f} s", err=True)
    footprint = reports["isaac"].crossbars
    results = {"model": model, "isaac_crossbars": footprint, "budgets": []}
    for factor in (float(value) for value in factors.split(",")):
        units = int(footprint * factor)
        rows = {strategy: pipeline_report(report, units) for strategy, report in reports.items()}
        base = rows["isaac"].throughput_ips
        click.echo(f"\n{model}: budget xbars:{units} ({factor:g} x isaac's {footprint})")
        click.echo(f"| strategy | units | images/s | vs isaac | bottleneck | stage cycles "
                   f"| max copies |\n|---|---|---|---|---|---|---|")
        for strategy, pipe in rows.items():
            click.echo(f"| {strategy} | {pipe.units} | {pipe.throughput_ips:,.0f} | "
                       f"{pipe.throughput_ips / base:.2f}x | {pipe.bottleneck} | "
                       f"{pipe.bottleneck_cycles:,} | {max(pipe.copies.values())} |")
        results["budgets"].append({"factor": factor, "units": units,
                                   "rows": {s: p.to_dict() for s, p in rows.items()}})
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
