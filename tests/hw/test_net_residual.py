"""Residual add against tensor_ops.add, with random pauses on both inputs and the output.

Random zero points, multipliers (either sign, ``|m| < 2**15``), common shifts 0..63 and
clamps, over random code pairs plus the corners (exact rounding halves of either sign,
shift 0, the largest shift, both clamps); every output is compared with
:func:`bitline.sw.integer.tensor_ops.add` computed on the host.
"""

import numpy as np
import pytest
from bitline.hw.net import NetGeometry, ResidualAdd
from bitline.hw.net.residual import RESIDUAL_STAGES
from bitline.sw.integer import tensor_ops
from bitline.sw.integer.qmodel import ActParams
from support.net_bench import receive, send
from support.simulation import simulate

GEOMETRY = NetGeometry(act_bits=8)


def run_add(qa, qb, params, *, seed, pause=0.3):
    dut = ResidualAdd(GEOMETRY)
    rng = np.random.default_rng(seed)
    got = []

    async def control(ctx):
        for name, value in params.items():
            ctx.set(getattr(dut, name), value)
        got.extend(await receive(ctx, dut.outputs, len(qa), rng, pause))

    async def feed_a(ctx):
        await send(ctx, dut.a, qa, np.random.default_rng(seed + 1), pause)

    async def feed_b(ctx):
        await send(ctx, dut.b, qb, np.random.default_rng(seed + 2), pause)

    simulate(dut, control, feed_a, feed_b)
    return np.array(got)


def golden(qa, qb, params):
    bits = GEOMETRY.act_bits
    return tensor_ops.add(qa, qb, ActParams(bits, 1.0, params["zero_a"]),
                          ActParams(bits, 1.0, params["zero_b"]),
                          [params["mult_a"], params["mult_b"]],
                          [params["shift"]] * 2, params["zero_point"],
                          params["clamp_lo"], params["clamp_hi"])


def random_params(rng, shift):
    top = (1 << GEOMETRY.act_bits) - 1
    lo, hi = sorted(int(v) for v in rng.integers(0, top + 1, size=2))
    return dict(zero_a=int(rng.choice([0, 128, rng.integers(0, top + 1)])),
                zero_b=int(rng.choice([0, 128, rng.integers(0, top + 1)])),
                mult_a=int(rng.integers(-(1 << 15) + 1, 1 << 15)),
                mult_b=int(rng.integers(-(1 << 15) + 1, 1 << 15)),
                shift=shift, zero_point=int(rng.integers(0, top + 1)),
                clamp_lo=lo, clamp_hi=hi)


@pytest.mark.parametrize("shift", [0, 1, 9, 15, 23, 63])
def test_add_matches_tensor_ops(shift):
    rng = np.random.default_rng(600 + shift)
    params = random_params(rng, shift)
    if shift in (9, 15):  # ranges where outputs land inside the clamp, not only at it
        params.update(mult_a=int(rng.integers(1 << 13, 1 << 15)),
                      mult_b=int(rng.integers(1 << 13, 1 << 15)), clamp_lo=0, clamp_hi=255,
                      shift=shift + 7)
    qa = rng.integers(0, 256, size=40)
    qb = rng.integers(0, 256, size=40)
    got = run_add(qa, qb, params, seed=shift)
    np.testing.assert_array_equal(got, golden(qa, qb, params))


def test_rounding_halves_of_either_sign_round_up():
    """ma*(qa-za) + mb*(qb-zb) = +-1, +-3 at shift 1: halves go up (+inf), not to even."""
    params = dict(zero_a=10, zero_b=0, mult_a=1, mult_b=0, shift=1, zero_point=100,
                  clamp_lo=0, clamp_hi=255)
    qa = np.array([11, 9, 13, 7, 10])
    qb = np.zeros(5, dtype=np.int64)
    got = run_add(qa, qb, params, seed=3, pause=0)
    assert got.tolist() == [101, 100, 102, 99, 100]
    np.testing.assert_array_equal(got, golden(qa, qb, params))


def test_full_rate_and_latency():
    """Without pauses one result per cycle, len(RESIDUAL_STAGES) cycles after its pair."""
    dut = ResidualAdd(GEOMETRY)
    params = dict(zero_a=0, zero_b=0, mult_a=1, mult_b=1, shift=0, zero_point=0,
                  clamp_lo=0, clamp_hi=255)
    seen = []

    async def testbench(ctx):
        for name, value in params.items():
            ctx.set(getattr(dut, name), value)
        ctx.set(dut.outputs.ready, 1)
        for cycle in range(20):
            ctx.set(dut.a.valid, cycle < 8)
            ctx.set(dut.b.valid, cycle < 8)
            ctx.set(dut.a.payload, cycle)
            ctx.set(dut.b.payload, 10 * cycle)
            if ctx.get(dut.outputs.valid):
                seen.append((cycle, int(ctx.get(dut.outputs.payload))))
            await ctx.tick()

    simulate(dut, testbench)
    stages = len(RESIDUAL_STAGES)
    assert seen == [(stages + k, 11 * k) for k in range(8)]
