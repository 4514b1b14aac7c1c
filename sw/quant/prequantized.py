"""The quantized model of an already-quantized file (QDQ / QONNX), without re-quantizing.

:func:`quantized_from_file` turns the record :mod:`bitline.sw.frontend.qdq` reads from the
file (``model.quantization``) into a :class:`~bitline.sw.integer.qmodel.QuantizedModel`
through the one builder, :func:`~bitline.sw.quant.build.build_quantized_model`:

* weights: the file's integers, ``values = q - z_w`` (an asymmetric weight zero point is an
  exact conversion: the values are just wider signed integers), on the IR weight's layout,
  with the scale of each output channel fitted to the IR weight and checked to reproduce
  it: the file's scale (times Gemm's ``alpha``), or that times a per-channel factor a pass
  folded in (a BatchNorm or constant Mul after an unquantized conv output: exact, the layer
  is listed in ``spec["rescaled"]``); anything else is an error, not a silent
  re-rounding. Storage width: ``magnitude bits + 1`` (sign-magnitude, docs/contract.md).
* activations: the file's grid of each tensor; a pooling / flatten / ReLU output takes its
  input's grid (docs/contract.md section 3); where the file gives it another one (onnxruntime
  gives a GlobalAveragePool output its own scale), the layer is listed in
  ``spec["regridded"]`` -- the value then differs from onnxruntime's by less than one of the
  file's steps of that tensor.
* tensors that the IR merged away (a MatMul's output before its bias Add, a Conv's before
  a BatchNorm, a ReLU's input once fused) lose the file's rounding there; they are listed
  in ``spec["dropped"]``.
* biases: the float bias (the file's int32 bias times ``s_in * s_w``) divided back by
  ``s_in * s_w`` and rounded, which gives the file's integers.
"""

from __future__ import annotations

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.frontend.ir import Model
from bitline.sw.integer.qmodel import ActParams, QuantizedModel
from bitline.sw.quant.build import LayerWeights, build_quantized_model
from bitline.sw.quant.tensor import QuantizedTensor

__all__ = ["quantized_from_file", "PASS_THROUGH_OPS"]

#: Layers whose output codes are their input's (docs/contract.md section 3).
PASS_THROUGH_OPS = ("maxpool", "avgpool", "gap", "flatten", "relu", "relu6")
# Largest relative error of W_ir against values * s_n accepted as "the same weight": the
# IR holds float32 copies of (q - z) * s (and Gemm's alpha product), a few ulps.
_GRID_RTOL = 1e-5


def _fail(model: Model, message: str) -> ValueError:
    return ValueError(f"{model.source}: {message}")


def _channel_scale(model: Model, layer, entry) -> np.ndarray:
    """The file's scale per output channel of ``layer`` (float64 ``(O,)``)."""
    scale = np.moveaxis(np.asarray(entry.scale, dtype=np.float64), entry.out_axis, 0)
    per_channel = scale.reshape(scale.shape[0], -1)
    if per_channel.shape[0] != layer.weight.shape[0]:
        raise _fail(model, f"node {layer.name!r}: the weight quantization of {entry.node!r} "
                           f"has {per_channel.shape[0]} output channels, the layer "
                           f"{layer.weight.shape[0]}")
    if np.any(per_channel != per_channel[:, :1]):
        raise _fail(model, f"node {entry.node!r} ({entry.op}): the weight of {layer.name!r} "
                           "has more than one scale per output channel; the integer contract "
                           "holds one scale per output channel (docs/contract.md section 2)")
    return per_channel[:, 0] * abs(entry.alpha)


def _layer_weights(model: Model, layer, entry) -> tuple[LayerWeights, bool]:
    """The file's integers on the IR weight's layout and the scale of each output channel.

    ``W_ir[n] = v[n] * s[n]`` must hold for the file's integers ``v`` (transposed for a
    MatMul / ``transB = 0`` Gemm): ``s[n]`` is the file's scale (times Gemm's ``alpha``), or
    that times the factor a pass folded into channel ``n`` (BatchNorm, constant Mul): a
    per-channel factor keeps the integers and moves into the scale, exactly (a negative one
    flips the channel's signs). Returns the weights and whether any channel was rescaled.
    """
    if entry is None:
        raise _fail(model, f"node {layer.name!r} ({layer.op}): its weight is not quantized "
                           "(no DequantizeLinear / Quant on it); a quantized model needs every "
                           "compute layer's weight quantized, or compile with --requantize")
    file_scale = _channel_scale(model, layer, entry)
    if np.any(~np.isfinite(file_scale)) or np.any(file_scale <= 0):
        raise _fail(model, f"node {entry.node!r} ({entry.op}): weight scales must be "
                           "positive and finite")
    values = np.asarray(entry.values, dtype=np.int64)
    if entry.out_axis == 1 and values.ndim == 2:
        values = values.T
    weight = np.asarray(layer.weight, dtype=np.float64)
    if values.shape != weight.shape:
        raise _fail(model, f"node {layer.name!r} ({layer.op}): weight shape {weight.shape} "
                           f"differs from the integers of {entry.node!r} {values.shape}")
    rows_v = values.reshape(values.shape[0], -1)
    rows_w = weight.reshape(weight.shape[0], -1)
    norm = (rows_v * rows_v).sum(axis=1).astype(np.float64)
    fitted = (rows_w * rows_v).sum(axis=1) / np.where(norm > 0, norm, 1.0)
    # A channel whose integers are all zero, or that a zero factor emptied, keeps the file's
    # scale with zero integers.
    empty = (norm == 0) | (fitted == 0)
    sign = np.where(fitted < 0, -1, 1)
    # The file's own scale, exactly, wherever the fit is that scale up to float32 rounding.
    own = empty | (np.abs(np.abs(fitted) / file_scale - 1) <= _GRID_RTOL)
    scale = np.where(own, file_scale, np.abs(fitted))
    rows_v = np.where(empty[:, None], 0, rows_v * sign[:, None])
    peak = np.abs(rows_w).max(axis=1, initial=0.0)
    if np.any(np.abs(rows_v * scale[:, None] - rows_w) > _GRID_RTOL * np.maximum(peak, 1e-30)[
            :, None]):
        raise _fail(model, f"node {layer.name!r} ({layer.op}): its weight is no longer the "
                           f"integers of {entry.node!r} ({entry.op}) times one scale per output "
                           "channel (something other than a per-channel factor was folded "
                           "into it); fold it before quantizing, or compile with --requantize")
    values = rows_v.reshape(values.shape)
    rescaled = bool(np.any(~own) or np.any(sign < 0))
    shape = (-1,) + (1,) * (weight.ndim - 1)
    magnitude = int(np.abs(values).max(initial=0)).bit_length()
    tensor = QuantizedTensor(values=values, scale=scale.reshape(shape), scheme="int",
                             bits=max(magnitude + 1, 2),
                             options={"file_bits": int(entry.bits), "signed": entry.signed})
    return LayerWeights(tensor), rescaled


def _acts(model: Model, quant) -> tuple[dict[str, ActParams], list[str]]:
    """ActParams per tensor, pass-through layers inheriting; the re-gridded layers."""
    def params(grid):
        return ActParams(bits=int(grid.bits), scale=float(grid.scale),
                         zero_point=int(grid.zero_point))

    if model.input_name not in quant.acts:
        raise _fail(model, f"the model input {model.input_name!r} is not quantized (no "
                           "QuantizeLinear / Quant on it); a weight-only quantized model has "
                           "no activation grids: compile it with --requantize and a spec")
    acts = {model.input_name: params(quant.acts[model.input_name])}
    regridded = []
    consumed = {name for layer in model.layers for name in layer.inputs}
    for layer in model.layers:
        grid = quant.acts.get(layer.output)
        if layer.op in PASS_THROUGH_OPS:
            acts[layer.output] = acts[layer.inputs[0]]
            if grid is not None and params(grid) != acts[layer.output]:
                regridded.append(layer.name)
        elif grid is not None:
            acts[layer.output] = params(grid)
        elif layer.output != model.output_name or layer.activation or layer.output in consumed \
                or not layer.is_compute:
            raise _fail(model, f"node {layer.name!r} ({layer.op}): its output "
                               f"{layer.output!r} is not quantized (no QuantizeLinear / Quant);"
                               " bitline needs the grid of every tensor a layer writes, except "
                               "the model output of the last compute layer (or compile with "
                               "--requantize and a spec)")
    return acts, regridded


def quantized_from_file(model: Model, config: AcceleratorConfig | None = None
                        ) -> QuantizedModel:
    """Return the :class:`QuantizedModel` that ``model.quantization`` describes.

    Parameters
    ----------
    model:
        An IR model loaded from a quantized file (``model.quantization`` set by
        :func:`bitline.sw.frontend.onnx_import.load_onnx`).
    config:
        The accelerator: activations must fit ``max_act_bits`` and weights
        ``max_weight_bits - 1`` magnitude planes; its OU is recorded as ``spec["ou_rows"]``
        / ``["ou_cols"]``. Default ``AcceleratorConfig()``.

    Returns
    -------
    QuantizedModel
        ``spec = {"name": "file", "mode": "file", "format", "source", "regridded",
        "dropped", "rescaled", "ou_rows", "ou_cols", "stats"}``: ``regridded`` the
        pass-through layers whose file grid differs from their input's, ``dropped`` the
        quantized tensors the IR merged away (their rounding is not repeated), ``rescaled``
        the compute layers whose channel scales took a folded per-channel factor; ``stats`` as
        :func:`bitline.sw.quant.quantize_model` gives them (average weight and activation
        bits, zero-block fraction, histogram).

    Raises
    ------
    ValueError
        Naming the file, node and reason: a compute weight or a tensor without quantization,
        more than one weight scale per output channel, a weight no longer on its grid, or
        widths the config cannot hold.
    """
    from bitline.sw.quant.pipeline import zero_block_fraction

    quant = getattr(model, "quantization", None)
    if quant is None:
        raise ValueError(f"model {model.name} was not read from a quantized file")
    config = config or AcceleratorConfig()
    fitted = {layer.name: _layer_weights(model, layer, quant.weights.get(layer.name))
              for layer in model.compute_layers}
    weights = {name: entry for name, (entry, _) in fitted.items()}
    rescaled = [name for name, (_, changed) in fitted.items() if changed]
    acts, regridded = _acts(model, quant)
    widest = max(act.bits for act in acts.values())
    if widest > config.max_act_bits:
        raise _fail(model, f"a {widest}-bit activation exceeds the config's max_act_bits "
                           f"({config.max_act_bits})")
    limit = config.max_weight_bits - 1
    for name, entry in weights.items():
        planes = entry.weight.magnitude_bits
        if planes > limit:
            raise _fail(model, f"layer {name} needs {planes} magnitude bit planes, but the "
                               f"config's max_weight_bits = {config.max_weight_bits} allows "
                               f"{limit}; raise max_weight_bits in the config")
    # Tensors the file rounds that the IR no longer has: the conversion or a pass merged the
    # op that wrote them into the next (MatMul + bias Add, Conv + BatchNorm, ReLU fusion), so
    # one rounding of the file is not repeated; named here, never dropped silently.
    tensors = {model.input_name} | {layer.output for layer in model.layers}
    dropped = sorted(name for name in quant.acts if name not in tensors)
    spec = {"name": "file", "mode": "file", "format": quant.format, "source": quant.source,
            "regridded": regridded, "dropped": dropped, "rescaled": rescaled,
            "ou_rows": config.ou_rows, "ou_cols": config.ou_cols,
            "stats": _stats(model, weights, acts, config, zero_block_fraction)}
    return build_quantized_model(model, weights, acts, spec=spec)


def _stats(model, weights, acts, config, zero_block_fraction) -> dict:
    compute = model.compute_layers
    sizes = {layer.name: int(layer.weight.size) for layer in compute}
    histogram: dict[int, int] = {}
    for name, entry in weights.items():
        histogram[int(entry.weight.bits)] = histogram.get(int(entry.weight.bits), 0) + sizes[name]
    total = max(sum(sizes.values()), 1)
    features = {layer.name: int(np.prod(layer.weight.shape[1:]))
                * (int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1)
                for layer in compute}
    act_total = sum(acts[layer.inputs[0]].bits * features[layer.name] for layer in compute)
    return dict(
        avg_weight_bits=sum(bits * count for bits, count in histogram.items()) / total,
        avg_activation_bits=act_total / max(sum(features.values()), 1),
        zero_block_fraction=zero_block_fraction(
            model, {name: entry.weight for name, entry in weights.items()},
            config.ou_rows, config.ou_cols),
        weight_bits_histogram=dict(sorted(histogram.items())),
    )
