"""Build a :class:`~bitline.sw.integer.qmodel.QuantizedModel` from quantized weights and ActParams.

:func:`build_quantized_model` is the one place where the output-unit parameters of
docs/contract.md sections 2-3 are derived: integer biases with the input zero point folded
in, fixed-point multipliers, output modes and clamps. Every quantization flow (the plain
INT flow :func:`quantize_model_int`, varied schemes, BWQ) ends here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.integer import tensor_ops
from bitline.sw.integer.arith import grouped_matrix
from bitline.sw.integer.qmodel import ActParams, QuantizedModel, QuantLayer, fixed_point
from bitline.sw.quant.tensor import QuantizedTensor

__all__ = [
    "LayerWeights",
    "build_quantized_model",
    "quantize_model_int",
    "add_fixed_point",
    "relu6_code",
    "channel_scales",
]


@dataclass
class LayerWeights:
    """Quantized weights of one compute layer, as a quantizer hands them to the builder.

    Attributes
    ----------
    weight:
        Integer weights (``values`` in the IR weight's shape) and per-channel scales.
    block_bits:
        BWQ only: int ``(ceil(O/ou_cols), ceil(K/ou_rows))`` weight width per OU-sized
        block of the ``(O, K)`` matrix (0 = pruned: the block's weights must be zero).
    act_block_bits:
        BWQ only: int ``(ceil(K/ou_rows),)`` input activation width per row block, each in
        ``[0, a_in]``.
    """

    weight: QuantizedTensor
    block_bits: np.ndarray | None = None
    act_block_bits: np.ndarray | None = None


def add_fixed_point(ratio_a: float, ratio_b: float) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(mult (2,), shift (2,))`` for an add: ``s_a/s_y`` and ``s_b/s_y`` at one shift.

    Each ratio is first encoded by :func:`~bitline.sw.integer.qmodel.fixed_point`; the common shift
    ``sh`` is the smaller of the two shifts and both multipliers are re-rounded to it,
    ``m = rint(ratio * 2**sh)`` (so both stay below ``2**15``).
    """
    ratios = np.array([ratio_a, ratio_b], dtype=np.float64)
    _, shifts = fixed_point(ratios)
    common = int(shifts.min())
    mult = np.rint(ratios * np.exp2(common)).astype(np.int64)
    return mult, np.full(2, common, dtype=np.int64)


def relu6_code(act: ActParams) -> int:
    """Return the ReLU6 clamp ``min(2**a - 1, z + rint(6 / s))`` of an output tensor."""
    return int(min(act.qmax, act.zero_point + np.rint(6.0 / act.scale)))


def channel_scales(layer: Layer, weight: QuantizedTensor) -> np.ndarray:
    """Return the per-output-channel weight scales ``s_w`` as float64 ``(O,)``.

    Raises
    ------
    ValueError
        If the scale does not broadcast to the weight or varies within one output channel.
    """
    values = np.asarray(weight.values)
    try:
        scale = np.broadcast_to(np.asarray(weight.scale, dtype=np.float64), values.shape)
    except ValueError:
        raise ValueError(
            f"layer {layer.name}: weight scale of shape {np.shape(weight.scale)} does not "
            f"broadcast to the weight shape {values.shape}"
        ) from None
    per_channel = scale.reshape(values.shape[0], -1)
    if per_channel.shape[1] and np.any(per_channel != per_channel[:, :1]):
        raise ValueError(f"layer {layer.name}: weight scale must be constant per output channel")
    scales = per_channel[:, 0] if per_channel.shape[1] else np.ones(values.shape[0])
    if np.any(~np.isfinite(scales)) or np.any(scales <= 0):
        raise ValueError(f"layer {layer.name}: weight scales must be positive and finite")
    return scales.copy()


def _normalize_spec(spec) -> dict:
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return dict(spec)
    if hasattr(spec, "to_dict"):
        return dict(spec.to_dict())
    raise ValueError(f"spec must be a dict (or have to_dict()), not {type(spec).__name__}")


def _block_arrays(layer: Layer, entry: LayerWeights, values: np.ndarray, a_in: int, spec: dict):
    """Validate and return the BWQ arrays of one layer (``None`` when absent)."""
    if entry.block_bits is None and entry.act_block_bits is None:
        return None, None
    geometry = {}
    for key in ("ou_rows", "ou_cols"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(
                f"layer {layer.name} has BWQ block widths; spec[{key!r}] must be a positive "
                f"integer, not {value!r}"
            )
        geometry[key] = int(value)
    groups = int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1
    n_out, n_in = values.shape[0], int(np.prod(values.shape[1:])) * groups
    row_blocks = -(-n_in // geometry["ou_rows"])
    col_blocks = -(-n_out // geometry["ou_cols"])
    block_bits = act_block_bits = None
    if entry.block_bits is not None:
        block_bits = np.asarray(entry.block_bits)
        if block_bits.shape != (col_blocks, row_blocks) or block_bits.dtype.kind not in "iu":
            raise ValueError(
                f"layer {layer.name}: block_bits must be integers of shape "
                f"{(col_blocks, row_blocks)}, not {block_bits.dtype} {block_bits.shape}"
            )
        block_bits = block_bits.astype(np.int64)
        if block_bits.min(initial=0) < 0:
            raise ValueError(f"layer {layer.name}: block_bits must be >= 0")
        pruned = np.repeat(np.repeat(block_bits == 0, geometry["ou_cols"], axis=0),
                           geometry["ou_rows"], axis=1)[:n_out, :n_in]
        if np.any(grouped_matrix(values, groups)[pruned] != 0):
            raise ValueError(
                f"layer {layer.name}: a block with block_bits 0 (pruned) holds nonzero weights"
            )
    if entry.act_block_bits is not None:
        act_block_bits = np.asarray(entry.act_block_bits)
        if act_block_bits.shape != (row_blocks,) or act_block_bits.dtype.kind not in "iu":
            raise ValueError(
                f"layer {layer.name}: act_block_bits must be integers of shape "
                f"{(row_blocks,)}, not {act_block_bits.dtype} {act_block_bits.shape}"
            )
        act_block_bits = act_block_bits.astype(np.int64)
        if act_block_bits.size and (act_block_bits.min() < 0 or act_block_bits.max() > a_in):
            raise ValueError(
                f"layer {layer.name}: act_block_bits must be between 0 and the input width "
                f"{a_in}, not {act_block_bits.min()}..{act_block_bits.max()}"
            )
    return block_bits, act_block_bits


def _act(acts: Mapping[str, ActParams], tensor: str, where: str) -> ActParams:
    try:
        act = acts[tensor]
    except KeyError:
        raise ValueError(f"{where}: no ActParams for tensor {tensor!r}") from None
    if not isinstance(act, ActParams):
        raise ValueError(f"tensor {tensor}: ActParams expected, not {type(act).__name__}")
    if not (act.scale > 0 and np.isfinite(act.scale)) or not 0 <= act.zero_point <= act.qmax:
        raise ValueError(
            f"tensor {tensor}: ActParams need a positive finite scale and a zero point in "
            f"[0, {act.qmax}], not scale={act.scale!r} zero_point={act.zero_point!r}"
        )
    return act


def _compute_layer(model: Model, layer: Layer, entry: LayerWeights,
                   acts: Mapping[str, ActParams], spec: dict) -> QuantLayer:
    weight = entry.weight
    values = np.asarray(weight.values)
    if values.shape != layer.weight.shape:
        raise ValueError(
            f"layer {layer.name}: quantized weight shape {values.shape} differs from the IR "
            f"weight shape {layer.weight.shape}"
        )
    if values.dtype.kind not in "iu":
        raise ValueError(
            f"layer {layer.name}: weight values must be integers, not dtype {values.dtype}"
        )
    values = values.astype(np.int64)
    a_in = _act(acts, layer.inputs[0], f"layer {layer.name}")
    s_w = channel_scales(layer, weight)
    acc_scale = a_in.scale * s_w
    bias_real = (np.zeros(values.shape[0]) if layer.bias is None
                 else np.asarray(layer.bias, dtype=np.float64).reshape(-1))
    # Every padding position holds z_in, so the correction is the same for every pixel.
    row_sums = values.reshape(values.shape[0], -1).sum(axis=1)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        bias_codes = np.rint(bias_real / acc_scale)
    huge = ~(np.abs(bias_codes) < 2.0 ** 62)     # would overflow the int64 cast (or NaN)
    if huge.any():
        channel = int(np.argmax(huge))
        raise ValueError(
            f"layer {layer.name} channel {channel}: bias {bias_real[channel]:.6g} over the "
            f"accumulator scale {float(np.ravel(acc_scale)[channel % np.size(acc_scale)]):.6g} "
            f"is {bias_codes[channel]:.6g}, beyond any integer accumulator"
        )
    bias = bias_codes.astype(np.int64) - a_in.zero_point * row_sums
    block_bits, act_block_bits = _block_arrays(layer, entry, values, a_in.bits, spec)
    common = dict(layer=layer, inputs=[a_in], weight=weight, bias=bias,
                  block_bits=block_bits, act_block_bits=act_block_bits)
    consumed = any(layer.output in other.inputs for other in model.layers)
    if layer.output == model.output_name and layer.activation is None and not consumed:
        return QuantLayer(output=None, mult=np.ones_like(bias), shift=np.zeros_like(bias),
                          mode="raw", clamp_lo=0, clamp_hi=0, **common)
    out = _act(acts, layer.output, f"layer {layer.name}")
    try:
        mult, shift = fixed_point(acc_scale / out.scale)
    except ValueError as error:
        raise ValueError(f"layer {layer.name}: {error} (its weights or input scale are far "
                         f"larger than its output's)") from None
    clamp_lo, clamp_hi = _clamp(layer.activation, out)
    return QuantLayer(output=out, mult=mult, shift=shift, mode="requant",
                      clamp_lo=clamp_lo, clamp_hi=clamp_hi, **common)


def _clamp(activation, out: ActParams) -> tuple[int, int]:
    if activation is None:
        return 0, out.qmax
    if activation == "relu":
        return out.zero_point, out.qmax
    if activation == "relu6":
        return out.zero_point, relu6_code(out)
    raise ValueError(f"unknown fused activation {activation!r}")


def build_quantized_model(
    model: Model,
    weights: Mapping[str, LayerWeights],
    acts: Mapping[str, ActParams],
    *,
    spec=None,
) -> QuantizedModel:
    """Derive every layer's integer parameters (docs/contract.md sections 2-3).

    Per compute layer: ``bias = rint(b / (s_in * s_w)) - z_in * sum_i W_int[n, i]``,
    ``(mult, shift) = fixed_point(s_in * s_w / s_out)``, clamps from the fused activation.
    The compute layer that writes the model output without a fused activation (and that no
    other layer reads) runs in ``"raw"`` mode (``output=None``, ``mult=1``, ``shift=0``, clamps 0); every other layer
    requantizes. ``add`` gets :func:`add_fixed_point` multipliers; ``relu``/``relu6`` clamp
    at ``[z, qmax]`` / ``[z, relu6_code]``; pooling, ``gap`` and ``flatten`` layers must
    have output params equal to their input's.

    Parameters
    ----------
    model:
        The float IR model.
    weights:
        Compute-layer name -> :class:`LayerWeights` (exactly the compute layers).
    acts:
        Tensor name -> ActParams for the model input and every layer output (the raw
        output tensor may be missing).
    spec:
        Quantization spec kept in ``QuantizedModel.spec`` (a dict, or an object with
        ``to_dict()``). When a layer has BWQ block widths it must hold ``ou_rows`` and
        ``ou_cols``, the OU geometry the blocks refer to.

    Returns
    -------
    QuantizedModel

    Raises
    ------
    ValueError
        Naming the layer / tensor / field for missing or inconsistent inputs.
    """
    spec = _normalize_spec(spec)
    compute_names = [layer.name for layer in model.compute_layers]
    missing = [name for name in compute_names if name not in weights]
    unknown = sorted(set(weights) - set(compute_names))
    if missing or unknown:
        raise ValueError(
            f"weights must name exactly the compute layers of {model.name}: "
            f"missing {missing}, unknown {unknown}"
        )
    input_act = _act(acts, model.input_name, f"model {model.name} input")
    layers: dict[str, QuantLayer] = {}
    for layer in model.layers:
        if layer.is_compute:
            entry = weights[layer.name]
            if not isinstance(entry, LayerWeights):
                raise ValueError(
                    f"weights[{layer.name!r}] must be a LayerWeights, not {type(entry).__name__}"
                )
            layers[layer.name] = _compute_layer(model, layer, entry, acts, spec)
            continue
        ins = [_act(acts, name, f"layer {layer.name}") for name in layer.inputs]
        out = _act(acts, layer.output, f"layer {layer.name}")
        if layer.op == "add":
            if len(ins) != 2:
                raise ValueError(f"layer {layer.name} (add) needs 2 inputs, not {len(ins)}")
            mult, shift = add_fixed_point(ins[0].scale / out.scale, ins[1].scale / out.scale)
            clamp_lo, clamp_hi = _clamp(layer.activation, out)
            layers[layer.name] = QuantLayer(layer=layer, inputs=ins, output=out, mult=mult,
                                            shift=shift, clamp_lo=clamp_lo, clamp_hi=clamp_hi)
            continue
        if layer.op in ("concat", "leaky_relu"):
            # Rescaling host layers (docs/contract.md 3): one multiplier per input (concat) or
            # per sign and channel (leaky_relu), at one shift.
            if layer.op == "concat":
                ratios = [act.scale / out.scale for act in ins]
            else:
                alpha = np.asarray(layer.attrs["alpha"], dtype=np.float64).reshape(-1)
                ratios = [ins[0].scale / out.scale, *(alpha * ins[0].scale / out.scale)]
            mult, shift = tensor_ops.shared_shift(ratios)
            layers[layer.name] = QuantLayer(layer=layer, inputs=ins, output=out, mult=mult,
                                            shift=shift, clamp_lo=0, clamp_hi=out.qmax)
            continue
        if out != ins[0]:
            raise ValueError(
                f"layer {layer.name} ({layer.op}): output params {out} must equal the input "
                f"params {ins[0]} (docs/contract.md section 3)"
            )
        if layer.op in ("relu", "relu6"):
            clamp_lo, clamp_hi = _clamp(layer.op, out)
        elif layer.op in ("maxpool", "avgpool", "gap", "flatten"):
            clamp_lo, clamp_hi = 0, out.qmax
        else:
            raise ValueError(f"layer {layer.name}: unknown op {layer.op!r}")
        layers[layer.name] = QuantLayer(layer=layer, inputs=ins, output=out,
                                        clamp_lo=clamp_lo, clamp_hi=clamp_hi)
    return QuantizedModel(model=model, input=input_act, layers=layers, spec=spec)


def quantize_model_int(
    model: Model,
    calib_x: np.ndarray,
    *,
    weight_bits: int = 8,
    act_bits: int = 8,
    per_channel: bool = True,
    rule: str = "percentile",
    percentile: float = 99.99,
) -> QuantizedModel:
    """Quantize a model with uniform INT weights and calibrated activations.

    Weights: ``quantize(w, "int", weight_bits, axis=0)`` (per output channel) or
    ``axis=None`` (per tensor). Activations: :func:`calibrate_activations` with
    ``bits=act_bits``, ``rule`` and ``percentile``.

    Returns
    -------
    QuantizedModel
        With ``spec = {"scheme": "int", "weight_bits", "act_bits", "per_channel",
        "calibration"}``.
    """
    from bitline.sw.quant import (
        quantize,  # the scheme registry, imported lazily (quant/__init__)
    )
    from bitline.sw.quant.calibrate import calibrate_activations

    weights = {
        layer.name: LayerWeights(quantize(layer.weight, "int", weight_bits,
                                          axis=0 if per_channel else None))
        for layer in model.compute_layers
    }
    acts = calibrate_activations(model, calib_x, bits=act_bits, rule=rule,
                                 percentile=percentile)
    spec = {"scheme": "int", "weight_bits": weight_bits, "act_bits": act_bits,
            "per_channel": per_channel, "calibration": {"rule": rule, "percentile": percentile}}
    return build_quantized_model(model, weights, acts, spec=spec)
