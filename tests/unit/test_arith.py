"""Tests of bitline.sw.integer.arith, tensor_ops and graph.layer_forward against references written from docs/contract.md.

The references are loops over Python ints and Fractions, on tiny inputs.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from bitline.sw.frontend.ir import Layer
from bitline.sw.integer import arith, graph, tensor_ops
from bitline.sw.integer.qmodel import ActParams, QuantLayer
from bitline.sw.quant.tensor import QuantizedTensor


# --------------------------------------------------------------------------- references
def ref_round_half_up(numerator: int, denominator: int) -> int:
    """floor(numerator / denominator + 1/2), exactly."""
    return math.floor(Fraction(numerator, denominator) + Fraction(1, 2))


def ref_output_unit(t, mult, shift, zero_point, lo, hi):
    """Contract section 2, one value: clamp(z + ((t*m + rnd) >> s), lo, hi), Python ints."""
    rnd = (1 << (shift - 1)) if shift > 0 else 0
    return min(max(zero_point + ((t * mult + rnd) >> shift), lo), hi)


def ref_conv(codes, weight, stride, pads, dilation, groups, pad_value):
    """Direct loop convolution of integer codes (N, C, H, W) with padding = pad_value."""
    n, c, h, w = codes.shape
    out_c, c_per_group, kh, kw = weight.shape
    top, left, bottom, right = pads
    out_h = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (w + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, out_c, out_h, out_w), dtype=object)
    per_group_out = out_c // groups
    for b in range(n):
        for o in range(out_c):
            g = o // per_group_out
            for oy in range(out_h):
                for ox in range(out_w):
                    total = 0
                    for ci in range(c_per_group):
                        for ky in range(kh):
                            for kx in range(kw):
                                y = oy * stride[0] + ky * dilation[0] - top
                                x = ox * stride[1] + kx * dilation[1] - left
                                inside = 0 <= y < h and 0 <= x < w
                                value = int(codes[b, g * c_per_group + ci, y, x]) if inside \
                                    else pad_value
                                total += value * int(weight[o, ci, ky, kx])
                    out[b, o, oy, ox] = total
    return out


def conv_qlayer(rng, in_c, out_c, kernel, stride, pads, groups=1, dilation=(1, 1), h=5, w=6,
                zero_point=3, bits=4):
    kh, kw = kernel
    out_h = (h + pads[0] + pads[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (w + pads[1] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    weight = rng.integers(-7, 8, size=(out_c, in_c // groups, kh, kw))
    layer = Layer(
        name="conv", op="conv", inputs=["x"], output="y",
        input_shape=(in_c, h, w), output_shape=(out_c, out_h, out_w),
        attrs={"stride": stride, "pads": pads, "dilation": dilation, "groups": groups},
        weight=weight.astype(np.float32),
    )
    act = ActParams(bits, 0.1, zero_point)
    return QuantLayer(
        layer=layer, inputs=[act], output=ActParams(8, 0.5, 0),
        weight=QuantizedTensor(values=weight, scale=np.ones((out_c, 1, 1, 1))),
    )


# --------------------------------------------------------------------------- activations
def test_quantize_input_rint_half_even_and_clip():
    act = ActParams(4, 0.5, 8)
    x = np.array([0.25, 0.75, -0.25, 1.25, 100.0, -100.0, 0.0])
    # x/s = 0.5, 1.5, -0.5, 2.5 -> rint 0, 2, -0, 2 (half to even); then + 8; clip 0..15
    np.testing.assert_array_equal(arith.quantize_input(x, act), [8, 10, 8, 10, 15, 0, 8])
    assert arith.quantize_input(x, act).dtype == np.int64


def test_dequantize():
    act = ActParams(8, 0.25, 128)
    np.testing.assert_allclose(arith.dequantize(np.array([128, 130, 0]), act),
                               [0.0, 0.5, -32.0])


# --------------------------------------------------------------------------- output unit
def test_rounding_shift_matches_round_half_up():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(-10**12, 10**12, 400), np.arange(-40, 41)])
    for shift in (0, 1, 2, 3, 7, 20, 40):
        got = arith.rounding_shift(values, shift)
        want = [ref_round_half_up(int(v), 1 << shift) for v in values]
        np.testing.assert_array_equal(got, want)


def test_rounding_shift_ties_go_up_also_when_negative():
    # -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2, -2.5 -> -2
    np.testing.assert_array_equal(arith.rounding_shift(np.array([-3, -1, 1, 3, -5]), 1),
                                  [-1, 0, 1, 2, -2])


def test_rounding_shift_near_int64_limits():
    big = np.array([2**62 + 2**61, -(2**62) - 3])
    np.testing.assert_array_equal(arith.rounding_shift(big, 63),
                                  [ref_round_half_up(int(v), 1 << 63) for v in big])


def test_output_unit_requant_against_reference():
    rng = np.random.default_rng(1)
    out_channels = 6
    acc = rng.integers(-50000, 50000, size=(20, out_channels))
    bias = rng.integers(-3000, 3000, size=out_channels)
    mult = rng.integers(1 << 14, 1 << 15, size=out_channels)
    shift = np.array([0, 1, 5, 14, 20, 30])
    zero_point, lo, hi = 128, 128, 200
    got = arith.output_unit(acc, bias, mult, shift, zero_point, lo, hi, "requant")
    want = np.array([[ref_output_unit(int(acc[m, n] + bias[n]), int(mult[n]), int(shift[n]),
                                      zero_point, lo, hi) for n in range(out_channels)]
                     for m in range(acc.shape[0])])
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int64


def test_output_unit_negative_ties_and_zero_point():
    # t * mult = -6, shift 2: -1.5 rounds half up to -1; z = 8 -> 7
    assert arith.output_unit(np.array([[-3]]), np.array([0]), np.array([2]), np.array([2]),
                              8, 0, 15)[0, 0] == 7
    # shift 0: no rounding term
    assert arith.output_unit(np.array([[5]]), np.array([-2]), np.array([3]), np.array([0]),
                              0, 0, 255)[0, 0] == 9


def test_output_unit_raw_and_bad_mode():
    acc = np.array([[-10, 20]])
    np.testing.assert_array_equal(
        arith.output_unit(acc, np.array([1, 2]), None, None, 0, 0, 0, "raw"), [[-9, 22]])
    with pytest.raises(ValueError, match="mode"):
        arith.output_unit(acc, np.array([1, 2]), np.ones(2), np.zeros(2), 0, 0, 255, "relu")


# --------------------------------------------------------------------------- compute layers
@pytest.mark.parametrize("groups,in_c,out_c,stride,pads,dilation", [
    (1, 3, 4, (1, 1), (1, 1, 1, 1), (1, 1)),
    (1, 2, 3, (2, 1), (0, 2, 1, 0), (1, 2)),
    (2, 4, 6, (1, 2), (1, 0, 1, 1), (1, 1)),   # grouped
    (5, 5, 5, (2, 2), (1, 1, 1, 1), (1, 1)),   # depthwise
])
def test_conv_columns_and_acc_against_loop_reference(groups, in_c, out_c, stride, pads, dilation):
    rng = np.random.default_rng(2)
    qlayer = conv_qlayer(rng, in_c, out_c, (3, 3), stride, pads, groups, dilation)
    codes = rng.integers(0, 16, size=(2, in_c, 5, 6))
    cols = arith.layer_columns(qlayer, codes)
    acc = arith.compute_acc(qlayer, cols)
    want = ref_conv(codes, qlayer.weight.values, stride, pads, dilation, groups, pad_value=3)
    n, _, out_h, out_w = want.shape
    got = acc.reshape(n, out_h, out_w, out_c).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(got, want.astype(np.int64))
    # the block-diagonal layer matrix gives the same accumulators
    np.testing.assert_array_equal(cols @ arith.layer_matrix(qlayer).T, acc)


def test_depthwise_layer_matrix_is_block_diagonal():
    rng = np.random.default_rng(3)
    qlayer = conv_qlayer(rng, 4, 4, (3, 3), (1, 1), (1, 1, 1, 1), groups=4)
    matrix = arith.layer_matrix(qlayer)
    assert matrix.shape == (4, 4 * 9)
    values = qlayer.weight.values.reshape(4, 9)
    for o in range(4):
        for c in range(4):
            block = matrix[o, c * 9:(c + 1) * 9]
            np.testing.assert_array_equal(block, values[o] if o == c else 0)


def test_gemm_columns_and_acc():
    rng = np.random.default_rng(4)
    weight = rng.integers(-100, 101, size=(7, 12))
    layer = Layer("fc", "gemm", ["x"], "y", (12,), (7,), weight=weight.astype(np.float32))
    qlayer = QuantLayer(layer, [ActParams(8, 1.0)], ActParams(8, 1.0),
                        weight=QuantizedTensor(weight, np.ones((7, 1))))
    codes = rng.integers(0, 256, size=(5, 12))
    cols = arith.layer_columns(qlayer, codes)
    np.testing.assert_array_equal(cols, codes)
    want = [[sum(int(codes[m, i]) * int(weight[n, i]) for i in range(12)) for n in range(7)]
            for m in range(5)]
    np.testing.assert_array_equal(arith.compute_acc(qlayer, cols), want)
    with pytest.raises(ValueError, match="fc"):
        arith.layer_columns(qlayer, codes[:, :11])


def test_matmul_is_exact_beyond_float64_mantissa():
    # products near 2**56: a float64 matmul would lose the low bits
    weight = np.array([[2**40 + 1, -(2**40 - 3), 2**40 + 7]])
    layer = Layer("fc", "gemm", ["x"], "y", (3,), (1,), weight=weight.astype(np.float32))
    qlayer = QuantLayer(layer, [ActParams(16, 1.0)], None,
                        weight=QuantizedTensor(weight, np.ones((1, 1))))
    cols = np.array([[65535, 65533, 65531]])
    want = sum(int(a) * int(b) for a, b in zip(cols[0], weight[0]))
    assert float(want) != want or abs(want) > 2**53
    assert arith.compute_acc(qlayer, cols)[0, 0] == want


def test_apply_act_block_bits_against_reference():
    rng = np.random.default_rng(5)
    cols = rng.integers(0, 256, size=(4, 21))
    widths = np.array([8, 5, 0])
    got = arith.apply_act_block_bits(cols, widths, 8, 9)
    want = cols.copy()
    for i in range(21):
        drop = 8 - widths[i // 9]
        want[:, i] = (cols[:, i] // 2**drop) * 2**drop
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="entries"):
        arith.apply_act_block_bits(cols, widths[:2], 8, 9)
    with pytest.raises(ValueError, match="between 0 and act_bits"):
        arith.apply_act_block_bits(cols, np.array([9, 8, 8]), 8, 9)


def test_compute_acc_applies_act_block_bits():
    rng = np.random.default_rng(6)
    weight = rng.integers(-7, 8, size=(3, 10))
    layer = Layer("fc", "gemm", ["x"], "y", (10,), (3,), weight=weight.astype(np.float32))
    qlayer = QuantLayer(layer, [ActParams(8, 1.0)], ActParams(8, 1.0),
                        weight=QuantizedTensor(weight, np.ones((3, 1))),
                        act_block_bits=np.array([6, 3]))
    cols = rng.integers(0, 256, size=(4, 10))
    with pytest.raises(ValueError, match="ou_rows"):
        arith.compute_acc(qlayer, cols)
    dropped = cols.copy()
    dropped[:, :5] = dropped[:, :5] >> 2 << 2
    dropped[:, 5:] = dropped[:, 5:] >> 5 << 5
    np.testing.assert_array_equal(arith.compute_acc(qlayer, cols, ou_rows=5),
                                  dropped @ weight.T)


def test_compute_output_shapes_and_hook():
    rng = np.random.default_rng(7)
    qlayer = conv_qlayer(rng, 2, 3, (3, 3), (1, 1), (1, 1, 1, 1))
    qlayer.bias = np.zeros(3, dtype=np.int64)
    qlayer.mult = np.ones(3, dtype=np.int64)
    qlayer.shift = np.zeros(3, dtype=np.int64)
    qlayer.mode = "raw"
    codes = rng.integers(0, 16, size=(2, 2, 5, 6))
    calls = []

    def hook(ql, cols):
        calls.append(cols.shape)
        return cols @ arith.layer_matrix(ql).T

    out = arith.compute_output(qlayer, codes, compute=hook)
    assert calls == [(2 * 30, 18)]
    want = ref_conv(codes, qlayer.weight.values, (1, 1), (1, 1, 1, 1), (1, 1), 1, 3)
    np.testing.assert_array_equal(out, want.astype(np.int64))
    with pytest.raises(ValueError, match="compute returned shape"):
        arith.compute_output(qlayer, codes, compute=lambda ql, cols: cols)


# --------------------------------------------------------------------------- other layers
def ref_pool(codes, kernel, stride, pads, kind, count_include_pad=False, zero_point=0):
    n, c, h, w = codes.shape
    top, left, bottom, right = pads
    out_h = (h + top + bottom - kernel[0]) // stride[0] + 1
    out_w = (w + left + right - kernel[1]) // stride[1] + 1
    out = np.zeros((n, c, out_h, out_w), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for oy in range(out_h):
                for ox in range(out_w):
                    window, pad_count = [], 0
                    for ky in range(kernel[0]):
                        for kx in range(kernel[1]):
                            y, x = oy * stride[0] + ky - top, ox * stride[1] + kx - left
                            if 0 <= y < h and 0 <= x < w:
                                window.append(int(codes[b, ch, y, x]))
                            else:
                                pad_count += 1
                    if kind == "max":
                        out[b, ch, oy, ox] = max(window + [0] * pad_count)
                    elif count_include_pad:
                        total = sum(window) + zero_point * pad_count
                        out[b, ch, oy, ox] = ref_round_half_up(total, len(window) + pad_count)
                    else:
                        out[b, ch, oy, ox] = ref_round_half_up(sum(window), len(window))
    return out


@pytest.mark.parametrize("kernel,stride,pads", [
    ((2, 2), (2, 2), (0, 0, 0, 0)),
    ((3, 3), (1, 1), (1, 1, 1, 1)),
    ((3, 2), (2, 1), (1, 0, 1, 1)),
])
def test_pooling_against_reference(kernel, stride, pads):
    rng = np.random.default_rng(8)
    codes = rng.integers(0, 256, size=(2, 3, 5, 6))
    np.testing.assert_array_equal(tensor_ops.maxpool(codes, kernel, stride, pads),
                                  ref_pool(codes, kernel, stride, pads, "max"))
    np.testing.assert_array_equal(tensor_ops.avgpool(codes, kernel, stride, pads),
                                  ref_pool(codes, kernel, stride, pads, "avg"))
    np.testing.assert_array_equal(
        tensor_ops.avgpool(codes, kernel, stride, pads, count_include_pad=True, zero_point=128),
        ref_pool(codes, kernel, stride, pads, "avg", True, 128))


def test_avgpool_rounds_half_up():
    codes = np.array([[[[1, 2], [2, 2]]]])   # 7 / 4 = 1.75 -> 2
    assert tensor_ops.avgpool(codes, (2, 2), (2, 2), (0, 0, 0, 0))[0, 0, 0, 0] == 2
    codes = np.array([[[[1, 2]]]])           # 3 / 2 = 1.5 -> 2 (half up)
    assert tensor_ops.avgpool(codes, (1, 2), (1, 2), (0, 0, 0, 0))[0, 0, 0, 0] == 2
    assert tensor_ops.global_avgpool(np.array([[[[0, 1], [1, 1]]]]))[0, 0, 0, 0] == 1  # 0.75
    assert tensor_ops.global_avgpool(np.array([[[[0, 0], [1, 1]]]]))[0, 0, 0, 0] == 1  # 0.5
    assert tensor_ops.global_avgpool(np.array([[[[0, 0], [0, 1]]]]))[0, 0, 0, 0] == 0  # 0.25


def test_global_avgpool_against_reference():
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, size=(3, 4, 5, 3))
    got = tensor_ops.global_avgpool(codes)
    assert got.shape == (3, 4, 1, 1)
    for b in range(3):
        for c in range(4):
            assert got[b, c, 0, 0] == ref_round_half_up(int(codes[b, c].sum()), 15)


def test_add_against_reference():
    rng = np.random.default_rng(10)
    qa = rng.integers(0, 256, size=(2, 3, 4))
    qb = rng.integers(0, 256, size=(2, 3, 4))
    a, b = ActParams(8, 0.1, 128), ActParams(8, 0.05, 0)
    mult, shift = np.array([23000, 11000]), np.array([15, 15])
    got = tensor_ops.add(qa, qb, a, b, mult, shift, 128, 128, 255)
    want = np.vectorize(lambda x, y: min(max(
        128 + ref_round_half_up(23000 * (int(x) - 128) + 11000 * int(y), 1 << 15), 128), 255))(
        qa, qb)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="common shift"):
        tensor_ops.add(qa, qb, a, b, mult, np.array([15, 14]), 0, 0, 255)


def test_relu_and_flatten():
    codes = np.arange(0, 256, 17).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(tensor_ops.relu(codes, 128, 200), np.clip(codes, 128, 200))
    assert tensor_ops.flatten(np.zeros((2, 3, 4, 5))).shape == (2, 60)


def test_layer_forward_rejects_wrong_input_count():
    layer = Layer("add", "add", ["a", "b"], "y", (3,), (3,))
    qlayer = QuantLayer(layer, [ActParams(8, 1.0)] * 2, ActParams(8, 1.0),
                        mult=np.array([1, 1]), shift=np.array([0, 0]))
    with pytest.raises(ValueError, match="add"):
        graph.layer_forward(qlayer, [np.zeros((1, 3))])
