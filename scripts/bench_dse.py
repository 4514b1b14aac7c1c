"""Scaling of the study engine: one study serially, on 1 and on 2 Dask worker processes.

    python scripts/bench_dse.py [--study ou_size] [--workers 1,2] [--json]

For each run (a fresh results store each time) it prints the wall time, the CPU time of
this process and of its worker processes (``getrusage``: user + sys; workers count once
their cluster has shut down), the sum of the points' own task times (``seconds`` of the
store rows), the speedup against the 1-worker run and the per-task overhead:

    overhead per task = (wall - cluster start) * workers / tasks - mean task time

(the time a task costs beyond its own work: scheduling, pickling, result transfer,
appending the row). The cluster start is measured apart (an empty LocalCluster of the
same size started and stopped). docs/dse.md turns these numbers into the expected
scaling on a cluster. Timings taken while other jobs load the machine are not meaningful
beyond the CPU columns; rerun on an idle machine for figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    """User + sys CPU seconds of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _cluster_start(workers: int) -> float:
    """Seconds to start and stop an empty LocalCluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
    return time.perf_counter() - start


def _run(study, engine, folder: Path, label: str) -> dict:
    from bitline.sim.dse import ResultStore, run_study

    store = folder / f"{label}.sqlite"
    cpu, start = _cpu(), time.perf_counter()
    summary = run_study(study, store, engine=engine, overwrite=True)
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    with ResultStore.open(store) as results:
        rows = results.rows()
    task_seconds = [row["seconds"] for row in rows if row["seconds"]]
    return {"run": label, "engine": summary["engine"], "tasks": len(task_seconds),
            "wall_s": wall, "cpu_s": cpu, "task_s": sum(task_seconds),
            "metrics": {row["id"]: row["metrics"] for row in rows}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="ou_size", help="study file or shipped example")
    parser.add_argument("--workers", default="1,2", help="worker counts to run")
    parser.add_argument("--no-serial", action="store_true", help="skip the serial run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    from bitline.sim.dse import Engine
    from bitline.sw.flow.study import load_study

    study = load_study(args.study)
    counts = [int(n) for n in args.workers.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for workers in counts:
            startup = _cluster_start(workers)
            run = _run(study, Engine("local", workers=workers), folder, f"{workers}-workers")
            run.update(workers=workers, cluster_start_s=startup)
            results.append(run)
        if not args.no_serial:
            run = _run(study, Engine("serial"), folder, "serial")
            results.append({**run, "workers": 1, "cluster_start_s": 0.0})
    reference = results[0]
    for run in results:
        tasks = max(run["tasks"], 1)
        run["speedup"] = reference["wall_s"] / run["wall_s"]
        run["mean_task_s"] = run["task_s"] / tasks
        run["overhead_per_task_s"] = ((run["wall_s"] - run["cluster_start_s"]) * run["workers"]
                                      / tasks - run["mean_task_s"])
        run["same_metrics"] = run["metrics"] == reference["metrics"]
    for run in results:
        del run["metrics"]
    if args.json:
        print(json.dumps({"study": study.name, "points": len(study.points), "runs": results},
                         indent=1))
        return 0
    print(f"study {study.name}: {len(study.points)} points")
    print(f"{'run':>10} {'wall s':>8} {'cpu s':>8} {'start s':>8} {'tasks s':>8} "
          f"{'speedup':>8} {'ovh/task s':>10}  same metrics")
    for run in results:
        print(f"{run['run']:>10} {run['wall_s']:8.1f} {run['cpu_s']:8.1f} "
              f"{run['cluster_start_s']:8.1f} {run['task_s']:8.1f} {run['speedup']:8.2f} "
              f"{run['overhead_per_task_s']:10.3f}  {run['same_metrics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
