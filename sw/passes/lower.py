"""Place the per-channel affine layers that :func:`~bitline.sw.passes.fold.fold_affine` cannot fold.

``fold_affine`` folds a ``batchnorm`` / ``add_constant`` into the conv / gemm that produces
its input. An affine layer elsewhere -- after a pooling layer, a residual add, a ReLU, or on
the graph input (``(x - mean) / std`` normalization) -- is handled here, before
``fold_affine`` runs, in the first way the algebra allows:

1. **Forward fold** into the one conv / gemm that reads its output:
   ``conv(x * g + s) = conv'(x)`` with ``W'[o, c, ...] = W[o, c, ...] * g[c]`` and
   ``b'[o] = b[o] + sum_{c, ky, kx} W[o, c, ky, kx] * s[c]``. Exact when that conv has no
   padding or ``s = 0``: a padded position holds 0 after the affine layer, which is not the
   affine image of a padded 0 unless ``s = 0``.
2. **Lowering** to a compute layer of the same name: a depthwise 1x1 ``conv`` (weight
   ``g``, bias ``s``) on an image, a ``gemm`` with the diagonal weight ``diag(g)`` on a
   vector. It then runs on the crossbars like any other layer (one row per channel in
   each depthwise column), so a standalone BatchNorm costs a layer but is never refused.
"""

from __future__ import annotations

import numpy as np

from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.passes.base import PassError, copy_model, producer, tensor_uses
from bitline.sw.passes.fold import AFFINE_OPS


__all__ = ["affine_terms", "lower_affine"]


def affine_terms(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Return float64 ``(gain, shift)``, per channel, of a ``batchnorm`` / ``add_constant``.

    Raises
    ------
    PassError
        If an ``add_constant`` value varies over the spatial axes.
    """
    channels = layer.output_shape[0]
    if layer.op == "batchnorm":
        return (np.asarray(layer.attrs["gain"], dtype=np.float64).reshape(-1),
                np.asarray(layer.attrs["shift"], dtype=np.float64).reshape(-1))
    value = np.asarray(layer.attrs["value"], dtype=np.float64)
    try:
        full = np.broadcast_to(value, (1, *layer.output_shape))[0].reshape(channels, -1)
    except ValueError:
        raise PassError(layer, f"constant of shape {value.shape} does not broadcast to the "
                        f"output {layer.output_shape}") from None
    if not np.all(full == full[:, :1]):
        raise PassError(layer, f"constant of shape {value.shape} is not a per-channel bias "
                        "(it varies over the spatial axes)")
    return np.ones(channels), full[:, 0].copy()


def _folds_backward(model: Model, layer: Layer) -> bool:
    """Whether ``fold_affine`` will fold ``layer`` (through a chain of affine layers)."""
    uses = tensor_uses(model)
    current = layer
    while True:
        source = producer(model, current.inputs[0])
        if source is None or uses[source.output] != 1:
            return False
        if source.op in ("conv", "gemm"):
            return True
        if source.op not in AFFINE_OPS:
            return False
        current = source


def _forward_fold(model: Model, layer: Layer, gain: np.ndarray, shift: np.ndarray) -> bool:
    uses = tensor_uses(model)
    if uses[layer.output] != 1:
        return False
    consumer = next((c for c in model.layers if layer.output in c.inputs), None)
    if consumer is None or consumer.op not in ("conv", "gemm") or len(consumer.inputs) != 1:
        return False
    if consumer.op == "conv" and any(consumer.attrs["pads"]) and np.any(shift != 0):
        return False
    weight = consumer.weight.astype(np.float64)
    out = weight.shape[0]
    if consumer.op == "conv" and consumer.attrs.get("groups", 1) != 1:
        per_input = gain.reshape(-1, 1, 1, 1)          # channel c is output c's only input
        moved = (weight * shift.reshape(-1, 1, 1, 1)).reshape(out, -1).sum(axis=1)
    elif consumer.op == "conv":
        per_input = gain.reshape(1, -1, 1, 1)
        moved = (weight * shift.reshape(1, -1, 1, 1)).reshape(out, -1).sum(axis=1)
    else:
        per_input = gain.reshape(1, -1)
        moved = weight @ shift
    bias = np.zeros(out) if consumer.bias is None else consumer.bias.astype(np.float64)
    consumer.weight = (weight * per_input).astype(np.float32)
    consumer.bias = (bias + moved).astype(np.float32)
    consumer.inputs[0] = layer.inputs[0]
    model.layers.remove(layer)
    return True


def _lowered(layer: Layer, gain: np.ndarray, shift: np.ndarray) -> Layer:
    channels = layer.output_shape[0]
    common = dict(name=layer.name, inputs=list(layer.inputs), output=layer.output,
                  input_shape=layer.input_shape, output_shape=layer.output_shape,
                  bias=shift.astype(np.float32))
    if len(layer.output_shape) == 3:
        return Layer(op="conv", weight=gain.reshape(channels, 1, 1, 1).astype(np.float32),
                     attrs={"stride": (1, 1), "pads": (0, 0, 0, 0), "dilation": (1, 1),
                            "groups": channels}, **common)
    return Layer(op="gemm", weight=np.diag(gain).astype(np.float32), **common)


def _merge_into_reader(model: Model, layer: Layer, gain, shift) -> bool:
    """Compose ``layer`` into the affine layer that is its only reader, if there is one."""
    if tensor_uses(model)[layer.output] != 1:
        return False
    reader = next((c for c in model.layers if layer.output in c.inputs), None)
    if reader is None or reader.op not in AFFINE_OPS:
        return False
    gain2, shift2 = affine_terms(reader)
    # g2 * (g1 * x + s1) + s2
    index = model.layers.index(reader)
    merged = Layer(name=reader.name, op="batchnorm", inputs=list(layer.inputs),
                   output=reader.output, input_shape=layer.input_shape,
                   output_shape=reader.output_shape,
                   attrs={"gain": gain2 * gain, "shift": gain2 * shift + shift2})
    model.layers[index] = merged
    model.layers.remove(layer)
    return True


def lower_affine(model: Model) -> Model:
    """Return ``model`` with every affine layer ``fold_affine`` cannot fold placed.

    In layer order, a ``batchnorm`` / ``add_constant`` layer that is not (through a chain of
    such layers) the only reader of a conv / gemm output is composed into a following
    affine layer that is its only reader, else folded forward into its one conv / gemm
    reader where exact, else replaced by a depthwise 1x1 conv (image) or a diagonal gemm
    (vector) of the same name (see the module docstring).

    Raises
    ------
    PassError
        If an added constant varies over the spatial axes.
    """
    model = copy_model(model)
    index = 0
    while index < len(model.layers):
        layer = model.layers[index]
        index += 1
        if layer.op not in AFFINE_OPS or _folds_backward(model, layer):
            continue
        gain, shift = affine_terms(layer)
        if _merge_into_reader(model, layer, gain, shift) or _forward_fold(
            model, layer, gain, shift
        ):
            index -= 1                     # the layer left the list; the next one moved up
            continue
        model.layers[model.layers.index(layer)] = _lowered(layer, gain, shift)
    return model
