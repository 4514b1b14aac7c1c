"""Property tests of the weight quantization schemes (bitline.sw.quant.schemes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bitline.sw.quant import BIT_RANGES, SCHEMES, QuantizedTensor, level_set, quantize

# (scheme, bits, options) combinations the properties run over.
CASES = [
    (scheme, bits, {})
    for scheme in SCHEMES
    for bits in range(BIT_RANGES[scheme][0], min(BIT_RANGES[scheme][1], 8) + 1)
] + [
    ("int", 4, {"clip": "mse"}),
    ("pot", 5, {"max_planes": 5}),
    ("apot", 4, {"clip": "mse"}),
    ("adaptivfloat", 6, {"exponent_bits": 3}),
    ("adaptivfloat", 8, {"exponent_bits": 4}),
    ("ternary", 2, {"threshold": 0.5}),
]

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)
weight_arrays = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5),
    elements=finite,
)


@pytest.mark.parametrize("scheme,bits,options", CASES, ids=lambda c: str(c))
@settings(max_examples=25, deadline=None)
@given(weights=weight_arrays, per_tensor=st.booleans())
def test_exact_and_own_levels(scheme, bits, options, weights, per_tensor):
    axis = None if per_tensor else 0
    q = quantize(weights, scheme, bits, axis=axis, **options)
    assert q.values.dtype == np.int64 and q.values.shape == weights.shape
    # The scale broadcasts: one entry per output channel (or one in total).
    ones = (1,) * (weights.ndim - 1)
    expected = (1,) + ones if per_tensor else (weights.shape[0],) + ones
    assert q.scale.shape == expected
    assert np.all(q.scale > 0)
    # dequantize() is exactly values * scale.
    assert np.array_equal(q.dequantize(), q.values * q.scale)
    # Every magnitude belongs to the scheme's own level set.
    levels = level_set(scheme, bits, **options)
    assert np.isin(np.abs(q.values), levels).all()
    # Bit planes compose back exactly, and signs follow the weights.
    planes = q.bit_planes()
    assert np.array_equal(planes.compose(), q.values)
    assert not np.any((q.values != 0) & (np.sign(q.values) != np.sign(weights)) & (weights != 0))


@pytest.mark.parametrize("scheme,bits,options", CASES, ids=lambda c: str(c))
def test_level_set_fits_storage(scheme, bits, options):
    levels = level_set(scheme, bits, **options)
    # At most 2**(bits-1) magnitudes (one code of the sign-magnitude word each).
    assert len(levels) <= max(1, 1 << (bits - 1))
    assert levels[0] >= 0 and np.all(np.diff(levels) > 0)


def test_level_sets_match_papers():
    assert level_set("int", 4).tolist() == list(range(8))
    assert level_set("pot", 4).tolist() == [0, 1, 2, 4, 8, 16, 32, 64]
    # APoT 4-bit (3 magnitude bits): {0, 2^-1, 2^-2, 2^-4} + {0, 2^-3}, times 16.
    assert level_set("apot", 4).tolist() == [0, 1, 2, 3, 4, 6, 8, 10]
    # AdaptivFloat 4 bits, 2 exponent bits, 1 mantissa bit; the smallest code is zero.
    assert level_set("adaptivfloat", 4).tolist() == [0, 3, 4, 6, 8, 12, 16, 24]
    assert level_set("ternary", 2).tolist() == [0, 1]
    assert level_set("binary", 1).tolist() == [1]


def test_int_is_symmetric_per_channel():
    weights = np.array([[0.5, -1.0, 0.25], [2.0, -0.1, 0.0]])
    q = quantize(weights, "int", 8)
    assert q.values[0, 1] == -127 and q.values[1, 0] == 127
    np.testing.assert_allclose(q.scale.ravel(), [1.0 / 127, 2.0 / 127])


def test_ternary_and_binary_follow_twn_and_mean():
    weights = np.array([[1.0, -1.0, 0.1, -0.05], [0.0, 0.0, 0.0, 0.0]])
    t = quantize(weights, "ternary", 2)
    assert t.values[0].tolist() == [1, -1, 0, 0]
    assert t.scale[0, 0] == pytest.approx(1.0)
    b = quantize(weights, "binary", 1)
    assert b.values[0].tolist() == [1, -1, 1, -1]
    assert b.scale[0, 0] == pytest.approx(np.abs(weights[0]).mean())
    assert np.all(b.dequantize()[1] == b.scale[1, 0])  # zero counts as +, scale 1


def test_adaptivfloat_exponent_bias_per_channel():
    weights = np.array([[3.0, 0.75, 0.0], [0.03, 0.01, -0.02]])
    q = quantize(weights, "adaptivfloat", 6, exponent_bits=2)
    # exp_max = floor(log2 3) = 1 -> bias = -2, mantissa 3 bits -> scale 2^-5.
    assert q.scale[0, 0] == 2.0 ** -5
    assert q.dequantize()[0, 0] == 3.0 and q.dequantize()[0, 1] == 0.75


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda w: quantize(w, "float", 4), "unknown scheme 'float'"),
        (lambda w: quantize(w, "int", 1), "bits for scheme int must be between 2 and 16, not 1"),
        (lambda w: quantize(w, "apot", 8), "bits for scheme apot"),
        (lambda w: quantize(w, "ternary", 3), "bits for scheme ternary must be 2"),
        (lambda w: quantize(w, "int", 4, clip="p99"), "option clip"),
        (lambda w: quantize(w, "int", 4, exponent_bits=2), "unknown option"),
        (lambda w: quantize(w, "adaptivfloat", 4, exponent_bits=3), "exponent_bits"),
        (lambda w: quantize(w, "int", 4, axis=5), "axis"),
        (lambda w: quantize(w * np.nan, "int", 4), "NaN"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(np.ones((2, 3)))


def test_quantized_tensor_is_the_contract_type():
    q = quantize(np.linspace(-1, 1, 24).reshape(4, 6), "apot", 5)
    assert isinstance(q, QuantizedTensor)
    assert q.scheme == "apot" and q.bits == 5


@pytest.mark.parametrize("scheme,bits", [("pot", 4), ("apot", 5), ("adaptivfloat", 6), ("int", 5)])
def test_nearest_level_is_the_nearest(scheme, bits):
    from bitline.sw.quant.schemes import _nearest_level

    levels = level_set(scheme, bits)
    ratios = np.concatenate([
        np.random.default_rng(0).uniform(0, levels[-1] * 1.2, 5000),
        (levels[:-1] + levels[1:]) / 2.0,          # exact midpoints: ties go up
        levels.astype(float), [0.0, levels[-1] * 3.0],
    ])
    midpoints = (levels[:-1] + levels[1:]) / 2.0
    expected = np.searchsorted(midpoints, ratios, side="right")
    assert np.array_equal(_nearest_level(ratios, levels), expected)
    chosen = levels[expected]
    distance = np.abs(chosen - ratios)
    assert np.all(distance <= np.abs(levels[None, :] - ratios[:, None]).min(axis=1) + 1e-12)
