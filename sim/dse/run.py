"""Run a study: expand its points, skip the stored ones, run the rest, append each result.

:func:`run_study` is ``bitline dse STUDY.toml``. Resume policy (docs/dse.md):

* no store yet: it is created and records the study digest;
* a store of the same study (same digest) with finished points: ``resume=True`` runs only
  the missing points; without it the run is refused (``--resume`` or ``--overwrite``), so a
  finished or half-finished study is never recomputed by accident;
* a store of another study: always refused (:class:`~.store.StoreMismatch`), even with
  ``resume``; ``overwrite=True`` deletes the store first.

Each finished point is committed as soon as its result reaches this process, so a killed
run loses at most the points in flight.
"""

from __future__ import annotations

import time
from pathlib import Path

from bitline.sim.dse.engine import Engine, bitline_version
from bitline.sim.dse.point import invalid_point_row, point_payload, run_point
from bitline.sim.dse.store import ResultStore

__all__ = ["run_study", "default_store"]


def default_store(study) -> Path:
    """The default store of a study: ``<file stem>.results.sqlite`` in the current folder
    (not beside the file: a shipped example lives in the installed package)."""
    return Path(f"{Path(study.path).stem}.results.sqlite")


def run_study(study, store: str | Path | None = None, *, engine: Engine | None = None,
              resume: bool = False, overwrite: bool = False, progress=None,
              task=run_point) -> dict:
    """Run ``study`` (a :class:`~bitline.sw.flow.study.Study`) into a results store.

    Parameters
    ----------
    store:
        The SQLite results file (default :func:`default_store`).
    engine:
        Where the tasks run (default: a ``LocalCluster`` with one worker per core).
    resume, overwrite:
        What to do with an existing store (module docstring).
    progress:
        Optional ``callable(done, total, row)``, called once with ``row=None`` before the
        first task (``done`` = points already stored) and after every stored point.
    task:
        The point function (tests wrap it to interrupt a run).

    Returns
    -------
    dict
        ``store`` (path), ``points`` (in the study), ``skipped`` (already stored),
        ``ran`` (run now), ``failed`` (rows with an error among them), ``seconds``,
        ``engine`` (label).

    Raises
    ------
    StoreMismatch
        If the store holds another study.
    ValueError
        If the store holds points of this study and neither ``resume`` nor ``overwrite``.
    """
    engine = engine or Engine()
    store = Path(store) if store is not None else default_store(study)
    if overwrite and store.exists():
        store.unlink()
    version = bitline_version()
    start = time.perf_counter()
    with ResultStore.open(store, study.to_dict(), version=version) as results:
        finished = results.finished()
        if finished and not resume:
            raise ValueError(f"{store} already holds {len(finished)} of the "
                             f"{len(study.points)} points of this study: pass --resume to "
                             f"run only the missing ones, or --overwrite to start over")
        todo = [point for point in study.points if point.id not in finished]
        skipped = len(study.points) - len(todo)
        done = skipped
        if progress:
            progress(done, len(study.points), None)
        failed = 0
        for point in [p for p in todo if p.config is None]:
            results.append(invalid_point_row(point, version))
            done, failed = done + 1, failed + 1
            if progress:
                progress(done, len(study.points), None)
        items = [(point.id, point_payload(study, point, version))
                 for point in todo if point.config is not None]
        for _, row in engine.run(task, items, name="dse"):
            results.append(row)
            done, failed = done + 1, failed + bool(row["error"])
            if progress:
                progress(done, len(study.points), row)
    return {"store": str(store), "points": len(study.points), "skipped": skipped,
            "ran": len(todo), "failed": failed, "seconds": time.perf_counter() - start,
            "engine": engine.label}
