"""``bitline sweep``: accuracy under analog non-idealities, per mapping strategy.

The library half is :mod:`bitline.sim.sweep` (imported when the command runs: ``sw`` imports
``sim`` only inside CLI commands); see its docstring for the sweep's axes and seeds. The
tasks run on the study engine of ``bitline dse`` (:mod:`bitline.sim.dse.engine`): an
embedded Dask ``LocalCluster`` by default, ``--workers N``, ``--scheduler ADDRESS`` or
``--serial``; the tables do not depend on which.
"""

from __future__ import annotations

import click

from bitline.sw.cli.common import (
    config_options,
    dataset_option,
    echo_json,
    json_option,
    quiet_option,
    strategies_option,
)
from bitline.sw.cli.dse import engine_options

__all__ = ["sweep"]


def _floats(value: str, option: str) -> list[float]:
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, not {value!r}",
                                 param_hint=option) from None


@click.command("sweep")
@click.argument("model")
@dataset_option("Data set: calibrates on its 'calib' split, evaluates on its 'test' split "
                "(default: the one MODEL declares: digits for digits-*, mnist5k for mnist-*).")
@strategies_option("Mapping strategies to sweep.")
@click.option("--variation", "variations", default="0,0.05,0.1,0.2", show_default=True,
              help="Comma-separated lognormal conductance-variation sigmas.")
@click.option("--stuck", "stuck", default="0,0.005,0.01,0.02", show_default=True,
              help="Comma-separated stuck-at rates (fractions of cells).")
@click.option("--sa1-fraction", default=0.5, show_default=True, type=float,
              help="Share of the stuck cells stuck at 1 (LRS); the rest at 0 (HRS).")
@click.option("--grid", is_flag=True, help="Sweep every (variation, stuck) pair.")
@click.option("--quant", "spec", default=None, metavar="SPEC",
              help="Quantization spec for every strategy (default: each strategy's own).")
@click.option("--params", "params_path", default=None, metavar="FILE",
              help="Base analog parameters (TOML, or 'ideal' / 'typical'); default ideal.")
@config_options
@click.option("--seed", default=0, show_default=True, type=int,
              help="First chip seed (and the seed of --samples).")
@click.option("--chips", default=1, show_default=True, type=int,
              help="Chips (consecutive seeds) averaged per point.")
@click.option("--samples", default=None, type=int,
              help="Evaluate on a seeded subsample of this many test images.")
@engine_options
@click.option("--batch", default=None, type=int,
              help="Images per task (default: all of them in one task per chip); only "
                   "without read noise.")
@json_option
@quiet_option
@click.option("--plot", "plot_path", default=None, metavar="FILE.png",
              help="Write a plot of accuracy against variation and stuck-at rate.")
def sweep(model, dataset, strategies, variations, stuck, sa1_fraction, grid, spec,
          params_path, config_path, preset_name, seed, chips, samples, serial, workers,
          scheduler, dashboard, batch, as_json, quiet, plot_path):
    """Sweep conductance variation and stuck-at faults on MODEL, per mapping strategy.

    One task per strategy (ideal predictions) and per (strategy, point, chip, batch of
    images), on an embedded Dask LocalCluster (one worker per core) unless --serial,
    --workers N or --scheduler ADDRESS; the tables are the same on any of them.

    --json prints {"model", "dataset", "images", "ideal", "specs", ..., "points": [one
    object per (strategy, variation, stuck): accuracy, accuracies, agreement, seconds]}.
    """
    from bitline.sim.dse import Engine
    from bitline.sim.sweep import format_tables, nonideal_sweep, plot_sweep
    from bitline.sw.flow import load_config, require_dataset

    engine = Engine.from_options(serial, workers, scheduler, dashboard=dashboard)
    config = load_config(config_path, preset_name)
    dataset = require_dataset(model, dataset)
    report = nonideal_sweep(
        model, dataset=dataset, strategies=strategies,
        variations=_floats(variations, "--variation"), stuck=_floats(stuck, "--stuck"),
        spec=spec, config=config, params=params_path, seed=seed, chips=chips,
        samples=samples, sa1_fraction=sa1_fraction, grid=grid, engine=engine, batch=batch,
        progress=None if as_json or quiet else (lambda line: click.echo(line, err=True)),
    )
    if plot_path:
        plot_sweep(report, plot_path)
    if as_json:
        echo_json(report)
    elif not quiet:
        click.echo(format_tables(report))
        if plot_path:
            click.echo(f"plot: {plot_path}")
