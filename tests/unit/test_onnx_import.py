"""The ONNX front-end and the float reference against onnxruntime on generated models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitline.sw.frontend.float_model import run_float
from bitline.sw.frontend.onnx_import import FrontendError, load_onnx

ort = pytest.importorskip("onnxruntime")


class GraphBuilder:
    """Build small ONNX graphs with seeded random parameters."""

    def __init__(self, input_shape, seed=0, batch="N"):
        self.rng = np.random.default_rng(seed)
        self.input_shape = tuple(input_shape)
        self.batch = batch
        self.nodes = []
        self.inits = []
        self.count = 0

    def fresh(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, array, prefix="c"):
        name = self.fresh(prefix)
        array = np.asarray(array)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, name=None, **attrs):
        output = self.fresh("t")
        self.nodes.append(
            helper.make_node(op, inputs, [output], name=name or self.fresh(op.lower()), **attrs)
        )
        return output

    def conv(self, x, c_in, c_out, k=3, groups=1, bias=True, **attrs):
        kh, kw = (k, k) if isinstance(k, int) else k
        w = self.rng.standard_normal((c_out, c_in // groups, kh, kw)).astype(np.float32)
        inputs = [x, self.const(w / np.sqrt(c_in // groups * kh * kw), "w")]
        if bias:
            inputs.append(self.const(self.rng.standard_normal(c_out).astype(np.float32), "b"))
        return self.node("Conv", inputs, group=groups, **attrs)

    def bn(self, x, channels):
        params = [
            self.rng.uniform(0.5, 1.5, channels),
            self.rng.standard_normal(channels) * 0.1,
            self.rng.standard_normal(channels) * 0.1,
            self.rng.uniform(0.5, 1.5, channels),
        ]
        names = [self.const(p.astype(np.float32), "bn") for p in params]
        return self.node("BatchNormalization", [x, *names], epsilon=1e-3)

    def relu6(self, x):
        return self.node(
            "Clip", [x, self.const(np.float32(0.0), "lo"), self.const(np.float32(6.0), "hi")]
        )

    def model(self, output, opset=13):
        graph = helper.make_graph(
            self.nodes,
            "test_graph",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                           [self.batch, *self.input_shape])],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        model = onnx.shape_inference.infer_shapes(model)
        if not model.graph.output[0].type.tensor_type.HasField("shape"):
            model.graph.output[0].type.tensor_type.shape.SetInParent()
        return model


def compare_with_onnxruntime(model_proto, batch=3, seed=1, scale=1.0):
    model = load_onnx(model_proto)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((batch, *model.input_shape)) * scale).astype(np.float32)
    session = ort.InferenceSession(
        model_proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    want = session.run(None, {"x": x})[0]
    got = run_float(model, x)
    assert got.shape == want.shape
    atol = 1e-6 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
    return model


CONV_CASES = [
    dict(strides=[1, 1], pads=[1, 1, 1, 1]),
    dict(strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(strides=[2, 1], pads=[0, 2, 1, 0]),
    dict(strides=[1, 1], pads=[2, 2, 2, 2], dilations=[2, 2]),
    dict(strides=[1, 2], pads=[0, 0, 0, 0], dilations=[1, 3]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(auto_pad="SAME_LOWER", strides=[2, 2]),
    dict(auto_pad="VALID", strides=[1, 1]),
]


@pytest.mark.parametrize("attrs", CONV_CASES)
@pytest.mark.parametrize("kernel", [3, (2, 3), 1])
def test_conv(attrs, kernel):
    g = GraphBuilder((3, 9, 8), seed=hash(str(attrs)) % 1000)
    y = g.conv("x", 3, 5, k=kernel, **attrs)
    model = compare_with_onnxruntime(g.model(y))
    assert [layer.op for layer in model.layers] == ["conv"]


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_conv_bn_relu6(stride):
    g = GraphBuilder((6, 8, 8), seed=2)
    y = g.conv("x", 6, 6, groups=6, bias=False, strides=[stride, stride], pads=[1, 1, 1, 1])
    y = g.relu6(g.bn(y, 6))
    model = compare_with_onnxruntime(g.model(y), scale=3.0)
    (layer,) = model.layers
    assert (layer.op, layer.attrs["groups"], layer.activation) == ("conv", 6, "relu6")
    assert layer.weight.shape == (6, 1, 3, 3)


def test_conv_bn_relu_folded_and_fused():
    g = GraphBuilder((3, 6, 6), seed=3)
    y = g.node("Relu", [g.bn(g.conv("x", 3, 4, pads=[1, 1, 1, 1]), 4)])
    model = compare_with_onnxruntime(g.model(y))
    (layer,) = model.layers
    assert layer.activation == "relu" and layer.output == y and model.output_name == y


def test_gemm_transb_alpha_beta():
    g = GraphBuilder((12,), seed=4)
    w = g.const(g.rng.standard_normal((7, 12)).astype(np.float32))
    b = g.const(g.rng.standard_normal((1, 7)).astype(np.float32))
    y = g.node("Gemm", ["x", w, b], transB=1, alpha=0.5, beta=2.0)
    w2 = g.const(g.rng.standard_normal((7, 3)).astype(np.float32))
    y = g.node("Gemm", [g.node("Relu", [y]), w2])
    model = compare_with_onnxruntime(g.model(y))
    assert [(l.op, l.activation) for l in model.layers] == [("gemm", "relu"), ("gemm", None)]
    assert model.layers[0].weight.shape == (7, 12) and model.layers[1].weight.shape == (3, 7)


def test_matmul_add_bias_and_bn():
    g = GraphBuilder((10,), seed=5)
    w = g.const(g.rng.standard_normal((10, 6)).astype(np.float32))
    y = g.node("MatMul", ["x", w])
    y = g.node("Add", [g.const(g.rng.standard_normal(6).astype(np.float32)), y])
    y = g.node("Relu", [g.bn(y, 6)])
    model = compare_with_onnxruntime(g.model(y))
    (layer,) = model.layers
    assert (layer.op, layer.activation, layer.weight.shape) == ("gemm", "relu", (6, 10))


def test_without_passes_the_import_only_converts():
    """``passes=()`` keeps BatchNorm, the constant Add and ReLU as layers the float model runs."""
    g = GraphBuilder((10,), seed=5)
    w = g.const(g.rng.standard_normal((10, 6)).astype(np.float32))
    y = g.node("MatMul", ["x", w])
    y = g.node("Add", [g.const(g.rng.standard_normal(6).astype(np.float32)), y])
    proto = g.model(g.node("Relu", [g.bn(y, 6)]))
    converted = load_onnx(proto, passes=())
    assert [layer.op for layer in converted.layers] == ["gemm", "add_constant", "batchnorm", "relu"]
    x = np.random.default_rng(2).standard_normal((4, 10)).astype(np.float32)
    np.testing.assert_allclose(run_float(converted, x), run_float(load_onnx(proto), x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2])),
        ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
        ("MaxPool", dict(kernel_shape=[3, 2], strides=[1, 2], auto_pad="SAME_UPPER")),
        ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2])),
        ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
        ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                             count_include_pad=1)),
        ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 0],
                             count_include_pad=1)),
        ("GlobalAveragePool", {}),
    ],
)
def test_pools(op, attrs):
    g = GraphBuilder((4, 9, 8), seed=6)
    y = g.node(op, [g.conv("x", 4, 4, pads=[1, 1, 1, 1])], **attrs)
    model = compare_with_onnxruntime(g.model(y))
    assert model.layers[-1].op == {"MaxPool": "maxpool", "AveragePool": "avgpool",
                                   "GlobalAveragePool": "gap"}[op]


def test_residual_block_with_flatten_and_reshape():
    g = GraphBuilder((4, 8, 8), seed=7)
    a = g.node("Relu", [g.bn(g.conv("x", 4, 8, bias=False, pads=[1, 1, 1, 1], strides=[2, 2]), 8)])
    a = g.bn(g.conv(a, 8, 8, bias=False, pads=[1, 1, 1, 1]), 8)
    shortcut = g.bn(g.conv("x", 4, 8, k=1, bias=False, strides=[2, 2]), 8)
    y = g.node("Relu", [g.node("Add", [a, shortcut])])
    # a second consumer of the add output keeps the next ReLU standalone
    z = g.node("Relu", [g.conv(y, 8, 8, k=1)])
    y = g.node("Add", [y, z])
    y = g.node("Identity", [g.node("GlobalAveragePool", [y])])
    y = g.node("Reshape", [y, g.const(np.array([0, -1], dtype=np.int64))])
    y = g.node("Dropout", [y])
    w = g.const(g.rng.standard_normal((8, 10)).astype(np.float32))
    y = g.node("MatMul", [y, w])
    model = compare_with_onnxruntime(g.model(y))
    ops = [(l.op, l.activation) for l in model.layers]
    assert ops == [
        ("conv", "relu"), ("conv", None), ("conv", None), ("add", "relu"), ("conv", "relu"),
        ("add", None), ("gap", None), ("flatten", None), ("gemm", None),
    ]
    assert model.output_shape == (10,)
    assert sum(l.macs for l in model.layers) == (
        8 * 4 * 9 * 16 + 8 * 8 * 9 * 16 + 8 * 4 * 16 + 8 * 8 * 16 + 80
    )


@pytest.mark.parametrize("opset", [11, 13])
def test_gap_squeeze_gemm(opset):
    g = GraphBuilder((4, 5, 5), seed=12)
    y = g.node("GlobalAveragePool", [g.conv("x", 4, 6)])
    if opset >= 13:
        y = g.node("Squeeze", [y, g.const(np.array([2, 3], np.int64))])
    else:
        y = g.node("Squeeze", [y], axes=[-2, -1])
    w = g.const(g.rng.standard_normal((3, 6)).astype(np.float32))
    y = g.node("Gemm", [y, w], transB=1)
    model = compare_with_onnxruntime(g.model(y, opset=opset))
    assert [l.op for l in model.layers] == ["conv", "gap", "flatten", "gemm"]


def test_standalone_relu_when_producer_has_two_consumers():
    g = GraphBuilder((3, 5, 5), seed=8)
    c = g.conv("x", 3, 3, pads=[1, 1, 1, 1])
    r = g.relu6(c)
    y = g.node("Add", [c, r])
    model = compare_with_onnxruntime(g.model(y), scale=4.0)
    assert [(l.op, l.activation) for l in model.layers] == [
        ("conv", None), ("relu6", None), ("add", None)
    ]


def test_flatten_then_gemm_and_return_all():
    g = GraphBuilder((2, 4, 4), seed=9, batch=1)
    y = g.node("MaxPool", [g.conv("x", 2, 3)], kernel_shape=[2, 2], strides=[2, 2])
    y = g.node("Flatten", [y], axis=1)
    w = g.const(g.rng.standard_normal((5, 3)).astype(np.float32))
    y = g.node("Gemm", [y, w], transB=1)
    model = compare_with_onnxruntime(g.model(y), batch=1)
    tensors = run_float(model, np.zeros((1, 2, 4, 4), np.float32), return_all=True)
    assert set(tensors) == {"x"} | {l.output for l in model.layers}
    assert tensors[model.layers[1].output].shape == (1, 3, 1, 1)


def test_load_from_path_and_bytes(tmp_path):
    g = GraphBuilder((3, 4, 4), seed=10)
    proto = g.model(g.conv("x", 3, 2))
    path = tmp_path / "tiny.onnx"
    onnx.save(proto, path)
    from_path = load_onnx(path)
    from_bytes = load_onnx(proto.SerializeToString(), name="tiny_bytes")
    assert from_path.source == str(path) and from_path.name == "test_graph"
    assert from_bytes.name == "tiny_bytes"
    np.testing.assert_array_equal(from_path.layers[0].weight, from_bytes.layers[0].weight)


def test_opset_11_clip_inputs_and_opset_9_clip_attrs():
    g = GraphBuilder((3, 4, 4), seed=11)
    y = g.node("Clip", [g.conv("x", 3, 3)], min=0.0, max=6.0)
    model = compare_with_onnxruntime(g.model(y, opset=9), scale=5.0)
    assert model.layers[0].activation == "relu6"


# -- errors -------------------------------------------------------------------------------

def save(proto, tmp_path, name="bad.onnx"):
    path = tmp_path / name
    path.write_bytes(proto.SerializeToString())
    return path


def test_error_unsupported_op(tmp_path):
    g = GraphBuilder((3, 4, 4))
    y = g.node("Sigmoid", [g.conv("x", 3, 3)], name="squash")
    path = save(g.model(y), tmp_path)
    with pytest.raises(FrontendError,
                       match=r"bad\.onnx: node 'squash' \(Sigmoid\): unsupported op"):
        load_onnx(path)


def test_error_missing_initializer(tmp_path):
    g = GraphBuilder((3, 4, 4))
    g.nodes.append(helper.make_node("Relu", ["x"], ["wr"], name="make_w"))
    y = g.node("Conv", ["x", "wr"], name="conv_a")
    path = save(g.model(y), tmp_path)
    with pytest.raises(FrontendError, match=r"bad\.onnx: node 'conv_a' \(Conv\): weight 'wr' "
                       r"is not an initializer"):
        load_onnx(path)


def test_error_truncated_file(tmp_path):
    g = GraphBuilder((3, 8, 8))
    data = g.model(g.conv("x", 3, 16)).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrontendError, match=r"cut\.onnx: malformed or truncated"):
        load_onnx(path)


def test_error_missing_file(tmp_path):
    with pytest.raises(FrontendError, match=r"nope\.onnx: no such ONNX file"):
        load_onnx(tmp_path / "nope.onnx")


def test_error_checker(tmp_path):
    g = GraphBuilder((3, 4, 4))
    y = g.conv("x", 3, 3)
    g.nodes.append(helper.make_node("Relu", ["undefined_tensor"], ["r"], name="dangling"))
    path = save(g.model(y), tmp_path)
    with pytest.raises(FrontendError, match=r"bad\.onnx: not a valid ONNX model"):
        load_onnx(path)


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-1.0, 6.0)])
def test_error_clip_bounds(tmp_path, low, high):
    g = GraphBuilder((3, 4, 4))
    y = g.node("Clip", [g.conv("x", 3, 3), g.const(np.float32(low)), g.const(np.float32(high))],
               name="clamp")
    path = save(g.model(y), tmp_path)
    with pytest.raises(FrontendError, match=rf"node 'clamp' \(Clip\): .*min={low}, max={high}"):
        load_onnx(path)


def test_error_grouped_conv(tmp_path):
    g = GraphBuilder((4, 4, 4))
    y = g.conv("x", 4, 4, groups=2, name="grouped")
    path = save(g.model(y), tmp_path)
    with pytest.raises(FrontendError, match=r"node 'grouped' \(Conv\): unsupported attribute "
                       r"group=2"):
        load_onnx(path)


def test_bn_without_conv_becomes_a_depthwise_layer():
    # Issue 14 changed this from an error: a BatchNorm that cannot fold into its producer
    # (here after a ReLU) is a per-channel affine layer, lowered to a depthwise 1x1 conv.
    g = GraphBuilder((3, 4, 4))
    y = g.bn(g.node("Relu", [g.conv("x", 3, 3)]), 3)
    model = compare_with_onnxruntime(g.model(y))
    lowered = model.layers[-1]
    assert (lowered.op, lowered.attrs["groups"], lowered.weight.shape) == ("conv", 3, (3, 1, 1, 1))


def test_bn_whose_producer_has_another_consumer_becomes_a_depthwise_layer():
    # Issue 14 changed this from an error ("other consumer"): the BatchNorm is lowered.
    g = GraphBuilder((3, 4, 4))
    c = g.conv("x", 3, 3)
    y = g.node("Add", [g.bn(c, 3), c])
    model = compare_with_onnxruntime(g.model(y))
    assert [(layer.op, layer.attrs.get("groups")) for layer in model.layers] == [
        ("conv", 1), ("conv", 3), ("add", None)]


def test_error_wrong_rank(tmp_path):
    g = GraphBuilder((3, 4, 4))
    w = g.const(np.ones((48, 2), np.float32))
    y = g.node("MatMul", [g.conv("x", 3, 3, pads=[1, 1, 1, 1]), w], name="mm")
    path = save(g.model(y), tmp_path)
    with pytest.raises(FrontendError, match=r"node 'mm' \(MatMul\): input must be a vector"):
        load_onnx(path)


def test_error_unsupported_reshape(tmp_path):
    g = GraphBuilder((4, 4, 4))
    y = g.node("Reshape", ["x", g.const(np.array([0, 8, 8], np.int64))], name="rs")
    path = save(g.model(y), tmp_path)
    with pytest.raises(FrontendError, match=r"node 'rs' \(Reshape\): only a Reshape to a vector"):
        load_onnx(path)


def test_error_unsupported_attribute(tmp_path):
    g = GraphBuilder((3, 8, 8))
    y = g.node("MaxPool", ["x"], name="mp", kernel_shape=[2, 2], dilations=[2, 2])
    path = save(g.model(y), tmp_path)
    with pytest.raises(FrontendError, match=r"node 'mp' \(MaxPool\): unsupported attribute "
                       r"dilations=\[2, 2\]"):
        load_onnx(path)


def test_error_batch_and_rank_of_input(tmp_path):
    g = GraphBuilder((3, 8, 8), batch=4)
    path = save(g.model(g.node("Relu", ["x"])), tmp_path)
    with pytest.raises(FrontendError, match=r"batch size 4"):
        load_onnx(path)
    g = GraphBuilder((3, 8))
    path = save(g.model(g.node("Relu", ["x"])), tmp_path)
    with pytest.raises(FrontendError, match=r"rank 3"):
        load_onnx(path)


def test_error_messages_are_value_errors():
    assert issubclass(FrontendError, ValueError)
