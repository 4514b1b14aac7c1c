"""The integer arithmetic of the layers without weights (docs/contract.md section 3).

Pooling, the residual add, standalone ReLU / ReLU6 and flatten, on int64 code tensors
(batch first). Like :mod:`bitline.sw.integer.arith` (the compute layers and the output
unit, whose :func:`~bitline.sw.integer.arith.rounding_shift` the add uses), this is the one
definition the golden model, the executor and the host driver all run.
"""

from __future__ import annotations

import numpy as np

from bitline.sw.frontend.im2col import conv_output_hw, im2col
from bitline.sw.integer.arith import rounding_shift
from bitline.sw.integer.qmodel import ActParams

__all__ = ["maxpool", "avgpool", "global_avgpool", "add", "relu", "flatten"]


def _windows(codes: np.ndarray, kernel, stride, pads, pad_value) -> tuple[np.ndarray, int, int]:
    """Return ``(N, C, P, KH*KW)`` pooling windows and the output height and width."""
    n, c, h, w = codes.shape
    out_h, out_w = conv_output_hw(h, w, kernel, stride, pads)
    cols = im2col(codes.reshape(n * c, 1, h, w), kernel, stride, pads, pad_value=pad_value)
    return cols.reshape(n, c, out_h * out_w, -1), out_h, out_w


def maxpool(codes: np.ndarray, kernel, stride, pads) -> np.ndarray:
    """Max pooling of codes ``(N, C, H, W)``; padding holds code 0 (docs/contract.md 3).

    Returns int64 ``(N, C, OH, OW)``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    windows, out_h, out_w = _windows(codes, kernel, stride, pads, 0)
    return windows.max(axis=-1).reshape(codes.shape[0], codes.shape[1], out_h, out_w)


def avgpool(
    codes: np.ndarray,
    kernel,
    stride,
    pads,
    *,
    count_include_pad: bool = False,
    zero_point: int = 0,
) -> np.ndarray:
    """Average pooling of codes with round half up: ``floor((2*sum + count) / (2*count))``.

    ``count`` is the number of real (non-padding) inputs of each window, or ``KH*KW`` with
    ``count_include_pad`` (then padding positions hold ``zero_point``).

    Returns int64 ``(N, C, OH, OW)``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n, c, h, w = codes.shape
    pad_value = zero_point if count_include_pad else 0
    windows, out_h, out_w = _windows(codes, kernel, stride, pads, pad_value)
    total = windows.sum(axis=-1)
    if count_include_pad:
        count = np.int64(windows.shape[-1])
    else:
        ones = np.ones((1, 1, h, w), dtype=np.int64)
        count = _windows(ones, kernel, stride, pads, 0)[0].sum(axis=-1)[0, 0]  # (P,)
    return ((2 * total + count) // (2 * count)).reshape(n, c, out_h, out_w)


def global_avgpool(codes: np.ndarray) -> np.ndarray:
    """Global average pooling ``(N, C, H, W) -> (N, C, 1, 1)``, round half up."""
    codes = np.asarray(codes, dtype=np.int64)
    count = codes.shape[2] * codes.shape[3]
    total = codes.sum(axis=(2, 3), keepdims=True)
    return (2 * total + count) // (2 * count)


def add(
    qa: np.ndarray,
    qb: np.ndarray,
    a: ActParams,
    b: ActParams,
    mult: np.ndarray,
    shift: np.ndarray,
    zero_point: int,
    clamp_lo: int,
    clamp_hi: int,
) -> np.ndarray:
    """Residual add of two code tensors (docs/contract.md section 3).

    ``y = clamp(z_y + ((ma*(qa - za) + mb*(qb - zb) + rnd) >> sh), clamp_lo, clamp_hi)``
    with ``mult = (ma, mb)`` and the common ``shift = (sh, sh)``.

    Raises
    ------
    ValueError
        If the shapes differ or the two shifts differ.
    """
    qa = np.asarray(qa, dtype=np.int64)
    qb = np.asarray(qb, dtype=np.int64)
    if qa.shape != qb.shape:
        raise ValueError(f"add operands differ in shape: {qa.shape} and {qb.shape}")
    mult = np.asarray(mult, dtype=np.int64).reshape(-1)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1)
    if mult.shape != (2,) or shift.shape != (2,) or shift[0] != shift[1]:
        raise ValueError(
            f"add needs mult and shift of shape (2,) with one common shift, not "
            f"mult={mult.tolist()} shift={shift.tolist()}"
        )
    total = mult[0] * (qa - a.zero_point) + mult[1] * (qb - b.zero_point)
    y = int(zero_point) + rounding_shift(total, shift[0])
    return np.clip(y, int(clamp_lo), int(clamp_hi))


def relu(codes: np.ndarray, clamp_lo: int, clamp_hi: int) -> np.ndarray:
    """Standalone ReLU / ReLU6 on codes: ``clip(q, clamp_lo, clamp_hi)``.

    ``clamp_lo = z`` (the code of 0.0); ``clamp_hi`` is ``2**a - 1`` for ReLU and
    ``min(2**a - 1, z + rint(6 / s))`` for ReLU6.
    """
    return np.clip(np.asarray(codes, dtype=np.int64), int(clamp_lo), int(clamp_hi))


def flatten(codes: np.ndarray) -> np.ndarray:
    """C-order reshape ``(N, ...) -> (N, F)``."""
    codes = np.asarray(codes, dtype=np.int64)
    return codes.reshape(codes.shape[0], -1)
