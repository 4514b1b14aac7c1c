"""The ops of issue 14 (onnx_ops_more, simplify, lower_affine, fold_pads) against onnxruntime.

Every accepted op is run by the float backend on a graph built with onnx.helper and compared
with onnxruntime (1e-5 relative); every unsupported variant must fail naming node and op.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitline.sw.frontend.float_model import run_float
from bitline.sw.frontend.onnx_import import FrontendError, load_onnx
from bitline.sw.frontend.simplify import simplify_onnx


ort = pytest.importorskip("onnxruntime")


class Graph:
    """A seeded onnx.helper graph builder with input ``x`` of shape ``(N, *shape)``."""

    def __init__(self, shape, seed=0, opset=13):
        self.rng = np.random.default_rng(seed)
        self.shape = tuple(shape)
        self.opset = opset
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, array, dtype=np.float32):
        self.count += 1
        name = f"k{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def node(self, op, inputs, name=None, outputs=1, **attrs):
        self.count += 1
        names = [f"t{self.count}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name=name or f"{op}{self.count}",
                                           **attrs))
        return names[0] if outputs == 1 else names

    def conv(self, x, c_in, c_out, k=3, pads=(1, 1, 1, 1), **attrs):
        w = self.rng.standard_normal((c_out, c_in, k, k)) / np.sqrt(c_in * k * k)
        b = self.rng.standard_normal(c_out) * 0.1
        return self.node("Conv", [x, self.const(w), self.const(b)], pads=list(pads), **attrs)

    def gemm(self, x, f_in, f_out):
        w = self.rng.standard_normal((f_out, f_in)) / np.sqrt(f_in)
        return self.node("Gemm", [x, self.const(w), self.const(np.zeros(f_out))], transB=1)

    def model(self, output, batch="N", domains=()):
        graph = helper.make_graph(
            self.nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                              [batch, *self.shape])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        model = helper.make_model(graph, opset_imports=[
            helper.make_opsetid("", self.opset), *(helper.make_opsetid(d, 1) for d in domains)])
        model.ir_version = 8
        model = onnx.shape_inference.infer_shapes(model)
        if not model.graph.output[0].type.tensor_type.HasField("shape"):
            model.graph.output[0].type.tensor_type.shape.SetInParent()
        return model


def check(proto, batch=3, seed=1):
    """Import ``proto``, run the float backend and onnxruntime; return the IR model."""
    model = load_onnx(proto)
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape))
    x = x.astype(np.float32)
    want = ort.InferenceSession(proto.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = run_float(model, x)
    assert got.shape == want.shape
    atol = 1e-6 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
    return model


def ops(model):
    return [(layer.op, layer.activation) for layer in model.layers]


# -- simplification --------------------------------------------------------------------------

def _view_chain(g, x):
    """``x.view(x.size(0), -1)`` as torch's TorchScript exporter writes it."""
    shape = g.node("Shape", [x])
    size0 = g.node("Gather", [shape, g.const(0, np.int64)], axis=0)
    size0 = g.node("Unsqueeze", [size0, g.const([0], np.int64)])
    target = g.node("Concat", [size0, g.const([-1], np.int64)], axis=0)
    return g.node("Reshape", [x, target])


@pytest.mark.parametrize("use_onnxruntime", [True, False])
def test_shape_chain_of_view_is_folded(use_onnxruntime):
    g = Graph((2, 6, 6))
    y = g.node("Relu", [g.conv("x", 2, 3)])
    y = g.gemm(g.node("Identity", [_view_chain(g, y)]), 3 * 36, 4)
    proto = g.model(y)
    simple = simplify_onnx(proto, use_onnxruntime=use_onnxruntime)
    assert [n.op_type for n in simple.graph.node] == ["Conv", "Relu", "Reshape", "Gemm"]
    # unused initializers dropped, the input model untouched
    assert {i.name for i in simple.graph.initializer} <= {
        name for n in simple.graph.node for name in n.input}
    assert [n.op_type for n in proto.graph.node][2] == "Shape"
    assert ops(check(proto)) == [("conv", "relu"), ("flatten", None), ("gemm", None)]


def test_constant_arithmetic_slice_cast_range_are_folded_by_own_folding():
    # Slice / Cast / Range / ConstantOfShape / arithmetic on constants, without onnxruntime.
    g = Graph((2, 5, 5))
    y = g.conv("x", 2, 4)
    shape = g.node("Shape", [y])
    channels = g.node("Slice", [shape, g.const([1], np.int64), g.const([2], np.int64)])
    count = g.node("Cast", [g.node("Squeeze", [channels, g.const([0], np.int64)])], to=1)
    ramp = g.node("Range", [g.const(0.0), count, g.const(1.0)])
    ones = g.node("ConstantOfShape", [channels],
                  value=numpy_helper.from_array(np.array([2.0], np.float32)))
    scale = g.node("Reshape", [g.node("Add", [g.node("Mul", [ramp, ones]), ones]),
                               g.const([4, 1, 1], np.int64)])
    y = g.node("Mul", [y, scale])
    proto = g.model(y)
    simple = simplify_onnx(proto, use_onnxruntime=False)
    assert [n.op_type for n in simple.graph.node] == ["Conv", "Mul"]
    model = check(proto)
    assert ops(model) == [("conv", None)]           # the per-channel Mul folded into the conv


@pytest.mark.parametrize("opset", [9, 11, 13, 17, 21])
def test_opsets_9_to_21(opset):
    g = Graph((3, 6, 6), opset=opset)
    y = g.node("Relu", [g.conv("x", 3, 4)])
    y = g.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    if opset < 13:
        y = g.node("Flatten", [y], axis=1)
    else:
        y = _view_chain(g, y)
    y = g.gemm(g.node("Dropout", [y]), 36, 5)
    assert ops(check(g.model(y))) == [("conv", "relu"), ("maxpool", None), ("flatten", None),
                                      ("gemm", None)]


def test_cancelling_transposes_are_removed():
    g = Graph((3, 4, 4))
    y = g.node("Transpose", [g.conv("x", 3, 3)], perm=[0, 2, 3, 1])
    y = g.node("Relu", [g.node("Transpose", [y], perm=[0, 3, 1, 2])])
    assert ops(check(g.model(y))) == [("conv", "relu")]


# -- ReduceMean ---------------------------------------------------------------------------

@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_mean_over_spatial_axes_is_global_average_pooling(keepdims, opset):
    g = Graph((3, 5, 5), opset=opset)
    y = g.conv("x", 3, 4)
    if opset >= 18:
        y = g.node("ReduceMean", [y, g.const([2, 3], np.int64)], keepdims=keepdims)
    else:
        y = g.node("ReduceMean", [y], axes=[-2, -1], keepdims=keepdims)
    if keepdims:
        y = g.node("Flatten", [y])
    model = check(g.model(g.gemm(y, 4, 2)))
    assert [op for op, _ in ops(model)] == ["conv", "gap", "flatten", "gemm"]


def test_reduce_mean_over_channels_is_refused():
    g = Graph((3, 5, 5))
    y = g.node("ReduceMean", [g.conv("x", 3, 4)], name="rm", axes=[1])
    with pytest.raises(FrontendError, match=r"node 'rm' \(ReduceMean\): only a ReduceMean over "
                       r"the spatial axes \[2, 3\]"):
        load_onnx(g.model(y))


# -- Pad ------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [9, 13, 18])
def test_pad_folds_into_the_next_conv(opset):
    g = Graph((2, 6, 6), opset=opset)
    pads = [0, 0, 1, 2, 0, 0, 2, 1]
    if opset < 11:
        y = g.node("Pad", ["x"], pads=pads)
    else:
        y = g.node("Pad", ["x", g.const(pads, np.int64)])
    model = check(g.model(g.conv(y, 2, 3, pads=(0, 1, 0, 1))))
    assert ops(model) == [("conv", None)]
    assert model.layers[0].attrs["pads"] == (1, 3, 2, 2)


def test_pad_folds_into_average_pool_counting_the_padding():
    g = Graph((2, 6, 6))
    y = g.node("Pad", ["x", g.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)])
    model = check(g.model(g.node("AveragePool", [y], kernel_shape=[3, 3], strides=[2, 2])))
    assert model.layers[0].attrs["count_include_pad"] is True


def test_zero_pad_folds_into_max_pool_after_a_relu_only():
    g = Graph((2, 6, 6))
    y = g.node("Relu", [g.conv("x", 2, 3)])
    y = g.node("Pad", [y, g.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)])
    model = check(g.model(g.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2])))
    assert ops(model) == [("conv", "relu"), ("maxpool", None)]
    g = Graph((2, 6, 6))
    y = g.node("Pad", [g.conv("x", 2, 3), g.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)],
               name="zpad")
    with pytest.raises(FrontendError, match=r"node 'zpad' \(Pad\): a MaxPool pads with -inf"):
        load_onnx(g.model(g.node("MaxPool", [y], kernel_shape=[3, 3])))


@pytest.mark.parametrize("case, message", [
    ("reflect", r"unsupported attribute mode='reflect'"),
    ("channels", r"only non-negative padding of the spatial axes"),
    ("value", r"a Conv pads with 0, not with the Pad's value 1.5"),
    ("last", r"a Pad folds only into a following Conv / pooling layer"),
])
def test_unsupported_pads_are_refused(case, message):
    g = Graph((2, 6, 6))
    pads = [0, 1, 1, 1, 0, 0, 1, 1] if case == "channels" else [0, 0, 1, 1, 0, 0, 1, 1]
    inputs = ["x", g.const(pads, np.int64)]
    if case == "value":
        inputs.append(g.const(1.5))
    attrs = {"mode": "reflect"} if case == "reflect" else {}
    y = g.node("Pad", inputs, name="p", **attrs)
    if case != "last":
        y = g.conv(y, 2, 2, pads=(0, 0, 0, 0))
    with pytest.raises(FrontendError, match=r"node 'p' \(Pad\): " + message):
        load_onnx(g.model(y))


# -- Mul / Div / Sub, standalone BatchNorm ----------------------------------------------------

@pytest.mark.parametrize("op, first", [("Mul", False), ("Mul", True), ("Div", False),
                                       ("Sub", False), ("Sub", True)])
@pytest.mark.parametrize("shape", [(), (4, 1, 1), (1, 4, 1, 1)])
def test_constant_arithmetic_folds_into_the_producing_conv(op, first, shape):
    g = Graph((3, 5, 5))
    y = g.conv("x", 3, 4)
    c = g.const(g.rng.uniform(0.5, 2.0, shape))
    y = g.node(op, [c, y] if first else [y, c])
    model = check(g.model(g.node("Relu", [y])))
    assert ops(model) == [("conv", "relu")]


def test_input_normalization_folds_forward_into_an_unpadded_conv():
    # (x - mean) / std on the graph input, then a conv without padding: folded into it.
    g = Graph((3, 6, 6))
    y = g.node("Sub", ["x", g.const(np.array([0.5, 0.4, 0.3]).reshape(3, 1, 1))])
    y = g.node("Div", [y, g.const(np.array([0.2, 0.25, 0.3]).reshape(3, 1, 1))])
    model = check(g.model(g.conv(y, 3, 4, pads=(0, 0, 0, 0))))
    assert ops(model) == [("conv", None)]


def test_input_normalization_before_a_padded_conv_becomes_a_depthwise_layer():
    # Padding zeros after the shift are not the shift of a padded zero: no forward fold.
    g = Graph((3, 6, 6))
    y = g.node("Sub", ["x", g.const(np.array([0.5, 0.4, 0.3]).reshape(3, 1, 1))], name="norm")
    model = check(g.model(g.conv(y, 3, 4)))
    assert [(layer.name, layer.op, layer.attrs.get("groups")) for layer in model.layers][0] == (
        "norm", "conv", 3)


def test_standalone_batchnorm_after_pooling_and_on_a_vector():
    g = Graph((3, 6, 6))
    y = g.node("MaxPool", [g.conv("x", 3, 4)], kernel_shape=[2, 2], strides=[2, 2])
    bn = [g.const(g.rng.uniform(0.5, 1.5, 4)) for _ in range(2)] + [
        g.const(g.rng.standard_normal(4) * 0.1), g.const(g.rng.uniform(0.5, 1.5, 4))]
    y = g.node("BatchNormalization", [y, *bn])
    y = g.node("Flatten", [g.node("GlobalAveragePool", [y])])
    y = g.node("Mul", [y, g.const(g.rng.uniform(0.5, 1.5, 4))])   # affine on a vector ...
    y = g.node("Relu", [y])                                         # ... not before a gemm
    model = check(g.model(y))
    assert [(layer.op, layer.attrs.get("groups"), layer.activation) for layer in model.layers] == [
        ("conv", 1, None), ("maxpool", None, None), ("conv", 4, None), ("gap", None, None),
        ("flatten", None, None), ("gemm", None, "relu")]
    assert np.count_nonzero(model.layers[5].weight - np.diag(np.diag(model.layers[5].weight))) == 0


@pytest.mark.parametrize("case, message", [
    ("spatial", r"varies over the spatial axes"),
    ("two", r"Mul of two activations is not supported"),
    ("divide", r"constant / activation is not supported"),
])
def test_unsupported_arithmetic_is_refused(case, message):
    g = Graph((2, 4, 4))
    y = g.conv("x", 2, 2)
    op = "Div" if case == "divide" else "Mul"
    other = y if case == "two" else g.const(g.rng.uniform(1, 2, (2, 4, 4) if case == "spatial"
                                                         else (2, 1, 1)))
    inputs = [other, y] if case == "divide" else [y, other]
    y = g.node(op, inputs, name="arith")
    with pytest.raises(FrontendError, match=rf"node 'arith' \({op}\): .*{message}"):
        load_onnx(g.model(y))


# -- Concat ----------------------------------------------------------------------------------

def test_concat_along_channels():
    g = Graph((3, 6, 6))
    a = g.node("Relu", [g.conv("x", 3, 2)])
    b = g.node("Relu", [g.conv("x", 3, 4, k=1, pads=(0, 0, 0, 0))])
    y = g.node("Concat", [a, b, "x"], axis=1)
    model = check(g.model(g.conv(y, 9, 3)))
    concat = model.layers[2]
    assert (concat.op, concat.output_shape, len(concat.inputs)) == ("concat", (9, 6, 6), 3)


def test_concat_along_space_is_refused():
    g = Graph((3, 6, 6))
    y = g.node("Concat", [g.conv("x", 3, 2), g.conv("x", 3, 2)], name="cat", axis=2)
    with pytest.raises(FrontendError, match=r"node 'cat' \(Concat\): only a Concat along the "
                       r"channel axis 1"):
        load_onnx(g.model(y))


# -- LeakyReLU / PReLU ----------------------------------------------------------------------

def test_leaky_relu_and_prelu():
    g = Graph((3, 5, 5))
    y = g.node("LeakyRelu", [g.conv("x", 3, 4)], alpha=0.1)
    y = g.node("PRelu", [g.conv(y, 4, 4), g.const(g.rng.uniform(0, 0.5, (4, 1, 1)))])
    model = check(g.model(y))
    assert [op for op, _ in ops(model)] == ["conv", "leaky_relu", "conv", "leaky_relu"]


def test_prelu_with_a_slope_over_the_width_is_refused():
    g = Graph((3, 5, 5))
    y = g.node("PRelu", [g.conv("x", 3, 4), g.const(np.linspace(0.1, 0.3, 5))], name="pr")
    with pytest.raises(FrontendError, match=r"node 'pr' \(PRelu\): constant of shape \(5,\) "
                       r"varies over the spatial axes"):
        load_onnx(g.model(y))


# -- Softmax ---------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_final_softmax_is_the_hosts_output_transform(op, opset):
    g = Graph((8,), opset=opset)
    # opset 11's default axis is 1 (coerced to 2-D), opset 13's -1: the same on (N, F)
    model = check(g.model(g.node(op, [g.gemm("x", 8, 5)])))
    assert model.output_transform == op.replace("Soft", "_soft").lower().lstrip("_")
    assert ops(model) == [("gemm", None)]


def test_softmax_not_at_the_end_is_refused():
    g = Graph((8,))
    y = g.node("Softmax", [g.gemm("x", 8, 5)], name="sm", axis=-1)
    with pytest.raises(FrontendError, match=r"node 'sm' \(Softmax\): Softmax is only "
                       r"supported as the last node"):
        load_onnx(g.model(g.gemm(y, 5, 2)))


# -- Transpose ------------------------------------------------------------------------------

def test_transpose_of_a_pooled_image_then_reshape_is_a_flatten():
    g = Graph((3, 5, 5))
    y = g.node("GlobalAveragePool", [g.conv("x", 3, 4)])
    y = g.node("Transpose", [y], perm=[0, 2, 3, 1])                 # (N, 1, 1, C)
    y = g.node("Reshape", [y, g.const([1, 4], np.int64)])
    model = check(g.model(g.gemm(y, 4, 2)), batch=1)
    assert [op for op, _ in ops(model)] == ["conv", "gap", "flatten", "gemm"]


@pytest.mark.parametrize("consumer", ["Reshape", "Relu"])
def test_transposes_that_move_data_or_feed_compute_are_refused(consumer):
    g = Graph((3, 5, 5))
    y = g.conv("x", 3, 4)
    if consumer == "Reshape":
        y = g.node("Transpose", [y], name="tr", perm=[0, 2, 3, 1])
        y = g.node("Reshape", [y, g.const([1, -1], np.int64)])
        message = r"node 'tr' \(Transpose\): only a Transpose that moves no data"
    else:
        y = g.node("Transpose", [g.node("GlobalAveragePool", [y])], perm=[0, 2, 3, 1])
        y = g.node("Relu", [y], name="r")
        message = r"node 'r' \(Relu\): input .* is a Transpose to \(N, 1, 1, 4\)"
    with pytest.raises(FrontendError, match=message):
        load_onnx(g.model(y))


def test_unsupported_op_still_names_node_op_and_supported_list():
    g = Graph((3, 4, 4))
    y = g.node("Sigmoid", [g.conv("x", 3, 3)], name="squash")
    with pytest.raises(FrontendError, match=r"node 'squash' \(Sigmoid\): unsupported op; "
                       r"supported: .*ReduceMean.*Concat.*LeakyRelu"):
        load_onnx(g.model(y))


def test_a_graph_onnxruntime_cannot_load_is_still_simplified_and_named():
    # An op of a domain onnxruntime does not know: its basic-level pass is skipped, bitline's
    # own folding still removes the shape chain, and the converter names the foreign node.
    g = Graph((2, 4, 4))
    y = _view_chain(g, g.conv("x", 2, 2))
    g.nodes.append(helper.make_node("Mystery", [y], ["m"], name="odd", domain="example.org"))
    proto = g.model("m", domains=["example.org"])
    simple = simplify_onnx(proto)
    assert [n.op_type for n in simple.graph.node] == ["Conv", "Reshape", "Mystery"]
    with pytest.raises(FrontendError, match=r"node 'odd' \(Mystery\): unsupported op \(domain "
                       r"'example.org'\)"):
        load_onnx(proto)


def test_onnxruntime_fusions_are_off_and_node_names_and_order_kept():
    # Folding BatchNorm / Mul into the conv is the passes' job (float64, user's names);
    # onnxruntime's basic level would fuse them and reorder the nodes.
    g = Graph((3, 6, 6))
    shortcut = g.conv("x", 3, 4, k=1, pads=(0, 0, 0, 0))
    y = g.conv("x", 3, 4)
    bn = [g.const(g.rng.uniform(0.5, 1.5, 4)) for _ in range(2)] + [
        g.const(g.rng.standard_normal(4) * 0.1), g.const(g.rng.uniform(0.5, 1.5, 4))]
    y = g.node("BatchNormalization", [y, *bn], name="bn")
    y = g.node("Mul", [y, g.const(np.full((4, 1, 1), 2.0))], name="scale")
    y = g.node("Add", [y, shortcut], name="res")
    proto = g.model(y)
    simple = simplify_onnx(proto)
    assert [(n.op_type, n.name) for n in simple.graph.node] == [
        (n.op_type, n.name) for n in proto.graph.node]
    assert all(n.domain in ("", "ai.onnx") for n in simple.graph.node)
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    assert [(layer.name, layer.op) for layer in check(proto).layers] == [
        (convs[0], "conv"), (convs[1], "conv"), ("res", "add")]


@pytest.mark.parametrize("use_onnxruntime", [True, False])
def test_reshape_pairs_that_restore_the_shape_are_removed(use_onnxruntime):
    # Flatten then Reshape back to the image, and Reshape (N, C, H*W) then Reshape (N, -1):
    # pure relabelings of the same bytes.
    g = Graph((3, 4, 4))
    y = g.node("Flatten", [g.conv("x", 3, 2)], axis=1)
    y = g.node("Reshape", [y, g.const([1, 2, 4, 4], np.int64)])
    y = g.node("Relu", [y])
    y = g.node("Reshape", [y, g.const([1, 2, 16], np.int64)])
    y = g.node("Reshape", [y, g.const([1, -1], np.int64)])
    proto = g.model(g.gemm(y, 32, 3), batch=1)
    simple = simplify_onnx(proto, use_onnxruntime=use_onnxruntime)
    assert [n.op_type for n in simple.graph.node] == ["Conv", "Relu", "Reshape", "Gemm"]
    assert ops(check(proto, batch=1)) == [("conv", "relu"), ("flatten", None), ("gemm", None)]


def test_softmax_over_an_image_is_refused():
    g = Graph((3, 4, 4))
    y = g.node("Softmax", [g.conv("x", 3, 2)], name="sm", axis=1)
    with pytest.raises(FrontendError, match=r"node 'sm' \(Softmax\): only a Softmax over the "
                       r"features of a vector \(N, F\) is supported, not axis=1 of input "
                       r"\(N, 2, 4, 4\)"):
        load_onnx(g.model(y))
