"""Fixtures shared by the test folders."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitline.sw.frontend.onnx_import import load_onnx


def _random_cnn(path, rng):
    """Conv(3x3, pad 1) + ReLU, MaxPool 2, Flatten, Gemm: random shapes and weights."""
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
    graph = helper.make_graph(
        nodes, "random",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", outputs])],
        [numpy_helper.from_array(array, name) for name, array in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return load_onnx(path)


@pytest.fixture(scope="session")
def random_cnn():
    """``random_cnn(path, rng) -> Model``: a seeded random conv/pool/gemm network (ONNX)."""
    return _random_cnn
