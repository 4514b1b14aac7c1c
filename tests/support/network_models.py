"""Small seeded ONNX CNNs for whole-network runs (tests/hw/test_network_compiled.py).

:func:`residual_cnn_onnx` covers every node kind ``compile --network`` emits: a padded 3x3
conv with ReLU, a max pool, a second padded conv whose output is added to the pool's (a
residual branch), an average pool with its padding counted, a global average pool, flatten
and a gemm (raw logits). A gemm on a flattened multi-pixel map is in the hand-built
network of :mod:`support.network_bench`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["residual_cnn_onnx"]


def residual_cnn_onnx(path: str | Path, rng: np.random.Generator) -> Path:
    """Write the residual CNN of the module docstring with shapes and weights from ``rng``.

    ``input (C, 6, 6)`` -> Conv 3x3 pad 1, ReLU -> MaxPool 2 -> ``p (H, 3, 3)``;
    ``p`` -> Conv 3x3 pad 1, ReLU -> Add with ``p`` -> AveragePool 2 stride 2, pads
    (1, 1, 0, 0), count_include_pad -> ``(H, 2, 2)`` -> GlobalAveragePool -> Flatten ->
    Gemm -> logits.
    """
    path = Path(path)
    channels = int(rng.integers(1, 3))
    hidden = int(rng.integers(2, 5))
    outputs = int(rng.integers(3, 7))
    arrays = {
        "w1": rng.standard_normal((hidden, channels, 3, 3)).astype(np.float32) * 0.5,
        "b1": rng.standard_normal(hidden).astype(np.float32) * 0.1,
        "w2": rng.standard_normal((hidden, hidden, 3, 3)).astype(np.float32) * 0.4,
        "b2": rng.standard_normal(hidden).astype(np.float32) * 0.1,
        "w3": rng.standard_normal((outputs, hidden)).astype(np.float32) * 0.6,
        "b3": rng.standard_normal(outputs).astype(np.float32) * 0.1,
    }
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool"),
        helper.make_node("Conv", ["p", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Add", ["r2", "p"], ["s"], name="add"),
        helper.make_node("AveragePool", ["s"], ["a"], kernel_shape=[2, 2], strides=[2, 2],
                         pads=[1, 1, 0, 0], count_include_pad=1, name="avgpool"),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1, name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "residual",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", outputs])],
        [numpy_helper.from_array(value, name) for name, value in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, path)
    return path
