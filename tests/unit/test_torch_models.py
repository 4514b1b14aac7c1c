"""Models exported by torch.onnx.export (tests/fixtures/torch, scripts/export_torch_models.py).

Runs without torch: each fixture holds a seeded input batch and PyTorch's own output. Every
exported file must import, run on the float backend like onnxruntime and like PyTorch (1e-5
relative), and compile under every strategy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from bitline.hw.spec.config import preset
from bitline.hw.spec.program import STRATEGIES
from bitline.sw.frontend.float_model import run_float
from bitline.sw.frontend.onnx_import import load_onnx


ort = pytest.importorskip("onnxruntime")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "torch"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
FILES = [entry["file"] for entry in MANIFEST["files"]]


def _entry(name):
    return next(entry for entry in MANIFEST["files"] if entry["file"] == name)


def _load(name):
    entry = _entry(name)
    reference = np.load(FIXTURES / entry["reference"])
    return load_onnx(FIXTURES / name), reference["x"], reference["y"]


def _close(got, want):
    atol = 1e-6 * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)


def test_manifest_lists_every_fixture_and_enough_architectures():
    on_disk = {path.name for path in FIXTURES.glob("*.onnx")}
    assert on_disk == set(FILES)
    models = {entry["model"] for entry in MANIFEST["files"]}
    assert len(models) >= 6
    # both exporters, both opsets, for every architecture
    for model in models:
        kinds = {(e["exporter"], e["opset"]) for e in MANIFEST["files"] if e["model"] == model}
        assert kinds == {("torchscript", 13), ("dynamo", 18)}, model
    for name in FILES:
        opset = onnx.load(FIXTURES / name, load_external_data=False).opset_import
        assert {(o.domain or "", o.version) for o in opset} >= {("", _entry(name)["opset"])}


def test_the_patterns_of_the_issue_are_in_the_exported_graphs():
    # The exporter really wrote what issue 14 is about (before bitline simplifies it).
    def op_types(name):
        return {node.op_type for node in onnx.load(FIXTURES / name).graph.node}

    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape"} <= op_types(
        "lenet5-opset13.onnx")                                       # x.view(x.size(0), -1)
    assert "ReduceMean" in op_types("mobilenetv2-tiny-opset18.onnx")  # x.mean([2, 3])
    assert "Clip" in op_types("mobilenetv2-tiny-opset13.onnx")        # F.relu6
    assert {"LeakyRelu", "PRelu"} <= op_types("leaky-net-opset18.onnx")
    assert {"Pad", "Sub", "Div", "LogSoftmax"} <= op_types("pad-net-opset18.onnx")
    assert "Concat" in op_types("inception-tiny-opset18.onnx")


@pytest.mark.parametrize("name", FILES)
def test_float_backend_equals_onnxruntime_and_pytorch(name):
    model, x, torch_y = _load(name)
    session = ort.InferenceSession(str(FIXTURES / name), providers=["CPUExecutionProvider"])
    # the torch.export-based exporter traced batch 1: run onnxruntime one sample at a time
    want = np.concatenate([session.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    got = run_float(model, x)
    _close(got, want)
    _close(got, torch_y)


@pytest.mark.parametrize("name", FILES)
def test_compiles_under_every_strategy(name):
    from bitline.sim.golden import run_golden
    from bitline.sw.flow import compile_model

    model, x, _ = _load(name)
    calib = np.random.default_rng(0).standard_normal((8, *model.input_shape)).astype(np.float32)
    reference = run_float(model, x)
    for strategy in STRATEGIES:
        # Small specs keep this fast (varied4's per-channel search is what costs time).
        spec = "bwq3" if strategy == "bwq" else "int4"
        result = compile_model(model, strategy, spec, preset("bwq"), calib)
        assert len(result.program.layers) == len(model.compute_layers)
        output = run_golden(result.qmodel, x).output
        assert output.shape == reference.shape
        # Quantized (4-bit weights, BWQ's 3): close to the float model, not equal. A layer
        # computed wrongly (a concat or LeakyReLU rescaled badly) is off by O(1).
        error = np.abs(output - reference).max() / np.abs(reference).max()
        assert error < 0.3, (strategy, error)
