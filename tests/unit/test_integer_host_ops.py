"""Integer concat and LeakyReLU / PReLU (sw/integer/tensor_ops), the host's final Softmax,
and the purity of the new passes.

The integer ops are checked against a float computation done independently here (the
dequantized codes through numpy's own concat / where, requantized with round half up): they
must agree within one code, and be exact where the contract says so.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.sw.frontend.float_model import output_transform, run_float
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.integer import tensor_ops
from bitline.sw.integer.qmodel import ActParams
from bitline.sw.passes import fold_pads, lower_affine


RNG = np.random.default_rng(3)


def _codes(act, shape):
    return RNG.integers(0, act.qmax + 1, size=shape)


def _requantize(real, out):
    return np.clip(np.floor(real / out.scale + 0.5) + out.zero_point, 0, out.qmax)


def test_shared_shift_encodes_every_ratio_at_one_shift():
    ratios = np.array([0.73, 1.9, 0.02, -0.4, 0.0])
    mult, shift = tensor_ops.shared_shift(ratios)
    assert np.all(shift == shift[0]) and np.all(np.abs(mult) < 2 ** 15)
    np.testing.assert_allclose(mult * 2.0 ** -shift[0], ratios, atol=2.0 ** -shift[0])
    assert mult[3] < 0 and mult[4] == 0


def test_concat_with_equal_params_copies_codes_exactly():
    act = ActParams(8, 0.05, 0)
    parts = [_codes(act, (2, c, 3, 3)) for c in (2, 5)]
    mult, shift = tensor_ops.shared_shift([1.0, 1.0])
    y = tensor_ops.concat(parts, [act, act], mult, shift, act.zero_point, 0, act.qmax)
    assert np.array_equal(y, np.concatenate(parts, axis=1))


def test_concat_rescales_each_input_within_one_code():
    ins = [ActParams(8, 0.03, 0), ActParams(8, 0.11, 128), ActParams(6, 0.2, 0)]
    out = ActParams(8, 0.09, 128)
    parts = [_codes(act, (3, c, 2, 2)) for act, c in zip(ins, (1, 3, 2))]
    mult, shift = tensor_ops.shared_shift([act.scale / out.scale for act in ins])
    y = tensor_ops.concat(parts, ins, mult, shift, out.zero_point, 0, out.qmax)
    real = np.concatenate([act.scale * (p - act.zero_point) for act, p in zip(ins, parts)], 1)
    assert y.shape == (3, 6, 2, 2)
    assert np.abs(y - _requantize(real, out)).max() <= 1


@pytest.mark.parametrize("alpha", [[0.1, 0.1, 0.1], [0.0, 0.25, -0.3]])
def test_leaky_relu_within_one_code_of_the_float_slope(alpha):
    x_act, out = ActParams(8, 0.04, 128), ActParams(8, 0.03, 100)
    codes = _codes(x_act, (4, 3, 5, 5))
    alpha = np.array(alpha)
    mult, shift = tensor_ops.shared_shift([x_act.scale / out.scale,
                                           *(alpha * x_act.scale / out.scale)])
    y = tensor_ops.leaky_relu(codes, x_act, mult, shift, out.zero_point, 0, out.qmax)
    real = x_act.scale * (codes - x_act.zero_point)
    real = np.where(real >= 0, real, real * alpha.reshape(1, -1, 1, 1))
    assert np.abs(y - _requantize(real, out)).max() <= 1
    # positive side with the same params: exact identity of the codes
    same, sh = tensor_ops.shared_shift([1.0, *alpha])
    z = tensor_ops.leaky_relu(codes, x_act, same, sh, x_act.zero_point, 0, x_act.qmax)
    positive = codes >= x_act.zero_point
    assert np.array_equal(z[positive], codes[positive])


def test_output_transform_softmax_and_log_softmax():
    y = RNG.standard_normal((3, 7)) * 20
    soft = output_transform(y, "softmax")
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(output_transform(y, "log_softmax"), np.log(soft), atol=1e-9)
    assert output_transform(y, None) is y
    with pytest.raises(ValueError, match="unknown output transform 'tanh'"):
        output_transform(y, "tanh")


def test_run_float_applies_the_transform_but_return_all_keeps_the_logits():
    gemm = Layer("fc", "gemm", ["x"], "y", (4,), (3,),
                 weight=RNG.standard_normal((3, 4)).astype(np.float32))
    model = Model("m", "x", (4,), [gemm], "y", output_transform="softmax")
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    logits = x @ gemm.weight.T
    np.testing.assert_allclose(run_float(model, x), output_transform(logits, "softmax"),
                               rtol=1e-6)
    np.testing.assert_allclose(run_float(model, x, return_all=True)["y"], logits, rtol=1e-6)


def _conv(name, src, dst, shape, pads=(0, 0, 0, 0), channels=3):
    c, h, w = shape
    out = (channels, h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2)
    return Layer(name, "conv", [src], dst, shape, out,
                 attrs={"stride": (1, 1), "pads": pads, "dilation": (1, 1), "groups": 1},
                 weight=RNG.standard_normal((channels, c, 3, 3)).astype(np.float32),
                 bias=np.zeros(channels, np.float32))


def test_new_passes_leave_their_input_untouched():
    affine = Layer("bn", "batchnorm", ["x"], "a", (2, 5, 5), (2, 5, 5),
                   attrs={"gain": np.array([2.0, 0.5]), "shift": np.array([0.1, -0.2])})
    pad = Layer("p", "pad", ["a"], "b", (2, 5, 5), (2, 7, 7),
                attrs={"pads": (1, 1, 1, 1), "value": 0.0})
    model = Model("m", "x", (2, 5, 5), [affine, pad, _conv("c", "b", "y", (2, 7, 7))], "y")
    x = RNG.standard_normal((2, 2, 5, 5)).astype(np.float32)
    want = run_float(model, x)
    before = [(layer.op, layer.inputs[:], dict(layer.attrs)) for layer in model.layers]
    lowered = fold_pads(lower_affine(model))
    assert [(layer.op, layer.inputs, dict(layer.attrs)) for layer in model.layers] == before
    # the affine layer sits before a padding conv: lowered, the pad folded into the conv
    assert [(layer.name, layer.op) for layer in lowered.layers] == [("bn", "conv"), ("c", "conv")]
    assert lowered.layers[1].attrs["pads"] == (1, 1, 1, 1)
    np.testing.assert_allclose(run_float(lowered, x), want, rtol=1e-5, atol=1e-5)


def test_bundle_round_trip_keeps_output_transform_concat_and_leaky_relu(tmp_path):
    from bitline.hw.spec.config import preset
    from bitline.sim.golden import run_golden
    from bitline.sw.bundle import read_bundle, write_bundle
    from bitline.sw.flow import compile_model

    shape = (2, 6, 6)
    a = _conv("a", "x", "ta", shape, pads=(1, 1, 1, 1))
    b = _conv("b", "x", "tb", shape, pads=(1, 1, 1, 1), channels=2)
    cat = Layer("cat", "concat", ["ta", "tb"], "tc", (3, 6, 6), (5, 6, 6), attrs={"axis": 0})
    leaky = Layer("lk", "leaky_relu", ["tc"], "td", (5, 6, 6), (5, 6, 6),
                  attrs={"alpha": np.linspace(0.05, 0.3, 5)})
    gap = Layer("gap", "gap", ["td"], "te", (5, 6, 6), (5, 1, 1))
    flat = Layer("fl", "flatten", ["te"], "tf", (5, 1, 1), (5,))
    fc = Layer("fc", "gemm", ["tf"], "y", (5,), (4,),
               weight=RNG.standard_normal((4, 5)).astype(np.float32))
    model = Model("m", "x", shape, [a, b, cat, leaky, gap, flat, fc], "y",
                  output_transform="log_softmax")
    calib = RNG.standard_normal((8, *shape)).astype(np.float32)
    result = compile_model(model, "bwq", "int8", preset("bwq"), calib)
    bundle = read_bundle(write_bundle(tmp_path, result.program, result.qmodel))
    assert bundle.qmodel.model.output_transform == "log_softmax"
    want, got = run_golden(result.qmodel, calib), run_golden(bundle.qmodel, calib)
    assert np.array_equal(got.output_int, want.output_int)
    np.testing.assert_allclose(np.exp(got.output).sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(got.output, want.output, rtol=1e-12)


def test_host_layers_refuse_shifts_that_are_not_common():
    """add, concat and leaky_relu rescale at one shift; a differing shift is an error in each
    (leaky_relu used to take the first shift and ignore the others)."""
    from bitline.sw.integer.qmodel import ActParams
    from bitline.sw.integer.tensor_ops import add, concat, leaky_relu

    act = ActParams(scale=0.1, zero_point=3, bits=8)
    codes = np.arange(12, dtype=np.int64).reshape(1, 3, 2, 2)
    with pytest.raises(ValueError, match="leaky_relu on 3 channels needs 4 multipliers and "
                                         "one common shift"):
        leaky_relu(codes, act, [8, 1, 1, 1], [3, 3, 4, 3], 0, 0, 255)
    with pytest.raises(ValueError, match="concat of 2 inputs needs 2 multipliers"):
        concat([codes, codes], [act, act], [8, 8], [3, 4], 0, 0, 255)
    with pytest.raises(ValueError, match="add needs 2 multipliers"):
        add(codes, codes, act, act, [8, 8], [3, 4], 0, 0, 255)
    # The same layers with one common shift run.
    assert leaky_relu(codes, act, [8, 1, 1, 1], [3, 3, 3, 3], 0, 0, 255).shape == codes.shape
