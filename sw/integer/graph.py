"""The graph walk of a quantized model: the one traversal the golden model and the driver share.

A :class:`~bitline.sw.integer.qmodel.QuantizedModel` is a list of layers in execution order, each
reading named code tensors and writing one. :func:`walk` runs that list on the quantized
input with a per-layer function, frees every tensor after its last reader, and returns the
model output's codes; :func:`model_output` dequantizes them. The integer golden model
(:func:`bitline.sim.golden.run_golden`) passes :func:`layer_forward` (with its accumulator
hook), which dispatches one layer to :mod:`bitline.sw.integer.arith` (compute layers) or
:mod:`bitline.sw.integer.tensor_ops` (the others); the host driver
(:mod:`bitline.sw.host.driver`) passes a function that sends compute layers to the hardware
and runs every other layer with the same :func:`layer_forward`. Nothing else walks the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bitline.sw.frontend.float_model import output_transform
from bitline.sw.integer import arith, tensor_ops
from bitline.sw.integer.qmodel import QuantizedModel, QuantLayer

__all__ = [
    "LayerFunction", "check_input", "layer_forward", "walk", "model_output", "spec_ou_rows",
]

#: ``forward(qlayer, inputs) -> output``: one layer on its input code tensors (batch first,
#: two for ``add``); returns int64 ``(N, *layer.output_shape)``.
LayerFunction = Callable[[QuantLayer, Sequence[np.ndarray]], np.ndarray]


def spec_ou_rows(qmodel: QuantizedModel) -> int | None:
    """Return the BWQ row-block size ``qmodel.spec["ou_rows"]`` (``None`` when absent)."""
    value = qmodel.spec.get("ou_rows") if isinstance(qmodel.spec, dict) else None
    return None if value is None else int(value)


def check_input(qmodel: QuantizedModel, x: np.ndarray) -> np.ndarray:
    """Return ``x`` as an array after checking it is a batch of the model's input shape.

    Raises
    ------
    ValueError
        If ``x`` is not ``(N, *model.input_shape)`` or a layer lacks its quantization.
    """
    model = qmodel.model
    x = np.asarray(x)
    if x.ndim != len(model.input_shape) + 1 or x.shape[1:] != tuple(model.input_shape):
        raise ValueError(
            f"x must be a batch of shape (N, {', '.join(map(str, model.input_shape))}) for "
            f"model {model.name}, not {x.shape}"
        )
    missing = [layer.name for layer in model.layers if layer.name not in qmodel.layers]
    if missing:
        raise ValueError(f"quantized model {model.name} lacks layer(s) {', '.join(missing)}")
    return x


def walk(
    qmodel: QuantizedModel,
    codes: np.ndarray,
    forward: LayerFunction,
    *,
    return_all: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run every layer of ``qmodel`` in order on the input codes.

    Parameters
    ----------
    qmodel:
        The quantized model.
    codes:
        int64 ``(N, *input_shape)`` input codes (:func:`bitline.sw.integer.arith.quantize_input`).
    forward:
        :data:`LayerFunction` applied to each layer.
    return_all:
        Keep every layer's output (by layer name) instead of freeing tensors after their
        last reader.

    Returns
    -------
    output_int, layers:
        The model output tensor (int64) and, with ``return_all``, every layer's output.

    Raises
    ------
    ValueError
        If a layer reads a tensor no earlier layer produced.
    """
    model = qmodel.model
    last_use: dict[str, int] = {}
    for index, layer in enumerate(model.layers):
        for name in layer.inputs:
            last_use[name] = index
    tensors = {model.input_name: codes}
    kept: dict[str, np.ndarray] = {}
    for index, layer in enumerate(model.layers):
        qlayer = qmodel.layers[layer.name]
        try:
            inputs = [tensors[name] for name in layer.inputs]
        except KeyError as error:
            raise ValueError(
                f"layer {layer.name}: input tensor {error.args[0]!r} is not produced before it"
            ) from None
        tensors[layer.output] = forward(qlayer, inputs)
        if return_all:
            kept[layer.name] = tensors[layer.output]
        for name in dict.fromkeys(layer.inputs):   # once each: add(t, t) reads t twice
            if last_use.get(name) == index and name != model.output_name:
                del tensors[name]
    return tensors[model.output_name], kept


def model_output(qmodel: QuantizedModel, output_int: np.ndarray) -> np.ndarray:
    """Return the real-valued model output (float64) of its integer output tensor.

    Raw mode (a final compute layer without activation): ``(acc + bias) * s_in * s_w[n]``;
    otherwise ``scale * (q - zero_point)`` of the producing layer's output (or of the
    model input for a model without layers); then the model's ``output_transform`` (a
    final Softmax / LogSoftmax the host runs), if any.
    """
    model = qmodel.model
    producer = next((layer for layer in model.layers if layer.output == model.output_name), None)
    if producer is None:
        return arith.dequantize(output_int, qmodel.input)
    qlayer = qmodel.layers[producer.name]
    if qlayer.mode == "raw":
        scale = qlayer.acc_scale.reshape((-1,) + (1,) * (output_int.ndim - 2))
        values = output_int.astype(np.float64) * scale
    else:
        values = arith.dequantize(output_int, qlayer.output)
    # A final Softmax / LogSoftmax is the host's, on the dequantized logits.
    return output_transform(values, model.output_transform)


def layer_forward(
    qlayer: QuantLayer,
    inputs: Sequence[np.ndarray],
    *,
    compute: arith.ComputeHook | None = None,
    ou_rows: int | None = None,
) -> np.ndarray:
    """Run one quantized layer on its input codes (batch first).

    Parameters
    ----------
    qlayer:
        The layer.
    inputs:
        Its input code tensors, ``(N, *input_shape)`` each (two for ``add``).
    compute, ou_rows:
        Accumulator hook and BWQ row-block size for compute layers, see
        :func:`bitline.sw.integer.arith.compute_output`.

    Returns
    -------
    np.ndarray
        int64 ``(N, *output_shape)``.

    Raises
    ------
    ValueError
        For an unknown op or a wrong number of inputs.
    """
    layer = qlayer.layer
    op = layer.op
    expected_inputs = {"add": 2, "concat": len(layer.inputs)}.get(op, 1)
    if len(inputs) != expected_inputs:
        raise ValueError(
            f"layer {layer.name} ({op}) takes {expected_inputs} input(s), got {len(inputs)}"
        )
    x = np.asarray(inputs[0], dtype=np.int64)
    attrs = layer.attrs
    if op in ("conv", "gemm"):
        return arith.compute_output(qlayer, x, compute=compute, ou_rows=ou_rows)
    if op in ("relu", "relu6"):
        y = tensor_ops.relu(x, qlayer.clamp_lo, qlayer.clamp_hi)
    elif op == "maxpool":
        y = tensor_ops.maxpool(x, attrs["kernel"], attrs.get("stride", (1, 1)),
                    attrs.get("pads", (0, 0, 0, 0)))
    elif op == "avgpool":
        y = tensor_ops.avgpool(
            x, attrs["kernel"], attrs.get("stride", (1, 1)),
            attrs.get("pads", (0, 0, 0, 0)),
            count_include_pad=bool(attrs.get("count_include_pad", False)),
            zero_point=qlayer.inputs[0].zero_point,
        )
    elif op == "gap":
        y = tensor_ops.global_avgpool(x)
    elif op == "add":
        out = qlayer.output
        y = tensor_ops.add(x, inputs[1], qlayer.inputs[0], qlayer.inputs[1], qlayer.mult,
                           qlayer.shift, out.zero_point, qlayer.clamp_lo, qlayer.clamp_hi)
    elif op == "concat":
        y = tensor_ops.concat(inputs, qlayer.inputs, qlayer.mult, qlayer.shift,
                              qlayer.output.zero_point, qlayer.clamp_lo, qlayer.clamp_hi)
    elif op == "leaky_relu":
        y = tensor_ops.leaky_relu(x, qlayer.inputs[0], qlayer.mult, qlayer.shift,
                                  qlayer.output.zero_point, qlayer.clamp_lo, qlayer.clamp_hi)
    elif op == "flatten":
        y = tensor_ops.flatten(x)
    else:
        raise ValueError(f"layer {layer.name}: unknown op {op!r}")
    expected = (x.shape[0], *layer.output_shape)
    if y.shape != expected:
        raise ValueError(
            f"layer {layer.name} ({op}): output shape {y.shape[1:]} differs from the IR's "
            f"{tuple(layer.output_shape)}"
        )
    return y
