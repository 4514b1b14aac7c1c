#!/usr/bin/env python3
"""The fault-aware mapping table (docs/analog.md "Fault-aware mapping", README-ready Markdown).

Usage::

    python scripts/fault_table.py [--model digits-cnn] [--rates 0.01,0.02] [--chips K]
                                  [--samples N] [--seed S] [--strategies isaac,...]
                                  [--json FILE]

For every mapping strategy (default quantization spec, ``bwq`` preset: the setting of
``bitline sweep``) the model is compiled once; then, per stuck-at rate and chip
``seed + k`` (half the stuck cells at 0, half at 1), the executor runs the test images with
an :class:`~bitline.sim.analog.AnalogDevice` of that chip twice: on the program as mapped
("without") and on the program placed and re-encoded for the chip's stuck map by
:func:`bitline.sw.mapping.faults.fault_aware` ("with"; docs/mapping.md "Fault-aware
placement and re-encoding"). The stuck map is
:func:`bitline.sim.analog.chip_stuck_map` -- the device's own draw, so both runs see the
same chip. "fault-free" is the same executor on a healthy chip. Also printed: the read
stuck cells with a wrong value, before -> after (summed over layers, mean over chips).
"""

from __future__ import annotations

import json
import sys
import time

import click
import numpy as np


def fault_table(model="digits-cnn", *, strategies=None, rates=(0.01, 0.02), chips=1,
                samples=None, seed=0, dataset="digits", progress=None) -> dict:
    """Return ``{"rows": [...], ...}``: per strategy fault-free accuracy and, per rate,
    accuracy without / with fault-aware mapping and the wrong cells before / after."""
    from bitline.hw.spec.config import preset
    from bitline.hw.spec.program import STRATEGIES
    from bitline.sim.analog import AnalogDevice, chip_stuck_map
    from bitline.sim.analog_params import AnalogParams
    from bitline.sim.executor import run_executor
    from bitline.sim.sweep import _test_images
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import DEFAULT_SPECS, compile_model
    from bitline.sw.mapping.faults import fault_aware
    from bitline.sw.models import resolve_model

    strategies = list(strategies or STRATEGIES)
    net = resolve_model(model)
    config = preset("bwq")
    calib_x, _ = load_dataset(dataset, "calib")
    x, y, subsample_seed = _test_images(dataset, samples, seed)

    def accuracy(program, qmodel, device=None):
        output = run_executor(program, qmodel, x, device=device).output
        return float(np.mean(np.asarray(output).reshape(len(y), -1).argmax(1) == y))

    rows = []
    for strategy in strategies:
        compiled = compile_model(net, strategy, DEFAULT_SPECS[strategy], config, calib_x)
        program, qmodel = compiled.program, compiled.qmodel
        row = {"strategy": strategy, "fault_free": accuracy(program, qmodel), "rates": {}}
        for rate in rates:
            params = AnalogParams(stuck_at_0=rate / 2, stuck_at_1=rate / 2)
            without, with_, before, after, seconds = [], [], [], [], []
            for chip in range(chips):
                spec = f"chip:{seed + chip}:{rate}"
                start = time.perf_counter()
                placed, report = fault_aware(
                    program, chip_stuck_map(program.config, spec, program.config.n_xbars))
                seconds.append(time.perf_counter() - start)
                device = AnalogDevice(program.config, params, seed=seed + chip)
                without.append(accuracy(program, qmodel, device))
                device = AnalogDevice(program.config, params, seed=seed + chip)
                with_.append(accuracy(placed, qmodel, device))
                before.append(sum(layer.wrong_before for layer in report))
                after.append(sum(layer.wrong_after for layer in report))
            row["rates"][rate] = {
                "without": float(np.mean(without)), "with": float(np.mean(with_)),
                "without_chips": without, "with_chips": with_,
                "wrong_before": float(np.mean(before)), "wrong_after": float(np.mean(after)),
                "place_seconds": float(np.mean(seconds))}
            if progress:
                progress(f"{strategy:13s} stuck {rate:.3f}: {100 * np.mean(without):6.2f} % -> "
                         f"{100 * np.mean(with_):6.2f} % (fault-free "
                         f"{100 * row['fault_free']:.2f} %), wrong cells "
                         f"{np.mean(before):.0f} -> {np.mean(after):.0f}")
        rows.append(row)
    return {"model": model, "dataset": dataset, "images": len(y),
            "subsample_seed": subsample_seed, "seed": seed, "chips": chips,
            "rates": list(rates), "rows": rows}


def _pct(value: float) -> str:
    return f"{100 * value:.2f}".rstrip("0").rstrip(".") + " %"


def format_table(report: dict) -> str:
    """Markdown: accuracy per strategy, fault-free and per rate without / with."""
    rates = report["rates"]
    head = ["strategy", "fault-free"]
    for rate in rates:
        head += [f"{_pct(rate)} stuck, as mapped", f"{_pct(rate)} stuck, fault-aware"]
    head += [f"wrong cells at {_pct(rate)} (before -> after)" for rate in rates]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        cells = [row["strategy"], _pct(row["fault_free"])]
        for rate in rates:
            point = row["rates"][rate]
            cells += [_pct(point["without"]), _pct(point["with"])]
        for rate in rates:
            point = row["rates"][rate]
            cells.append(f"{point['wrong_before']:.0f} -> {point['wrong_after']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    sample = (f"{report['images']} {report['dataset']} test images"
              + (f" (subsample, seed {report['subsample_seed']})"
                 if report["subsample_seed"] is not None else ""))
    chips = report["chips"]
    lines.append("")
    lines.append(f"{report['model']}, {sample}; bwq preset; half the stuck cells at 0, half "
                 f"at 1; chip seeds {report['seed']}..{report['seed'] + chips - 1} (mean)")
    return "\n".join(lines)


@click.command()
@click.option("--model", default="digits-cnn", show_default=True)
@click.option("--strategies", default=None, help="Comma-separated (default: all).")
@click.option("--rates", default="0.01,0.02", show_default=True)
@click.option("--chips", default=1, show_default=True, type=int)
@click.option("--samples", default=None, type=int, help="Seeded subsample of the test split.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "json_path", default=None, help="Also write the report as JSON.")
def main(model, strategies, rates, chips, samples, seed, json_path):
    """Print the fault-aware mapping table."""
    start = time.perf_counter()
    report = fault_table(model, strategies=strategies.split(",") if strategies else None,
                         rates=[float(rate) for rate in rates.split(",")], chips=chips,
                         samples=samples, seed=seed,
                         progress=lambda line: click.echo(line, err=True))
    click.echo(format_table(report))
    click.echo(f"\n{time.perf_counter() - start:.0f} s", err=True)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(report, handle, indent=2, default=str)


if __name__ == "__main__":
    sys.exit(main())
