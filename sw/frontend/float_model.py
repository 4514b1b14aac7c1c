"""The float reference: run the IR (:mod:`bitline.sw.frontend.ir`) in float32 numpy.

Step 1 of the verification ladder. Convolutions and pooling windows use the shared
:func:`bitline.sw.frontend.im2col.im2col` layout, so this model reads its windows exactly as the
integer golden model and the host driver do.
"""

from __future__ import annotations

import numpy as np

from bitline.sw.frontend.im2col import im2col
from bitline.sw.frontend.ir import Layer, Model

__all__ = ["run_float", "run_float_from", "apply_activation", "output_transform"]


def apply_activation(y: np.ndarray, activation: str | None) -> np.ndarray:
    """Apply a fused activation (``None``, ``"relu"`` or ``"relu6"``) to ``y``."""
    if activation is None:
        return y
    if activation == "relu":
        return np.maximum(y, np.float32(0))
    if activation == "relu6":
        return np.clip(y, np.float32(0), np.float32(6))
    raise ValueError(f"unknown activation {activation!r}")


def _conv(layer: Layer, x: np.ndarray) -> np.ndarray:
    attrs = layer.attrs
    out_c, out_h, out_w = layer.output_shape
    kh, kw = layer.weight.shape[2:]
    cols = im2col(x, (kh, kw), attrs["stride"], attrs["pads"], attrs["dilation"])
    n = x.shape[0]
    if attrs.get("groups", 1) == 1:
        # One 2-D product per image: numpy's stacked (N, P, K) @ (K, O) matmul is 2-5x
        # slower on ResNet-18 shapes; per image the same GEMM runs, so the sums are the
        # same bits (tests/unit/test_fast_paths.py).
        weight_t = layer.weight_matrix.T
        y = np.empty((n, cols.shape[1], out_c), dtype=np.result_type(cols, weight_t))
        for image in range(n):
            np.matmul(cols[image], weight_t, out=y[image])              # (P, O)
        y = y.transpose(0, 2, 1)
    else:
        # Depthwise: channel c only sees its own kh*kw window inputs.
        cols = cols.reshape(n, out_h * out_w, out_c, kh * kw)
        y = np.einsum("npck,ck->ncp", cols, layer.weight_matrix, optimize=True)
    y = y.reshape(n, out_c, out_h, out_w)
    if layer.bias is not None:
        y = y + layer.bias[:, None, None]
    return y


def _pool(layer: Layer, x: np.ndarray) -> np.ndarray:
    attrs = layer.attrs
    n, c = x.shape[:2]
    _, out_h, out_w = layer.output_shape
    kh, kw = attrs["kernel"]
    pads = attrs["pads"]
    window = (n, out_h * out_w, c, kh * kw)
    if layer.op == "maxpool":
        cols = im2col(x, (kh, kw), attrs["stride"], pads, pad_value=-np.inf)
        y = cols.reshape(window).max(axis=3)
    else:
        cols = im2col(x, (kh, kw), attrs["stride"], pads, pad_value=0)
        total = cols.reshape(window).sum(axis=3)
        if attrs.get("count_include_pad", False):
            count = np.float32(kh * kw)
        else:
            ones = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
            count = im2col(ones, (kh, kw), attrs["stride"], pads, pad_value=0).sum(axis=2)
            count = count.reshape(1, out_h * out_w, 1)
        y = total / count
    return y.transpose(0, 2, 1).reshape(n, c, out_h, out_w)


def _run_layer(layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    x = inputs[0]
    op = layer.op
    if op == "conv":
        y = _conv(layer, x)
    elif op == "gemm":
        y = x @ layer.weight.T
        if layer.bias is not None:
            y = y + layer.bias
    elif op in ("maxpool", "avgpool"):
        y = _pool(layer, x)
    elif op == "gap":
        y = x.mean(axis=(2, 3), keepdims=True)
    elif op == "add":
        y = x + inputs[1]
    elif op == "concat":
        y = np.concatenate(inputs, axis=1 + int(layer.attrs.get("axis", 0)))
    elif op == "leaky_relu":
        alpha = layer.attrs["alpha"].reshape((-1,) + (1,) * (x.ndim - 2))
        y = np.where(x >= 0, x, x * alpha)
    elif op == "pad":
        top, left, bottom, right = layer.attrs["pads"]
        y = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)),
                   constant_values=np.float32(layer.attrs.get("value", 0.0)))
    elif op == "flatten":
        y = x.reshape(x.shape[0], -1)
    elif op in ("relu", "relu6"):
        y = apply_activation(x, op)
    elif op == "batchnorm":
        per_channel = (-1,) + (1,) * (x.ndim - 2)
        # float64 parameters, as the fold pass uses them; the result is stored as float32.
        gain, shift = layer.attrs["gain"], layer.attrs["shift"]
        y = x * gain.reshape(per_channel) + shift.reshape(per_channel)
    elif op == "add_constant":
        y = x + layer.attrs["value"]
    else:
        raise ValueError(f"layer {layer.name!r}: op {op!r} is not supported by the float model")
    return apply_activation(y.astype(np.float32, copy=False), layer.activation)


def run_float(model: Model, x: np.ndarray, *, return_all: bool = False):
    """Run ``model`` in float32 on a batch.

    Parameters
    ----------
    model:
        The IR model.
    x:
        Input batch of shape ``(N, *model.input_shape)``; converted to float32.
    return_all:
        Return every tensor instead of only the output.

    Returns
    -------
    np.ndarray or dict[str, np.ndarray]
        The output ``(N, *model.output_shape)``, or with ``return_all`` a dict from tensor
        name to array (the model input included, under ``model.input_name``). The output
        is after ``model.output_transform`` (a final Softmax run by the host); the dict of
        ``return_all`` holds the tensors as the layers wrote them (the logits).

    Raises
    ------
    ValueError
        If ``x`` does not have the model's input shape, or a layer reads a tensor that was not
        computed before it.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != len(model.input_shape) + 1 or tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(
            f"model {model.name}: input must have shape (N, "
            f"{', '.join(map(str, model.input_shape))}), not {x.shape}"
        )
    result = run_float_from(model, {model.input_name: x}, 0, return_all=return_all)
    # The dict of return_all holds the tensors as the layers wrote them: calibration reads
    # the logits, not the host's final Softmax.
    return result if return_all else output_transform(result, model.output_transform)


def run_float_from(model: Model, tensors: dict[str, np.ndarray], start: int, *,
                   return_all: bool = False):
    """Run ``model.layers[start:]`` given ``tensors``, the tensors the layers before made.

    ``run_float(model, x)`` is ``run_float_from(model, {model.input_name: x}, 0)`` followed
    by ``model.output_transform``: this function returns the output as the last layer
    wrote it (the logits; the quantizer's probes compare those). With the tensors of one run
    of a model, this reruns only the layers from ``start`` on (the quantizer's sensitivity
    probes replace one layer at a time). ``tensors`` is not modified. Raises as
    :func:`run_float`.
    """
    tensors = dict(tensors)
    for layer in model.layers[start:]:
        missing = [name for name in layer.inputs if name not in tensors]
        if missing:
            raise ValueError(
                f"model {model.name}: layer {layer.name!r} ({layer.op}) reads tensor "
                f"{missing[0]!r} before it is computed"
            )
        tensors[layer.output] = _run_layer(layer, [tensors[name] for name in layer.inputs])
    if model.output_name not in tensors:
        raise ValueError(
            f"model {model.name}: output tensor {model.output_name!r} is never computed"
        )
    return tensors if return_all else tensors[model.output_name]


def output_transform(y: np.ndarray, transform: str | None) -> np.ndarray:
    """Apply a model's final host-side ``softmax`` / ``log_softmax`` over the last axis.

    Computed in the input's float type after subtracting the row maximum (exact shift
    invariance, no overflow); ``None`` returns ``y`` unchanged.
    """
    if transform is None:
        return y
    shifted = y - y.max(axis=-1, keepdims=True)
    log_total = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    if transform == "log_softmax":
        return shifted - log_total
    if transform == "softmax":
        return np.exp(shifted - log_total)
    raise ValueError(f"unknown output transform {transform!r}")
