"""`bitline sweep` on the study engine: the same tables as one serial loop over the chips."""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.spec.config import preset
from bitline.sim.analog import AnalogDevice
from bitline.sim.analog_params import AnalogParams
from bitline.sim.dse import Engine
from bitline.sim.executor import run_executor
from bitline.sim.golden import run_golden
from bitline.sim.sweep import format_tables, nonideal_sweep
from bitline.sw.datasets import load_dataset
from bitline.sw.flow import DEFAULT_SPECS, compile_model
from bitline.sw.models import resolve_model

pytest.importorskip("sklearn")
pytest.importorskip("distributed")

ARGS = dict(strategies=["bwq"], variations=[0.0, 0.3], stuck=[0.0, 0.1], samples=10, seed=2,
            chips=2)


def _reference() -> dict:
    """The sweep as it was computed before the engine: one loop, all images per chip."""
    x, y = load_dataset("digits", "test")
    keep = np.sort(np.random.default_rng(2).choice(len(y), 10, replace=False))
    x, y = x[keep], y[keep]
    compiled = compile_model(resolve_model("digits-cnn"), "bwq", DEFAULT_SPECS["bwq"],
                             preset("bwq"), load_dataset("digits", "calib")[0])
    ideal = np.asarray(run_golden(compiled.qmodel, x).output).reshape(10, -1).argmax(1)
    points = {}
    for variation, rate in ((0.0, 0.0), (0.3, 0.0), (0.0, 0.1)):
        params = AnalogParams.ideal().replace(variation=variation, stuck_at_0=rate / 2,
                                              stuck_at_1=rate / 2)
        accuracies, agreements = [], []
        for chip in range(2):
            device = AnalogDevice(compiled.program.config, params, seed=2 + chip)
            out = run_executor(compiled.program, compiled.qmodel, x, device=device).output
            predicted = np.asarray(out).reshape(10, -1).argmax(1)
            accuracies.append(float(np.mean(predicted == y)))
            agreements.append(float(np.mean(predicted == ideal)))
        points[variation, rate] = (float(np.mean(accuracies)), accuracies,
                                   float(np.mean(agreements)))
    return {"ideal": float(np.mean(ideal == y)), "points": points}


def _numbers(report: dict) -> dict:
    return {"ideal": report["ideal"]["bwq"],
            "points": {(p["variation"], p["stuck"]): (p["accuracy"], p["accuracies"],
                                                      p["agreement"])
                       for p in report["points"]}}


@pytest.mark.slow   # the reference loop, a serial and a Dask sweep: ~10 s idle, 45 s loaded
def test_sweep_on_a_local_cluster_equals_the_serial_loop():
    reference = _reference()
    serial = nonideal_sweep("digits-cnn", **ARGS, engine=Engine("serial"))
    assert _numbers(serial) == reference
    # two workers, the images split in batches of 4 (3 tasks per chip): the same tables
    dask = nonideal_sweep("digits-cnn", **ARGS, batch=4,
                          engine=Engine("local", workers=2, processes=False))
    assert _numbers(dask) == reference
    assert format_tables(dask) == format_tables(serial)
    assert format_tables(dask, "agreement") == format_tables(serial, "agreement")
    # the stuck chips are not all perfect: the comparison is not vacuous
    assert reference["points"][0.0, 0.1][2] < 1.0


def test_batches_refused_with_read_noise_and_bad_values():
    noisy = AnalogParams.ideal().replace(read_noise=0.01)
    with pytest.raises(ValueError, match="--batch 3 splits the 5 images, but read_noise = 0.01"):
        nonideal_sweep("digits-cnn", strategies=["bwq"], variations=[0], stuck=[0],
                       samples=5, params=noisy, batch=3, engine=Engine("serial"))
    with pytest.raises(ValueError, match="--batch must be a positive integer, not 0"):
        nonideal_sweep("digits-cnn", strategies=["bwq"], variations=[0], stuck=[0],
                       samples=5, batch=0, engine=Engine("serial"))


def test_task_images_are_loaded_once_per_process_and_read_only():
    from bitline.sim import sweep

    payload = {"dataset": "digits", "samples": 7, "seed": 3}
    first = sweep._task_images(payload)
    assert sweep._task_images(dict(payload)) is first and not first.flags.writeable
    x, _, _ = sweep.test_images("digits", 7, 3)
    np.testing.assert_array_equal(first, x)
    x[0] += 1                                   # the caller's copy stays its own
    assert sweep._task_images(payload)[0].tolist() != x[0].tolist()
