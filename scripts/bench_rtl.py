"""Benchmark: simulation speed of the generated RTL running the digits CNN in cocotb.

Compiles the digits CNN (``--strategy``, default ``bwq`` with ``bwq3``) for
:data:`bitline.sim.rtl.DIGITS_CONFIG`, then runs ``--images`` test images end to end
(image load through the host interface, one layer job per compute layer) on:

* ``emulated`` -- the accelerator with its digital crossbar emulators (no Python in the
  simulation loop: the bench's stream source and sink feed the host streams);
* ``external + ideal model`` -- external crossbar ports answered by the cocotb crossbar model
  (exact codes, memoized);
* ``external + analog, chip only`` -- an ``AnalogDevice`` with the typical parameters but no
  read noise (variation, stuck cells, IR drop, ADC errors; memoized);
* ``external + analog, typical`` -- the typical parameters with read noise (one
  ``AnalogDevice.port_read`` per OU read).

and prints, per row, the design, the simulator, the Verilog generation time (wall and CPU;
0 when the design was cached), the Verilator build time (wall and CPU of its tools; "cached"
when the digest-named build was reused), the simulated cycles (image load and jobs), the
wall and CPU time of the inference inside the simulator and simulated cycles per wall and
per CPU second (on a shared machine the CPU figures are the ones that do not depend on the
load). Every run also checks every layer against the golden model / executor and every
job's counters against the performance model inside the bench.

    python scripts/bench_rtl.py [--images 3] [--strategy bwq] [--spec bwq3] [--skip-noise]
                                [--only emulated,external] [--cold] [--json]

``--cold`` uses a new empty build cache (``BITLINE_BUILD_DIR`` in a temporary folder), so
the generation and build figures are those of a first run; otherwise the user cache
(docs/verification.md, "Build cache") is used as is. ``BITLINE_SIM=icarus`` selects Icarus
(when installed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3, help="digits test images")
    parser.add_argument("--strategy", default="bwq")
    parser.add_argument("--spec", default="bwq3", help="quantization spec")
    parser.add_argument("--skip-noise", action="store_true",
                        help="skip the (slow) analog run with read noise")
    parser.add_argument("--only", default="",
                        help="comma-separated setups to run: emulated, external, chip, typical")
    parser.add_argument("--cold", action="store_true",
                        help="build in a new empty cache (cold generation and build times)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.cold:
        os.environ["BITLINE_BUILD_DIR"] = tempfile.mkdtemp(prefix="bench-rtl-cache-")

    from bitline.sim.analog_params import AnalogParams
    from bitline.sim.rtl import DIGITS_CONFIG, bench_design, job_capacity, run_spec
    from bitline.sw.bundle import write_bundle
    from bitline.sw.flow import calibration_inputs, compile_model
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model

    work = Path(tempfile.mkdtemp(prefix="bench-rtl-"))
    model = resolve_model("digits-cnn")
    calib, _ = calibration_inputs(model, "digits")
    compiled = compile_model(model, args.strategy, args.spec, DIGITS_CONFIG, calib,
                             xbars=DIGITS_CONFIG.n_xbars)
    bundle_dir = write_bundle(work / "digits", compiled.program, compiled.qmodel)
    x, _ = load_dataset("digits", "test")
    np.save(work / "x.npy", np.asarray(x[:args.images], dtype=np.float32))

    typical = AnalogParams.load("typical")
    setups = [
        ("emulated", "emulated", "emulated", None, "golden"),
        ("external", "external + ideal model", "external", None, "golden"),
        ("chip", "external + analog, chip only", "external",
         typical.replace(read_noise=0.0), "executor"),
        ("typical", "external + analog, typical", "external", typical, "executor"),
    ]
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if only - {setup[0] for setup in setups}:
        parser.error(f"--only: unknown setups {sorted(only - {s[0] for s in setups})}")
    setups = [setup[1:] for setup in setups if (setup[0] in only if only else
                                                not (args.skip_noise and setup[0] == "typical"))]

    rows = []
    for label, crossbar, params, check in setups:
        start, start_cpu = time.perf_counter(), time.process_time()
        design = bench_design(DIGITS_CONFIG, crossbar)
        generate = time.perf_counter() - start
        generate_cpu = time.process_time() - start_cpu
        run_dir = work / label.replace(" ", "_").replace(",", "").replace("+", "")
        spec = {"runs": [{"bundle": str(bundle_dir), "input": str(work / "x.npy"),
                          "result": str(run_dir / "result.npz"), "check": check,
                          "counters": True}],
                "analog": params.to_dict() if params is not None else None, "seed": 1,
                "max_vectors": job_capacity(design, compiled.program)}
        bench = run_spec(design, spec, work_dir=run_dir)
        with np.load(run_dir / "result.npz") as data:
            cycles = int(data["simulated_cycles"])
            wall = float(data["wall_seconds"])
            cpu = float(data["cpu_seconds"])
            job_cycles = int(data["jobs/cycles"].sum())
        rows.append({"design": label, "simulator": bench.simulator,
                     "verilog_mb": round(design.verilog.stat().st_size / 1e6, 2),
                     "generate_s": round(generate, 1), "generate_cpu_s": round(generate_cpu, 1),
                     "build_s": round(bench.build_seconds, 1),
                     "build_cpu_s": round(bench.build_cpu_seconds, 1), "cached": bench.cached,
                     "images": args.images, "simulated_cycles": cycles,
                     "job_cycles": job_cycles, "wall_s": round(wall, 2),
                     "cpu_s": round(cpu, 2),
                     "cycles_per_s": round(cycles / wall) if wall else 0,
                     "cycles_per_cpu_s": round(cycles / cpu) if cpu else 0})
        print(f"{label}: {cycles:,} cycles in {wall:.1f} s", file=sys.stderr)

    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"digits CNN ({args.strategy}, {args.spec}), {args.images} images, "
                        f"{DIGITS_CONFIG.n_xbars} units of {DIGITS_CONFIG.rows}x"
                        f"{DIGITS_CONFIG.cols}")
    for column in ("design", "simulator", "Verilog MB", "generate s (CPU)", "build s (CPU)",
                   "simulated cycles", "of which jobs", "run s (CPU)", "cycles/s",
                   "cycles/CPU s"):
        table.add_column(column, justify="left" if column in ("design", "simulator")
                         else "right")
    for row in rows:
        generated = (f"{row['generate_s']:.1f} ({row['generate_cpu_s']:.1f})"
                     if row["generate_s"] >= 0.5 else "cached")
        built = ("cached" if row["cached"]
                 else f"{row['build_s']:.0f} ({row['build_cpu_s']:.0f})")
        table.add_row(row["design"], row["simulator"], f"{row['verilog_mb']:.1f}", generated,
                      built, f"{row['simulated_cycles']:,}", f"{row['job_cycles']:,}",
                      f"{row['wall_s']:.2f} ({row['cpu_s']:.2f})",
                      f"{row['cycles_per_s']:,}", f"{row['cycles_per_cpu_s']:,}")
    Console(width=150).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
