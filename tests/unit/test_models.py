"""Built-in models: synthetic CIFAR generators and name resolution."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from bitline.sw.frontend.float_model import run_float
from bitline.sw.frontend.onnx_import import load_onnx
from bitline.sw.models import BUILTIN_MODELS, builtin_onnx, resolve_model, synthetic

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def protos():
    return {
        "resnet18-cifar": synthetic.resnet18_cifar(),
        "vgg16": synthetic.vgg16(),
        "mobilenetv2": synthetic.mobilenetv2(),
    }


@pytest.fixture(scope="module")
def models(protos):
    return {name: load_onnx(proto, name=name) for name, proto in protos.items()}


def weights(model):
    return sum(layer.weight.size for layer in model.compute_layers)


def test_resnet18_cifar_structure(models):
    model = models["resnet18-cifar"]
    convs = [l for l in model.layers if l.op == "conv"]
    assert len(convs) == 20 and [l.op for l in model.compute_layers[-1:]] == ["gemm"]
    assert sum(l.op == "add" and l.activation == "relu" for l in model.layers) == 8
    assert sum(l.weight.shape[2:] == (1, 1) for l in convs) == 3  # downsample shortcuts
    assert weights(model) == 11_164_352
    assert weights(model) == pytest.approx(11.17e6, rel=1e-3)
    assert model.input_shape == (3, 32, 32) and model.output_shape == (10,)
    assert all(l.bias is not None for l in convs)  # BatchNorm folded into every conv


def test_vgg16_structure(models):
    model = models["vgg16"]
    ops = [l.op for l in model.compute_layers]
    assert ops == ["conv"] * 13 + ["gemm"] * 3
    assert sum(l.op == "maxpool" for l in model.layers) == 5
    assert weights(model) == 15_239_872


def test_mobilenetv2_structure(models):
    model = models["mobilenetv2"]
    convs = [l for l in model.layers if l.op == "conv"]
    depthwise = [l for l in convs if l.attrs["groups"] > 1]
    assert len(depthwise) == 17
    assert all(l.attrs["groups"] == l.input_shape[0] == l.output_shape[0] for l in depthwise)
    assert all(l.activation == "relu6" for l in depthwise)
    # linear bottlenecks: every projection conv has no activation
    assert sum(l.activation is None for l in convs) == 17
    assert sum(l.op == "add" for l in model.layers) == 10
    assert len(convs) == 52 and weights(model) == 2_202_560


def test_generators_are_seeded(protos):
    again = synthetic.mobilenetv2()
    assert again.SerializeToString() == protos["mobilenetv2"].SerializeToString()
    other = synthetic.mobilenetv2(seed=1)
    assert other.SerializeToString() != again.SerializeToString()
    onnx.checker.check_model(other)


@pytest.mark.parametrize("name", ["resnet18-cifar", "vgg16", "mobilenetv2"])
def test_float_model_matches_onnxruntime(protos, models, name):
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(
        protos[name].SerializeToString(), providers=["CPUExecutionProvider"]
    )
    want = session.run(None, {"input": x})[0]
    got = run_float(models[name], x)
    atol = 1e-6 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)


def test_builtin_names():
    assert set(BUILTIN_MODELS) == {
        "digits-cnn", "digits-resnet", "mnist-lenet5", "mnist-resnet", "resnet18-cifar",
        "vgg16", "mobilenetv2"
    }
    model = resolve_model("mobilenetv2")
    assert model.name == "mobilenetv2" and model.output_shape == (10,)


def test_resolve_path(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(builtin_onnx("mobilenetv2"), path)
    model = resolve_model(str(path))
    assert model.source == str(path) and len(model.compute_layers) == 53


def test_unknown_name_lists_builtins():
    with pytest.raises(ValueError, match=r"unknown model 'lenet'.*digits-cnn.*mobilenetv2"):
        resolve_model("lenet")
    with pytest.raises(ValueError, match=r"unknown model 'lenet'"):
        builtin_onnx("lenet")


@pytest.mark.parametrize("name", ["digits-cnn", "digits-resnet"])
def test_digits_models_match_onnxruntime(name):
    try:
        proto = builtin_onnx(name)
    except ValueError as error:
        pytest.skip(str(error))
    model = resolve_model(name)
    assert model.input_shape == (1, 8, 8) and model.output_shape == (10,)
    x = np.random.default_rng(1).uniform(0, 1, (5, 1, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    atol = 1e-6 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(run_float(model, x), want, rtol=1e-5, atol=atol)
