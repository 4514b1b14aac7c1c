"""The integer arithmetic of docs/contract.md, sections 1-3: the one definition.

The integer golden model (:mod:`bitline.sim.golden`), the crossbar-level executor and the
host driver all compute through these functions, so a rounding rule, a padding code or the
im2col order of a layer's inputs exists exactly once. Everything is vectorized numpy on
int64 codes; matrix products are integer matmuls (exact, no float detour).

This module holds the activation codes, the output unit and the compute layers:
:func:`layer_columns` -> :func:`compute_acc` -> :func:`output_unit` (:func:`compute_output`
chains them, with a pluggable accumulator hook). The layers without weights (pooling,
residual add, ReLU, flatten) are :mod:`bitline.sw.integer.tensor_ops`;
:func:`bitline.sw.integer.graph.layer_forward` dispatches one layer to either.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bitline.hw.spec.program import OutputMode
from bitline.sw.frontend.im2col import im2col
from bitline.sw.integer.qmodel import ActParams, QuantLayer

__all__ = [
    "ComputeHook",
    "quantize_input",
    "dequantize",
    "rounding_shift",
    "output_unit",
    "grouped_matrix",
    "layer_matrix",
    "layer_columns",
    "apply_act_block_bits",
    "compute_acc",
    "compute_output",
    "columns_to_output",
]

#: ``compute(qlayer, cols) -> acc``: the accumulator of a compute layer. ``cols`` is the
#: ``(M, K)`` int64 matrix of *raw* input codes from :func:`layer_columns` (BWQ slice
#: dropping NOT yet applied); ``acc`` is ``(M, O)`` int64 and must equal
#: :func:`compute_acc` (which applies ``qlayer.act_block_bits`` itself).
ComputeHook = Callable[[QuantLayer, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- activations
def quantize_input(x: np.ndarray, act: ActParams) -> np.ndarray:
    """Quantize real values: ``q = clip(rint(x / scale) + zero_point, 0, 2**bits - 1)``.

    ``rint`` rounds half to even (docs/contract.md section 1). Returns int64 codes of
    ``x``'s shape.
    """
    x = np.asarray(x, dtype=np.float64)
    q = np.rint(x / act.scale) + act.zero_point
    return np.clip(q, 0, act.qmax).astype(np.int64)


def dequantize(codes: np.ndarray, act: ActParams) -> np.ndarray:
    """Return the real values of codes, ``scale * (q - zero_point)`` (float64)."""
    return act.scale * (np.asarray(codes, dtype=np.int64) - act.zero_point).astype(np.float64)


# --------------------------------------------------------------------------- output unit
def rounding_shift(value: np.ndarray, shift: np.ndarray | int) -> np.ndarray:
    """Return ``(value + rnd) >> shift`` with ``rnd = 1 << (shift - 1)`` (0 when shift is 0).

    Arithmetic (floor) shift, i.e. division by ``2**shift`` rounded half up (towards +inf),
    also for negative values. Computed as ``((value >> (shift - 1)) + 1) >> 1``, which is
    the same integer and cannot overflow int64 when ``value`` is near the int64 range.

    Parameters
    ----------
    value:
        int64 array.
    shift:
        Non-negative shift(s), broadcastable against ``value``.
    """
    value = np.asarray(value, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    halved = value >> np.maximum(shift - 1, 0)
    return np.where(shift > 0, (halved + 1) >> 1, value)


def output_unit(
    acc: np.ndarray,
    bias: np.ndarray,
    mult: np.ndarray,
    shift: np.ndarray,
    zero_point: int,
    clamp_lo: int,
    clamp_hi: int,
    mode: str = "requant",
) -> np.ndarray:
    """Apply the output unit of docs/contract.md section 2 to accumulators.

    With ``t = acc + bias``: ``mode="requant"`` gives
    ``clamp(zero_point + ((t * mult + rnd) >> shift), clamp_lo, clamp_hi)`` (round half
    up, see :func:`rounding_shift`); ``mode="raw"`` gives ``t``.

    Parameters
    ----------
    acc:
        int64 ``(..., O)`` accumulators.
    bias, mult, shift:
        int64 ``(O,)`` (or scalars) per output channel, broadcast along the last axis.
    zero_point, clamp_lo, clamp_hi:
        Output zero point and clamp, in codes (unused in raw mode).
    mode:
        ``"requant"`` or ``"raw"``.

    Returns
    -------
    np.ndarray
        int64 of ``acc``'s shape.

    Raises
    ------
    ValueError
        For an unknown ``mode``.
    """
    total = np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)
    if OutputMode.parse(mode) is OutputMode.RAW:
        return total
    scaled = total * np.asarray(mult, dtype=np.int64)
    y = int(zero_point) + rounding_shift(scaled, shift)
    return np.clip(y, int(clamp_lo), int(clamp_hi))


# --------------------------------------------------------------------------- compute layers
def _conv_geometry(qlayer: QuantLayer) -> dict:
    """Window parameters of a conv layer with the IR's defaults."""
    layer = qlayer.layer
    attrs = layer.attrs
    kh, kw = _weight_values(qlayer).shape[2:]
    return dict(
        kernel=(int(kh), int(kw)),
        stride=tuple(attrs.get("stride", (1, 1))),
        pads=tuple(attrs.get("pads", (0, 0, 0, 0))),
        dilation=tuple(attrs.get("dilation", (1, 1))),
    )


def _groups(qlayer: QuantLayer) -> int:
    layer = qlayer.layer
    return int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1


def _weight_values(qlayer: QuantLayer) -> np.ndarray:
    layer = qlayer.layer
    if qlayer.weight is None:
        raise ValueError(f"layer {layer.name} ({layer.op}) has no quantized weight")
    values = np.asarray(qlayer.weight.values)
    if values.dtype.kind not in "iu":
        raise ValueError(
            f"layer {layer.name}: weight values must be integers, not dtype {values.dtype}"
        )
    if layer.weight is not None and values.shape != layer.weight.shape:
        raise ValueError(
            f"layer {layer.name}: quantized weight shape {values.shape} differs from the "
            f"IR weight shape {layer.weight.shape}"
        )
    return values.astype(np.int64)


def grouped_matrix(values: np.ndarray, groups: int) -> np.ndarray:
    """Return the ``(O, C * KH * KW)`` im2col-order matrix of integer conv/gemm weights.

    ``values`` is ``(O, C // groups, KH, KW)`` (or ``(O, F)`` with ``groups == 1``). With
    ``groups == 1`` this is ``values.reshape(O, -1)``; otherwise the block-diagonal matrix
    in which output channel ``o`` of group ``g = o // (O / groups)`` sees only the inputs of
    channels ``[g * C/groups, (g+1) * C/groups)`` (depthwise: ``groups == C == O``).

    Raises
    ------
    ValueError
        If ``O`` is not divisible by ``groups``.
    """
    values = np.asarray(values, dtype=np.int64)
    out_channels = values.shape[0]
    per_group = values.reshape(out_channels, -1)
    if groups == 1:
        return per_group
    if groups < 1 or out_channels % groups:
        raise ValueError(f"{out_channels} output channels not divisible by groups={groups}")
    dense = np.zeros((out_channels, groups, per_group.shape[1]), dtype=np.int64)
    group_of = np.arange(out_channels) // (out_channels // groups)
    dense[np.arange(out_channels), group_of] = per_group
    return dense.reshape(out_channels, groups * per_group.shape[1])


def layer_matrix(qlayer: QuantLayer) -> np.ndarray:
    """Return the integer weight matrix ``W_int (O, K)`` of a compute layer in im2col order.

    ``conv`` with ``groups == 1`` and ``gemm``: ``values.reshape(O, -1)``; a grouped or
    depthwise conv gives the block-diagonal matrix of :func:`grouped_matrix`
    (``(C, C*KH*KW)`` for depthwise).

    Raises
    ------
    ValueError
        If the layer is not a compute layer or has no integer weight.
    """
    layer = qlayer.layer
    if layer.op not in ("conv", "gemm"):
        raise ValueError(f"layer {layer.name} ({layer.op}) is not a compute layer")
    try:
        return grouped_matrix(_weight_values(qlayer), _groups(qlayer))
    except ValueError as error:
        raise ValueError(f"layer {layer.name}: {error}") from None


def layer_columns(qlayer: QuantLayer, codes: np.ndarray) -> np.ndarray:
    """Build the input vectors of a compute layer: one im2col row per output pixel.

    Parameters
    ----------
    qlayer:
        A ``conv`` or ``gemm`` layer.
    codes:
        int64 input codes, ``(N, C, H, W)`` for conv, ``(N, F)`` (or any ``(N, ...)`` with
        ``F`` elements) for gemm.

    Returns
    -------
    np.ndarray
        int64 ``(N * P, K)``: row ``n * P + p`` is output pixel ``p`` (row-major) of sample
        ``n``, columns in im2col order; padding positions hold the input zero point
        ``z_in`` (docs/contract.md section 1). ``P = 1`` for gemm.

    Raises
    ------
    ValueError
        If the codes' shape does not match the layer's input shape.
    """
    layer = qlayer.layer
    codes = np.asarray(codes, dtype=np.int64)
    expected = tuple(layer.input_shape)
    if codes.shape[1:] != expected and not (
        layer.op == "gemm" and int(np.prod(codes.shape[1:])) == int(np.prod(expected))
    ):
        raise ValueError(
            f"layer {layer.name}: input codes of shape {codes.shape[1:]} (without batch), "
            f"expected {expected}"
        )
    if layer.op == "gemm":
        return codes.reshape(codes.shape[0], -1)
    if layer.op != "conv":
        raise ValueError(f"layer {layer.name} ({layer.op}) is not a compute layer")
    cols = im2col(codes, pad_value=qlayer.inputs[0].zero_point, **_conv_geometry(qlayer))
    return cols.reshape(-1, cols.shape[-1])


def apply_act_block_bits(
    cols: np.ndarray, act_block_bits: np.ndarray, act_bits: int, ou_rows: int
) -> np.ndarray:
    """Drop the LSB slices of BWQ row blocks: ``x' = (x >> d) << d`` per input column.

    Input ``i`` belongs to row block ``r = i // ou_rows``; with width ``a_r`` the dropped
    bits are ``d = act_bits - a_r`` (docs/contract.md section 2; ``a_r = 0`` zeroes the
    block).

    Parameters
    ----------
    cols:
        int64 ``(M, K)`` input codes.
    act_block_bits:
        int ``(ceil(K / ou_rows),)`` widths, each in ``[0, act_bits]``.
    act_bits:
        Width of the codes.
    ou_rows:
        Rows per block.

    Raises
    ------
    ValueError
        If the block count or a width is out of range.
    """
    cols = np.asarray(cols, dtype=np.int64)
    widths = np.asarray(act_block_bits, dtype=np.int64).reshape(-1)
    n_inputs = cols.shape[-1]
    if ou_rows < 1:
        raise ValueError(f"ou_rows must be >= 1, not {ou_rows}")
    blocks = -(-n_inputs // ou_rows)
    if widths.shape[0] != blocks:
        raise ValueError(
            f"act_block_bits has {widths.shape[0]} entries, expected ceil({n_inputs}/"
            f"{ou_rows}) = {blocks}"
        )
    if widths.size and (widths.min() < 0 or widths.max() > act_bits):
        raise ValueError(
            f"act_block_bits must be between 0 and act_bits ({act_bits}), not "
            f"{widths.min()}..{widths.max()}"
        )
    dropped = np.repeat(act_bits - widths, ou_rows)[:n_inputs]
    return (cols >> dropped) << dropped


def compute_acc(
    qlayer: QuantLayer, cols: np.ndarray, *, ou_rows: int | None = None
) -> np.ndarray:
    """Return the exact accumulators ``acc[m, n] = sum_i x'[m, i] * W_int[n, i]``.

    ``x'`` is ``cols`` after :func:`apply_act_block_bits` when the layer has
    ``act_block_bits`` (BWQ), else ``cols`` itself. Grouped / depthwise convs are computed
    per group (for depthwise a per-channel multiply-add), which equals the product with the
    block-diagonal :func:`layer_matrix`.

    Parameters
    ----------
    qlayer:
        A compute layer.
    cols:
        int64 ``(M, K)`` raw input codes from :func:`layer_columns`.
    ou_rows:
        Row-block size of ``act_block_bits``; required when the layer has them.

    Returns
    -------
    np.ndarray
        int64 ``(M, O)``.

    Raises
    ------
    ValueError
        On a shape mismatch, or BWQ activation widths without ``ou_rows``.
    """
    layer = qlayer.layer
    cols = np.asarray(cols, dtype=np.int64)
    values = _weight_values(qlayer)
    out_channels = values.shape[0]
    groups = _groups(qlayer)
    per_group = values.reshape(out_channels, -1)
    n_inputs = per_group.shape[1] * groups
    if cols.ndim != 2 or cols.shape[1] != n_inputs:
        raise ValueError(
            f"layer {layer.name}: cols must be (M, {n_inputs}), not shape {cols.shape}"
        )
    if qlayer.act_block_bits is not None:
        if ou_rows is None:
            raise ValueError(
                f"layer {layer.name} has act_block_bits; compute_acc needs ou_rows"
            )
        cols = apply_act_block_bits(cols, qlayer.act_block_bits, qlayer.inputs[0].bits, ou_rows)
    if groups == 1:
        return cols @ per_group.T
    group_out = out_channels // groups
    grouped_cols = cols.reshape(cols.shape[0], groups, -1)          # (M, G, Kg)
    grouped_w = per_group.reshape(groups, group_out, -1)            # (G, Og, Kg)
    if group_out == 1:
        # depthwise: one output channel per group, a per-channel multiply-add
        return (grouped_cols * grouped_w[:, 0, :]).sum(axis=-1)
    return np.einsum("mgk,gok->mgo", grouped_cols, grouped_w).reshape(cols.shape[0], -1)


def compute_output(
    qlayer: QuantLayer,
    codes: np.ndarray,
    *,
    compute: ComputeHook | None = None,
    ou_rows: int | None = None,
) -> np.ndarray:
    """Run one compute layer on input codes: im2col, accumulate, output unit, reshape.

    Parameters
    ----------
    qlayer:
        A ``conv`` or ``gemm`` layer.
    codes:
        int64 ``(N, *input_shape)`` input codes.
    compute:
        Accumulator hook (see :data:`ComputeHook`); default :func:`compute_acc` with
        ``ou_rows``.
    ou_rows:
        BWQ row-block size for the default hook.

    Returns
    -------
    np.ndarray
        int64 ``(N, *output_shape)``: output codes, or accumulators plus bias in raw mode.
    """
    layer = qlayer.layer
    codes = np.asarray(codes, dtype=np.int64)
    batch = codes.shape[0]
    cols = layer_columns(qlayer, codes)
    if compute is None:
        acc = compute_acc(qlayer, cols, ou_rows=ou_rows)
    else:
        acc = np.asarray(compute(qlayer, cols))
    out_channels = layer.output_shape[0]
    if acc.shape != (cols.shape[0], out_channels):
        raise ValueError(
            f"layer {layer.name}: compute returned shape {acc.shape}, expected "
            f"{(cols.shape[0], out_channels)}"
        )
    if acc.dtype.kind not in "iu":
        raise ValueError(f"layer {layer.name}: compute must return integers, not {acc.dtype}")
    out = qlayer.output
    y = output_unit(
        acc, qlayer.bias, qlayer.mult, qlayer.shift,
        out.zero_point if out is not None else 0,
        qlayer.clamp_lo, qlayer.clamp_hi, qlayer.mode,
    )
    return columns_to_output(qlayer, y, batch)


def columns_to_output(qlayer: QuantLayer, y: np.ndarray, batch: int) -> np.ndarray:
    """Reshape per-vector outputs ``(N * P, O)`` into the layer's ``(N, *output_shape)``.

    The inverse of the vector order of :func:`layer_columns`: row ``n * P + p`` is output
    pixel ``p`` (row-major) of sample ``n``. A gemm's ``(N, O)`` is returned reshaped; a
    conv's becomes ``(N, O, OH, OW)``. The host driver uses this on the hardware's output
    stream, so the output layout exists once.

    Raises
    ------
    ValueError
        If ``y`` does not hold ``batch * P`` vectors of ``O`` channels.
    """
    layer = qlayer.layer
    y = np.asarray(y)
    out_channels = layer.output_shape[0]
    pixels = int(np.prod(layer.output_shape[1:])) if layer.op == "conv" else 1
    if y.shape != (batch * pixels, out_channels):
        raise ValueError(
            f"layer {layer.name}: outputs of shape {y.shape}, expected "
            f"{(batch * pixels, out_channels)}"
        )
    if layer.op == "gemm":
        return y.reshape(batch, *layer.output_shape)
    # (N*P, O) -> (N, O, OH, OW)
    return np.ascontiguousarray(
        y.reshape(batch, -1, out_channels).transpose(0, 2, 1)
    ).reshape(batch, *layer.output_shape)
