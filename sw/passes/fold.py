"""Fold per-channel affine layers (``batchnorm``, ``add_constant``) into their producer.

The quantizer and the mappers know only ``conv`` and ``gemm`` as layers with parameters, so
an inference-mode BatchNorm and the Add of a constant after a Conv / Gemm are folded into the
weights and bias of the layer that produces their input (docs/frontend.md, "Passes").
"""

from __future__ import annotations

import numpy as np

from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.passes.base import PassError, absorb, copy_model, producer, tensor_uses

__all__ = ["AFFINE_OPS", "fold_affine"]

#: The per-channel affine layers this pass folds.
AFFINE_OPS = ("batchnorm", "add_constant")


def _batched(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["N", *map(str, shape)]) + ")"


def _folded_bias(target: Layer, follower: Layer) -> np.ndarray:
    """Return the per-channel constant of an ``add_constant`` ``follower`` of ``target``."""
    value = follower.attrs["value"]
    try:
        full = np.broadcast_to(value, (1, *target.output_shape))
    except ValueError:
        raise PassError(follower, f"constant of shape {value.shape} does not broadcast to the "
                        f"output {_batched(target.output_shape)}") from None
    per_channel = full[0].reshape(target.weight.shape[0], -1)
    if not np.all(per_channel == per_channel[:, :1]):
        raise PassError(follower, f"constant of shape {value.shape} is not a per-channel bias "
                        "(it varies over the spatial axes)")
    return per_channel[:, 0]


def _fold(target: Layer, follower: Layer) -> None:
    """Rewrite ``target``'s weight and bias (new arrays) so that it also computes ``follower``."""
    out_channels = target.weight.shape[0]
    bias = target.bias if target.bias is not None else np.zeros(out_channels)
    constants = ([follower.attrs["gain"], follower.attrs["shift"]] if follower.op == "batchnorm"
                 else [follower.attrs["value"]])
    if not all(np.isfinite(np.asarray(value, dtype=np.float64)).all() for value in constants):
        # (folded, 0 * inf would be NaN weights, found only later by calibration)
        raise PassError(follower, "its scale or shift holds NaN or infinity")
    if follower.op == "batchnorm":
        # float64 for the product, float32 stored, as the parameters came in.
        gain, shift = follower.attrs["gain"], follower.attrs["shift"]
        scale = gain.reshape((-1,) + (1,) * (target.weight.ndim - 1))
        target.weight = (target.weight.astype(np.float64) * scale).astype(np.float32)
        target.bias = (bias.astype(np.float64) * gain + shift).astype(np.float32)
    else:
        target.bias = (bias + _folded_bias(target, follower)).astype(np.float32)


def fold_affine(model: Model) -> Model:
    """Return ``model`` with every ``batchnorm`` and ``add_constant`` layer folded.

    In layer order, each such layer is folded into the ``conv`` / ``gemm`` that directly
    produces its input: a BatchNorm ``y = x * g + s`` (per output channel) gives
    ``W' = W * g`` and ``b' = b * g + s`` (float64 products, stored as float32); an Add of a
    per-channel constant ``c`` gives ``b' = b + c``. The producer then writes the folded
    layer's output tensor and keeps its own name.

    Raises
    ------
    PassError
        If the input of such a layer is not produced by a conv / gemm, if that producer's
        output has another consumer (the model output counts as one), or if an added
        constant is not per output channel. Nothing downstream of the IR runs these ops, so
        a layer that cannot be folded is an error rather than left in place.
    """
    model = copy_model(model)
    for follower in [layer for layer in model.layers if layer.op in AFFINE_OPS]:
        target = producer(model, follower.inputs[0])
        if target is None or target.op not in ("conv", "gemm"):
            what = "the graph input" if target is None else f"{target.name!r} ({target.op})"
            raise PassError(follower, "can only be folded into a directly preceding "
                            f"Conv/Gemm/MatMul, but its input is produced by {what}")
        uses = tensor_uses(model)[target.output]
        if uses != 1:
            raise PassError(follower, f"cannot fold into {target.name!r}: its output "
                            f"{target.output!r} has {uses - 1} other consumer(s)")
        _fold(target, follower)
        absorb(model, target, follower)
    return model
