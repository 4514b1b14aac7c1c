"""Small test networks: IR models built in Python and ONNX files written to a path.

Each builder is seeded, so a test gets the same weights every run.

* :func:`mixed_ops_model` -- IR with every operator the golden model runs (conv, depthwise,
  residual add, relu6, max/avg/global pooling, gemms).
* :func:`residual_dw_model` -- IR of a conv, depthwise, pointwise + residual, gap and gemm
  (the block-wise quantization tests).
* :func:`small_cnn_onnx`, :func:`tiny_mlp_onnx`, :func:`random_cnn_onnx` -- ONNX files for
  the import path, the CLI and the simulator tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.frontend.onnx_import import load_onnx

__all__ = ["conv_layer", "gemm_layer", "mixed_ops_model", "residual_dw_model",
           "small_cnn_onnx", "tiny_mlp_onnx", "random_cnn_onnx"]


# ------------------------------------------------------------------------------ IR builders
def conv_layer(name, src, dst, rng, in_shape, out_c, kernel=3, stride=1, pad=1, groups=1,
               activation=None) -> Layer:
    """Return a conv layer with weights ~ N(0, 1/fan_in) and biases ~ N(0, 0.1), drawn from
    ``rng`` in that order."""
    c, h, w = in_shape
    out_h = (h + 2 * pad - kernel) // stride + 1
    out_w = (w + 2 * pad - kernel) // stride + 1
    fan_in = c // groups * kernel * kernel
    weight = rng.normal(0, 1 / np.sqrt(fan_in), (out_c, c // groups, kernel, kernel))
    return Layer(name, "conv", [src], dst, in_shape, (out_c, out_h, out_w),
                 attrs={"stride": (stride, stride), "pads": (pad,) * 4, "dilation": (1, 1),
                        "groups": groups},
                 weight=weight.astype(np.float32),
                 bias=rng.normal(0, 0.1, out_c).astype(np.float32), activation=activation)


def gemm_layer(name, src, dst, rng, in_f, out_f, activation=None) -> Layer:
    """Return a gemm layer with weights ~ N(0, 1/in_f) and biases ~ N(0, 0.1)."""
    weight = rng.normal(0, 1 / np.sqrt(in_f), (out_f, in_f)).astype(np.float32)
    return Layer(name, "gemm", [src], dst, (in_f,), (out_f,), weight=weight,
                 bias=rng.normal(0, 0.1, out_f).astype(np.float32), activation=activation)


def mixed_ops_model(seed: int = 0) -> Model:
    """conv(relu) -> depthwise(relu6) -> pointwise (linear) + skip add(relu) -> pools -> gemms.

    Also a standalone relu6 after a linear conv, maxpool, avgpool with padding, gap, flatten.
    Input (3, 8, 8), 5 outputs; the model is called ``small``.
    """
    rng = np.random.default_rng(seed)
    conv, gemm = conv_layer, gemm_layer
    layers = [
        conv("c1", "x", "t1", rng, (3, 8, 8), 8, activation="relu"),
        conv("dw", "t1", "t2", rng, (8, 8, 8), 8, stride=2, groups=8, activation="relu6"),
        conv("pw", "t2", "t3", rng, (8, 4, 4), 8, kernel=1, pad=0),
        Layer("add", "add", ["t3", "t2"], "t4", (8, 4, 4), (8, 4, 4), activation="relu"),
        conv("c2", "t4", "t5", rng, (8, 4, 4), 8),
        Layer("r6", "relu6", ["t5"], "t6", (8, 4, 4), (8, 4, 4)),
        Layer("mp", "maxpool", ["t6"], "t7", (8, 4, 4), (8, 3, 3),
              attrs={"kernel": (2, 2), "stride": (1, 1), "pads": (0, 0, 0, 0)}),
        Layer("ap", "avgpool", ["t7"], "t8", (8, 3, 3), (8, 2, 2),
              attrs={"kernel": (3, 3), "stride": (2, 2), "pads": (1, 1, 1, 1),
                     "count_include_pad": False}),
        Layer("gap", "gap", ["t8"], "t9", (8, 2, 2), (8, 1, 1)),
        Layer("fl", "flatten", ["t9"], "t10", (8, 1, 1), (8,)),
        gemm("fc1", "t10", "t11", rng, 8, 16, activation="relu"),
        gemm("fc2", "t11", "y", rng, 16, 5),
    ]
    return Model("small", "x", (3, 8, 8), layers, "y")


def residual_dw_model(seed: int = 0) -> Model:
    """conv -> depthwise conv -> pointwise conv + residual add -> gap -> gemm.

    Input (3, 6, 6), 12 channels, 5 outputs; the model is called ``small-dw``. The gemm
    weights (N(0, 0.3), zero bias) are drawn first, then the convs' in layer order.
    """
    rng = np.random.default_rng(seed)
    fc = rng.normal(0, 0.3, (5, 12)).astype(np.float32)
    layers = [
        conv_layer("c1", "x", "t1", rng, (3, 6, 6), 12, activation="relu"),
        conv_layer("dw", "t1", "t2", rng, (12, 6, 6), 12, groups=12, activation="relu"),
        conv_layer("pw", "t2", "t3", rng, (12, 6, 6), 12, kernel=1, pad=0),
        Layer("add", "add", ["t3", "t1"], "t4", (12, 6, 6), (12, 6, 6), activation="relu"),
        Layer("gap", "gap", ["t4"], "t5", (12, 6, 6), (12, 1, 1)),
        Layer("fl", "flatten", ["t5"], "t6", (12, 1, 1), (12,)),
        Layer("fc", "gemm", ["t6"], "y", (12,), (5,), weight=fc,
              bias=np.zeros(5, np.float32)),
    ]
    return Model("small-dw", "x", (3, 6, 6), layers, "y")


# ---------------------------------------------------------------------------- ONNX writers
def _save(nodes, name, inputs, outputs, arrays, path, *, ir_version=None) -> None:
    graph = helper.make_graph(
        nodes, name, inputs, outputs,
        [numpy_helper.from_array(array, key) for key, array in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    if ir_version is not None:
        model.ir_version = ir_version
    onnx.save(model, path)


def small_cnn_onnx(path: str | Path) -> Path:
    """Write Conv 2->4 3x3 pad 1 + ReLU, MaxPool 2x2, Flatten, Gemm 64->3 (no bias) to
    ``path``; input (N, 2, 8, 8), graph ``small``. Return ``path``."""
    rng = np.random.default_rng(0)
    arrays = {
        "w1": rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
        "b1": rng.standard_normal(4).astype(np.float32),
        "w2": rng.standard_normal((3, 64)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2"], ["y"], name="fc", transB=1),
    ]
    _save(nodes, "small",
          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
          arrays, path, ir_version=8)
    return path


def tiny_mlp_onnx(path: str | Path) -> Path:
    """Write Gemm 8->6, ReLU, Gemm 6->4 (logits), seeded weights, to ``path``; return it."""
    rng = np.random.default_rng(0)
    arrays = {
        "w1": rng.standard_normal((6, 8)).astype(np.float32) * 0.5,
        "b1": rng.standard_normal(6).astype(np.float32) * 0.1,
        "w2": rng.standard_normal((4, 6)).astype(np.float32) * 0.5,
        "b2": np.zeros(4, np.float32),
    }
    nodes = [helper.make_node("Gemm", ["input", "w1", "b1"], ["h"], transB=1, name="fc1"),
             helper.make_node("Relu", ["h"], ["hr"], name="relu"),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"], transB=1, name="fc2")]
    _save(nodes, "tiny",
          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8])],
          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
          arrays, path)
    return path


def random_cnn_onnx(path: str | Path, rng: np.random.Generator) -> Model:
    """Write Conv(3x3, pad 1) + ReLU, MaxPool 2, Flatten, Gemm with shapes and weights drawn
    from ``rng`` to ``path``; return its IR (:func:`load_onnx`)."""
    channels = int(rng.integers(1, 4))
    size = int(rng.choice([4, 6]))
    hidden = int(rng.integers(3, 11))
    outputs = int(rng.integers(3, 13))
    features = hidden * (size // 2) ** 2
    arrays = {
        "w1": rng.standard_normal((hidden, channels, 3, 3)).astype(np.float32) * 0.5,
        "b1": rng.standard_normal(hidden).astype(np.float32) * 0.1,
        "w2": rng.standard_normal((outputs, features)).astype(np.float32) * 0.3,
        "b2": rng.standard_normal(outputs).astype(np.float32) * 0.1,
    }
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c"], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], transB=1, name="fc"),
    ]
    _save(nodes, "random",
          [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                         ["N", channels, size, size])],
          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", outputs])],
          arrays, path)
    return load_onnx(path)
