"""The model IR: a small, typed list of layers in topological order.

The ONNX front-end (:mod:`bitline.sw.frontend.onnx_import`) produces it, the float reference
(:mod:`bitline.sw.frontend.float_model`) runs it, the quantizer annotates it and the mappers consume
its compute layers. Tensors are named by strings; every layer writes exactly one tensor.

Conventions (fixed here, relied on everywhere):

* Shapes exclude the batch dimension: images are ``(C, H, W)``, vectors ``(F,)``.
* ``conv`` weights are ``(O, C // groups, KH, KW)``; ``gemm`` weights are ``(O, F)``
  (``y = W @ x + b``, ONNX ``transB`` / MatMul orientation is normalized by the importer).
* The *im2col order* of a conv's inputs is the flatten order of one filter,
  ``i = (c * KH + ky) * KW + kx``; the weight matrix of a compute layer is
  ``weight.reshape(O, -1)`` (rows = output channels, columns = im2col inputs). For a
  depthwise conv (``groups == C == O``) each output channel has its own ``KH*KW`` inputs.
* ``activation`` fused into a compute or add layer: ``None``, ``"relu"`` or ``"relu6"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = ["Layer", "Model", "COMPUTE_OPS", "FOLDABLE_OPS", "OPS", "OUTPUT_TRANSFORMS"]

#: Layers with weights that are mapped onto crossbars.
COMPUTE_OPS = ("conv", "gemm")

#: Every op the IR knows.
OPS = (
    "conv",        # attrs: stride (sh, sw), pads (top, left, bottom, right), dilation (dh, dw), groups
    "gemm",        # attrs: none
    "relu",        # standalone ReLU (one not fused into its producer)
    "relu6",       # standalone ReLU6 (Clip 0..6)
    "maxpool",     # attrs: kernel (kh, kw), stride, pads
    "avgpool",     # attrs: kernel, stride, pads, count_include_pad (bool)
    "gap",         # global average pool: (C, H, W) -> (C, 1, 1)
    "add",         # residual add of two tensors of equal shape
    "concat",      # attrs: axis (0 = channels of an image, features of a vector); 2+ inputs
    "leaky_relu",  # attrs: alpha (float64 (C,), per channel): y = x if x >= 0 else alpha * x
    "flatten",     # (C, H, W) -> (C*H*W,) in C-order; also Reshape to a vector
    # Only between the importer and the passes (bitline.sw.passes folds them into the
    # producing conv / gemm; the float model runs them, nothing after the passes does):
    "batchnorm",   # attrs: gain, shift (per channel, float64): y = x * gain + shift (from
                   # BatchNormalization, and Mul / Div / Sub by per-channel constants)
    "add_constant",  # attrs: value (float32, ONNX-broadcast to (N, *shape)): y = x + value
    "pad",         # attrs: pads (top, left, bottom, right), value (float): constant padding,
                   # folded into the next conv / pooling layer
)

#: Ops that the default passes fold away; a model that still has them runs only in the float
#: model.
FOLDABLE_OPS = ("batchnorm", "add_constant", "pad")

#: Transforms of the model output that the host applies to the dequantized output of the
#: last layer (not mapped onto the accelerator): ``Model.output_transform``.
OUTPUT_TRANSFORMS = ("softmax", "log_softmax")

Activation = Literal["relu", "relu6"] | None


@dataclass
class Layer:
    """One IR node.

    Attributes
    ----------
    name:
        Unique name (the ONNX node name, or a generated one).
    op:
        One of :data:`OPS`.
    inputs:
        Names of the tensors read (one, or two for ``add``).
    output:
        Name of the tensor written.
    input_shape, output_shape:
        Shapes without batch.
    attrs:
        Op attributes (see :data:`OPS`).
    weight, bias:
        Float32 parameters of compute layers (after the default passes, BatchNorm and constant
        Adds are folded into them); ``bias`` may be ``None`` for no bias.
    activation:
        Fused activation applied to the output.
    """

    name: str
    op: str
    inputs: list[str]
    output: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    activation: Activation = None

    @property
    def is_compute(self) -> bool:
        """True for layers with weights (mapped onto crossbars)."""
        return self.op in COMPUTE_OPS

    @property
    def weight_matrix(self) -> np.ndarray:
        """The ``(O, K)`` weight matrix in im2col order (``weight.reshape(O, -1)``)."""
        if self.weight is None:
            raise ValueError(f"layer {self.name} ({self.op}) has no weights")
        return self.weight.reshape(self.weight.shape[0], -1)

    @property
    def macs(self) -> int:
        """Multiply-accumulates for one input sample."""
        if self.op == "conv":
            out_c, _, out_h, out_w = (self.output_shape[0], None, *self.output_shape[1:])
            return int(np.prod(self.weight.shape[1:])) * out_c * out_h * out_w
        if self.op == "gemm":
            return int(self.weight.size)
        return 0


@dataclass
class Model:
    """A model: its input, its layers in topological order and its output.

    ``input_name``/``input_shape`` describe the single graph input (without batch);
    ``output_name`` names the tensor that is the model's output. ``quantization`` is the
    quantization a quantized ONNX file carries (QDQ / QONNX nodes: a
    :class:`bitline.sw.frontend.qdq.FileQuantization`), else ``None``; the passes keep it.
    """

    name: str
    input_name: str
    input_shape: tuple[int, ...]
    layers: list[Layer]
    output_name: str
    source: str = "<memory>"
    output_transform: str | None = None
    quantization: object = None

    def layer(self, name: str) -> Layer:
        """Return the layer called ``name`` (``KeyError`` naming it otherwise)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"model {self.name} has no layer {name!r}")

    @property
    def compute_layers(self) -> list[Layer]:
        """The layers with weights, in order."""
        return [layer for layer in self.layers if layer.is_compute]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the model output (without batch)."""
        for layer in self.layers:
            if layer.output == self.output_name:
                return layer.output_shape
        return self.input_shape
