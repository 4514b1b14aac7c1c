"""``bitline dse STUDY.toml`` (run a design-space study) and ``bitline dse report RESULTS``.

The library halves are :mod:`bitline.sw.flow.study` (the study file) and
:mod:`bitline.sim.dse` (engine, points, store, report), imported when a command runs
(``sw`` imports ``sim`` only inside CLI commands). ``bitline dse FILE`` is short for
``bitline dse run FILE``. docs/dse.md describes the study file, the store and clusters.
"""

from __future__ import annotations

import time

import click

from bitline.sw.cli.common import console, echo_json, json_option, print_table, quiet_option

__all__ = ["dse", "engine_options"]


class _DefaultRun(click.Group):
    """A group whose unknown first word is a study file: ``dse FILE`` runs ``dse run FILE``."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


def engine_options(function):
    """``--serial``, ``--workers N``, ``--scheduler ADDRESS`` (where tasks run), ``--dashboard``."""
    options = [
        click.option("--serial", is_flag=True,
                     help="Run every task in this process, in order (debugging)."),
        click.option("--workers", type=int, default=None,
                     help="Worker processes of the embedded Dask LocalCluster (default: "
                          "one per core)."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Use a running Dask cluster (tcp://HOST:8786) instead of a "
                          "LocalCluster; its workers need the same bitline version."),
        click.option("--dashboard", default=None, metavar="ADDRESS",
                     help="Serve the LocalCluster's Dask dashboard at ADDRESS (:8787, "
                          "localhost:8787; needs bokeh); default none."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group("dse", cls=_DefaultRun)
def dse():
    """Design-space studies: `bitline dse STUDY.toml`, `bitline dse report RESULTS`."""


@dse.command("run")
@click.argument("study_path", metavar="STUDY.toml|EXAMPLE")
@click.option("--store", "store_path", default=None, metavar="FILE.sqlite",
              help="Results store (default: STUDY.results.sqlite in the current folder).")
@click.option("--resume", is_flag=True,
              help="Run only the points the store does not hold yet.")
@click.option("--overwrite", is_flag=True, help="Delete an existing store first.")
@engine_options
@click.option("--dry-run", is_flag=True, help="Check the study and print its size only.")
@json_option
@quiet_option
def run(study_path, store_path, resume, overwrite, serial, workers, scheduler, dashboard,
        dry_run, as_json, quiet):
    """Run the design-space study in STUDY.toml; append every finished point to a store.

    EXAMPLE names a shipped study instead (ou_size, adc_bits, bits, cluster).

    A store that already holds points of the same study needs --resume (finish it) or
    --overwrite (start over); a store of another study is refused. --json prints the run's
    summary {"store", "points", "skipped", "ran", "failed", "seconds", "engine"}.
    """
    from bitline.sim.dse import Engine, run_study
    from bitline.sim.dse.run import default_store
    from bitline.sw.flow.study import load_study

    if resume and overwrite:
        raise click.UsageError("give --resume or --overwrite, not both")
    study = load_study(study_path)
    engine = Engine.from_options(serial, workers, scheduler, dashboard=dashboard)
    if dry_run:
        invalid = sum(point.config is None for point in study.points)
        summary = {"study": study.name, "digest": study.digest, "points": len(study.points),
                   "invalid": invalid, "axes": study.axes, "metrics": list(study.metrics)}
        if as_json:
            echo_json(summary)
        else:
            click.echo(f"{study.name}: {len(study.points)} points ({invalid} with an invalid "
                       f"config), metrics {', '.join(study.metrics)}, digest "
                       f"{study.digest[:16]}")
        return
    show = not (as_json or quiet)
    with _Progress(study.name, show) as progress:
        summary = run_study(study, store_path or default_store(study), engine=engine,
                            resume=resume, overwrite=overwrite, progress=progress)
    if as_json:
        echo_json(summary)
    elif not quiet:
        click.echo(f"{summary['store']}: {summary['ran']} points run, {summary['skipped']} "
                   f"already stored, {summary['failed']} failed, {summary['seconds']:.1f} s "
                   f"on {summary['engine']}")


class _Progress:
    """A rich progress bar on stderr: points done of total, rate and ETA."""

    def __init__(self, name: str, show: bool):
        self.name, self.show, self.bar, self.task = name, show, None, None
        self.start = time.perf_counter()
        self.first = 0

    def __enter__(self):
        if self.show:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=False)
            self.bar.__enter__()
        return self

    def __call__(self, done: int, total: int, row) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.first = done
            self.task = self.bar.add_task(self.name, total=total, completed=done, rate="")
        ran = done - self.first
        rate = ran / max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(self.task, completed=done, rate=f"{rate:.2f} points/s")

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)


@dse.command("report")
@click.argument("results", metavar="RESULTS.sqlite")
@click.option("--out", "out_dir", default=None, metavar="DIR",
              help="Folder of the plots and summary.md (default: RESULTS without its suffix "
                   "+ '-report').")
@click.option("--no-plots", is_flag=True, help="Tables and summary.md only.")
@click.option("--parquet", "parquet_path", default=None, metavar="FILE.parquet",
              help="Also export the points as a Parquet table.")
@json_option
@quiet_option
def report(results, out_dir, no_plots, parquet_path, as_json, quiet):
    """Print the tables of a results store; write Pareto and axis plots and summary.md.

    --json prints {"study", "points": [one flat record per point], "pareto": [ids],
    "files": [written paths]}.
    """
    from pathlib import Path

    from bitline.sim.dse.report import (load_results, markdown_summary, pareto_front,
                                        points_table, write_parquet, write_plots)

    study, records = load_results(results)
    folder = Path(out_dir) if out_dir else Path(results).with_suffix("").with_name(
        Path(results).stem + "-report")
    folder.mkdir(parents=True, exist_ok=True)
    plots = [] if no_plots else write_plots(study, records, folder)
    summary = folder / "summary.md"
    summary.write_text(markdown_summary(study, records, plots, folder))
    files = [*map(str, plots), str(summary)]
    if parquet_path:
        files.append(str(write_parquet(records, parquet_path)))
    front = pareto_front(study, records)
    if as_json:
        echo_json({"study": study, "points": records, "pareto": [r["id"] for r in front],
                   "files": files})
        return
    if quiet:
        return
    from rich.table import Table

    for title, rows in ((f"{study['name']}: {len(records)} points", records),
                        (f"Pareto front: {len(front)} points", front)):
        columns, cells = points_table(study, rows)
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in cells:
            table.add_row(*row)
        print_table(table)
    out = console()
    for path in files:
        out.print(f"wrote {path}", soft_wrap=True)
