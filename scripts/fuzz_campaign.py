"""Run a long fuzz campaign of the ``bitline`` CLI and print counts per category.

    python scripts/fuzz_campaign.py --examples 500 --seed 1 [--category onnx ...]
        [--failures fuzz-failures/] [--json]

Each category (``onnx``, ``config``, ``bundle``, ``input``, ``network``: random graphs
compiled with ``--network``, :mod:`support.fuzz_network`; all by default) draws
``--examples`` cases from its hypothesis strategy (:mod:`support.fuzz_files`, seeded by
``--seed``, no example database), runs each through the real CLI in-process and classifies
it (:mod:`support.fuzz`): clean error, clean exit 0 (a result the independent oracle found
correct), traceback (an exception, the internal-error handler or a leaked Python warning),
silently accepted (exit 0 for an input that must be refused, or a wrong result). The table
lists tried / clean error / clean exit 0 / traceback / silently accepted per category and in
all; every failing case is listed and saved under ``--failures`` (its files, ``case.json``
with the commands and their stderr, and ``repro.sh``). Exit status 1 if any case failed.

The cases of the campaign are not shrunk (a failing case is kept as drawn); the suite tests
(``tests/unit/test_fuzz_cli.py``) shrink what they find.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, seed, settings
from support.fuzz import VERDICTS, run_case, save_case
from support.fuzz_files import CATEGORIES

LABELS = {"error": "clean error", "ok": "clean exit 0", "traceback": "traceback",
          "silent": "silently accepted"}


def run_category(name: str, examples: int, seed_value: int, failures: Path,
                 progress) -> tuple[Counter, list[dict]]:
    """Run ``examples`` cases of category ``name``; return the verdict counts and failures."""
    counts: Counter = Counter()
    failed: list[dict] = []

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(CATEGORIES[name])
    def campaign(case):
        outcome = run_case(case)
        counts[outcome.verdict] += 1
        if outcome.verdict in ("traceback", "silent"):
            folder = save_case(outcome, failures)
            failed.append({"category": name, "kind": case.kind, "verdict": outcome.verdict,
                           "description": case.description, "detail": outcome.detail,
                           "reproducer": str(folder)})
        progress(name, sum(counts.values()), examples)

    campaign()
    return counts, failed


def _table(rows: dict[str, Counter]) -> str:
    header = ["category", "tried", *(LABELS[v] for v in VERDICTS)]
    lines = [[name, str(sum(c.values())), *(str(c[v]) for v in VERDICTS)]
             for name, c in rows.items()]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row):
        return "| " + " | ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                 for i, (cell, w) in enumerate(zip(row, widths))) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":")
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(header), rule, *map(fmt, lines)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=500, help="cases per category")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    parser.add_argument("--category", action="append", choices=sorted(CATEGORIES),
                        help="a category to run (repeatable; default all)")
    parser.add_argument("--failures", type=Path, default=Path("fuzz-failures"),
                        help="folder for the reproducers of failing cases")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    names = args.category or list(CATEGORIES)
    started, cpu = time.time(), time.process_time()

    def progress(name, done, total):
        if not args.json and (done % 50 == 0 or done == total):
            print(f"  {name}: {done}/{total}", file=sys.stderr, flush=True)

    rows: dict[str, Counter] = {}
    failed: list[dict] = []
    for name in names:
        rows[name], failures = run_category(name, args.examples, args.seed, args.failures,
                                            progress)
        failed += failures
    rows["all"] = sum(rows.values(), Counter())
    seconds = {"wall": time.time() - started, "cpu": time.process_time() - cpu}
    if args.json:
        print(json.dumps({"examples": args.examples, "seed": args.seed,
                          "counts": {name: {v: c[v] for v in VERDICTS} | {
                              "tried": sum(c.values())} for name, c in rows.items()},
                          "failures": failed, "seconds": seconds}, indent=2))
    else:
        print(f"fuzz campaign: --examples {args.examples} --seed {args.seed} "
              f"({', '.join(names)}); {seconds['wall']:.0f} s wall, {seconds['cpu']:.0f} s "
              "CPU of this process")
        print(_table(rows))
        for failure in failed:
            print(f"FAILED {failure['category']}/{failure['kind']} ({failure['verdict']}): "
                  f"{failure['description']}: {failure['detail']}\n    reproducer: "
                  f"{failure['reproducer']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
