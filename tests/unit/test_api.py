"""bitline.sw.api: the README's Python API block runs as written; the API equals the flow."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bitline.sw import api

ROOT = Path(__file__).resolve().parents[2]


def readme_block() -> str:
    """The ``python`` code block between the README's ``python-api`` markers."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"<!-- begin python-api -->(.*?)<!-- end python-api -->", text, re.S)
    assert section, "README.md has no python-api section"
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, "the python-api section has no python code block"
    return block.group(1)


def test_readme_python_api_block_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_block(), "README.md[python-api]", "exec"), {})
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"accuracy ([0-9.]+)", printed).group(1))
    assert accuracy >= 0.9
    assert (tmp_path / "out" / "digits-bwq" / "manifest.json").is_file()


def test_compile_equals_the_flow():
    """api.compile is compile_model on the same inputs: the same program and report."""
    from bitline.sw.flow import calibration_inputs, compile_model, load_config
    from bitline.sw.models import resolve_model
    from bitline.sw.perf import analyze

    model = resolve_model("digits-cnn")
    calib, _ = calibration_inputs(model, "digits")
    flow = compile_model(model, "ivq-spatial", "int8", load_config(preset_name="bwq"), calib)
    compiled = api.compile("digits-cnn", "ivq-spatial", spec="int8", config="bwq")
    assert compiled.report() == analyze(flow.program, flow.qmodel).to_dict()
    assert compiled.config == flow.config
    x, _ = api.dataset("digits", "test")
    np.testing.assert_array_equal(compiled.run(x[:4], "golden"),
                                  compiled.run(x[:4], "executor"))
    float_out = compiled.run(x[:4], "float")
    assert float_out.shape == (4, 10)


def test_quantized_file_through_the_api(tmp_path):
    """A QONNX model compiles with its own quantization; a spec needs requantize=True."""
    from support.qonnx_models import qonnx_model

    path = tmp_path / "lowbit.onnx"
    path.write_bytes(qonnx_model().SerializeToString())
    x, _ = api.dataset("digits", "test")
    compiled = api.compile(str(path), "bwq", calib=x[:8])
    assert compiled.qmodel.spec["mode"] == "file"
    with pytest.raises(ValueError, match="already quantized"):
        api.compile(str(path), "bwq", spec="int8", calib=x[:8])
    again = api.quantize(str(path), "int4", calib=x[:8], requantize=True)
    assert again.spec["name"] != "file"
    # Below the API too: the quantize step refuses a spec for a quantized model (bitline
    # compare would otherwise quantize it again without saying so).
    from bitline.hw.spec.config import AcceleratorConfig
    from bitline.sw.flow import quantize

    with pytest.raises(ValueError, match="would discard"):
        quantize(api.load(str(path)), "int8", x[:8], AcceleratorConfig())


def test_errors_name_the_value():
    compiled = api.compile("digits-cnn", "isaac", spec="int8", config="isaac")
    with pytest.raises(ValueError, match="unknown backend 'rtl'"):
        compiled.run(np.zeros((1, 1, 8, 8), np.float32), "rtl")
    with pytest.raises(ValueError, match="unknown strategy"):
        api.compile("digits-cnn", "nope")


def test_from_torch_without_torch_names_the_extra():
    pytest.importorskip("onnx")
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="train"):
            api.from_torch(object(), None)
    else:
        pytest.skip("torch is installed; test_from_torch_exports covers it")


@pytest.mark.parametrize("dynamo", [False, True])
def test_from_torch_exports(dynamo):
    """A small CNN exported with torch.onnx.export (TorchScript and dynamo exporters): the
    float IR equals PyTorch and it compiles."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 4 * 4, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.conv(x)), 2)
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    net = Net()
    if dynamo:
        pytest.importorskip("onnxscript")
    model = api.from_torch(net, torch.zeros(1, 1, 8, 8), dynamo=dynamo)
    x, _ = api.dataset("digits", "test")
    with torch.no_grad():
        expected = net(torch.from_numpy(np.ascontiguousarray(x[:16]))).numpy()
    from bitline.sw.frontend.float_model import run_float

    np.testing.assert_allclose(run_float(model, x[:16]), expected, rtol=1e-5, atol=1e-5)
    compiled = api.compile(model, "bwq", calib=x[:8])
    assert compiled.report()["totals"]["crossbars"] >= 1


def test_from_torch_error_names_the_module():
    """An unsupported op in an exported module: the message names the module and the op,
    and says how to keep the (temporary) exported file it refers to."""
    torch = pytest.importorskip("torch")

    class Gate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return torch.sigmoid(self.conv(x))

    with pytest.raises(ValueError, match=r"Gate exported by torch.onnx.export: .*Sigmoid.*path="):
        api.from_torch(Gate(), torch.zeros(1, 1, 8, 8))
