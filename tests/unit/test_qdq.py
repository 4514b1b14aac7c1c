"""Already-quantized ONNX models (QDQ from onnxruntime's static quantizer) keep their quantization.

The models are made here: onnxruntime's ``quant_pre_process`` (BatchNorm folded into the
convolutions, as its documentation asks) and ``quantize_static`` (QDQ format) on the shipped
digits models, calibrated on 32 images of the digits ``calib`` split. The independent
reference is onnxruntime running the QDQ graph; the bound checked is the one
docs/frontend.md states ("Already-quantized models").
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.datasets import load_dataset
from bitline.sw.frontend.float_model import run_float_from
from bitline.sw.frontend.onnx_import import FrontendError, load_onnx
from bitline.sw.frontend.qdq import run_fake_quant, strip_quantization
from bitline.sw.quant.prequantized import quantized_from_file

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

MODELS = Path(__file__).resolve().parents[2] / "sw" / "models"
CALIB_IMAGES = 32


def _make_qdq(tmp: Path, model: str, *, per_channel: bool, weight: str, activation: str,
              opset: int | None = None, pre_process: bool = True) -> Path:
    """Quantize a shipped digits model with onnxruntime (QDQ) and return the file."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmp / f"{model}_pre.onnx"
    if pre_process:
        quant_pre_process(str(MODELS / f"{model}.onnx"), str(pre), skip_symbolic_shape=True)
    else:
        pre = MODELS / f"{model}.onnx"
    if opset is not None:                        # int4 types need opset 21
        onnx.save(onnx.version_converter.convert_version(onnx.load(pre), opset), pre)
    calib, _ = load_dataset("digits", "calib")
    name = onnx.load(pre).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: calib[i:i + 1]} for i in range(CALIB_IMAGES)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp / (f"{model}_{weight}_{activation}_{'pc' if per_channel else 'pt'}"
                 f"{'' if pre_process else '_raw'}.onnx")
    quantization.quantize_static(
        str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
        weight_type=getattr(QuantType, weight), activation_type=getattr(QuantType, activation),
        extra_options={"ActivationSymmetric": False})
    return out


@pytest.fixture(scope="module")
def qdq_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qdq")
    return {
        "cnn-int8-pc": _make_qdq(tmp, "digits_cnn", per_channel=True, weight="QInt8",
                                 activation="QUInt8"),
        "cnn-int4-pt": _make_qdq(tmp, "digits_cnn", per_channel=False, weight="QInt4",
                                 activation="QInt8", opset=21),
        "resnet-int8-pc": _make_qdq(tmp, "digits_resnet", per_channel=True, weight="QInt8",
                                    activation="QUInt8"),
        # asymmetric uint8 weights (zero points near 128): values q - z up to 8 magnitude bits
        "cnn-uint8w-pt": _make_qdq(tmp, "digits_cnn", per_channel=False, weight="QUInt8",
                                   activation="QUInt8"),
        # without quant_pre_process: BatchNorms stay, each conv output is quantized before
        # its BatchNorm
        "resnet-raw": _make_qdq(tmp, "digits_resnet", per_channel=True, weight="QInt8",
                                activation="QUInt8", pre_process=False),
    }


def _ort(path, x: np.ndarray, *, fake_quant: bool = False) -> np.ndarray:
    """onnxruntime's output; ``fake_quant`` disables its graph optimizations (which turn
    QDQ groups into integer kernels such as QLinearConv), so the QDQ graph runs as
    written: float ops between QuantizeLinear / DequantizeLinear."""
    options = ort.SessionOptions()
    if fake_quant:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = path.SerializeToString() if isinstance(path, onnx.ModelProto) else str(path)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _local_code_differences(model, qmodel, x) -> dict[str, np.ndarray]:
    """Per layer: |golden codes - onnxruntime's rounding of the same layer on golden's input|.

    Each requantizing layer is run in float on the golden model's own input codes and put
    on the file's grid as onnxruntime's QuantizeLinear does (round half to even, saturate);
    the difference to the golden model's output codes is the layer's own rounding
    difference, free of what earlier layers did.
    """
    from bitline.sim.golden import run_golden

    result = run_golden(qmodel, x, return_all=True)
    grid_in = qmodel.input
    real = {model.input_name: (grid_in.scale * (np.clip(
        np.rint(x / grid_in.scale) + grid_in.zero_point, 0, grid_in.qmax)
        - grid_in.zero_point)).astype(np.float32)}
    out = {}
    for layer in model.layers:
        qlayer = qmodel.layers[layer.name]
        codes = np.asarray(result.layers[layer.name])
        if qlayer.output is None:
            continue
        act = qlayer.output
        real[layer.output] = (act.scale * (codes.astype(np.float64) - act.zero_point)
                              ).astype(np.float32)
        if layer.name in qmodel.spec["regridded"] or layer.op in ("maxpool", "flatten"):
            continue
        y = run_float_from(replace(model, layers=[layer], output_name=layer.output), real, 0)
        ref = np.clip(np.rint(y / np.float32(act.scale)) + act.zero_point, 0, act.qmax)
        out[layer.name] = np.abs(ref - codes.reshape(ref.shape))
    return out


@pytest.mark.parametrize("key, bound_steps", [("cnn-int8-pc", 1.0), ("cnn-int4-pt", 1.5),
                                              ("cnn-uint8w-pt", 1.0), ("resnet-int8-pc", 8.0)])
def test_golden_agrees_with_onnxruntime(qdq_files, key, bound_steps):
    """Every test image's class equal; values within the documented bound (output steps)."""
    from bitline.sim.golden import run_golden

    path = qdq_files[key]
    model = load_onnx(path)
    assert model.quantization is not None
    # 9-bit sign-magnitude room for the asymmetric uint8 weights (q - z reaches -255..255)
    qmodel = quantized_from_file(model, AcceleratorConfig().replace(max_weight_bits=12))
    x, _ = load_dataset("digits", "test")
    ref = _ort(path, x)
    golden = np.asarray(run_golden(qmodel, x).output, dtype=np.float64).reshape(ref.shape)
    assert np.array_equal(golden.argmax(axis=1), ref.argmax(axis=1))
    # onnxruntime's output is the file's last QuantizeLinear (saturating); bitline's last
    # layer is raw (docs/contract.md): compare inside the output tensor's range.
    grid = model.quantization.acts[model.output_name]
    clipped = np.clip(golden, grid.scale * (grid.lo - grid.zero_point),
                      grid.scale * (grid.hi - grid.zero_point))
    steps = np.abs(clipped - ref) / grid.scale
    assert steps.max() <= bound_steps
    assert np.mean(steps <= 1.0) >= 0.97
    # The per-layer rule behind the bound: a layer's own rounding differs from
    # onnxruntime's by at most one code, and rarely.
    for name, diff in _local_code_differences(model, qmodel, x).items():
        assert diff.max() <= 1, name
        assert np.mean(diff > 0) < 5e-3, name


def test_batchnorms_left_in_by_the_quantizer(qdq_files):
    """Without onnxruntime's pre-processing every conv output is rounded before its
    BatchNorm: the fold makes the BatchNorm's gain part of the conv's channel scales
    (exact) and the conv's own rounded output disappears (named in spec["dropped"]); the
    classes still agree with onnxruntime on every test image."""
    from bitline.sim.golden import run_golden

    path = qdq_files["resnet-raw"]
    model = load_onnx(path)
    qmodel = quantized_from_file(model)
    convs = [layer.name for layer in model.compute_layers if layer.op == "conv"]
    assert qmodel.spec["rescaled"] == convs
    assert len(qmodel.spec["dropped"]) == len(convs)
    x, _ = load_dataset("digits", "test")
    ref = _ort(path, x)
    golden = np.asarray(run_golden(qmodel, x).output).reshape(ref.shape)
    assert np.array_equal(golden.argmax(axis=1), ref.argmax(axis=1))


def test_float_backend_is_fake_quant_like_onnxruntime(qdq_files):
    path = qdq_files["cnn-int8-pc"]
    model = load_onnx(path)
    x, _ = load_dataset("digits", "test")
    x = x[:100]
    ref = _ort(path, x, fake_quant=True)
    got = run_fake_quant(model, x)
    grid = model.quantization.acts[model.output_name]
    # Same graph, same float32 ops: equal up to a rare tie flipping one output code.
    assert np.mean(np.abs(got - ref) <= 1e-5) > 0.99
    assert np.abs(got - ref).max() <= grid.scale * 1.0001


def test_asymmetric_weights_are_an_exact_conversion(qdq_files):
    """uint8 weights with zero point z: the IR weight is (q - z) * s and the integers are
    exactly q - z; the default 8-bit config has no room for them (a clear error) and the
    sizing of `--xbars auto` raises max_weight_bits to what they need."""
    from bitline.sw.flow import compile_model

    path = qdq_files["cnn-uint8w-pt"]
    proto = onnx.load(path)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    model = load_onnx(path)
    conv = model.compute_layers[0]
    q = [v for name, v in inits.items() if name.endswith("weight_quantized")
         and v.shape == conv.weight.shape][0].astype(np.int64)
    zero = [v for name, v in inits.items() if name.endswith("weight_zero_point")][0]
    assert zero.dtype == np.uint8 and int(zero) != 0
    with pytest.raises(ValueError, match="magnitude bit planes"):
        quantized_from_file(model)
    qmodel = quantized_from_file(model, AcceleratorConfig().replace(max_weight_bits=12))
    assert np.array_equal(qmodel.layers[conv.name].weight.values, q - int(zero))
    x, _ = load_dataset("digits", "calib")
    result = compile_model(model, "ivq-temporal", None, AcceleratorConfig(), x[:4])
    assert result.config.max_weight_bits == max(
        layer.weight.magnitude_bits for layer in result.qmodel.compute_layers) + 1


def test_weights_are_the_files_integers(qdq_files):
    """Per-channel int8 and per-tensor int4 weights: values and scales are the file's."""
    for key, magnitude in (("cnn-int8-pc", 8), ("cnn-int4-pt", 4)):
        proto = onnx.load(qdq_files[key])
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
        model = load_onnx(qdq_files[key])
        qmodel = quantized_from_file(model)
        conv = model.compute_layers[0]
        qlayer = qmodel.layers[conv.name]
        stored = [v for name, v in inits.items() if name.endswith("weight_quantized")
                  and v.shape == conv.weight.shape][0]
        assert np.array_equal(qlayer.weight.values, stored.astype(np.int64))
        assert qlayer.weight.magnitude_bits <= magnitude
        scales = np.asarray(qlayer.weight.scale).reshape(-1)
        per_tensor = key.endswith("pt")
        assert (np.unique(scales).size == 1) == per_tensor
        assert qmodel.spec["mode"] == "file" and qmodel.spec["format"] == "qdq"


def test_signed_activations_become_offset_codes(qdq_files):
    """int8 activations: unsigned codes q + 128 with the zero point moved by 128."""
    model = load_onnx(qdq_files["cnn-int4-pt"])
    proto = onnx.load(qdq_files["cnn-int4-pt"])
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    grid = model.quantization.acts[model.input_name]
    assert grid.bits == 8 and grid.lo == 0 and grid.hi == 255
    assert grid.zero_point == int(inits["input_zero_point"]) + 128


def _tiny_qdq(*, act_scale=None, weight_axis_scale=None, bn=False,
              softmax=False) -> onnx.ModelProto:
    """Input -> Q/DQ -> Conv(DQ weight) -> Q/DQ output, variants made to fail."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w = rng.integers(-7, 8, size=(2, 1, 3, 3)).astype(np.int8)
    scale = np.array(0.1 if act_scale is None else act_scale, dtype=np.float32)
    inits = [numpy_helper.from_array(w, "wq"),
             numpy_helper.from_array(np.array([0.05, 0.02], np.float32)
                                     if weight_axis_scale is None else weight_axis_scale, "ws"),
             numpy_helper.from_array(np.zeros(2, np.int8) if weight_axis_scale is None
                                     else np.zeros(weight_axis_scale.shape, np.int8), "wz"),
             numpy_helper.from_array(scale, "xs"),
             numpy_helper.from_array(np.zeros(scale.shape, np.uint8), "xz"),
             numpy_helper.from_array(np.array(0.17, np.float32), "ys"),
             numpy_helper.from_array(np.array(128, np.uint8), "yz")]
    axis = 0 if weight_axis_scale is None or weight_axis_scale.size == 2 else 2
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dqx"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dqw",
                              axis=axis),
             helper.make_node("Conv", ["xd", "w"], ["c"], name="conv", pads=[1, 1, 1, 1])]
    last = "c"
    if bn:
        for name, value in (("g", [1.3, 2.7]), ("b", [0.0, 0.0]), ("m", [0.0, 0.0]),
                            ("v", [1.0, 1.0])):
            inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
        nodes.append(helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"],
                                      name="bn"))
        last = "n"
    nodes += [helper.make_node("QuantizeLinear", [last, "ys", "yz"], ["yq"], name="qy"),
              helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dqy"),
              helper.make_node("Flatten", ["y"], ["f" if not softmax else "l"], name="flat")]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["l"], ["f"], name="softmax", axis=1))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, 32])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_batchnorm_after_an_unquantized_conv_output_is_exact():
    """Conv (quantized weight) -> BatchNorm -> QuantizeLinear: the fold puts the gain into
    the channel scales, the integers stay the file's (spec["rescaled"])."""
    from bitline.sim.golden import run_golden

    proto = _tiny_qdq(bn=True)
    qmodel = quantized_from_file(load_onnx(proto))
    plain = quantized_from_file(load_onnx(_tiny_qdq()))
    assert qmodel.spec["rescaled"] == ["conv"] and plain.spec["rescaled"] == []
    np.testing.assert_array_equal(qmodel.layers["conv"].weight.values,
                                  plain.layers["conv"].weight.values)
    np.testing.assert_allclose(np.asarray(qmodel.layers["conv"].weight.scale).reshape(-1),
                               np.array([0.05 * 1.3, 0.02 * 2.7]) / np.sqrt(1 + 1e-5),
                               rtol=1e-6)               # gain / sqrt(var + epsilon)
    x = np.random.default_rng(2).uniform(0, 1, size=(16, 1, 4, 4)).astype(np.float32)
    ref = _ort(proto, x, fake_quant=True)
    golden = np.asarray(run_golden(qmodel, x).output).reshape(ref.shape)
    assert np.abs(golden - ref).max() <= 0.17 + 1e-6


def test_tiny_qdq_maps_and_matches_onnxruntime():
    proto = _tiny_qdq()
    model = load_onnx(proto)
    qmodel = quantized_from_file(model)
    x = np.random.default_rng(0).uniform(0, 1, size=(16, 1, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(run_fake_quant(model, x), _ort(proto, x, fake_quant=True),
                               rtol=0, atol=1e-6)
    ref = _ort(proto, x)
    from bitline.sim.golden import run_golden

    golden = np.asarray(run_golden(qmodel, x).output).reshape(ref.shape)
    assert np.abs(golden - ref).max() <= 0.17 + 1e-6   # one code of the output grid


def test_final_softmax_runs_after_the_fake_quant_graph():
    """A final Softmax is the host's output transform on the float backend of a quantized
    file too (run_fake_quant applies it, like run_float and the golden model)."""
    proto = _tiny_qdq(softmax=True)
    model = load_onnx(proto)
    assert model.output_transform == "softmax"
    x = np.random.default_rng(1).uniform(0, 1, size=(8, 1, 4, 4)).astype(np.float32)
    y = run_fake_quant(model, x)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(y, _ort(proto, x, fake_quant=True), rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant, message", [
    (dict(act_scale=np.array([0.1, 0.1], np.float32)), "per-channel activation"),
    (dict(weight_axis_scale=np.array([0.05, 0.04, 0.03], np.float32)),
     "more than one scale per output"),
])
def test_inexpressible_quantization_is_a_clear_error(variant, message):
    try:
        model = load_onnx(_tiny_qdq(**variant))
        quantized_from_file(model)
    except (FrontendError, ValueError) as error:
        assert message in str(error)
        assert "qx" in str(error) or "dqw" in str(error) or "conv" in str(error)
    else:
        pytest.fail("accepted")


def test_float_model_is_unchanged_by_the_hook():
    proto = onnx.load(MODELS / "digits_cnn.onnx")
    stripped, record = strip_quantization(proto, "digits_cnn.onnx")
    assert record is None and stripped is proto
    assert load_onnx(MODELS / "digits_cnn.onnx").quantization is None


def _qcdq() -> onnx.ModelProto:
    """Brevitas-style QCDQ: QuantizeLinear -> Clip (of the integers) -> DequantizeLinear.

    The input is uint8 clipped to [0, 15] (4 bits), the weight int8 clipped to [-3, 3]
    (3 bits, narrow), the output int8 clipped to [-8, 7] (4 bits signed).
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.5, size=(3, 1, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "wf"),
             numpy_helper.from_array(np.array([0.2, 0.15, 0.25], np.float32), "ws"),
             numpy_helper.from_array(np.zeros(3, np.int8), "wz"),
             numpy_helper.from_array(np.array(-3, np.int8), "wlo"),
             numpy_helper.from_array(np.array(3, np.int8), "whi"),
             numpy_helper.from_array(np.array(1 / 15, np.float32), "xs"),
             numpy_helper.from_array(np.array(0, np.uint8), "xz"),
             numpy_helper.from_array(np.array(0, np.uint8), "xlo"),
             numpy_helper.from_array(np.array(15, np.uint8), "xhi"),
             numpy_helper.from_array(np.array(0.37, np.float32), "ys"),
             numpy_helper.from_array(np.array(1, np.int8), "yz"),
             numpy_helper.from_array(np.array(-8, np.int8), "ylo"),
             numpy_helper.from_array(np.array(7, np.int8), "yhi")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
             helper.make_node("Clip", ["xq", "xlo", "xhi"], ["xc"], name="clipx"),
             helper.make_node("DequantizeLinear", ["xc", "xs", "xz"], ["xd"], name="dqx"),
             helper.make_node("QuantizeLinear", ["wf", "ws", "wz"], ["wq"], name="qw", axis=0),
             helper.make_node("Clip", ["wq", "wlo", "whi"], ["wc"], name="clipw"),
             helper.make_node("DequantizeLinear", ["wc", "ws", "wz"], ["w"], name="dqw", axis=0),
             helper.make_node("Conv", ["xd", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["yq"], name="qy"),
             helper.make_node("Clip", ["yq", "ylo", "yhi"], ["yc"], name="clipy"),
             helper.make_node("DequantizeLinear", ["yc", "ys", "yz"], ["y"], name="dqy"),
             helper.make_node("Flatten", ["y"], ["f"], name="flat")]
    graph = helper.make_graph(
        nodes, "qcdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, 48])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_qcdq_clip_narrows_the_grid():
    from bitline.sim.golden import run_golden

    proto = _qcdq()
    model = load_onnx(proto)
    grids = model.quantization.acts
    assert (grids["x"].bits, grids["x"].zero_point, grids["x"].hi) == (4, 0, 15)
    # int8 [-8, 7] with zero point 1: codes q + 8 on 4 bits, zero point 9
    assert (grids["c"].bits, grids["c"].zero_point, grids["c"].hi) == (4, 9, 15)
    qmodel = quantized_from_file(model)
    assert qmodel.layers["conv"].weight.magnitude_bits == 2
    assert np.abs(qmodel.layers["conv"].weight.values).max() <= 3
    x = np.random.default_rng(1).uniform(-0.1, 1.2, size=(32, 1, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(run_fake_quant(model, x), _ort(proto, x, fake_quant=True),
                               rtol=0, atol=1e-6)
    golden = np.asarray(run_golden(qmodel, x).output).reshape(len(x), -1)
    assert qmodel.layers["conv"].output is not None      # the model output is requantized
    assert np.abs(golden - _ort(proto, x, fake_quant=True)).max() <= 0.37 + 1e-6


def test_matmul_bias_add_and_gemm_alpha(tmp_path):
    """MatMul (per-channel along axis 1) + bias Add + Relu + Gemm(alpha = 0.5), quantized by
    onnxruntime: the weights are the file's integers in the IR's (O, F) layout, the scale of
    a Gemm with alpha is s * alpha, and the MatMul output that onnxruntime rounds before the
    bias Add (a tensor the IR merges into the gemm) is named in spec["dropped"]."""
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat

    from bitline.sim.golden import run_golden

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (16, 32)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (10, 32)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"),
             numpy_helper.from_array(rng.normal(0, 0.1, 32).astype(np.float32), "b1")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b1"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "W2"], ["y"], name="g", transB=1, alpha=0.5)]
    graph = helper.make_graph(
        nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              tmp_path / "mm.onnx")
    x = rng.uniform(0, 1, (64, 16)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": x[i:i + 1]} for i in range(32)])

        def get_next(self):
            return next(self.batches, None)

    quantization.quantize_static(str(tmp_path / "mm.onnx"), str(tmp_path / "mmq.onnx"),
                                 Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    path = tmp_path / "mmq.onnx"
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    model = load_onnx(path)
    qmodel = quantized_from_file(model)
    assert qmodel.spec["dropped"] == ["m"]
    assert np.array_equal(qmodel.layers["mm"].weight.values,
                          inits["W1_quantized"].astype(np.int64).T)
    assert np.array_equal(qmodel.layers["g"].weight.values,
                          inits["W2_quantized"].astype(np.int64))
    np.testing.assert_allclose(np.asarray(qmodel.layers["g"].weight.scale).reshape(-1),
                               inits["W2_scale"].astype(np.float64) * 0.5, rtol=1e-7)
    # Against the float backend (the same tensors rounded): within one output step.
    grid = model.quantization.acts[model.output_name]
    golden = np.asarray(run_golden(qmodel, x).output).reshape(len(x), -1)
    golden = np.clip(golden, grid.scale * (grid.lo - grid.zero_point),
                     grid.scale * (grid.hi - grid.zero_point))
    assert np.abs(golden - run_fake_quant(model, x)).max() <= grid.scale * 1.0001


def _weight_only(dtype) -> onnx.ModelProto:
    """A Conv whose weight is a DequantizeLinear of a ``dtype`` constant; no activation Q/DQ."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones((2, 1, 3, 3), dtype), "wq"),
             numpy_helper.from_array(np.array(0.1, np.float32), "ws")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], name="dqw"),
             helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    graph = helper.make_graph(
        nodes, "weights", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_weight_only_and_non_integer_quantization_are_named():
    with pytest.raises(FrontendError, match="'dqw' .*not an integer constant"):
        load_onnx(_weight_only(np.float32))
    model = load_onnx(_weight_only(np.int8))       # weight-only: loads, runs in float
    assert model.quantization.weights["conv"].values.max() == 1
    with pytest.raises(ValueError, match="model input 'x' is not quantized"):
        quantized_from_file(model)


@pytest.mark.parametrize("strategy", ["isaac", "ivq-temporal", "bwq"])
def test_signed_activations_and_int4_weights_run_on_the_executor(qdq_files, strategy):
    """int8 activations (zero points moved by 128) and int4 weights: compiled without a spec,
    the crossbar-level executor equals the golden model."""
    from bitline.sw import api

    x, _ = load_dataset("digits", "test")
    compiled = api.compile(str(qdq_files["cnn-int4-pt"]), strategy, calib=x[:4])
    np.testing.assert_array_equal(compiled.run(x[:8], "executor"),
                                  compiled.run(x[:8], "golden"))
    # int4 holds -8: up to 4 magnitude planes (sign-magnitude), never the 7 of int8
    assert max(layer.weight.magnitude_bits for layer in compiled.qmodel.compute_layers) <= 4
