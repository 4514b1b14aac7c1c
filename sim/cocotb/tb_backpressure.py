"""cocotb bench: a compiled network end to end, with and without random backpressure.

The design is the randomized regression's
:class:`~bitline.sim.cocotb.tb_regression.RegressionTop`: the harness
(:class:`~bitline.sim.cocotb.harness.BenchTop`, driven by
:class:`~bitline.sim.cocotb.bench_host.BenchHost`) with seeded pause generators
(:class:`~bitline.sim.cocotb.tb_regression.Throttle`) between it and the accelerator, so
backpressure costs no Python per cycle. The host is the project's host driver
(:class:`~bitline.sw.host.driver.HostDriver`, in a :func:`cocotb.task.bridge` thread); layers
with copies go out as lane beats (each copy's share in its lane) and come back in vector
order, as on every transport.

The bundle runs once per entry of ``runs``, on the same chip, each with its own pause
settings: ``throttle`` ``null`` (the host never stalls) or ``{"seed", "rate": {stream:
r}, "mask": {stream: m}}`` (a pause starts in a cycle with probability ``r / 256`` and
lasts ``1 .. m + 1`` cycles; ``program`` and ``inputs`` pauses hold ``valid`` low,
``outputs`` pauses hold ``ready`` low). Every run's layers are compared with the integer
golden model here; its jobs' counters are saved (``result``, the
:mod:`~bitline.sim.cocotb.tb_accelerator` format) for the pytest side to compare with the
performance model and the executor -- across runs, since only the stall cycles (and the
cycles they add) may differ. The crossbar ports' OU reads are checked against the
OU_READS counter job by job (``external`` designs).

``BITLINE_RUN`` JSON: ``design`` (``config``, ``crossbar``, ``harness``), ``bundle``,
``input`` (``.npy``), ``max_vectors``, ``runs`` (``name``, ``throttle``, ``result``).
"""

from __future__ import annotations

from pathlib import Path

import cocotb
import numpy as np

from bitline.sim.cocotb.bench_host import CocotbTransport
from bitline.sim.cocotb.tb_accelerator import (
    InferenceChecker, JobWatch, _bench, _save_result, load_spec, reference_layers, timed_run,
)
from bitline.sim.cocotb.tb_regression import STREAMS
from bitline.sw.bundle import read_bundle
from bitline.sw.host.driver import Device, HostDriver

__all__ = ["set_throttle"]


def _drive_controls(dut, settings: dict | None, load: int) -> None:
    settings = settings or {}
    dut.throttle_seed.value = int(settings.get("seed", 0))
    dut.outputs_hold.value = 0
    for name in STREAMS:
        getattr(dut, f"{name}_rate").value = int(settings.get("rate", {}).get(name, 0))
        getattr(dut, f"{name}_mask").value = int(settings.get("mask", {}).get(name, 0))
    dut.throttle_load.value = load


async def set_throttle(dut, edge, settings: dict | None) -> None:
    """Load the pause generators' seed, rates and lengths (``None``: no pauses)."""
    _drive_controls(dut, settings, 1)
    await edge
    dut.throttle_load.value = 0


@cocotb.test()
async def inference_under_backpressure(dut):
    """Run the bundle once per pause setting; every layer must equal the golden model."""
    spec = load_spec()
    _drive_controls(dut, None, 0)           # no pauses from the first cycle on
    config, host, crossbars, _, _ = await _bench(dut, spec)
    bundle = read_bundle(spec["bundle"])
    if bundle.program.config != config:
        raise ValueError(f"bundle {spec['bundle']} was compiled for another config than the "
                         f"design's")
    x = np.load(spec["input"], allow_pickle=False)
    expected = reference_layers(bundle, x, "golden", None, 0)
    checker = InferenceChecker(dut._log)
    device = Device(CocotbTransport(host))
    runs = spec["runs"]
    for index, run in enumerate(runs):
        await set_throttle(dut, host.edge, run.get("throttle"))
        label = f"run {run['name']} ({Path(spec['bundle']).name})"
        watch = JobWatch(label, crossbars, checker, host, None, index, len(runs))
        if crossbars is not None:
            crossbars.model.restart_reads()
        driver = HostDriver.from_bundle(bundle, device, max_vectors=spec.get("max_vectors"),
                                        progress=watch)
        result, cycles, wall, cpu = await timed_run(host, driver, x)
        stalls = sum(job.counters["stall_cycles"] for job in result.jobs)
        dut._log.info("%s: %d samples, %d jobs, %d simulated cycles (%d stall cycles) in "
                      "%.1f s wall, %.1f s CPU", label, len(x), len(result.jobs), cycles,
                      stalls, wall, cpu)
        _save_result(run["result"], result, cycles, wall, cpu)
        checker.compare_layers(label, result.layers, expected)
    await set_throttle(dut, host.edge, None)
    if crossbars is not None:
        crossbars.stop()
        assert not crossbars.checker.violations, crossbars.checker.violations[0]
    checker.check()
