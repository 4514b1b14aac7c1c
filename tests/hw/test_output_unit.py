"""Output unit and inter-unit reduction against docs/contract.md section 2 and section 5."""

import numpy as np
import pytest

from bitline.hw.core.output_unit import OUTPUT_UNIT_STAGES, OutputUnit
from bitline.hw.core.reduction import Reduction
from bitline.hw.spec.encoding import MULT_BITS, SHIFT_BITS
from bitline.hw.spec.program import OutputMode

from support.configs import small_config
from support.simulation import simulate


def requant_model(t, mult, shift, zero_point, lo, hi):
    """clamp(z + ((t * M + rnd) >> s), lo, hi), rnd = 1 << (s - 1) (0 at s = 0), floor shift."""
    rnd = (1 << (shift - 1)) if shift else 0
    return min(max(zero_point + ((t * mult + rnd) >> shift), lo), hi)


@pytest.mark.parametrize("acc_bits", [16, 24, 40])
@pytest.mark.parametrize("mode", list(OutputMode))
def test_output_unit_matches_spec(acc_bits, mode):
    config = small_config(acc_bits=acc_bits, max_act_bits=8)
    rng = np.random.default_rng(acc_bits + mode)
    limit = 1 << (acc_bits - 2)
    cases = []
    for _ in range(60):
        acc = int(rng.integers(-limit, limit))
        bias = int(rng.integers(-limit, limit))
        mult = int(rng.integers(0, 1 << MULT_BITS))
        shift = int(rng.integers(0, 1 << SHIFT_BITS))
        cases.append((acc, bias, mult, shift))
    # rounding corner cases: exact halves, negative halves, shift 0 and the largest shift
    cases += [(5, 0, 1, 1), (-5, 0, 1, 1), (-4, 1, 3, 2), (7, -7, 9, 0), (-1, 0, 1, 63),
              (limit - 1, limit - 1, (1 << MULT_BITS) - 1, 63), (-limit, -limit, 1 << 15, 3)]
    zero_point, lo, hi = 37, 37, 201
    dut = OutputUnit(config)
    got, first = [], []

    async def testbench(ctx):
        ctx.set(dut.mode, mode)
        ctx.set(dut.zero_point, zero_point)
        ctx.set(dut.clamp_lo, lo)
        ctx.set(dut.clamp_hi, hi)
        for cycle in range(len(cases) + len(OUTPUT_UNIT_STAGES) + 1):
            if cycle < len(cases):
                acc, bias, mult, shift = cases[cycle]
                ctx.set(dut.inputs.valid, 1)
                ctx.set(dut.inputs.payload.acc, acc)
                ctx.set(dut.inputs.payload.param.bias, bias & ((1 << acc_bits) - 1))
                ctx.set(dut.inputs.payload.param.mult, mult)
                ctx.set(dut.inputs.payload.param.shift, shift)
            else:
                ctx.set(dut.inputs.valid, 0)
            if ctx.get(dut.outputs.valid):
                got.append(ctx.get(dut.outputs.payload))
                first.append(cycle)
            await ctx.tick()

    simulate(dut, testbench)
    # the latency the drain pipeline's timing counts: one cycle per output-unit stage
    assert first[0] == len(OUTPUT_UNIT_STAGES)
    assert first == list(range(len(OUTPUT_UNIT_STAGES), len(OUTPUT_UNIT_STAGES) + len(cases)))
    if mode == OutputMode.RAW:
        expected = [acc + bias for acc, bias, _, _ in cases]
        # raw values are acc_bits two's complement (the generator keeps them in range)
        expected = [((v + (1 << (acc_bits - 1))) % (1 << acc_bits)) - (1 << (acc_bits - 1))
                    for v in expected]
    else:
        expected = [requant_model(acc + bias, mult, shift, zero_point, lo, hi)
                    for acc, bias, mult, shift in cases]
    assert got == expected


def test_output_unit_agrees_with_golden_intops():
    from bitline.sw.integer.arith import output_unit

    config = small_config(acc_bits=32, max_act_bits=8)
    rng = np.random.default_rng(1)
    acc = rng.integers(-(1 << 20), 1 << 20, 50)
    bias = rng.integers(-(1 << 12), 1 << 12, 50)
    mult = rng.integers(1 << 14, 1 << 15, 50)
    shift = rng.integers(10, 30, 50)
    expected = output_unit(acc, bias, mult, shift, 0, 0, 255).tolist()
    dut = OutputUnit(config)
    got = []

    async def testbench(ctx):
        ctx.set(dut.clamp_hi, 255)
        for i in range(len(acc) + len(OUTPUT_UNIT_STAGES) + 1):
            ctx.set(dut.inputs.valid, int(i < len(acc)))
            if i < len(acc):
                ctx.set(dut.inputs.payload.acc, int(acc[i]))
                ctx.set(dut.inputs.payload.param.bias, int(bias[i]) & 0xFFFFFFFF)
                ctx.set(dut.inputs.payload.param.mult, int(mult[i]))
                ctx.set(dut.inputs.payload.param.shift, int(shift[i]))
            if ctx.get(dut.outputs.valid):
                got.append(ctx.get(dut.outputs.payload))
            await ctx.tick()

    simulate(dut, testbench)
    assert got == expected


@pytest.mark.parametrize("n_xbars, max_copies", [(1, 1), (3, 1), (8, 1), (5, 2), (8, 3)])
def test_reduction_skips_units_that_do_not_contribute(n_xbars, max_copies):
    config = small_config(n_xbars=n_xbars, max_copies=max_copies)
    rng = np.random.default_rng(n_xbars + 10 * max_copies)
    rounds = []
    for _ in range(30):
        values = rng.integers(-(1 << 18), 1 << 18, n_xbars)
        touched = rng.integers(0, 2, n_xbars)
        mask = int(rng.integers(0, 1 << n_xbars))
        lane = rng.integers(0, max_copies, n_xbars)   # each unit in one lane
        rounds.append((values, touched, mask, lane))
    dut = Reduction(config)
    got = []

    def in_lane(mask, lane, k):
        return [u for u in range(n_xbars) if mask >> u & 1 and lane[u] == k]

    async def testbench(ctx):
        for cycle in range(len(rounds) + 2):
            if cycle < len(rounds):
                values, touched, mask, lane = rounds[cycle]
                ctx.set(dut.units.valid, 1)
                for k in range(max_copies):
                    ctx.set(dut.masks[k], sum(1 << u for u in in_lane(mask, lane, k)))
                for unit in range(n_xbars):
                    ctx.set(dut.units.payload[unit].value, int(values[unit]))
                    ctx.set(dut.units.payload[unit].touched, int(touched[unit]))
                contributions = ctx.get(dut.contributions)
                selected = [u for u in range(n_xbars) if touched[u] and mask >> u & 1]
                assert contributions == len(selected)
            else:
                ctx.set(dut.units.valid, 0)
            if ctx.get(dut.sums.valid):
                got.append([ctx.get(dut.sums.payload[k]) for k in range(max_copies)])
            await ctx.tick()

    simulate(dut, testbench)
    expected = [[int(sum(int(values[u]) for u in in_lane(mask, lane, k) if touched[u]))
                 for k in range(max_copies)]
                for values, touched, mask, lane in rounds]
    assert got == expected
