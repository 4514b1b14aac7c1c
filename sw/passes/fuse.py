"""Fuse standalone ReLU / ReLU6 layers into the layer that produces their input."""

from __future__ import annotations

from bitline.sw.frontend.ir import Model
from bitline.sw.passes.base import absorb, copy_model, producer, tensor_uses

__all__ = ["FUSING_OPS", "fuse_activations"]

#: Ops whose output stage applies an activation (the output unit after a compute layer or a
#: residual add), so a following ReLU / ReLU6 costs nothing there.
FUSING_OPS = ("conv", "gemm", "add")


def fuse_activations(model: Model) -> Model:
    """Return ``model`` with each fusable ``relu`` / ``relu6`` layer fused into its producer.

    In layer order, an activation layer is fused when its input is produced by a layer of
    :data:`FUSING_OPS` that has no activation yet and whose output has no other consumer (the
    model output counts as one): the producer gets ``activation = op`` and writes the
    activation's output tensor. Any other activation stays a standalone layer (for example
    one after a pooling layer, after a tensor read twice, or a ReLU6 after a fused ReLU).
    """
    model = copy_model(model)
    for act in [layer for layer in model.layers if layer.op in ("relu", "relu6")]:
        target = producer(model, act.inputs[0])
        if (
            target is not None
            and target.op in FUSING_OPS
            and target.activation is None
            and tensor_uses(model)[target.output] == 1
        ):
            target.activation = act.op
            absorb(model, target, act)
    return model
