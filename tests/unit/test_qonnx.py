"""QONNX ``Quant`` models (Brevitas / FINN) keep their own 2-, 3- and 4-bit quantization.

The model (tests/support/qonnx_models.py) is written with ``onnx.helper`` (domain
``qonnx.custom_op.general``): an 8-bit input, a 4-bit and a 3-bit convolution with 4- and
3-bit activations, and a 2-bit classifier. The independent reference rewrites every ``Quant``
node into standard ONNX ops (Div, Add, Round, Clip, Sub, Mul: qonnx's ``int_quant`` formula)
and runs that graph in onnxruntime.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from onnx import helper, numpy_helper

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.frontend.onnx_import import FrontendError, load_onnx
from bitline.sw.frontend.qdq import run_fake_quant
from bitline.sw.quant.prequantized import quantized_from_file
from support.qonnx_models import DOMAIN, WEIGHT_BITS, qonnx_model, standard_onnx

ort = pytest.importorskip("onnxruntime")


def _inputs(n: int = 64) -> np.ndarray:
    from bitline.sw.datasets import load_dataset

    x, _ = load_dataset("digits", "test")
    return x[:n]


def _reference(proto, x):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(standard_onnx(proto).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


def test_own_bit_widths():
    model = load_onnx(qonnx_model())
    assert model.quantization.format == "qonnx"
    qmodel = quantized_from_file(model)
    names = {"conv1": "w1", "conv2": "w2", "fc": "w3"}
    for layer, weight in names.items():
        tensor = qmodel.layers[layer].weight
        # signed narrow b-bit weights: |q| <= 2**(b-1) - 1, i.e. b - 1 magnitude planes
        assert tensor.magnitude_bits == WEIGHT_BITS[weight] - 1
        assert tensor.options["file_bits"] == WEIGHT_BITS[weight]
    assert qmodel.input.bits == 8
    assert qmodel.layers["conv1"].output.bits == 4
    assert qmodel.layers["conv2"].output.bits == 3
    assert qmodel.layers["fc"].mode == "raw"


def test_float_backend_and_golden_agree_with_the_standard_op_reference():
    from bitline.sim.golden import run_golden

    proto = qonnx_model()
    model = load_onnx(proto)
    x = _inputs()
    ref = _reference(proto, x)
    np.testing.assert_allclose(run_fake_quant(model, x), ref, rtol=1e-5, atol=1e-5)
    golden = np.asarray(run_golden(quantized_from_file(model), x).output).reshape(ref.shape)
    # The last layer is raw in both (no Quant on the output): only the 4- and 3-bit
    # requantizations can differ, by one code each where they do, so the output moves by
    # at most one 0.15 code on each of the 256 classifier inputs times the largest 2-bit
    # weight (1 * its scale).
    fc_scale = float(np.abs(numpy_helper.to_array(
        [i for i in proto.graph.initializer if i.name == "w3_s"][0])))
    diff = np.abs(golden - ref).max(axis=1)
    assert diff.max() <= 0.15 * fc_scale * 256
    # Classes agree except where the reference's top two are closer than the two outputs
    # differ (a one-code flip at 3 bits moves a logit by a whole 2-bit step).
    top2 = np.sort(ref, axis=1)[:, -2:]
    differs = golden.argmax(axis=1) != ref.argmax(axis=1)
    assert np.all(top2[differs, 1] - top2[differs, 0] <= 2 * diff[differs])
    assert np.mean(differs) <= 0.05


@pytest.mark.parametrize("strategy", ["ivq-naive", "ivq-spatial", "ivq-temporal", "bwq"])
def test_maps_with_its_own_widths(strategy):
    """Each strategy maps the low-bit model as it is; the executor equals the golden model,
    and it needs fewer OU reads than the same network requantized at int8."""
    from bitline.sim.executor import run_executor
    from bitline.sim.golden import run_golden
    from bitline.sw.flow import compile_model
    from bitline.sw.perf import analyze

    model = load_onnx(qonnx_model())
    x = _inputs(8)
    config = AcceleratorConfig()
    own = compile_model(model, strategy, None, config, x)
    golden = np.asarray(run_golden(own.qmodel, x).output)
    executed = np.asarray(run_executor(own.program, own.qmodel, x).output)
    np.testing.assert_array_equal(executed, golden)
    int8 = compile_model(replace(model, quantization=None), strategy, "int8", config, x)
    reads = sum(layer.ou_reads for layer in analyze(own.program, own.qmodel).layers)
    reads8 = sum(layer.ou_reads for layer in analyze(int8.program, int8.qmodel).layers)
    assert reads < reads8


@pytest.mark.parametrize("variant, message", [
    (dict(act_mode="FLOOR"), "rounding_mode FLOOR on an activation"),
    (dict(act_zeropt=0.5), "zero point must be an integer"),
    (dict(bipolar_act=True), "BipolarQuant on an activation"),
])
def test_inexpressible_qonnx_is_a_clear_error(variant, message):
    with pytest.raises(FrontendError, match=message) as error:
        load_onnx(qonnx_model(**variant))
    assert "quant_r1" in str(error.value) or "bipolar" in str(error.value)


def test_bipolar_and_one_bit_weights():
    """BipolarQuant on a weight: values +-1 times the scale (one magnitude plane)."""
    proto = qonnx_model()
    graph = proto.graph
    for index, node in enumerate(graph.node):
        if node.name == "quant_w3":
            graph.initializer.append(numpy_helper.from_array(np.asarray(0.05, np.float32),
                                                             "w3_bp"))
            graph.node[index].CopyFrom(helper.make_node(
                "BipolarQuant", ["w3f", "w3_bp"], ["w3"], name="quant_w3", domain=DOMAIN))
    qmodel = quantized_from_file(load_onnx(proto))
    values = qmodel.layers["fc"].weight.values
    assert set(np.unique(values)) <= {-1, 1}
    assert qmodel.layers["fc"].weight.magnitude_bits == 1


def test_32_bit_bias_quant_and_wide_activation_error():
    """Brevitas quantizes biases to 32 bits (a constant: accepted, it is the float bias
    again); a 17-bit activation is refused by name."""
    proto = qonnx_model()
    graph = proto.graph
    graph.node.insert(0, _quant_node(graph, "b1", 32, "b1", "b1q"))
    for node in graph.node:
        if node.name == "conv1":
            node.input[2] = "b1q"
    model = load_onnx(proto)
    plain = load_onnx(qonnx_model())
    np.testing.assert_allclose(model.layer("conv1").bias, plain.layer("conv1").bias,
                               atol=1e-6)
    wide = qonnx_model()
    for init in wide.graph.initializer:
        if init.name == "r1_b":
            init.CopyFrom(numpy_helper.from_array(np.asarray(17.0, np.float32), "r1_b"))
    with pytest.raises(FrontendError, match="quant_r1.*bit width 17"):
        load_onnx(wide)


def _quant_node(graph, name, bits, source, out):
    """A signed Quant node on ``source`` with a fine scale (1e-6), its inputs added."""
    graph.initializer.extend([
        numpy_helper.from_array(np.asarray(1e-6, np.float32), f"{name}_qs"),
        numpy_helper.from_array(np.asarray(0.0, np.float32), f"{name}_qz"),
        numpy_helper.from_array(np.asarray(float(bits), np.float32), f"{name}_qb")])
    return helper.make_node("Quant", [source, f"{name}_qs", f"{name}_qz", f"{name}_qb"],
                            [out], name=f"quant_{name}_bias", domain=DOMAIN, signed=1,
                            narrow=0, rounding_mode="ROUND")
