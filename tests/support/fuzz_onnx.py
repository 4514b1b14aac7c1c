"""Fuzz cases of the ``onnx`` category (the others are in :mod:`support.fuzz_files`).

* ``onnx`` -- random small valid graphs (Conv / Gemm / MatMul / Relu / pools / Add / Concat /
  Flatten / Reshape chains written with ``onnx.helper``) compiled, run and compared with
  onnx's reference evaluator, and mutations of them (truncation, byte flips, wrong element
  types, degenerate shapes, NaN / Inf / huge weights, missing initializers, unknown ops,
  cycles, dangling inputs, opsets).

The oracle of every case is written here, from the ONNX / numpy / TOML facts alone (which
inputs are invalid; what a correct result is), not from bitline's validators. Case
construction is cheap; the baselines (:func:`support.fuzz.baseline`) compile once.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from support.fuzz import (
    DIR,
    Case,
    check_bundle_against_golden,
    compare_float,
    onnx_reference,
)

__all__ = ["STRATEGIES", "onnx_cases", "random_graph", "rarely"]

STRATEGIES = ("isaac", "ivq-naive", "ivq-spatial", "ivq-temporal", "bwq")
#: Quantized output vs the ONNX float reference: a wrong mapping or a lost transpose is
#: off by about the whole output range; 8-bit quantization of these small nets by a few %.
QUANT_TOLERANCE = 0.25
FLOAT_TOLERANCE = 1e-4


def rarely(draw, odds: int) -> bool:
    """True about once in ``odds + 1`` draws. (Hypothesis favours the smallest value of a
    range, so the rare branch is an inner value, not 0.)"""
    return draw(st.integers(0, odds)) == 1


# ------------------------------------------------------------------ random graphs
class _Graph:
    """Builds a chain of ONNX nodes, tracking the current tensor and its shape."""

    def __init__(self, rng, shape):
        self.rng, self.nodes, self.arrays = rng, [], {}
        self.input_shape = tuple(shape)
        self.name, self.shape, self.count = "x", tuple(shape), 0

    def _new(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def weight(self, shape, fan_in):
        name = self._new("w")
        self.arrays[name] = (self.rng.standard_normal(shape) / math.sqrt(max(fan_in, 1))
                             ).astype(np.float32)
        return name

    def node(self, op, inputs, shape, **attrs):
        out = self._new("t")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self._new(op.lower()),
                                           **attrs))
        self.name, self.shape = out, tuple(shape)
        return out

    def conv(self, src, in_shape, out_c, k, stride, pad, groups=1):
        c, h, w = in_shape
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        weight = self.weight((out_c, c // groups, k, k), c // groups * k * k)
        bias = self._new("b")
        self.arrays[bias] = (self.rng.standard_normal(out_c) * 0.1).astype(np.float32)
        return self.node("Conv", [src, weight, bias], (out_c, oh, ow), kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4, group=groups)


def _image_step(draw, g: _Graph):
    c, h, w = g.shape
    choices = ["conv", "relu", "residual", "concat", "clip"]
    if h >= 2 and w >= 2:
        choices += ["maxpool", "avgpool"]
    choices += ["gap", "flatten", "batchnorm", "leaky", "scale", "pad", "identity",
                "pool3", "dilated"]
    step = draw(st.sampled_from(choices))
    if step in ("batchnorm", "leaky", "scale", "pad", "identity", "pool3", "dilated"):
        return _more_image_step(draw, g, step)
    if step == "conv":
        k = draw(st.sampled_from([1, 3] if min(h, w) >= 1 else [1]))
        pad = draw(st.sampled_from([0, k // 2])) if min(h, w) >= k else k // 2
        stride = draw(st.sampled_from([1, 2]))
        depthwise = draw(st.booleans()) and c > 1
        out_c = c if depthwise else draw(st.integers(1, 6))
        g.conv(g.name, g.shape, out_c, k, stride, pad, groups=c if depthwise else 1)
    elif step == "relu":
        g.node("Relu", [g.name], g.shape)
    elif step == "clip":
        low, high = g._new("lo"), g._new("hi")
        g.arrays[low], g.arrays[high] = np.float32(0.0), np.float32(6.0)
        g.node("Clip", [g.name, low, high], g.shape)
    elif step == "residual":
        src = g.name
        branch = g.conv(src, g.shape, c, 3, 1, 1)
        g.node("Add", [branch, src], g.shape)
    elif step == "concat":
        src, shape = g.name, g.shape
        a = g.conv(src, shape, draw(st.integers(1, 3)), 1, 1, 0)
        a_c = g.shape[0]
        b = g.conv(src, shape, draw(st.integers(1, 3)), 3, 1, 1)
        g.node("Concat", [a, b], (a_c + g.shape[0], h, w), axis=1)
    elif step in ("maxpool", "avgpool"):
        op = "MaxPool" if step == "maxpool" else "AveragePool"
        g.node(op, [g.name], (c, h // 2, w // 2), kernel_shape=[2, 2], strides=[2, 2])
    elif step == "gap":
        g.node("GlobalAveragePool", [g.name], (c, 1, 1))
    else:
        return _flatten(draw, g)
    return None


def _more_image_step(draw, g: _Graph, step: str):
    """The less common image ops: BatchNormalization, LeakyRelu, Mul / Sub / Div by a
    constant, Pad, Identity, 3x3 pools with padding, a dilated conv."""
    c, h, w = g.shape
    if step == "batchnorm":
        names = []
        for role in ("gamma", "beta", "mean", "var"):
            names.append(g._new(role))
            value = g.rng.standard_normal(c) * 0.3
            g.arrays[names[-1]] = (np.abs(value) + 0.5 if role in ("gamma", "var")
                                   else value).astype(np.float32)
        g.node("BatchNormalization", [g.name, *names], g.shape, epsilon=1e-5)
    elif step == "leaky":
        g.node("LeakyRelu", [g.name], g.shape, alpha=float(draw(st.sampled_from([0.01, 0.1]))))
    elif step == "scale":
        op = draw(st.sampled_from(["Mul", "Sub", "Div"]))
        constant = g._new("k")
        g.arrays[constant] = np.float32(draw(st.sampled_from([0.5, 2.0, -1.5])))
        g.node(op, [g.name, constant], g.shape)
    elif step == "pad":
        pads = g._new("p")
        g.arrays[pads] = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
        g.node("Pad", [g.name, pads], (c, h + 2, w + 2), mode="constant")
    elif step == "identity":
        g.node(draw(st.sampled_from(["Identity", "Dropout"])), [g.name], g.shape)
    elif step == "pool3":
        op = draw(st.sampled_from(["MaxPool", "AveragePool"]))
        extra = {"count_include_pad": int(draw(st.booleans()))} if op == "AveragePool" else {}
        g.node(op, [g.name], g.shape, kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4,
               **extra)
    else:                           # dilation 2, padding 2: same size
        weight = g.weight((c, c, 3, 3), c * 9)
        g.node("Conv", [g.name, weight], g.shape, kernel_shape=[3, 3], pads=[2] * 4,
               dilations=[2, 2])


def _flatten(draw, g: _Graph):
    features = int(np.prod(g.shape))
    if draw(st.booleans()):
        g.node("Flatten", [g.name], (features,), axis=1)
    else:
        shape = g._new("s")
        g.arrays[shape] = np.array([-1, features], np.int64)
        g.node("Reshape", [g.name, shape], (features,))


def _vector_step(draw, g: _Graph):
    (features,) = g.shape
    step = draw(st.sampled_from(["gemm", "gemm", "matmul", "relu", "add", "scaled_gemm",
                                 "softmax"]))
    out = draw(st.integers(1, 12))
    if step == "gemm":
        trans = draw(st.booleans())
        weight = g.weight((out, features) if trans else (features, out), features)
        inputs = [g.name, weight]
        if draw(st.booleans()):
            bias = g._new("b")
            g.arrays[bias] = (g.rng.standard_normal(out) * 0.1).astype(np.float32)
            inputs.append(bias)
        g.node("Gemm", inputs, (out,), transB=int(trans))
    elif step == "scaled_gemm":     # alpha, beta and a bias broadcast from one value
        bias = g._new("b")
        g.arrays[bias] = np.float32([0.3])
        g.node("Gemm", [g.name, g.weight((out, features), features), bias], (out,), transB=1,
               alpha=float(draw(st.sampled_from([0.5, 2.0]))),
               beta=float(draw(st.sampled_from([0.0, 1.0, -1.0]))))
    elif step == "softmax":
        g.node(draw(st.sampled_from(["Softmax", "LogSoftmax"])), [g.name], g.shape, axis=1)
    elif step == "matmul":
        g.node("MatMul", [g.name, g.weight((features, out), features)], (out,))
    elif step == "relu":
        g.node("Relu", [g.name], g.shape)
    else:
        src = g.name
        a = g.node("Gemm", [src, g.weight((out, features), features)], (out,), transB=1)
        b = g.node("Gemm", [src, g.weight((out, features), features)], (out,), transB=1)
        g.node("Add", [a, b], (out,))


@st.composite
def random_graph(draw):
    """Return ``(_Graph, onnx.ModelProto)``: a random valid chain (module docstring)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    if draw(st.booleans()):
        size = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
        g = _Graph(rng, (draw(st.integers(1, 4)), size, size))
    else:
        g = _Graph(rng, (draw(st.integers(1, 16)),))
    for _ in range(draw(st.integers(1, 5))):
        if len(g.shape) == 3:
            _image_step(draw, g)
        else:
            _vector_step(draw, g)
    if not rarely(draw, 4):          # most end in a classifier head
        if len(g.shape) == 3:
            _flatten(draw, g)
        (features,) = g.shape
        classes = draw(st.integers(2, 10))
        g.node("Gemm", [g.name, g.weight((classes, features), features)], (classes,),
               transB=1)
    g.nodes[-1].output[0] = "y"
    return g, _proto(g)


def _proto(g: _Graph, opset: int = 13, inputs_type=TensorProto.FLOAT) -> onnx.ModelProto:
    graph = helper.make_graph(
        g.nodes, "fuzz", [helper.make_tensor_value_info("x", inputs_type,
                                                        ["N", *g.input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *g.shape])],
        [numpy_helper.from_array(np.asarray(a), k) for k, a in g.arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


# ------------------------------------------------------------------- onnx category
def _model_check(model_bytes: bytes, input_shape, strategy: str, quantized: bool = True):
    """Check of an exit-0 compile: the float backend equals the ONNX reference; the
    bundle's executor equals the golden model and tracks the reference."""
    def check(folder, run):
        # bitline calibrates a model without a data set on 16 uniform [0, 1) inputs drawn
        # with seed 0 (`bitline compile --help`); checking on those very inputs keeps the
        # comparison with the float reference free of clipping, so only rounding remains
        x = np.random.default_rng(0).random((16, *input_shape), dtype=np.float32)
        try:
            want = onnx_reference(model_bytes, x)
        except Exception as error:      # noqa: BLE001 - onnx itself cannot run it
            return f"bitline accepted a model onnx's reference cannot run ({error!r:.120})"
        np.save(folder / "x_float.npy", x)
        result = run(["run", folder / "m.onnx", "-i", folder / "x_float.npy", "-o",
                      folder / "y_float.npz", "-q"])
        if result.code == 0:
            with np.load(folder / "y_float.npz") as data:
                problem = compare_float(data["output"], want, FLOAT_TOLERANCE)
            if problem:
                return "float backend: " + problem
        if not (folder / "out" / "manifest.json").exists():
            return None
        problem, arrays = check_bundle_against_golden(run, folder / "out", x, folder)
        if problem or arrays is None or not quantized or not np.isfinite(want).all():
            return problem
        problem = compare_float(arrays["output"], want, QUANT_TOLERANCE)
        return problem and "executor vs the ONNX reference: " + problem
    return check


def _compile_case(kind, description, proto_or_bytes, input_shape, strategy, expect,
                  check=True, reference: bytes | None = None):
    """``bitline compile`` of a model; ``reference`` is the model onnx runs for the check
    (default: the same bytes)."""
    data = proto_or_bytes if isinstance(proto_or_bytes, bytes) else \
        proto_or_bytes.SerializeToString()
    return Case("onnx", kind, description,
                ["compile", f"{DIR}/m.onnx", "-s", strategy, "-o", f"{DIR}/out", "-q"],
                expect, files={"m.onnx": data},
                check=_model_check(reference or data, input_shape, strategy) if check else None)


def _loads(data: bytes):
    """The mutated model as onnx sees it: ``None`` if onnx cannot parse or check it."""
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
        return model
    except Exception:           # noqa: BLE001
        return None


@st.composite
def onnx_cases(draw):
    """A random valid graph, or one mutation of it (module docstring)."""
    g, proto = draw(random_graph())
    strategy = draw(st.sampled_from(STRATEGIES))
    data = proto.SerializeToString()
    kind = draw(st.sampled_from(["valid", "valid", "truncate", "flip", "elem_type",
                                 "zero_channels", "one_by_one", "huge_spatial", "nonfinite",
                                 "huge_weights", "missing_init", "unknown_op", "cycle",
                                 "dangling", "opset"]))
    shape = g.input_shape
    weights = sorted(k for k, a in g.arrays.items() if a.dtype == np.float32 and a.size)
    if kind in ("elem_type", "nonfinite", "huge_weights", "missing_init") and not weights:
        kind = "valid"                  # a graph of no initializer (only Relu, pools, ...)
    if kind == "valid":
        return _compile_case(kind, f"{len(g.nodes)} nodes, input {shape}", proto, shape,
                             strategy, "either")
    if kind in ("truncate", "flip"):
        if kind == "truncate":
            cut = draw(st.integers(0, len(data) - 1))
            mutated, what = data[:cut], f"cut at {cut} of {len(data)} bytes"
        else:
            buffer = bytearray(data)
            for _ in range(draw(st.integers(1, 4))):
                at = draw(st.integers(0, len(buffer) - 1))
                buffer[at] ^= draw(st.integers(1, 255))
            mutated, what = bytes(buffer), "byte flips"
        expect = "either" if _loads(mutated) is not None else "refuse"
        return _compile_case(kind, what, mutated, shape, strategy, expect)
    if kind == "elem_type":
        target = draw(st.sampled_from(["input", "initializer"]))
        new = draw(st.sampled_from([TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT16,
                                    TensorProto.INT8, TensorProto.STRING, TensorProto.BOOL]))
        description = f"{target} as {TensorProto.DataType.Name(new)}"
        if target == "input" or not g.arrays:
            proto.graph.input[0].type.tensor_type.elem_type = new
            return _compile_case(kind, description, proto, shape, strategy,
                                 "either" if _runs(proto, shape) else "refuse")
        # A numeric initializer of another type holds numbers: bitline may refuse the type
        # mismatch ONNX forbids, or compute with those values (then they are the reference,
        # cast back to the original type); a string initializer holds no numbers at all.
        name = draw(st.sampled_from(sorted(g.arrays)))
        tensor = next(t for t in proto.graph.initializer if t.name == name)
        array = numpy_helper.to_array(tensor)
        if new == TensorProto.STRING:
            cast = np.array([str(v) for v in array.ravel()], object).reshape(array.shape)
            tensor.CopyFrom(numpy_helper.from_array(cast, name))
            return _compile_case(kind, f"{description} ({name})", proto, shape, strategy,
                                 "refuse")
        with np.errstate(all="ignore"):
            cast = array.astype(helper.tensor_dtype_to_np_dtype(new))
        reference = onnx.ModelProto()
        reference.CopyFrom(proto)
        next(t for t in reference.graph.initializer if t.name == name).CopyFrom(
            numpy_helper.from_array(cast.astype(array.dtype), name))
        tensor.CopyFrom(numpy_helper.from_array(cast, name))
        return _compile_case(kind, f"{description} ({name})", proto, shape, strategy,
                             "either", reference=reference.SerializeToString())
    if kind == "zero_channels":
        model = _single_conv((1, 4, 4), out_c=0)
        return _compile_case(kind, "conv with 0 output channels", model, (1, 4, 4), strategy,
                             "refuse", check=False)
    if kind == "one_by_one":
        gg = _Graph(np.random.default_rng(0), (draw(st.integers(1, 3)), 1, 1))
        gg.conv("x", gg.shape, draw(st.integers(1, 4)), 1, 1, 0)
        gg.nodes[-1].output[0] = "y"
        model = _proto(gg)
        return _compile_case(kind, "1x1 image, 1x1 conv", model, gg.input_shape, strategy,
                             "either")
    if kind == "huge_spatial":
        size = draw(st.sampled_from([4096, 16384, 65536]))   # 2048: a 6 GB, 2-minute compile
        model = _single_conv((1, size, size), out_c=draw(st.integers(1, 8)))
        return _compile_case(kind, f"{size}x{size} input", model, (1, size, size), strategy,
                             "either", check=False)
    if kind in ("nonfinite", "huge_weights"):
        name = draw(st.sampled_from(weights))
        tensor = next(t for t in proto.graph.initializer if t.name == name)
        array = numpy_helper.to_array(tensor).copy()
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf] if kind == "nonfinite"
                                     else [1e30, -1e35, 3e38, 3.4e38]))
        array.flat[draw(st.integers(0, array.size - 1))] = value
        tensor.CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))
        return _compile_case(kind, f"{name} holds {value}", proto, shape, strategy,
                             "refuse" if kind == "nonfinite" else "either")
    if kind == "missing_init":
        name = draw(st.sampled_from(sorted(g.arrays)))
        kept = [t for t in proto.graph.initializer if t.name != name]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)
        return _compile_case(kind, f"initializer {name} removed", proto, shape, strategy,
                             "refuse")
    if kind == "unknown_op":
        node = proto.graph.node[draw(st.integers(0, len(proto.graph.node) - 1))]
        node.op_type = draw(st.sampled_from(["FooBar", "Sin", "LSTM", "NonMaxSuppression",
                                             "Einsum"]))
        return _compile_case(kind, f"node {node.name} as {node.op_type}", proto, shape,
                             strategy, "either" if _runs(proto, shape) else "refuse")
    if kind == "cycle":
        first = proto.graph.node[0]
        first.input[0] = proto.graph.node[-1].output[0]
        return _compile_case(kind, "first node reads the last node's output", proto, shape,
                             strategy, "refuse")
    if kind == "dangling":
        node = proto.graph.node[draw(st.integers(0, len(proto.graph.node) - 1))]
        node.input[0] = "nowhere"
        return _compile_case(kind, f"node {node.name} reads an undefined tensor", proto,
                             shape, strategy, "refuse")
    opset = draw(st.sampled_from([1, 6, 7, 9, 11, 12, 17, 21, 99]))
    proto.opset_import[0].version = opset
    return _compile_case(kind, f"opset {opset}", proto, shape, strategy,
                         "either" if _runs(proto, shape) else "refuse")


def _runs(proto, shape) -> bool:
    """True if onnx's checker and reference evaluator accept the model."""
    data = proto.SerializeToString()
    if _loads(data) is None:
        return False
    try:
        onnx_reference(data, np.zeros((1, *shape), np.float32))
        return True
    except Exception:           # noqa: BLE001
        return False


def _single_conv(shape, out_c):
    g = _Graph(np.random.default_rng(0), shape)
    g.conv("x", shape, out_c, 3, 1, 1)
    g.nodes[-1].output[0] = "y"
    return _proto(g)
