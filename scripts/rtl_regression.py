"""Randomized RTL regression: N random jobs with backpressure and resets on the Verilog.

    python scripts/rtl_regression.py --jobs 1000 --seed 1 [--workers 2] [--json]
    python scripts/rtl_regression.py --only 1:417 [--only 1:5 ...]

Job ``i`` of seed ``S`` runs on build ``BUILDS[i % len(BUILDS)]`` (bwq2, isaac, external;
``bitline.sim.cocotb.tb_regression``): a random image of one or two layers (every strategy
the geometry allows, random shapes, widths, copies), random pauses on every stream and
resets in the middle of image loads and layer jobs, every output checked against the golden
arithmetic and every counter against the performance model and the executor, a watchdog per
phase. Each build's jobs run in ``--chunks`` cocotb runs, ``--workers`` at a time (separate
processes; each Verilator build is made once and cached by digest under
``$BITLINE_BUILD_DIR`` or the user cache).

Prints one line per build and a total: jobs, passed, mismatches, hangs, errors, resets
injected (and of those, how many cut a load or a job short), simulated cycles, the simulations' wall and CPU time, the builds' time; then every
failing job with the ``--only SEED:IDX`` that reruns it. Exit status 1 if any job failed.
docs/reliability.md, "Randomized RTL regression".
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bitline.sim.cocotb.tb_regression import BUILDS, RegressionReport, run_regression


def _task(args):
    build, seed, jobs, work = args
    return run_regression(build, seed, jobs, work)


def _plan(jobs: int, seed: int, only: list[str], chunks: int):
    """Return ``[(build, seed, job indices)]``: the runs to make."""
    names = list(BUILDS)
    if only:
        runs: dict[tuple[str, int], list[int]] = {}
        for item in only:
            try:
                run_seed, index = (int(part) for part in item.split(":"))
            except ValueError:
                raise ValueError(f"--only takes SEED:IDX (two integers), not {item!r}") from None
            runs.setdefault((names[index % len(names)], run_seed), []).append(index)
        return [(build, run_seed, indices) for (build, run_seed), indices in runs.items()]
    plan = []
    for position, build in enumerate(names):
        indices = list(range(position, jobs, len(names)))
        size = -(-len(indices) // chunks) if indices else 0
        for start in range(0, len(indices), size or 1):
            plan.append((build, seed, indices[start:start + size]))
    return plan


def _row(name, reports: list[RegressionReport]) -> dict:
    records = [record for report in reports for record in report.records]
    return {
        "build": name, "jobs": len(records),
        "passed": sum(r["status"] == "ok" for r in records),
        "mismatches": sum(r["status"] == "mismatch" for r in records),
        "hangs": sum(r["status"] == "hang" for r in records),
        "errors": sum(r["status"] == "error" for r in records),
        "resets": sum(r["resets"] for r in records),
        "resets_mid": sum(r.get("cut", 0) for r in records),
        "cycles": sum(report.cycles for report in reports),
        "sim_wall_s": round(sum(report.wall for report in reports), 1),
        "sim_cpu_s": round(sum(report.cpu for report in reports), 1),
        "build_wall_s": round(sum(report.build_seconds for report in reports), 1),
        "build_cpu_s": round(sum(report.build_cpu for report in reports), 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs to draw (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", default=[], metavar="SEED:IDX",
                        help="rerun one job (repeatable)")
    parser.add_argument("--workers", type=int, default=2, help="cocotb runs at a time")
    parser.add_argument("--chunks", type=int, default=2, help="cocotb runs per build")
    parser.add_argument("--work", type=Path, default=None, help="folder for run files")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.chunks < 1:
        print("error: --jobs, --workers and --chunks must be at least 1", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="rtl-regression-"))
    try:
        plan = _plan(args.jobs, args.seed, args.only, args.chunks)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tasks = [(build, seed, jobs, work / f"{build}-{number}")
             for number, (build, seed, jobs) in enumerate(plan)]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        reports = list(pool.map(_task, tasks))
    wall = time.perf_counter() - start
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                  resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    rows = [_row(name, [r for r in reports if r.build == name]) for name in BUILDS
            if any(r.build == name for r in reports)]
    total = _row("total", reports)
    failing = [record for report in reports for record in report.records
               if record["status"] != "ok"]
    if args.json:
        print(json.dumps({"seed": args.seed, "rows": rows, "total": total, "wall_s": wall,
                          "cpu_s": cpu, "failing": failing}, indent=1))
        return 1 if failing else 0
    columns = list(total)
    print(" | ".join(columns))
    for row in rows + [total]:
        print(" | ".join(str(row[column]) for column in columns))
    print(f"whole run: {wall:.0f} s wall, {cpu:.0f} s CPU (this process and its children: "
          f"simulations, builds); work files in {work}")
    for record in failing:
        print(f"FAILED {record['status']}: --only {record['job']}: {record['describe']}: "
              f"{'; '.join(record['messages'])}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
