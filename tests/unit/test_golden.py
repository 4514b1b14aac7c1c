"""Tests of the integer golden model, calibration and the quantized-model builder."""

import time
from importlib.resources import files

import numpy as np
import pytest

from bitline.sim.golden import GoldenResult, golden_accuracy, run_golden
from bitline.sw.frontend.float_model import run_float
from bitline.sw.integer import arith
from bitline.sw.integer.qmodel import ActParams
from bitline.sw.quant import quantize
from bitline.sw.quant.build import (
    LayerWeights,
    add_fixed_point,
    build_quantized_model,
    quantize_model_int,
    relu6_code,
)
from bitline.sw.quant.calibrate import calibrate_activations, clip_threshold

from support.networks import mixed_ops_model


def quantize_small(model, calib, *, weight_bits=8, act_bits=8, spec=None, blocks=None):
    weights = {layer.name: LayerWeights(quantize(layer.weight, "int", weight_bits, axis=0))
               for layer in model.compute_layers}
    for name, (block_bits, act_block_bits) in (blocks or {}).items():
        weights[name].block_bits = block_bits
        weights[name].act_block_bits = act_block_bits
    acts = calibrate_activations(model, calib, bits=act_bits, rule="max")
    return build_quantized_model(model, weights, acts, spec=spec)


@pytest.fixture(scope="module")
def small():
    model = mixed_ops_model()
    rng = np.random.default_rng(1)
    calib = rng.normal(0, 1, (64, 3, 8, 8)).astype(np.float32)
    # test images from the calibration batch: no clipping, the error is rounding only
    return model, calib, calib[:16]


def relative_error(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


# --------------------------------------------------------------------------- golden model
def test_golden_close_to_float(small):
    model, calib, test = small
    want = run_float(model, test)
    err8 = relative_error(run_golden(quantize_small(model, calib), test).output, want)
    err12 = relative_error(
        run_golden(quantize_small(model, calib, weight_bits=12, act_bits=12), test).output, want)
    assert err8 < 0.05
    # the error is quantization error: it shrinks ~16x with 4 more bits everywhere
    assert err12 < 0.005 and err12 < err8 / 4


def test_golden_every_layer_close_to_float(small):
    model, calib, test = small
    qmodel = quantize_small(model, calib, weight_bits=12, act_bits=12)
    result = run_golden(qmodel, test, return_all=True)
    floats = run_float(model, test, return_all=True)
    assert list(result.layers) == [layer.name for layer in model.layers]
    for layer in model.layers:
        codes = result.layers[layer.name]
        assert codes.shape == (len(test), *layer.output_shape) and codes.dtype == np.int64
        qlayer = qmodel.layers[layer.name]
        real = (codes * qlayer.acc_scale.reshape(-1) if qlayer.mode == "raw"
                else arith.dequantize(codes, qlayer.output))
        assert relative_error(real, floats[layer.output]) < 0.005, layer.name
    np.testing.assert_array_equal(result.output_int, result.layers["fc2"])
    assert run_golden(qmodel, test).layers == {}


def test_golden_structure_of_params(small):
    model, calib, _ = small
    qmodel = quantize_small(model, calib)
    layers = qmodel.layers
    assert layers["fc2"].mode == "raw" and layers["fc2"].output is None
    assert layers["pw"].output.zero_point == 128          # linear conv feeding an add: signed
    assert layers["c1"].output.zero_point == 0
    assert qmodel.input.zero_point == 128                 # calibration input has negatives
    assert layers["dw"].clamp_hi == relu6_code(layers["dw"].output) <= 255
    assert layers["r6"].output == layers["c2"].output     # relu6 inherits its input's params
    assert layers["r6"].clamp_lo == 128
    for name in ("mp", "ap", "gap", "fl"):
        assert layers[name].output == layers[name].inputs[0]
    assert layers["add"].shift[0] == layers["add"].shift[1]
    assert layers["add"].clamp_lo == layers["add"].output.zero_point


def test_compute_hook_dense_block_diagonal_equals_default(small):
    model, calib, test = small
    qmodel = quantize_small(model, calib)
    seen = []

    def dense(qlayer, cols):
        seen.append(qlayer.layer.name)
        return cols @ arith.layer_matrix(qlayer).T

    default = run_golden(qmodel, test, return_all=True)
    hooked = run_golden(qmodel, test, compute=dense, return_all=True)
    assert seen == [layer.name for layer in model.compute_layers]
    for name in default.layers:
        np.testing.assert_array_equal(hooked.layers[name], default.layers[name])
    np.testing.assert_array_equal(hooked.output, default.output)


def test_bias_folds_the_input_zero_point(small):
    """A signed input (z = 128): golden conv equals the real-valued conv of dequantized codes."""
    model, calib, test = small
    qmodel = quantize_small(model, calib)
    qlayer = qmodel.layers["c1"]
    codes = arith.quantize_input(test, qmodel.input)
    acc = arith.compute_acc(qlayer, arith.layer_columns(qlayer, codes))
    total = acc + qlayer.bias                                   # (N*P, O)
    centered = (codes - qmodel.input.zero_point)                # zero padding in real terms
    cols = arith.layer_columns(qlayer, centered + qlayer.inputs[0].zero_point) \
        - qlayer.inputs[0].zero_point
    bias_units = np.rint(model.layer("c1").bias / qlayer.acc_scale).astype(np.int64)
    np.testing.assert_array_equal(total, cols @ arith.layer_matrix(qlayer).T + bias_units)


def test_bwq_act_block_bits_in_golden(small):
    model, calib, test = small
    spec = {"ou_rows": 9, "ou_cols": 8}
    k = 8 * 9                                                  # c2: 8 channels x 3x3
    full = quantize_small(model, calib, spec=spec,
                          blocks={"c2": (np.full((1, 8), 8), np.full(8, 8))})
    plain = quantize_small(model, calib)
    np.testing.assert_array_equal(run_golden(full, test).output_int,
                                  run_golden(plain, test).output_int)
    widths = np.array([8, 6, 4, 2, 0, 8, 3, 1])
    reduced = quantize_small(model, calib, spec=spec, blocks={"c2": (None, widths)})
    result = run_golden(reduced, test, return_all=True)
    qlayer = reduced.layers["c2"]
    cols = arith.layer_columns(qlayer, result.layers["add"])
    drop = np.repeat(8 - widths, 9)[:k]
    acc = ((cols >> drop) << drop) @ arith.layer_matrix(qlayer).T
    want = arith.output_unit(acc, qlayer.bias, qlayer.mult, qlayer.shift,
                              qlayer.output.zero_point, qlayer.clamp_lo, qlayer.clamp_hi)
    np.testing.assert_array_equal(
        result.layers["c2"], want.reshape(len(test), 16, 8).transpose(0, 2, 1).reshape(-1, 8, 4, 4))


def test_build_rejects_bad_inputs(small):
    model, calib, _ = small
    weights = {layer.name: LayerWeights(quantize(layer.weight, "int", 8, axis=0))
               for layer in model.compute_layers}
    acts = calibrate_activations(model, calib)
    with pytest.raises(ValueError, match="missing \\['fc2'\\]"):
        build_quantized_model(model, {k: v for k, v in weights.items() if k != "fc2"}, acts)
    with pytest.raises(ValueError, match="t5"):
        build_quantized_model(model, weights, {k: v for k, v in acts.items() if k != "t5"})
    bad = dict(acts, t7=ActParams(8, 0.5, 0))
    with pytest.raises(ValueError, match="mp .*must equal"):
        build_quantized_model(model, weights, bad)
    bwq = dict(weights, c2=LayerWeights(weights["c2"].weight, act_block_bits=np.full(8, 8)))
    with pytest.raises(ValueError, match="c2.*ou_rows"):
        build_quantized_model(model, bwq, acts)
    with pytest.raises(ValueError, match="c2: act_block_bits must be integers of shape \\(8,\\)"):
        build_quantized_model(model, dict(bwq, c2=LayerWeights(weights["c2"].weight,
                                                               act_block_bits=np.full(7, 8))),
                              acts, spec={"ou_rows": 9, "ou_cols": 8})
    pruned = dict(weights, c2=LayerWeights(weights["c2"].weight, block_bits=np.zeros((1, 8),
                                                                                    int)))
    with pytest.raises(ValueError, match="pruned"):
        build_quantized_model(model, pruned, acts, spec={"ou_rows": 9, "ou_cols": 8})


def test_run_golden_rejects_wrong_shape(small):
    model, calib, _ = small
    qmodel = quantize_small(model, calib)
    with pytest.raises(ValueError, match="x must be a batch"):
        run_golden(qmodel, np.zeros((2, 3, 8, 7)))


# --------------------------------------------------------------------------- calibration
def test_calibration_rules():
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.normal(0, 1, 100000), [40.0]])
    peak = clip_threshold(values, 8, True, rule="max")
    assert peak == 40.0
    assert clip_threshold(values, 8, True, rule="percentile", percentile=99.0) < 3.0
    mse = clip_threshold(values, 4, True, rule="mse")
    assert 1.0 < mse < 10.0                        # clips the outlier at 4 bits
    with pytest.raises(ValueError, match="rule"):
        clip_threshold(values, 8, True, rule="kl")
    with pytest.raises(ValueError, match="percentile"):
        clip_threshold(values, 8, True, rule="percentile", percentile=0)


def test_calibrate_scales_zero_points_and_tensor_bits(small):
    model, calib, _ = small
    acts = calibrate_activations(model, calib, bits=8, rule="max", tensor_bits={"t1": 6})
    floats = run_float(model, calib, return_all=True)
    assert list(acts) == ["x"] + [layer.output for layer in model.layers]
    assert acts["t1"] == ActParams(6, float(floats["t1"].max()) / 63, 0)
    assert acts["x"].zero_point == 128
    assert acts["x"].scale == pytest.approx(float(np.abs(calib).max()) / 127)
    with pytest.raises(ValueError, match="t7.*inherits"):
        calibrate_activations(model, calib, tensor_bits={"t7": 4})
    with pytest.raises(ValueError, match="unknown tensor"):
        calibrate_activations(model, calib, tensor_bits={"nope": 4})


def test_add_fixed_point_common_shift():
    mult, shift = add_fixed_point(0.75, 0.01)
    assert shift[0] == shift[1] and mult.max() < 2**15
    np.testing.assert_allclose(mult / 2.0 ** shift, [0.75, 0.01], rtol=1e-3)


# --------------------------------------------------------------------------- digits
def digits_model(name):
    pytest.importorskip("sklearn")
    from bitline.sw.datasets import load_digits
    from bitline.sw.frontend.onnx_import import load_onnx

    model = load_onnx(str(files("bitline.sw.models") / f"{name}.onnx"))
    return model, load_digits("calib"), load_digits("test")


@pytest.mark.parametrize("name", ["digits_cnn", "digits_resnet"])
def test_digits_int8_within_one_percent_of_fp32(name):
    model, (calib_x, _), (test_x, test_y) = digits_model(name)
    fp32 = float(np.mean(run_float(model, test_x).argmax(axis=1) == test_y))
    qmodel = quantize_model_int(model, calib_x, weight_bits=8, act_bits=8, per_channel=True)
    start = time.perf_counter()
    int8 = golden_accuracy(qmodel, test_x, test_y)
    elapsed = time.perf_counter() - start
    assert int8 >= fp32 - 0.01, (name, fp32, int8)
    assert elapsed < 10.0
    result = run_golden(qmodel, test_x[:8])
    assert isinstance(result, GoldenResult) and result.output.shape == (8, 10)
    # logits track the float model closely
    assert relative_error(result.output, run_float(model, test_x[:8])) < 0.05
