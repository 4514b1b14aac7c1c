"""cocotb end to end on the small design: read noise, corrupted images, the checker.

The accelerator is :data:`support.configs.E2E_SMALL_CONFIG`: three 36 x 128 crossbars whose
four ADCs are shared by the OU's eight columns (two conversions per read) behind a two-cycle
ADC, external crossbar ports answered by the Python crossbar model. A typical chip with read
noise under every strategy (equal to the executor with the same seed), corrupted images
(magic, header / table / section CRCs, a record naming a missing unit, another config's
digest) reported by the hardware's STATUS error code, and a broken expected value that must
make the checker fail. With ``BITLINE_SIM=icarus`` these run on Icarus Verilog 11 too.
Shared pieces: ``support.e2e``.
"""

from __future__ import annotations

import pytest

from bitline.hw.spec.program import STRATEGIES
from bitline.sim.cocotb.runner import BenchFailure
from bitline.sim.rtl import run_spec

from support.e2e import report, run_cli, spec_for

pytestmark = pytest.mark.cocotb


@pytest.mark.slow
def test_every_strategy_read_noise_equals_executor(workloads, designs, tmp_path):
    """Typical chip with read noise, shared ADCs: read numbers match the executor's."""
    from bitline.sim.analog_params import AnalogParams

    design = designs("small")
    items = [workloads.random("small", strategy) for strategy in STRATEGIES]
    typical = AnalogParams.load("typical").to_dict()
    spec = spec_for(design, items, "executor", analog=typical, seed=11)
    report("strategies analog", run_spec(design, spec, work_dir=tmp_path))


def test_corrupted_image_is_reported_by_the_hardware(workloads, designs, tmp_path):
    """Magic, header, table, cells, last section, unit, config: STATUS error codes."""
    design = designs("small")
    item = workloads.random("small", "bwq")
    spec = spec_for(design, [item], "none", corrupt=str(item[0]))
    report("corrupted image", run_spec(design, spec, test="corrupted_image",
                                       work_dir=tmp_path))


def test_checker_fails_on_a_broken_expected_value(workloads, designs, tmp_path):
    """One expected value off by one: the bench must fail (the checker can fail)."""
    design = designs("small")
    spec = spec_for(design, [workloads.random("small", "ivq-temporal")], "golden",
                    break_expected=True)
    with pytest.raises(BenchFailure, match="1 of 1 cocotb tests failed") as failure:
        run_spec(design, spec, work_dir=tmp_path)
    assert failure.value.result.failed == 1


def test_cli_run_rtl_backend_analog(workloads, tmp_path):
    """`--analog typical --seed 5`: the RTL's output equals the executor's on that chip."""
    import numpy as np

    from bitline.sim.analog import AnalogDevice
    from bitline.sim.analog_params import AnalogParams
    from bitline.sim.executor import run_executor
    from bitline.sw.bundle import read_bundle

    bundle_dir, _, x_path = workloads.random("small", "bwq")
    output = run_cli("run", bundle_dir, "-i", x_path, "-o", tmp_path / "y.npz", "--backend",
                     "rtl", "--analog", "typical", "--seed", "5")
    assert "analog model" in output
    bundle = read_bundle(bundle_dir)
    device = AnalogDevice(bundle.program.config, AnalogParams.load("typical"), seed=5)
    expected = run_executor(bundle.program, bundle.qmodel, np.load(x_path), device=device)
    with np.load(tmp_path / "y.npz") as y:
        assert np.array_equal(y["output_int"], expected.output_int)
