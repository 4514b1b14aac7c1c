"""Reset in the middle of a job (docs/hardware.md, "Reset and recovery"), Amaranth simulator.

A reset clears registers, not memories: a job cut between its first swap and its last drain
left accumulated partial sums that the next job added to (found by the randomized RTL
regression, sim/cocotb/tb_regression.py: a rerun job's outputs were off). The accelerator
now sweeps the partial sums after such a reset; these tests reset a job mid-compute and rerun
it: outputs equal the golden arithmetic and the counters the model. A job started during the
sweep is refused (NOT_PROGRAMMED), not lost.
"""

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal

from bitline.hw.core.memories import program_memories
from bitline.hw.core.top import Accelerator
from bitline.hw.spec.registers import Ctrl, ErrorCode, Register, Status
from bitline.sim.amaranth import csr_read, csr_write, run_job

from support.accelerator import assert_counters_match_model, expected_outputs, make_layer
from support.configs import small_config
from support.simulation import simulate


def _reset_mid_job(strategy: str, reset_after: int, start_during_sweep: bool = False):
    config = small_config(n_xbars=2)
    rng = np.random.default_rng(41)
    layer, weight = make_layer(config, strategy, rng, n_outputs=6, n_inputs=11)
    x = rng.integers(0, 16, (3, layer.n_inputs))
    dut = Accelerator(config, memories=program_memories(config, [layer]))
    rst = Signal()
    top = ResetInserter({"sync": rst})(dut)
    seen = {}

    async def testbench(ctx):
        await csr_write(ctx, dut.csr, Register.LAYER, 0)
        await csr_write(ctx, dut.csr, Register.N_VECTORS, len(x))
        await csr_write(ctx, dut.csr, Register.CTRL, Ctrl.START)
        codes = x.reshape(-1)
        for cycle in range(reset_after):            # feed inputs, take no outputs
            ctx.set(dut.inputs.valid, int(cycle < len(codes)))
            ctx.set(dut.inputs.payload, [int(codes[min(cycle, len(codes) - 1)])])
            await ctx.tick()
        ctx.set(dut.inputs.valid, 0)
        seen["busy"] = await csr_read(ctx, dut.csr, Register.STATUS) & Status.BUSY
        ctx.set(rst, 1)
        await ctx.tick().repeat(2)
        ctx.set(rst, 0)
        seen["after_reset"] = await csr_read(ctx, dut.csr, Register.STATUS)
        if start_during_sweep:
            await csr_write(ctx, dut.csr, Register.CTRL, Ctrl.START)
            seen["refused"] = await csr_read(ctx, dut.csr, Register.STATUS)
            await csr_write(ctx, dut.csr, Register.CTRL, Ctrl.CLEAR_ERROR)
        for _ in range(4 * config.max_out_channels):
            if await csr_read(ctx, dut.csr, Register.STATUS) & Status.PROGRAMMED:
                break
        seen["job"] = await run_job(ctx, dut, 0, x, layer.n_outputs)

    simulate(top, testbench, deadline=1e-3)
    outputs, counters, status = seen["job"]
    return config, layer, weight, x, seen, outputs, counters, status


@pytest.mark.slow
def test_reset_mid_compute_then_rerun_is_exact():
    """Reset inside vector 1's compute (11 codes load vector 0, then the units compute); a
    job started during the sweep is refused; after it the rerun job is exact. ``slow``: ~30 s
    CPU in the Amaranth simulator (reset, sweep and two jobs of the whole accelerator)."""
    config, layer, weight, x, seen, outputs, counters, status = _reset_mid_job(
        "bwq", 24, start_during_sweep=True)
    assert seen["busy"]
    # STATUS right after the reset: idle, no error, not programmed while the sweep runs
    assert not seen["after_reset"] & (Status.BUSY | Status.DONE | Status.ERROR)
    assert not seen["after_reset"] & Status.PROGRAMMED
    refused = seen["refused"]
    assert refused & Status.ERROR and refused >> 8 == ErrorCode.NOT_PROGRAMMED
    assert not refused & Status.BUSY
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, x))
    assert_counters_match_model(config, layer, len(x), counters)
    assert status & Status.DONE and not status & Status.ERROR


@pytest.mark.slow
def test_layer_without_units_lasts_the_formula():
    """A layer whose weights are all zero has no unit (no cell, no entry); its job drained
    4 cycles before the formula's ``C_comp = 0`` said (found by the same regression: the
    cycle counter below the model with no stall). ``slow``: ~10 s CPU in the simulator."""
    from bitline.sw.mapping import map_matrix

    from support.accelerator import run_jobs, set_output_unit

    config = small_config(n_xbars=2)
    rng = np.random.default_rng(3)
    weight = np.zeros((5, 4), dtype=np.int64)
    layer = set_output_unit(map_matrix(weight, config, "isaac", act_bits=4, name="hollow"),
                            config, rng)
    assert layer.xbars.size == 0
    x = rng.integers(0, 16, (2, 4))
    ((outputs, counters, _),) = run_jobs(config, [layer], [(0, x, 5)])
    assert np.array_equal(outputs, expected_outputs(config, layer, weight, x))
    assert_counters_match_model(config, layer, len(x), counters)
