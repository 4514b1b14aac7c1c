"""Tests of the committed reference models in ``sw/models`` (no torch needed).

onnxruntime is the independent float reference: it must reproduce the accuracies recorded
in ``sw/models/README.md``, and bitline's float IR must agree with it.
"""

from collections import Counter
from importlib import resources

import numpy as np
import onnx
import onnxruntime
import pytest

from bitline.sw.datasets import load_digits
from bitline.sw.frontend.float_model import run_float
from bitline.sw.models import resolve_model

#: Minimum test-split accuracy of each committed model.
MIN_ACCURACY = {"digits_cnn": 0.97, "digits_resnet": 0.96}


def model_path(name):
    return resources.files("bitline.sw.models") / f"{name}.onnx"


@pytest.fixture(scope="module")
def test_split():
    return load_digits("test")


def onnxruntime_logits(name, x):
    session = onnxruntime.InferenceSession(
        str(model_path(name)), providers=["CPUExecutionProvider"]
    )
    (logits,) = session.run(["logits"], {"input": x})
    return logits


@pytest.mark.parametrize("name", MIN_ACCURACY)
def test_interface_and_size(name):
    proto = onnx.load(str(model_path(name)))
    onnx.checker.check_model(proto, full_check=True)
    assert [value.name for value in proto.graph.input] == ["input"]
    assert [value.name for value in proto.graph.output] == ["logits"]
    default_domain = [opset for opset in proto.opset_import if opset.domain in ("", "ai.onnx")]
    assert [opset.version for opset in default_domain] == [13]
    assert model_path(name).stat().st_size < 200_000


@pytest.mark.parametrize("name", MIN_ACCURACY)
def test_onnxruntime_accuracy(name, test_split):
    x, y = test_split
    accuracy = (onnxruntime_logits(name, x).argmax(1) == y).mean()
    assert accuracy >= MIN_ACCURACY[name]


def test_digits_cnn_ops():
    proto = onnx.load(str(model_path("digits_cnn")))
    ops = Counter(node.op_type for node in proto.graph.node)
    assert ops == {"Conv": 3, "Relu": 4, "MaxPool": 2, "Flatten": 1, "Gemm": 2}


def test_digits_resnet_keeps_batchnorm_and_add():
    proto = onnx.load(str(model_path("digits_resnet")))
    ops = Counter(node.op_type for node in proto.graph.node)
    assert ops["BatchNormalization"] == 6
    assert ops["Add"] == 2
    assert set(ops) <= {
        "Conv", "BatchNormalization", "Relu", "Add", "GlobalAveragePool", "Flatten", "Gemm",
    }


@pytest.mark.parametrize("name", MIN_ACCURACY)
def test_float_ir_matches_onnxruntime(name, test_split):
    x, y = test_split
    reference = onnxruntime_logits(name, x)
    # The builtin name goes through the same path as `bitline ... digits-cnn`.
    logits = run_float(resolve_model(name.replace("_", "-")), x)
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(logits.argmax(1), reference.argmax(1))
    assert (logits.argmax(1) == y).mean() >= MIN_ACCURACY[name]
