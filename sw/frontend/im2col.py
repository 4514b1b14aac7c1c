"""im2col: the one layout that turns a convolution or a pooling window into a matrix product.

Every consumer of convolution windows (the float reference, the integer golden model, the
host driver and the mappers' tests) builds them here, so the im2col order of
:mod:`bitline.sw.frontend.ir` is defined once:

* rows (pixels) in row-major order of the output, ``p = oy * out_w + ox``;
* columns (inputs) in the flatten order of one filter, ``i = (c * KH + ky) * KW + kx``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["conv_output_hw", "im2col"]


def _pair(value, name: str) -> tuple[int, int]:
    try:
        first, second = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of integers, not {value!r}") from None
    return first, second


def conv_output_hw(
    h: int,
    w: int,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int]:
    """Return the output height and width of a convolution or pooling window.

    Parameters
    ----------
    h, w:
        Input height and width.
    kernel, stride, dilation:
        ``(kh, kw)``, ``(sh, sw)``, ``(dh, dw)``; all >= 1.
    pads:
        ``(top, left, bottom, right)``, all >= 0.

    Returns
    -------
    (out_h, out_w)
        ``floor((h + top + bottom - dh * (kh - 1) - 1) / sh) + 1`` and likewise for ``w``.

    Raises
    ------
    ValueError
        If a parameter is out of range or the (dilated) kernel is larger than the padded input.
    """
    kh, kw = _pair(kernel, "kernel")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    try:
        top, left, bottom, right = (int(p) for p in pads)
    except (TypeError, ValueError):
        raise ValueError(f"pads must be (top, left, bottom, right), not {pads!r}") from None
    for name, value in (("kernel", (kh, kw)), ("stride", (sh, sw)), ("dilation", (dh, dw))):
        if min(value) < 1:
            raise ValueError(f"{name} must be >= 1, not {value}")
    if min(top, left, bottom, right) < 0:
        raise ValueError(f"pads must be >= 0, not {tuple(pads)}")
    span_h = dh * (kh - 1) + 1
    span_w = dw * (kw - 1) + 1
    padded_h = h + top + bottom
    padded_w = w + left + right
    if span_h > padded_h or span_w > padded_w:
        raise ValueError(
            f"kernel {(kh, kw)} with dilation {(dh, dw)} spans {(span_h, span_w)}, "
            f"larger than the padded input {(padded_h, padded_w)}"
        )
    return (padded_h - span_h) // sh + 1, (padded_w - span_w) // sw + 1


def im2col(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilation: tuple[int, int] = (1, 1),
    pad_value=0,
) -> np.ndarray:
    """Gather the convolution windows of a batch of images into a matrix per image.

    Parameters
    ----------
    x:
        ``(N, C, H, W)`` array of any dtype; the result keeps it.
    kernel, stride, dilation:
        ``(kh, kw)``, ``(sh, sw)``, ``(dh, dw)``.
    pads:
        ``(top, left, bottom, right)``.
    pad_value:
        Value of the padding positions (0 for float convolution, the zero-point code for the
        integer golden model, ``-inf`` for float max pooling).

    Returns
    -------
    np.ndarray
        ``(N, out_h * out_w, C * kh * kw)``: row ``p = oy * out_w + ox`` is the window of
        output pixel ``(oy, ox)``, column ``i = (c * kh + ky) * kw + kx`` its input
        ``x[c, oy * sh + ky * dh - top, ox * sw + kx * dw - left]`` (or ``pad_value``).
        A new contiguous array.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D or the window parameters are invalid (see :func:`conv_output_hw`).
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"im2col needs an (N, C, H, W) array, not shape {x.shape}")
    n, c, h, w = x.shape
    kh, kw = _pair(kernel, "kernel")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    out_h, out_w = conv_output_hw(h, w, (kh, kw), (sh, sw), pads, (dh, dw))
    top, left, bottom, right = (int(p) for p in pads)
    if top or left or bottom or right:
        x = np.pad(
            x,
            ((0, 0), (0, 0), (top, bottom), (left, right)),
            mode="constant",
            constant_values=np.asarray(pad_value).astype(x.dtype),
        )
    span_h = dh * (kh - 1) + 1
    span_w = dw * (kw - 1) + 1
    # windows: (N, C, H', W', span_h, span_w) -> pick dilation taps and output strides.
    windows = sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    windows = windows[:, :, : (out_h - 1) * sh + 1 : sh, : (out_w - 1) * sw + 1 : sw, ::dh, ::dw]
    # (N, C, OH, OW, KH, KW) -> (N, OH, OW, C, KH, KW) -> (N, OH*OW, C*KH*KW)
    return np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(
        n, out_h * out_w, c * kh * kw
    )
