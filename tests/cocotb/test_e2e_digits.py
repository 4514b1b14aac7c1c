"""cocotb end to end on the digits design: compiled networks on the generated Verilog.

The accelerator is :data:`bitline.sim.rtl.DIGITS_CONFIG` (ten 72 x 512 crossbars, external
crossbar ports answered by the Python crossbar model): the digits CNN ideal (every layer
equal to the golden model) and on a seeded analog chip (equal to the executor with the same
seed), and one random network per strategy (layers equal to golden, every job's counters
equal to the performance model). Verilator only: the design is too slow on Icarus
(docs/verification.md, "Icarus"). Shared pieces: ``support.e2e``.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.spec.program import STRATEGIES
from bitline.sim.rtl import run_spec

from support.e2e import CHIP_ONLY, report, spec_for, verilator_only

pytestmark = [pytest.mark.cocotb, pytest.mark.slow, verilator_only]


def test_digits_cnn_ideal_bit_exact_to_golden(workloads, designs, tmp_path):
    """3 test images: all 8 layers equal the golden model, 5 jobs' counters the model."""
    design = designs("digits")
    result = run_spec(design, spec_for(design, [workloads.digits()], "golden"),
                      work_dir=tmp_path)
    report("digits-cnn ideal", result)


def test_digits_cnn_analog_equals_executor(workloads, designs, tmp_path):
    """Variation, stuck cells, IR drop and ADC errors: equal to the executor, same seed."""
    design = designs("digits")
    bundle_dir, program, x_path = workloads.digits()
    np.save(tmp_path / "x1.npy", np.load(x_path)[:1])
    spec = spec_for(design, [(bundle_dir, program, tmp_path / "x1.npy")], "executor",
                    analog=CHIP_ONLY, seed=7)
    report("digits-cnn analog", run_spec(design, spec, work_dir=tmp_path))


def test_every_strategy_random_shapes_golden_and_counters(workloads, designs, tmp_path):
    """Five strategies, random conv+pool+gemm shapes: layers == golden, counters == model."""
    design = designs("digits")
    items = [workloads.random("digits", strategy) for strategy in STRATEGIES]
    report("strategies ideal", run_spec(design, spec_for(design, items, "golden"),
                                        work_dir=tmp_path))
