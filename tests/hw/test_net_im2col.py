"""Activation buffer and im2col reader against the contract's im2col and flatten orders.

Each case writes a random ``C x H x W`` code map into the buffer (producer order or C
order, random pauses), runs the reader over a random window record (kernel, stride,
padding with the input zero point, dilation) with random backpressure, and compares every
element with :func:`bitline.sw.frontend.im2col.im2col` (which
:func:`bitline.sw.integer.arith.layer_columns` runs) computed on the host, the padding
flags with an im2col of a map of ones, and the window / vector / layer ends with the loop
nest's counts.
"""

import numpy as np
import pytest
from bitline.hw.net import Im2colReader, NetGeometry, WindowParams
from bitline.sw.frontend.im2col import conv_output_hw, im2col
from bitline.sw.integer import tensor_ops
from support.net_bench import MapBench, receive, start_window, write_map
from support.simulation import simulate

GEOMETRY = NetGeometry(act_bits=6, depth=256, max_channels=4, max_height=7, max_width=7)
FIELDS = ("code", "pad", "window_last", "vector_last", "last")


def random_window(rng, geometry=GEOMETRY) -> WindowParams:
    """A valid random conv window over a random map that fits the geometry."""
    while True:
        channels = int(rng.integers(1, geometry.max_channels + 1))
        height = int(rng.integers(2, geometry.max_height + 1))
        width = int(rng.integers(2, geometry.max_width + 1))
        kernel = tuple(int(k) for k in rng.integers(1, 4, size=2))
        stride = tuple(int(s) for s in rng.integers(1, 3, size=2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, size=2))
        pads = tuple(int(p) for p in rng.integers(0, 3, size=4))
        try:
            conv_output_hw(height, width, kernel, stride, pads, dilation)
        except ValueError:
            continue
        base = int(rng.integers(0, geometry.depth - channels * height * width + 1))
        return WindowParams(channels, height, width, kernel, stride, pads, dilation,
                            pad_value=int(rng.integers(0, 1 << geometry.act_bits)), base=base)


def expected_elements(codes: np.ndarray, params: WindowParams) -> list[dict]:
    """The reader's elements per the golden im2col; pads from an im2col of ones."""
    window = dict(kernel=params.kernel, stride=params.stride, pads=params.pads,
                  dilation=params.dilation)
    values = im2col(codes[None], pad_value=params.pad_value, **window)[0]
    inside = im2col(np.ones_like(codes)[None], pad_value=0, **window)[0]
    pixels, length = values.shape
    taps = params.kernel[0] * params.kernel[1]
    elements = []
    for p in range(pixels):
        for i in range(length):
            elements.append(dict(code=int(values[p, i]), pad=int(inside[p, i] == 0),
                                 window_last=int((i + 1) % taps == 0),
                                 vector_last=int(i + 1 == length),
                                 last=int(i + 1 == length and p + 1 == pixels)))
    return elements


def run_reader(codes, params, seed, *, linear, pause=0.3):
    dut = MapBench(GEOMETRY)
    rng = np.random.default_rng(seed)
    count = len(expected_elements(codes, params))
    got = {}

    async def testbench(ctx):
        await write_map(ctx, dut.buffer, codes, params.base, rng, linear=linear)
        await start_window(ctx, dut.reader, params)
        assert ctx.get(dut.reader.busy)
        got["elements"] = await receive(ctx, dut.outputs, count, rng, pause, FIELDS)
        await ctx.tick()
        got["busy_after"] = ctx.get(dut.reader.busy)

    simulate(dut, testbench)
    return got


@pytest.mark.parametrize("seed", range(12))
def test_reader_streams_the_contract_im2col(seed):
    rng = np.random.default_rng(100 + seed)
    params = random_window(rng)
    codes = rng.integers(0, 1 << GEOMETRY.act_bits,
                         size=(params.channels, params.height, params.width))
    got = run_reader(codes, params, seed, linear=bool(seed % 2))
    expected = expected_elements(codes, params)
    assert got["elements"] == expected, params
    assert not got["busy_after"]


def test_reader_full_rate_without_backpressure():
    """Without pauses: the first element 4 cycles after `start` (SETUP, FIRST, read), then
    one element per cycle."""
    params = WindowParams(2, 5, 4, kernel=(3, 2), stride=(2, 1), pads=(1, 0, 1, 1),
                          dilation=(1, 2), pad_value=9, base=17)
    codes = np.arange(40).reshape(2, 5, 4) % 64
    dut = MapBench(GEOMETRY)
    rng = np.random.default_rng(0)
    expected = expected_elements(codes, params)
    cycles = []

    async def testbench(ctx):
        await write_map(ctx, dut.buffer, codes, params.base, rng, linear=True, pause=0)
        await start_window(ctx, dut.reader, params)
        ctx.set(dut.outputs.ready, 1)
        got = []
        for cycle in range(len(expected) + 10):
            if ctx.get(dut.outputs.valid):
                got.append(int(ctx.get(dut.outputs.payload.code)))
                cycles.append(cycle)
            await ctx.tick()
        assert got == [element["code"] for element in expected]

    simulate(dut, testbench)
    assert cycles == list(range(3, 3 + len(expected)))


@pytest.mark.parametrize("seed", range(2))
def test_flatten_record_streams_the_map_in_flatten_order(seed):
    rng = np.random.default_rng(200 + seed)
    codes = rng.integers(0, 1 << GEOMETRY.act_bits, size=(3, 4, 5))
    params = WindowParams.flatten(3, 4, 5, base=int(rng.integers(0, 196)))
    got = run_reader(codes, params, seed, linear=False)
    flat = tensor_ops.flatten(codes[None])[0]
    assert [element["code"] for element in got["elements"]] == flat.tolist()
    assert [element["last"] for element in got["elements"]] == [0] * 59 + [1]
    # one window per channel (the global average pool's), one vector (a gemm's input)
    assert [i for i, element in enumerate(got["elements"]) if element["window_last"]] == \
        [19, 39, 59]
    assert sum(element["vector_last"] for element in got["elements"]) == 1


def test_window_output_size_is_conv_output_hw():
    rng = np.random.default_rng(7)
    for _ in range(300):
        size = tuple(int(v) for v in rng.integers(1, 9, size=2))
        kernel = tuple(int(v) for v in rng.integers(1, 5, size=2))
        stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
        pads = tuple(int(v) for v in rng.integers(0, 3, size=4))
        params = WindowParams(1, *size, kernel, stride, pads, dilation)
        try:
            expected = conv_output_hw(*size, kernel, stride, pads, dilation)
        except ValueError:
            with pytest.raises(ValueError, match="spans more than the padded input"):
                params.out_hw()
            continue
        assert params.out_hw() == expected


@pytest.mark.parametrize("change, message", [
    (dict(channels=5), "channels=5 exceeds the geometry's max_channels=4"),
    (dict(kernel=(0, 1)), "kernel_h must be >= 1"),
    (dict(pads=(0, -1, 0, 0)), "pads must be >= 0"),
    (dict(base=250), "ends at 286, beyond the buffer's depth 256"),
    (dict(pad_value=64), "pad_value=64 is not an 6-bit code"),
])
def test_record_rejects_what_the_hardware_cannot_hold(change, message):
    fields = dict(channels=2, height=3, width=6, kernel=(2, 2))
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        WindowParams(**fields).record(GEOMETRY)


def test_reader_has_no_multiplier_on_the_stream():
    """The four record products are registered once per layer (SETUP), not per element."""
    from amaranth.back import rtlil
    text = rtlil.convert(Im2colReader(GEOMETRY))
    assert text.count("$mul") == 4
