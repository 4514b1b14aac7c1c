"""Tests of bitline.sw.frontend.im2col against a direct loop definition."""

import numpy as np
import pytest

from bitline.sw.frontend.im2col import conv_output_hw, im2col


def reference_im2col(x, kernel, stride, pads, dilation, pad_value):
    """Direct definition from the docstring (loops; only for small tests)."""
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    top, left, bottom, right = pads
    out_h = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((n, out_h * out_w, c * kh * kw), dtype=x.dtype)
    for oy in range(out_h):
        for ox in range(out_w):
            for ci in range(c):
                for ky in range(kh):
                    for kx in range(kw):
                        y = oy * sh + ky * dh - top
                        xx = ox * sw + kx * dw - left
                        inside = 0 <= y < h and 0 <= xx < w
                        value = x[:, ci, y, xx] if inside else pad_value
                        out[:, oy * out_w + ox, (ci * kh + ky) * kw + kx] = value
    return out


CASES = [
    # kernel, stride, pads, dilation
    ((3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    ((3, 2), (1, 2), (0, 1, 2, 0), (1, 1)),
    ((3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    ((1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),
    ((2, 3), (3, 1), (1, 0, 0, 2), (2, 1)),
    ((5, 5), (1, 1), (0, 0, 0, 0), (1, 1)),
]


@pytest.mark.parametrize("kernel, stride, pads, dilation", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8])
def test_im2col_matches_loop_definition(kernel, stride, pads, dilation, dtype):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 200, size=(2, 3, 7, 6)).astype(dtype)
    got = im2col(x, kernel, stride, pads, dilation, pad_value=5)
    want = reference_im2col(x, kernel, stride, pads, dilation, pad_value=5)
    assert got.dtype == x.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert got.shape[1] == np.prod(conv_output_hw(7, 6, kernel, stride, pads, dilation))


def test_im2col_conv_equals_direct_conv():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 5, 5))
    weight = rng.standard_normal((4, 2, 3, 3))
    cols = im2col(x, (3, 3), (1, 1), (1, 1, 1, 1))
    y = (cols @ weight.reshape(4, -1).T).transpose(0, 2, 1).reshape(1, 4, 5, 5)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    direct = np.zeros((1, 4, 5, 5))
    for oy in range(5):
        for ox in range(5):
            direct[0, :, oy, ox] = np.tensordot(
                weight, padded[0, :, oy : oy + 3, ox : ox + 3], axes=3
            )
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


def test_conv_output_hw():
    assert conv_output_hw(32, 32, (3, 3), (1, 1), (1, 1, 1, 1)) == (32, 32)
    assert conv_output_hw(32, 32, (3, 3), (2, 2), (1, 1, 1, 1)) == (16, 16)
    assert conv_output_hw(8, 8, (2, 2), (2, 2), (0, 0, 0, 0)) == (4, 4)
    assert conv_output_hw(7, 7, (3, 3), (1, 1), (0, 0, 0, 0), (3, 3)) == (1, 1)


@pytest.mark.parametrize(
    "args, match",
    [
        (((3, 3), (0, 1), (0, 0, 0, 0)), "stride"),
        (((3, 3), (1, 1), (-1, 0, 0, 0)), "pads"),
        (((9, 3), (1, 1), (0, 0, 0, 0)), "larger than the padded input"),
        (((3, 3), (1, 1), (0, 0, 0)), "pads"),
    ],
)
def test_invalid_parameters_raise(args, match):
    with pytest.raises(ValueError, match=match):
        im2col(np.zeros((1, 1, 5, 5)), *args)


def test_rank_check():
    with pytest.raises(ValueError, match="N, C, H, W"):
        im2col(np.zeros((3, 5, 5)), (3, 3), (1, 1), (0, 0, 0, 0))
