#!/usr/bin/env python3
"""Regenerate the non-ideality sweep of docs/analog.md: tables and docs/img/nonideal_sweep.png.

Usage::

    python scripts/nonideal_sweep.py [--model digits-cnn] [--samples N] [--chips K]
                                     [--params ideal|typical|FILE] [--plot FILE.png]
                                     [--json FILE]

Runs :func:`bitline.sim.sweep.nonideal_sweep` (the library form of ``bitline sweep``)
with its defaults -- every mapping strategy with its default quantization spec on the
``bwq`` preset, conductance variation sigma 0 / 5 / 10 / 20 % and stuck-at rates
0 / 0.5 / 1 / 2 % (half stuck at 0, half at 1), on the whole digits test split (450
images, or a seeded subsample with ``--samples``) -- and prints the Markdown tables that
docs/analog.md quotes (accuracy, and agreement with the ideal chip's predictions), plus the
wall time of every point.
"""

from __future__ import annotations

import json
import sys
import time

import click

from bitline.sim.sweep import format_tables, nonideal_sweep, plot_sweep


@click.command()
@click.option("--model", default="digits-cnn", show_default=True)
@click.option("--samples", default=None, type=int, help="Seeded subsample of the test split.")
@click.option("--chips", default=1, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--params", default=None, help="Base analog parameters (default ideal).")
@click.option("--plot", "plot_path", default="docs/img/nonideal_sweep.png", show_default=True)
@click.option("--json", "json_path", default=None, help="Also write the report as JSON.")
def main(model, samples, chips, seed, params, plot_path, json_path):
    """Run the default sweep and print the docs' tables."""
    start = time.perf_counter()
    report = nonideal_sweep(model, samples=samples, chips=chips, seed=seed, params=params,
                            progress=lambda line: click.echo(line, err=True))
    elapsed = time.perf_counter() - start
    click.echo(format_tables(report))
    click.echo("")
    click.echo(format_tables(report, "agreement"))
    click.echo(f"\n{len(report['points'])} points x {report['chips']} chip(s) in "
               f"{elapsed:.0f} s")
    if plot_path:
        click.echo(f"plot: {plot_sweep(report, plot_path)}")
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    sys.exit(main())
