"""Synthetic ONNX models of well-known CIFAR-10 networks, built with ``onnx.helper``.

The architectures are the usual CIFAR-10 variants (32x32 RGB input, 10 classes); the
weights are *synthetic*: He-normal convolution and linear weights and mildly perturbed
BatchNorm statistics drawn from ``np.random.default_rng(seed)``. They exist for performance,
mapping and hardware work (layer shapes, weight counts, bit statistics of real-sized
layers) and say nothing about accuracy. Every generator is deterministic for a given seed.

* :func:`resnet18_cifar` — ResNet-18, CIFAR variant: 3x3 stem without max pooling, four
  stages of two basic blocks (64, 128, 256, 512 channels), 1x1 convolution + BN shortcuts where
  the shape changes, global average pooling, one linear layer.
* :func:`vgg16` — VGG-16 with BatchNorm (the CIFAR ``vgg16_bn`` form): 13 3x3 convolutions in
  five blocks with 2x2 max pooling, then a 512-512-10 classifier with dropout.
* :func:`mobilenetv2` — MobileNetV2 (width 1.0), CIFAR variant: stem and the first
  stride-2 stage use stride 1; inverted residual blocks (1x1 expansion + ReLU6, 3x3 depthwise +
  ReLU6, linear 1x1 bottleneck), a 1x1 conv to 1280 channels, global average pooling,
  dropout and one linear layer.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["resnet18_cifar", "vgg16", "mobilenetv2", "OPSET"]

#: Default-domain opset of the generated models.
OPSET = 13

_INPUT = "input"
_OUTPUT = "logits"


class _NetBuilder:
    """Collects nodes and initializers of one network; names follow PyTorch's modules."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._relu6_bounds: tuple[str, str] | None = None

    def param(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def he_normal(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        weight = self.rng.standard_normal(shape, dtype=np.float32)
        weight *= np.float32(np.sqrt(2.0 / fan_in))
        return weight

    def conv(self, x: str, name: str, c_in: int, c_out: int, kernel: int, stride: int = 1,
             groups: int = 1, bias: bool = False) -> str:
        fan_in = c_in // groups * kernel * kernel
        inputs = [x, self.param(f"{name}.weight",
                                self.he_normal((c_out, c_in // groups, kernel, kernel), fan_in))]
        if bias:
            inputs.append(self.param(f"{name}.bias", np.zeros(c_out, np.float32)))
        pad = kernel // 2
        return self.node(
            "Conv", inputs, name, kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[pad, pad, pad, pad], group=groups,
        )

    def batchnorm(self, x: str, name: str, channels: int) -> str:
        # Mild random statistics, so that folding is exercised with non-trivial values.
        rng = self.rng
        params = [
            self.param(f"{name}.weight", rng.uniform(0.5, 1.0, channels)),
            self.param(f"{name}.bias", rng.normal(0.0, 0.05, channels)),
            self.param(f"{name}.running_mean", rng.normal(0.0, 0.05, channels)),
            self.param(f"{name}.running_var", rng.uniform(0.5, 1.5, channels)),
        ]
        return self.node("BatchNormalization", [x, *params], name, epsilon=1e-5)

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name)

    def relu6(self, x: str, name: str) -> str:
        if self._relu6_bounds is None:
            self._relu6_bounds = (
                self.param("relu6.min", np.float32(0.0)), self.param("relu6.max", np.float32(6.0))
            )
        return self.node("Clip", [x, *self._relu6_bounds], name)

    def linear(self, x: str, name: str, features: int, out_features: int) -> str:
        weight = self.param(f"{name}.weight", self.he_normal((out_features, features), features))
        bias = self.param(f"{name}.bias", self.rng.normal(0.0, 0.01, out_features))
        return self.node("Gemm", [x, weight, bias], name, transB=1)

    def build(self, graph_name: str, input_shape: tuple[int, ...], classes: int,
              doc: str) -> onnx.ModelProto:
        # The last node writes the graph output under its public name.
        self.nodes[-1].output[0] = _OUTPUT
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(_INPUT, TensorProto.FLOAT, ["N", *input_shape])],
            [helper.make_tensor_value_info(_OUTPUT, TensorProto.FLOAT, ["N", classes])],
            self.initializers,
            doc_string=doc,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bitline",
            doc_string=f"{doc} Synthetic weights: for performance work, not accuracy claims.",
        )
        model.ir_version = 8
        return model


def resnet18_cifar(seed: int = 0, classes: int = 10) -> onnx.ModelProto:
    """Return a ResNet-18 (CIFAR variant) with synthetic weights.

    Input ``(N, 3, 32, 32)``, output ``(N, classes)`` logits; 20 convolutions and one
    linear layer, 11,164,352 weights for 10 classes (11.17M parameters with BatchNorm).
    """
    net = _NetBuilder(seed)
    x = net.relu(net.batchnorm(net.conv(_INPUT, "conv1", 3, 64, 3), "bn1", 64), "relu")
    channels = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            prefix = f"layer{stage}.{block}"
            y = net.conv(x, f"{prefix}.conv1", channels, width, 3, stride)
            y = net.relu(net.batchnorm(y, f"{prefix}.bn1", width), f"{prefix}.relu1")
            y = net.batchnorm(net.conv(y, f"{prefix}.conv2", width, width, 3), f"{prefix}.bn2",
                              width)
            shortcut = x
            if stride != 1 or channels != width:
                shortcut = net.conv(x, f"{prefix}.downsample.0", channels, width, 1, stride)
                shortcut = net.batchnorm(shortcut, f"{prefix}.downsample.1", width)
            x = net.relu(net.node("Add", [y, shortcut], f"{prefix}.add"), f"{prefix}.relu2")
            channels = width
    x = net.node("Flatten", [net.node("GlobalAveragePool", [x], "avgpool")], "flatten", axis=1)
    net.linear(x, "fc", channels, classes)
    return net.build("resnet18_cifar", (3, 32, 32), classes,
                     "ResNet-18, CIFAR variant (3x3 stem, no max pooling).")


#: VGG-16 convolution widths per block (each block ends with 2x2 max pooling).
_VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16(seed: int = 0, classes: int = 10) -> onnx.ModelProto:
    """Return a VGG-16 with BatchNorm (CIFAR variant) with synthetic weights.

    Input ``(N, 3, 32, 32)``, output ``(N, classes)``; 13 convolutions (3x3, pad 1, each with
    BN + ReLU), five 2x2 max pools (32 -> 1), then linear 512-512-``classes`` with ReLU and
    dropout: 15,239,872 weights for 10 classes.
    """
    net = _NetBuilder(seed)
    x, channels, index = _INPUT, 3, 0
    for block, widths in enumerate(_VGG16_BLOCKS, start=1):
        for width in widths:
            name = f"features.{index}"
            x = net.conv(x, f"{name}.conv", channels, width, 3)
            x = net.relu(net.batchnorm(x, f"{name}.bn", width), f"{name}.relu")
            channels, index = width, index + 1
        x = net.node("MaxPool", [x], f"pool{block}", kernel_shape=[2, 2], strides=[2, 2])
    x = net.node("Flatten", [x], "flatten", axis=1)
    for layer, width in enumerate((512, 512)):
        x = net.relu(net.linear(x, f"classifier.{layer}", channels, width),
                     f"classifier.{layer}.relu")
        x = net.node("Dropout", [x], f"classifier.{layer}.dropout")
        channels = width
    net.linear(x, "classifier.2", channels, classes)
    return net.build("vgg16", (3, 32, 32), classes,
                     "VGG-16 with BatchNorm, CIFAR variant (512-512-10 classifier).")


#: MobileNetV2 inverted residual settings (expansion t, channels c, blocks n, stride s);
#: the second stage uses stride 1 (CIFAR variant, as the stem does).
_MOBILENETV2_STAGES = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def mobilenetv2(seed: int = 0, classes: int = 10) -> onnx.ModelProto:
    """Return a MobileNetV2 (width 1.0, CIFAR variant) with synthetic weights.

    Input ``(N, 3, 32, 32)``, output ``(N, classes)``; stem 3x3 conv (stride 1) + BN + ReLU6,
    17 inverted residual blocks (expansion 1x1 + BN + ReLU6 when t > 1, 3x3 depthwise + BN +
    ReLU6, linear 1x1 bottleneck + BN, residual Add when stride 1 and widths match), a 1x1
    conv to 1280 channels + BN + ReLU6, global average pooling, dropout, linear.
    """
    net = _NetBuilder(seed)
    x = net.conv(_INPUT, "features.0.conv", 3, 32, 3)
    x = net.relu6(net.batchnorm(x, "features.0.bn", 32), "features.0.relu6")
    channels, index = 32, 1
    for expansion, width, blocks, first_stride in _MOBILENETV2_STAGES:
        for block in range(blocks):
            stride = first_stride if block == 0 else 1
            prefix = f"features.{index}"
            hidden = channels * expansion
            y = x
            if expansion != 1:
                y = net.conv(y, f"{prefix}.expand", channels, hidden, 1)
                y = net.relu6(net.batchnorm(y, f"{prefix}.expand_bn", hidden),
                              f"{prefix}.expand_relu6")
            y = net.conv(y, f"{prefix}.depthwise", hidden, hidden, 3, stride, groups=hidden)
            y = net.relu6(net.batchnorm(y, f"{prefix}.depthwise_bn", hidden),
                          f"{prefix}.depthwise_relu6")
            y = net.batchnorm(net.conv(y, f"{prefix}.project", hidden, width, 1),
                              f"{prefix}.project_bn", width)
            if stride == 1 and channels == width:
                y = net.node("Add", [x, y], f"{prefix}.add")
            x, channels, index = y, width, index + 1
    x = net.conv(x, f"features.{index}.conv", channels, 1280, 1)
    x = net.relu6(net.batchnorm(x, f"features.{index}.bn", 1280), f"features.{index}.relu6")
    x = net.node("GlobalAveragePool", [x], "avgpool")
    x = net.node("Dropout", [net.node("Flatten", [x], "flatten", axis=1)], "classifier.0")
    net.linear(x, "classifier.1", 1280, classes)
    return net.build("mobilenetv2", (3, 32, 32), classes,
                     "MobileNetV2 (width 1.0), CIFAR variant (stride-1 stem and stage 2).")
