"""A low-bit QONNX model written with onnx.helper, and the same model in standard ONNX ops.

Shared by tests/unit/test_qonnx.py, tests/unit/test_api.py and tests/e2e/test_cli_quantized.py:
an 8-bit input, a 4-bit and a 3-bit convolution with 4- and 3-bit activations and a 2-bit
classifier (domain ``qonnx.custom_op.general``). :func:`standard_onnx` rewrites every ``Quant``
node into Div, Add, Round, Clip, Sub, Mul (qonnx's ``int_quant`` formula), the independent
reference that onnxruntime runs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["DOMAIN", "WEIGHT_BITS", "ACT_BITS", "qonnx_model", "standard_onnx"]

DOMAIN = "qonnx.custom_op.general"
# (name, bits, signed, narrow) of every Quant node; weights signed narrow, activations unsigned
WEIGHT_BITS = {"w1": 4, "w2": 3, "w3": 2}
ACT_BITS = {"x": 8, "r1": 4, "r2": 3}


def _quant(inputs_scale: float | np.ndarray, name: str, bits: int, signed: int, narrow: int,
           source: str, out: str, inits: list, *, mode: str = "ROUND", zeropt: float = 0.0):
    inits += [numpy_helper.from_array(np.asarray(inputs_scale, np.float32), f"{name}_s"),
              numpy_helper.from_array(np.asarray(zeropt, np.float32), f"{name}_z"),
              numpy_helper.from_array(np.asarray(float(bits), np.float32), f"{name}_b")]
    return helper.make_node("Quant", [source, f"{name}_s", f"{name}_z", f"{name}_b"], [out],
                            name=f"quant_{name}", domain=DOMAIN, signed=signed, narrow=narrow,
                            rounding_mode=mode)


def qonnx_model(*, act_mode: str = "ROUND", act_zeropt: float = 0.0,
                bipolar_act: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    w1 = rng.normal(0, 0.4, (8, 1, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.15, (16, 8, 3, 3)).astype(np.float32)
    w3 = rng.normal(0, 0.1, (10, 256)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1f"), numpy_helper.from_array(w2, "w2f"),
             numpy_helper.from_array(w3, "w3f"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b2"),
             numpy_helper.from_array(np.zeros(10, np.float32), "b3")]
    per_channel = (np.abs(w1).reshape(8, -1).max(1) / 7).reshape(8, 1, 1, 1)
    nodes = [
        _quant(1 / 255, "x", 8, 0, 0, "x", "xq", inits),
        _quant(per_channel, "w1", 4, 1, 1, "w1f", "w1", inits),
        _quant(np.abs(w2).max() / 3, "w2", 3, 1, 1, "w2f", "w2", inits),
        _quant(np.abs(w3).max() / 1, "w3", 2, 1, 1, "w3f", "w3", inits),
        helper.make_node("Conv", ["xq", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        _quant(0.1, "r1", 4, 0, 0, "r1", "a1", inits, mode=act_mode, zeropt=act_zeropt),
        helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        _quant(0.15, "r2", 3, 0, 0, "r2", "a2", inits),
        helper.make_node("Flatten", ["a2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1),
    ]
    if bipolar_act:
        inits.append(numpy_helper.from_array(np.asarray(1.0, np.float32), "bp_s"))
        nodes[6] = helper.make_node("BipolarQuant", ["r1", "bp_s"], ["a1"], name="bipolar",
                                    domain=DOMAIN)
    graph = helper.make_graph(
        nodes, "qonnx_lowbit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid(DOMAIN, 1)])


def standard_onnx(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with each ``Quant`` written in standard ops (qonnx's ``int_quant``).

    ``y = (clip(round(x / s + z), min_int, max_int) - z) * s``; onnxruntime's Round rounds
    half to even, as numpy's ``np.round`` in qonnx.
    """
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.domain != DOMAIN:
            nodes.append(node)
            continue
        x, s, z, b = node.input
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        bits = int(inits[b])
        if attrs["signed"]:
            lo, hi = -(2 ** (bits - 1)) + attrs["narrow"], 2 ** (bits - 1) - 1
        else:
            lo, hi = 0, 2 ** bits - 1 - attrs["narrow"]
        p = node.name
        graph.initializer.extend([numpy_helper.from_array(np.float32(lo), f"{p}_lo"),
                                  numpy_helper.from_array(np.float32(hi), f"{p}_hi")])
        nodes += [helper.make_node("Div", [x, s], [f"{p}_d"]),
                  helper.make_node("Add", [f"{p}_d", z], [f"{p}_a"]),
                  helper.make_node("Round", [f"{p}_a"], [f"{p}_r"]),
                  helper.make_node("Clip", [f"{p}_r", f"{p}_lo", f"{p}_hi"], [f"{p}_c"]),
                  helper.make_node("Sub", [f"{p}_c", z], [f"{p}_m"]),
                  helper.make_node("Mul", [f"{p}_m", s], [node.output[0]])]
    del graph.node[:]
    graph.node.extend(nodes)
    del out.opset_import[:]
    out.opset_import.extend([helper.make_opsetid("", 13)])
    return out
