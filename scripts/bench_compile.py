#!/usr/bin/env python3
"""Time and memory of the compiler on ResNet-18 shapes, per step and strategy, or of ``compare``.

Usage::

    python scripts/bench_compile.py [--model resnet18-cifar] [--strategies isaac,bwq]
                                    [--quant int8] [--no-write] [--json]
    python scripts/bench_compile.py --compare [--model resnet18-cifar] [--json]

Per strategy (default) the compile steps run one after another, each measured on its own:

* ``quantize`` — the quantization the hardware sizing measures (capacity and weight-plane
  sizing of :func:`bitline.sw.flow.compile.size_hardware`), cached per spec as ``compare``
  caches it: a strategy whose spec an earlier one quantized shows ``shared``;
* ``map`` — the rest of ``size_hardware``: the one mapping (``--xbars auto``) whose layers
  the program keeps, and the unit / entry sizing;
* ``validate`` — the one OU-program validator (compile step 6);
* ``analyze`` — :func:`bitline.sw.perf.analyze` (what ``compare`` reports);
* ``write`` — the bundle (to a temporary directory).

``--compare`` runs ``bitline compare MODEL -q`` in this process (the click command itself,
so with the CLI's defaults: five strategies, the named baselines, the baseline budget) and
times the :func:`~bitline.sw.flow.compare_strategies` call inside it, plus the whole
command (model load and calibration inputs included).

Each step reports wall time (``time.perf_counter``) and CPU time of this process
(``time.process_time``, all threads: BLAS threads count, time waiting for a core shared
with other jobs does not), and two memory figures:

* ``peak MB`` — the largest traced allocation above the step's start (``tracemalloc``:
  numpy reports its buffers to it, so this is the step's own working set, separable per
  step, which the process RSS is not);
* ``rss MB`` — ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the step: the process
  peak so far, interpreter, libraries and BLAS buffers included (what the 1.5 GB target of
  issue 12 is about; it never decreases, so it is read once per step).

``--no-trace`` turns tracemalloc off (it costs some time in allocation-heavy Python code;
the timing targets are measured without it). Timing comes from this script, never from the
test suite (STYLE.md); docs/performance.md "Compile speed" has measured figures.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager

import click
from rich.console import Console
from rich.table import Table

from bitline.hw.spec.program import STRATEGIES, Program
from bitline.sw.bundle import write_bundle
from bitline.sw.flow import (
    calibration_inputs,
    is_synthetic,
    load_config,
    strategy_specs,
)
from bitline.sw.models import resolve_model
from bitline.sw.perf import analyze

#: Issue 12's targets: ``compare`` (all strategies and baselines) and one strategy.
COMPARE_TARGET_S = 15.0
STRATEGY_TARGET_S = 5.0
RSS_TARGET_MB = 1500.0

STEPS = ("quantize", "map", "validate", "analyze", "write")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # KiB on Linux


class _Meter:
    """Measures steps: wall, CPU, traced peak above the start and the process peak RSS."""

    def __init__(self, trace: bool):
        self.trace = trace
        self.steps: list[dict] = []

    @contextmanager
    def step(self, name: str, **extra):
        if self.trace:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        record = {"step": name, **extra}
        yield record
        record["wall_s"] = time.perf_counter() - wall
        record["cpu_s"] = time.process_time() - cpu
        record["peak_mb"] = ((tracemalloc.get_traced_memory()[1] - base) / 2**20
                             if self.trace else None)
        record["rss_mb"] = _rss_mb()
        self.steps.append(record)


def _strategy_steps(meter: _Meter, ir_model, strategy, spec, config, calib_x, qmodels,
                    write: bool) -> dict:
    """Run the compile steps of one strategy, each measured; return the row."""
    from bitline.sw.flow.compile import size_hardware, sized_quantization, validate

    shared = str(spec) in {key[0] for key in qmodels}
    with meter.step("quantize", strategy=strategy, shared=shared):
        # The quantizing half of size_hardware, filling the cache it reads next.
        sized_quantization(ir_model, spec, calib_x, config, qmodels=qmodels)
    with meter.step("map", strategy=strategy):
        plan = size_hardware(ir_model, spec, calib_x, config, strategy, qmodels=qmodels)
        program = Program(plan.config, strategy, list(plan.layers))
    with meter.step("validate", strategy=strategy):
        validate(program)
    with meter.step("analyze", strategy=strategy):
        report = analyze(program, plan.qmodel)
    if write:
        with meter.step("write", strategy=strategy):
            with tempfile.TemporaryDirectory() as folder:
                write_bundle(folder, program, plan.qmodel)
    steps = [record for record in meter.steps if record.get("strategy") == strategy]
    return {
        "strategy": strategy, "quant": spec, "crossbars": report.crossbars,
        "entries": int(sum(len(layer.entries) for layer in program.layers)),
        "cycles": int(report.cycles), "notes": [record.note for record in plan.sizing],
        "steps": {record["step"]: {k: record[k] for k in ("wall_s", "cpu_s", "peak_mb",
                                                          "rss_mb")} | (
            {"shared": record["shared"]} if "shared" in record else {})
            for record in steps},
        "wall_s": sum(record["wall_s"] for record in steps),
        "cpu_s": sum(record["cpu_s"] for record in steps),
    }


def _run_compare(meter: _Meter, model: str) -> dict:
    """Run ``bitline compare MODEL -q`` here; time the command and compare_strategies."""
    import bitline.sw.cli.compile as cli

    inner: dict = {}
    original = cli.compare_strategies

    def timed(*args, **kwargs):
        with meter.step("compare_strategies") as record:
            rows = original(*args, **kwargs)
            record["rows"] = len(rows)
        inner["rows"] = [{"strategy": row["strategy"], "error": row.get("error")}
                         for row in rows]
        return rows

    cli.compare_strategies = timed
    try:
        with meter.step("bitline compare"):
            cli.compare.main([model, "-q"], standalone_mode=False)
    finally:
        cli.compare_strategies = original
    return inner


def _print_steps(rows, title: str) -> None:
    table = Table(title=title)
    for column in ("strategy", "quant", "xbars", "entries", "step", "wall s", "cpu s",
                   "peak MB", "rss MB"):
        table.add_column(column, justify="left" if column in ("strategy", "quant", "step")
                         else "right")
    for row in rows:
        first = True
        for step in STEPS:
            if step not in row["steps"]:
                continue
            record = row["steps"][step]
            peak = "-" if record["peak_mb"] is None else f"{record['peak_mb']:.0f}"
            label = step + (" (shared)" if record.get("shared") else "")
            table.add_row(row["strategy"] if first else "", row["quant"] if first else "",
                          f"{row['crossbars']:,}" if first else "",
                          f"{row['entries']:,}" if first else "", label,
                          f"{record['wall_s']:.2f}", f"{record['cpu_s']:.2f}", peak,
                          f"{record['rss_mb']:.0f}")
            first = False
        within = "yes" if row["wall_s"] <= STRATEGY_TARGET_S else "NO"
        table.add_row("", "", "", "", f"total (<= {STRATEGY_TARGET_S:.0f} s: {within})",
                      f"{row['wall_s']:.2f}", f"{row['cpu_s']:.2f}", "", "",
                      end_section=True)
    Console(width=max(120, Console().width)).print(table)


@click.command()
@click.option("--model", default="resnet18-cifar", show_default=True)
@click.option("--strategies", default=",".join(STRATEGIES), show_default=True)
@click.option("--quant", "quant", multiple=True,
              help="Spec override, SPEC or STRATEGY=SPEC (default: compare's specs).")
@click.option("--preset", "preset_name", default="bwq", show_default=True)
@click.option("--write/--no-write", default=True, show_default=True,
              help="Also write the bundle (to a temporary directory).")
@click.option("--compare", "compare_mode", is_flag=True,
              help="Time `bitline compare MODEL` (all strategies and baselines) instead.")
@click.option("--trace/--no-trace", default=True, show_default=True,
              help="tracemalloc per-step peaks (costs some time).")
@click.option("--json", "as_json", is_flag=True)
def main(model, strategies, quant, preset_name, write, compare_mode, trace, as_json):
    """Print time and memory per compile step and strategy, or of `bitline compare`."""
    if trace:
        tracemalloc.start()
    meter = _Meter(trace)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    if compare_mode:
        inner = _run_compare(meter, model)
        result = {"model": model, "mode": "compare", "steps": meter.steps, **inner,
                  "rss_mb": _rss_mb(), "targets": {"wall_s": COMPARE_TARGET_S,
                                                   "rss_mb": RSS_TARGET_MB}}
        if as_json:
            click.echo(json.dumps(result, indent=2))
            return
        console = Console()
        for record in meter.steps:
            peak = "" if record["peak_mb"] is None else f", traced peak {record['peak_mb']:.0f} MB"
            console.print(f"{record['step']}: {record['wall_s']:.2f} s wall, "
                          f"{record['cpu_s']:.2f} s CPU{peak}, process peak RSS "
                          f"{record['rss_mb']:.0f} MB")
        console.print(f"targets: compare <= {COMPARE_TARGET_S:.0f} s, peak RSS <= "
                      f"{RSS_TARGET_MB:.0f} MB")
        return
    names = [name.strip() for name in strategies.split(",") if name.strip()]
    specs = strategy_specs(names, quant)
    with meter.step("load"):
        ir_model = resolve_model(model)
        calib_x, calib_label = calibration_inputs(ir_model, model_name=model)
        config = load_config(None, preset_name)
    qmodels: dict = {}          # quantized once per spec, shared by the strategies
    rows = [_strategy_steps(meter, ir_model, strategy, specs[strategy], config, calib_x,
                            qmodels, write) for strategy in names]
    total = {"wall_s": time.perf_counter() - start_wall,
             "cpu_s": time.process_time() - start_cpu, "rss_mb": _rss_mb()}
    if as_json:
        click.echo(json.dumps({"model": model, "calibration": calib_label,
                               "load": meter.steps[0], "rows": rows, "total": total,
                               "tracemalloc": trace}, indent=2))
        return
    synthetic = " (synthetic weights)" if is_synthetic(model) else ""
    load = meter.steps[0]
    _print_steps(rows, f"Compile steps, {model}{synthetic} on {preset_name}; calibration "
                       f"{calib_label}; model load {load['wall_s']:.2f} s")
    console = Console()
    console.print(f"all: {total['wall_s']:.2f} s wall, {total['cpu_s']:.2f} s CPU, process "
                  f"peak RSS {total['rss_mb']:.0f} MB (tracemalloc "
                  f"{'on' if trace else 'off'})")
    for row in rows:
        for note in row["notes"]:
            console.print(f"note ({row['strategy']}): {note}", soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
