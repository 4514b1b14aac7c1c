"""Pool unit behind the im2col reader against the golden pooling of tensor_ops.

Random maps and windows (kernel, stride, padding) for max pool, average pool (padding
excluded from the count, or included with the zero point) and global average pool, with
random pauses on the buffer's write stream and random backpressure on the output; every
output code is compared with :mod:`bitline.sw.integer.tensor_ops` on the host. The codes
include the extremes (0 and the largest code) and windows whose sums sit on a rounding
half, so the divider's top and bottom quotient bits and the round-half-up are exercised.
"""

import numpy as np
import pytest
from bitline.hw.net import NetGeometry, WindowParams
from bitline.hw.net.pool import POOL_AVERAGE, POOL_MAX
from bitline.sw.frontend.im2col import conv_output_hw
from bitline.sw.integer import tensor_ops
from support.net_bench import MapBench, receive, start_window, write_map
from support.simulation import simulate

GEOMETRY = NetGeometry(act_bits=5, depth=256, max_channels=4, max_height=6, max_width=6)


def run_pool(codes, params, *, mode, include_pad=False, seed=0, pause=0.3):
    """Pool ``codes`` ``(C, H, W)`` through the bench; outputs in producer order."""
    dut = MapBench(GEOMETRY, pool=True)
    rng = np.random.default_rng(seed)
    out_h, out_w = params.out_hw()
    count = out_h * out_w * params.channels
    got = []

    async def testbench(ctx):
        ctx.set(dut.pool.mode, mode)
        ctx.set(dut.pool.count_include_pad, int(include_pad))
        await write_map(ctx, dut.buffer, codes, params.base, rng, linear=bool(seed % 2))
        await start_window(ctx, dut.reader, params)
        got.extend(await receive(ctx, dut.outputs, count, rng, pause))
        for _ in range(dut.pool.latency + 2):  # nothing more comes out
            ctx.set(dut.outputs.ready, 1)
            assert not ctx.get(dut.outputs.valid)
            await ctx.tick()

    simulate(dut, testbench)
    # producer order (pixel-major, channels innermost) -> (C, OH, OW)
    return np.array(got).reshape(out_h * out_w, params.channels).T.reshape(
        params.channels, out_h, out_w)


def random_pool(rng, *, zero_point=0):
    while True:
        channels = int(rng.integers(1, GEOMETRY.max_channels + 1))
        height, width = (int(v) for v in rng.integers(2, GEOMETRY.max_height + 1, size=2))
        kernel = tuple(int(v) for v in rng.integers(1, 4, size=2))
        stride = tuple(int(v) for v in rng.integers(1, 3, size=2))
        # ONNX: pads smaller than the kernel (no window of padding only)
        pads = tuple(int(rng.integers(0, kernel[i % 2])) for i in range(4))
        try:
            conv_output_hw(height, width, kernel, stride, pads)
        except ValueError:
            continue
        base = int(rng.integers(0, GEOMETRY.depth - channels * height * width + 1))
        return WindowParams(channels, height, width, kernel, stride, pads,
                            pad_value=zero_point, base=base)


def random_codes(rng, shape):
    """Codes with many extremes (0 and the largest code) besides uniform ones."""
    top = (1 << GEOMETRY.act_bits) - 1
    codes = rng.integers(0, top + 1, size=shape)
    extreme = rng.random(shape)
    codes[extreme < 0.15] = 0
    codes[extreme > 0.85] = top
    return codes


def window(params):
    return dict(kernel=params.kernel, stride=params.stride, pads=params.pads)


@pytest.mark.parametrize("seed", range(5))
def test_max_pool(seed):
    rng = np.random.default_rng(300 + seed)
    params = random_pool(rng)  # padding code 0 (the contract's max-pool padding)
    codes = random_codes(rng, (params.channels, params.height, params.width))
    got = run_pool(codes, params, mode=POOL_MAX, seed=seed)
    np.testing.assert_array_equal(got, tensor_ops.maxpool(codes[None], **window(params))[0])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("include_pad", [False, True])
def test_average_pool(seed, include_pad):
    rng = np.random.default_rng(400 + seed + 10 * include_pad)
    zero_point = int(rng.integers(0, 1 << GEOMETRY.act_bits)) if include_pad else 0
    params = random_pool(rng, zero_point=zero_point)
    codes = random_codes(rng, (params.channels, params.height, params.width))
    got = run_pool(codes, params, mode=POOL_AVERAGE, include_pad=include_pad, seed=seed)
    expected = tensor_ops.avgpool(codes[None], **window(params),
                                  count_include_pad=include_pad, zero_point=zero_point)[0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", range(3))
def test_global_average_pool(seed):
    """The largest window the geometry allows (a whole 6 x 6 plane), flatten record."""
    rng = np.random.default_rng(500 + seed)
    channels = int(rng.integers(1, GEOMETRY.max_channels + 1))
    height = GEOMETRY.max_height - seed
    codes = random_codes(rng, (channels, height, GEOMETRY.max_width))
    if seed == 0:
        codes[0] = (1 << GEOMETRY.act_bits) - 1  # the largest sum the counters hold
    params = WindowParams.flatten(*codes.shape, base=seed * 7)
    got = run_pool(codes, params, mode=POOL_AVERAGE, seed=seed)
    np.testing.assert_array_equal(got, tensor_ops.global_avgpool(codes[None])[0])


def test_round_half_up_on_exact_halves():
    """Windows of two codes whose sum is odd: a half, rounded up (not to even)."""
    codes = np.array([[[0, 1, 2, 3, 30, 31]]])
    params = WindowParams(1, 1, 6, kernel=(1, 2), stride=(1, 2))
    got = run_pool(codes, params, mode=POOL_AVERAGE, pause=0)
    assert got.reshape(-1).tolist() == [1, 3, 31]   # 0.5 -> 1, 2.5 -> 3, 30.5 -> 31
    np.testing.assert_array_equal(got, tensor_ops.avgpool(codes[None], **window(params))[0])
