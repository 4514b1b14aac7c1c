"""Tests of bitline.sw.passes: BatchNorm / constant-Add folding and activation fusion.

The models are built here, directly in the IR, small enough that the expected rewrite can be
stated by hand; the float model checks that a rewrite does not change what the model computes.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from bitline.sw.frontend.float_model import run_float
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.passes import (
    DEFAULT_PASSES, PassError, fold_affine, fuse_activations, run_passes,
)

RNG = np.random.default_rng(11)


def conv(name, source, output, channels=2, out_channels=3, bias=True):
    weight = RNG.standard_normal((out_channels, channels, 3, 3)).astype(np.float32)
    return Layer(
        name, "conv", [source], output, (channels, 5, 5), (out_channels, 5, 5),
        attrs={"stride": (1, 1), "pads": (1, 1, 1, 1), "dilation": (1, 1), "groups": 1},
        weight=weight,
        bias=RNG.standard_normal(out_channels).astype(np.float32) if bias else None,
    )


def gemm(name, source, output, features=6, out_features=4):
    return Layer(name, "gemm", [source], output, (features,), (out_features,),
                 weight=RNG.standard_normal((out_features, features)).astype(np.float32))


def unary(name, op, source, output, shape, **attrs):
    return Layer(name, op, [source], output, shape, shape, attrs=attrs)


def batchnorm(name, source, output, shape):
    channels = shape[0]
    return unary(name, "batchnorm", source, output, shape,
                 gain=RNG.uniform(0.5, 2.0, channels), shift=RNG.standard_normal(channels))


def model(layers, output, input_shape=(2, 5, 5)):
    return Model("m", "x", input_shape, layers, output)


def same_layers(a: Model, b: Model) -> bool:
    """True if the two models have equal layers (weights compared by value)."""
    if len(a.layers) != len(b.layers) or a.output_name != b.output_name:
        return False
    for left, right in zip(a.layers, b.layers):
        for key in ("name", "op", "inputs", "output", "output_shape", "activation"):
            if getattr(left, key) != getattr(right, key):
                return False
        for key in ("weight", "bias"):
            u, v = getattr(left, key), getattr(right, key)
            if (u is None) != (v is None) or (u is not None and not np.array_equal(u, v)):
                return False
    return True


def sample(m: Model, n=3):
    return RNG.standard_normal((n, *m.input_shape)).astype(np.float32)


# -- fold_affine --------------------------------------------------------------------------

def test_fold_batchnorm_into_conv_scales_weight_and_shifts_bias():
    c = conv("c", "x", "t")
    bn = batchnorm("bn", "t", "y", (3, 5, 5))
    before = model([c, bn], "y")
    kept = copy.deepcopy(before)
    after = fold_affine(before)
    assert [layer.name for layer in after.layers] == ["c"]
    folded = after.layers[0]
    assert folded.output == "y"
    gain, shift = bn.attrs["gain"], bn.attrs["shift"]
    np.testing.assert_array_equal(
        folded.weight,
        (c.weight.astype(np.float64) * gain[:, None, None, None]).astype(np.float32))
    np.testing.assert_array_equal(
        folded.bias, (c.bias.astype(np.float64) * gain + shift).astype(np.float32))
    # Pure: the input model is untouched, and both compute the same function.
    assert same_layers(before, kept)
    assert before.layers[0].output == "t"
    x = sample(before)
    np.testing.assert_allclose(run_float(after, x), run_float(before, x), rtol=1e-5, atol=1e-5)


def test_fold_constant_add_becomes_the_bias_of_a_bias_free_gemm():
    g = gemm("g", "x", "t")
    g.bias = None
    add = unary("add_c", "add_constant", "t", "y", (4,),
                value=np.arange(4, dtype=np.float32).reshape(1, 4))
    before = model([g, add], "y", input_shape=(6,))
    after = fold_affine(before)
    assert [layer.op for layer in after.layers] == ["gemm"]
    np.testing.assert_array_equal(after.layers[0].bias, np.arange(4, dtype=np.float32))
    assert before.layers[0].bias is None
    x = sample(before)
    np.testing.assert_allclose(run_float(after, x), run_float(before, x), rtol=1e-6)


def test_fold_in_layer_order_constant_add_then_batchnorm():
    c = conv("c", "x", "t")
    add = unary("add_c", "add_constant", "t", "u", (3, 5, 5),
                value=np.ones((3, 1, 1), dtype=np.float32))
    bn = batchnorm("bn", "u", "y", (3, 5, 5))
    before = model([c, add, bn], "y")
    after = fold_affine(before)
    assert [layer.name for layer in after.layers] == ["c"]
    x = sample(before)
    np.testing.assert_allclose(run_float(after, x), run_float(before, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("first", ["pool", "input"])
def test_fold_refuses_a_batchnorm_not_after_a_compute_layer(first):
    layers = []
    source = "x"
    if first == "pool":
        layers.append(unary("mp", "maxpool", "x", "p", (2, 5, 5), kernel=(1, 1), stride=(1, 1),
                            pads=(0, 0, 0, 0)))
        source = "p"
    layers.append(batchnorm("bn", source, "y", (2, 5, 5)))
    what = "'mp' \\(maxpool\\)" if first == "pool" else "the graph input"
    message = rf"layer 'bn' \(batchnorm\): can only be folded .* {what}"
    with pytest.raises(PassError, match=message):
        fold_affine(model(layers, "y"))


def test_fold_refuses_when_the_producer_has_another_consumer():
    c = conv("c", "x", "t")
    bn = batchnorm("bn", "t", "u", (3, 5, 5))
    residual = Layer("res", "add", ["u", "t"], "y", (3, 5, 5), (3, 5, 5))
    with pytest.raises(PassError, match=r"cannot fold into 'c': its output 't' has 1 other"):
        fold_affine(model([c, bn, residual], "y"))


def test_fold_refuses_a_constant_that_varies_over_space():
    c = conv("c", "x", "t")
    value = RNG.standard_normal((3, 5, 5)).astype(np.float32)
    add = unary("add_c", "add_constant", "t", "y", (3, 5, 5), value=value)
    with pytest.raises(PassError, match=r"'add_c' \(add_constant\): .* not a per-channel bias"):
        fold_affine(model([c, add], "y"))


# -- fuse_activations -----------------------------------------------------------------------

def test_fuse_relu_into_conv():
    before = model([conv("c", "x", "t"), unary("r", "relu", "t", "y", (3, 5, 5))], "y")
    after = fuse_activations(before)
    assert [(layer.name, layer.activation, layer.output) for layer in after.layers] == [
        ("c", "relu", "y")]
    assert before.layers[0].activation is None and len(before.layers) == 2
    x = sample(before)
    np.testing.assert_array_equal(run_float(after, x), run_float(before, x))


def test_fuse_relu6_into_residual_add():
    c = conv("c", "x", "t", out_channels=2)
    add = Layer("res", "add", ["t", "x"], "s", (2, 5, 5), (2, 5, 5))
    after = fuse_activations(model([c, add, unary("r6", "relu6", "s", "y", (2, 5, 5))], "y"))
    assert [(layer.name, layer.activation) for layer in after.layers] == [
        ("c", None), ("res", "relu6")]


def test_no_fusion_when_the_producer_has_another_consumer():
    c = conv("c", "x", "t", out_channels=2)
    relu = unary("r", "relu", "t", "u", (2, 5, 5))
    add = Layer("res", "add", ["u", "t"], "y", (2, 5, 5), (2, 5, 5))
    before = model([c, relu, add], "y")
    after = fuse_activations(before)
    assert same_layers(after, before)


def test_no_fusion_when_the_producer_output_is_the_graph_output():
    c = conv("c", "x", "t")
    relu = unary("r", "relu", "t", "y", (3, 5, 5))
    before = model([c, relu], "t")
    assert same_layers(fuse_activations(before), before)


def test_no_fusion_after_a_pool_or_an_existing_activation():
    c = conv("c", "x", "t")
    c.activation = "relu"
    relu6 = unary("r6", "relu6", "t", "u", (3, 5, 5))
    pool = unary("mp", "maxpool", "u", "p", (3, 5, 5), kernel=(1, 1), stride=(1, 1),
                 pads=(0, 0, 0, 0))
    relu = unary("r", "relu", "p", "y", (3, 5, 5))
    before = model([c, relu6, pool, relu], "y")
    assert same_layers(fuse_activations(before), before)


# -- run_passes ---------------------------------------------------------------------------

def test_default_passes_fold_then_fuse():
    c = conv("c", "x", "t")
    bn = batchnorm("bn", "t", "u", (3, 5, 5))
    relu = unary("r", "relu", "u", "y", (3, 5, 5))
    before = model([c, bn, relu], "y")
    after = run_passes(before, DEFAULT_PASSES)
    assert [(layer.name, layer.activation, layer.output) for layer in after.layers] == [
        ("c", "relu", "y")]
    # Fusing first finds the batchnorm as the ReLU's producer: nothing to fuse.
    reversed_order = run_passes(before, (fuse_activations, fold_affine))
    assert [layer.name for layer in reversed_order.layers] == ["c", "r"]
    x = sample(before)
    np.testing.assert_allclose(run_float(after, x), run_float(before, x), rtol=1e-5, atol=1e-5)
    assert run_passes(before, ()) is before
