"""Build the FPGA bitstreams of several unit counts and print the README's FPGA table.

For every unit count of ``--xbars`` the accelerator of ``--config`` (default
``examples/fpga/ulx3s-bwq.toml``) with that many crossbar units is built for ``--board``
(default ``ulx3s-85f``) at ``--core-mhz`` (default 100: the issue's target; the flow writes its
report whether or not timing is met) by :func:`bitline.hw.toolchain.fpga.build_bitstream`,
exactly as ``bitline fpga --allow-timing-fail`` would, into ``--out``/``xbarsN``. Then one
markdown row per build: LUT4, FF, EBR, DSP (MULT18X18D), Fmax, the critical path (logic
levels, the hierarchy it starts and ends in), build wall time (synthesis + place and route)
and the tools' CPU time, and the LUT mapper.

    python scripts/fpga_table.py --xbars 1 4 8 [--classic-abc-from 4] [--reuse] [--json]

``--classic-abc-from N`` builds unit counts of N or more with ``BITLINE_SYNTH_CLASSIC_ABC=1``
(the YoWASP Yosys 0.70 asserts in ABC9 on the 4- and 8-unit designs; docs/fpga.md section 4):
the row says which mapper it used; nothing switches by itself. ``--reuse`` takes a build
folder's existing ``report.json`` instead of building again (the table of earlier builds).
A build that fails prints its error in its row and the script exits 1.

Builds run one after another (each tool uses one core). On a loaded machine the wall times
grow and the CPU times do not; LUT4, FF, EBR, DSP and Fmax do not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("units", "LUT4", "FF", "EBR", "DSP", "Fmax (MHz asked)", "critical path",
           "build: synth + P&R (CPU)", "LUT mapper")


def _critical(path: dict | None) -> str:
    """``N levels, start -> end`` of the report's critical path (``-`` without one)."""
    if not path:
        return "-"
    levels = path.get("logic_levels")
    ends = f"{path['from'].rsplit('.', 1)[0]} -> {path['to'].rsplit('.', 1)[0]}"
    counted = f"{levels} levels, " if levels is not None else ""
    return (f"{path['delay_ns']:.1f} ns ({path['logic_ns']:.1f} logic), {counted}"
            f"`{ends}`")


def row(report: dict) -> dict:
    """One table row (column -> text) of a ``report.json``."""
    resources = report["resources"]
    clock = min(report["clocks"], key=lambda entry: entry["achieved_mhz"])
    seconds = report["seconds"]
    cpu = report.get("cpu_seconds", {})
    cpu_text = (f" ({cpu['synthesis']:,.0f} + {cpu['place_route']:,.0f} s CPU)"
                if "synthesis" in cpu and "place_route" in cpu else "")
    lut = resources["LUT4"]
    return {
        "units": str(report["n_xbars"]),
        "LUT4": f"{lut['used']:,} ({lut['percent']:.1f} %)",
        "FF": f"{resources['FF']['used']:,}",
        "EBR": f"{resources['EBR']['used']} of {resources['EBR']['available']}",
        "DSP": str(resources["DSP"]["used"]),
        "Fmax (MHz asked)": f"{clock['achieved_mhz']:.1f} ({clock['constraint_mhz']:.0f})",
        "critical path": _critical(report.get("critical_path")),
        "build: synth + P&R (CPU)": (f"{seconds['synthesis']:,.0f} + "
                                     f"{seconds['place_route']:,.0f} s{cpu_text}"),
        "LUT mapper": report.get("lut_mapper", "?"),
    }


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table (numbers right-aligned)."""
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if column not in ("critical path", "LUT mapper") else "---"
                            for column in COLUMNS) + "|"]
    lines += ["| " + " | ".join(entry.get(column, "") for column in COLUMNS) + " |"
              for entry in rows]
    return "\n".join(lines)


def build(units: int, args) -> dict:
    """Build (or with ``--reuse`` read) the report of ``units`` crossbar units."""
    from bitline.hw.spec.config import AcceleratorConfig
    from bitline.hw.toolchain.fpga import CLASSIC_ABC_VARIABLE, REPORT_FILE, build_bitstream

    out = args.out / f"xbars{units}"
    if args.reuse and (out / REPORT_FILE).exists():
        return json.loads((out / REPORT_FILE).read_text())
    config = AcceleratorConfig.load(args.config).replace(n_xbars=units)
    classic = args.classic_abc_from is not None and units >= args.classic_abc_from
    saved = os.environ.pop(CLASSIC_ABC_VARIABLE, None)
    if classic:
        os.environ[CLASSIC_ABC_VARIABLE] = "1"
    try:
        return build_bitstream(config, out, board=args.board, core_hz=args.core_mhz * 1e6,
                               seed=args.seed,
                               log=lambda message: print(f"[{units} units] {message}",
                                                         file=sys.stderr, flush=True))
    finally:
        os.environ.pop(CLASSIC_ABC_VARIABLE, None)
        if saved is not None:
            os.environ[CLASSIC_ABC_VARIABLE] = saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--xbars", type=int, nargs="+", default=[1, 4, 8],
                        help="unit counts to build (default 1 4 8)")
    parser.add_argument("--config", type=Path, default=ROOT / "examples/fpga/ulx3s-bwq.toml")
    parser.add_argument("--board", default="ulx3s-85f")
    parser.add_argument("--core-mhz", type=float, default=100.0,
                        help="core clock asked (the Fmax column's constraint)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    parser.add_argument("--classic-abc-from", type=int, metavar="N",
                        help="build N units or more with BITLINE_SYNTH_CLASSIC_ABC=1")
    parser.add_argument("--out", type=Path, default=Path("build/fpga-table"),
                        help="build folders OUT/xbarsN (default build/fpga-table)")
    parser.add_argument("--reuse", action="store_true",
                        help="read an existing OUT/xbarsN/report.json instead of building")
    parser.add_argument("--json", action="store_true", help="print the reports' rows as JSON")
    args = parser.parse_args(argv)
    if any(units < 1 for units in args.xbars):
        parser.error(f"--xbars takes unit counts of 1 or more, not {args.xbars}")

    from bitline.hw.toolchain.fpga import FPGABuildError

    rows, failed = [], False
    for units in args.xbars:
        try:
            rows.append(row(build(units, args)))
        except (FPGABuildError, ValueError) as error:
            failed = True
            first = str(error).splitlines()[0]
            rows.append({"units": str(units), "critical path": f"failed: {first}"})
            print(f"error: {units} units: {error}", file=sys.stderr)
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
