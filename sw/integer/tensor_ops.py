"""The integer arithmetic of the layers without weights (docs/contract.md section 3).

Pooling, the residual add, channel concat, standalone ReLU / ReLU6, LeakyReLU / PReLU and
flatten, on int64 code tensors
(batch first). Like :mod:`bitline.sw.integer.arith` (the compute layers and the output
unit, whose :func:`~bitline.sw.integer.arith.rounding_shift` the add uses), this is the one
definition the golden model, the executor and the host driver all run.
"""

from __future__ import annotations

import numpy as np

from bitline.sw.frontend.im2col import conv_output_hw, im2col
from bitline.sw.integer.arith import rounding_shift
from bitline.sw.integer.qmodel import ActParams

__all__ = ["maxpool", "avgpool", "global_avgpool", "add", "concat", "relu", "leaky_relu",
           "flatten", "shared_shift"]


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


def _common_shift(op: str, mult, shift, count: int) -> tuple[np.ndarray, int]:
    """Return ``(mult, sh)`` of a rescaling host layer: ``count`` multipliers, one shift.

    The add, concat and LeakyReLU layers all rescale at one common shift
    (docs/contract.md section 3); anything else is a malformed layer.

    Raises
    ------
    ValueError
        If ``mult`` does not hold ``count`` values or the shifts are not one common value.
    """
    mult = np.asarray(mult, dtype=np.int64).reshape(-1)
    shift = np.asarray(shift, dtype=np.int64).reshape(-1)
    if mult.shape != (count,) or shift.size == 0 or np.any(shift != shift[0]):
        raise ValueError(f"{op} needs {count} multipliers and one common shift, not "
                         f"mult={mult.tolist()} shift={shift.tolist()}")
    return mult, int(shift[0])


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
    if np.asarray(shift).size != 2:
        raise ValueError(f"add needs a shift per operand, not shift={np.asarray(shift).tolist()}")
    mult, sh = _common_shift("add", mult, shift, 2)
    total = mult[0] * (qa - a.zero_point) + mult[1] * (qb - b.zero_point)
    y = int(zero_point) + rounding_shift(total, sh)
    return np.clip(y, int(clamp_lo), int(clamp_hi))


def shared_shift(ratios) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(mult, shift)``: ``ratios ~ mult * 2**-sh`` at one common shift ``sh``.

    The rescaling multipliers of the concat and LeakyReLU layers, as
    :func:`bitline.sw.quant.build.add_fixed_point` does for the add: each ``|ratio|`` is
    encoded by :func:`~bitline.sw.integer.qmodel.fixed_point`, the common shift is the
    smallest of those shifts (so every ``|mult| < 2**15``), and ``mult = rint(ratio * 2**sh)``
    keeps the ratio's sign (a PReLU slope may be negative). ``shift`` repeats ``sh`` once
    per ratio.
    """
    from bitline.sw.integer.qmodel import fixed_point

    ratios = np.asarray(ratios, dtype=np.float64).reshape(-1)
    _, shifts = fixed_point(np.abs(ratios))
    nonzero = shifts[ratios != 0]
    common = int(nonzero.min()) if nonzero.size else 0
    mult = np.rint(ratios * np.exp2(common)).astype(np.int64)
    return mult, np.full(ratios.shape, common, dtype=np.int64)


def concat(
    parts,
    params: list[ActParams],
    mult: np.ndarray,
    shift: np.ndarray,
    zero_point: int,
    clamp_lo: int,
    clamp_hi: int,
) -> np.ndarray:
    """Concatenate code tensors along the channel axis, each rescaled to the output's params.

    ``y_i = clamp(z_y + ((m_i * (q_i - z_i) + rnd) >> sh), clamp_lo, clamp_hi)`` per input
    ``i`` (``mult = (m_0, m_1, ...)``, one common ``sh`` in ``shift``); an input whose
    params equal the output's has ``m_i = 2**sh`` and is copied exactly.

    Raises
    ------
    ValueError
        If the inputs differ in any axis but the channels or the shifts differ.
    """
    parts = [np.asarray(part, dtype=np.int64) for part in parts]
    if np.asarray(shift).size != len(parts):
        raise ValueError(f"concat of {len(parts)} inputs needs a shift per input, not "
                         f"shift={np.asarray(shift).tolist()}")
    mult, sh = _common_shift(f"concat of {len(parts)} inputs", mult, shift, len(parts))
    if any(part.shape[:1] + part.shape[2:] != parts[0].shape[:1] + parts[0].shape[2:]
           for part in parts):
        raise ValueError(f"concat inputs differ beyond the channels: "
                         f"{[part.shape for part in parts]}")
    scaled = [
        int(zero_point) + rounding_shift(m * (part - act.zero_point), sh)
        for part, act, m in zip(parts, params, mult)
    ]
    return np.clip(np.concatenate(scaled, axis=1), int(clamp_lo), int(clamp_hi))


def leaky_relu(
    codes: np.ndarray,
    act: ActParams,
    mult: np.ndarray,
    shift: np.ndarray,
    zero_point: int,
    clamp_lo: int,
    clamp_hi: int,
) -> np.ndarray:
    """LeakyReLU / PReLU on codes, rescaled to the output's params (docs/contract.md 3).

    ``d = q - z_x``; ``y = clamp(z_y + ((m * d + rnd) >> sh), clamp_lo, clamp_hi)`` with
    ``m = mult[0]`` (``s_x / s_y``) where ``d >= 0`` and ``m = mult[1 + c]``
    (``alpha_c * s_x / s_y``) in channel ``c`` where ``d < 0``; one common ``sh``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    channels = codes.shape[1]
    # One shift for every multiplier (a differing one used to be ignored silently).
    mult, sh = _common_shift(f"leaky_relu on {channels} channels", mult, shift, 1 + channels)
    negative = mult[1:].reshape((1, -1) + (1,) * (codes.ndim - 2))
    delta = codes - act.zero_point
    product = np.where(delta >= 0, mult[0] * delta, negative * delta)
    y = int(zero_point) + rounding_shift(product, sh)
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
