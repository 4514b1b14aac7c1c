"""`bitline info` and `bitline run`."""

from __future__ import annotations

import json
from importlib.resources import files

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.sw.cli import cli, main
from bitline.sim import backends
from bitline.sw.frontend.float_model import run_float
from bitline.sw.frontend.onnx_import import load_onnx

from support.networks import small_cnn_onnx


@pytest.fixture
def model_path(tmp_path):
    return small_cnn_onnx(tmp_path / "small.onnx")


def invoke(*args):
    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)


def test_info_json(model_path):
    result = invoke("info", model_path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["model"] == "small"
    assert [(l["name"], l["op"]) for l in summary["layers"]] == [
        ("conv", "conv"), ("pool", "maxpool"), ("flatten", "flatten"), ("fc", "gemm")
    ]
    conv = summary["layers"][0]
    assert conv["input_shape"] == [2, 8, 8] and conv["output_shape"] == [4, 8, 8]
    assert conv["activation"] == "relu"
    assert conv["weights"] == 72 and conv["macs"] == 72 * 64
    assert summary["total_weights"] == 72 + 192
    assert summary["total_macs"] == 72 * 64 + 192
    assert set(summary["layers"][0]) >= {
        "name", "op", "input_shape", "output_shape", "weights", "macs"
    }


def test_info_table(model_path):
    result = invoke("info", model_path)
    assert result.exit_code == 0
    for text in ("conv+relu", "maxpool", "2x8x8", "4,608", "total (4 layers)", "4,800"):
        assert text in result.output


def test_run_float_matches_run_float(model_path, tmp_path):
    x = np.random.default_rng(1).standard_normal((5, 2, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npz"
    result = invoke("run", model_path, "--input", tmp_path / "x.npy", "-o", out,
                    "--backend", "float")
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        np.testing.assert_array_equal(data["output"], run_float(load_onnx(model_path), x))


def test_run_single_sample_gets_batch_axis(model_path, tmp_path):
    x = np.random.default_rng(2).standard_normal((2, 8, 8))
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(model_path), "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as data:
        assert data["output"].shape == (1, 3)


def test_run_dispatches_to_registered_backend(model_path, tmp_path, monkeypatch):
    calls = []

    def fake(target, x, options):
        calls.append((target.kind, x.shape, options))
        return np.zeros((x.shape[0], 7))

    monkeypatch.setitem(backends.BACKENDS, "fake", backends.Backend(
        "fake", "model", fake, (backends.RunOption("seed", str),)))
    np.save(tmp_path / "x.npy", np.zeros((2, 2, 8, 8)))
    assert main(["run", str(model_path), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npz"), "-b", "fake", "-O", "seed=3"]) == 0
    assert calls == [("model", (2, 2, 8, 8), {"seed": "3"})]


def run_error(capsys, *args):
    assert main(list(map(str, args))) == 2
    return capsys.readouterr().err


def test_run_errors(model_path, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 8, 8)))
    np.save(tmp_path / "x.npy", np.zeros((1, 2, 8, 8)))
    out = tmp_path / "y.npz"
    err = run_error(capsys, "run", model_path, "-i", tmp_path / "bad.npy", "-o", out)
    assert "bad.npy" in err and "(N, 2, 8, 8)" in err and err.startswith("error:")
    err = run_error(capsys, "run", model_path, "-i", tmp_path / "x.npy", "-o", out, "-b", "rtlx")
    assert "unknown backend 'rtlx'" in err and "float" in err
    err = run_error(capsys, "run", model_path, "-i", tmp_path / "missing.npy", "-o", out)
    assert "missing.npy: no such input file" in err
    err = run_error(capsys, "run", model_path, "-i", tmp_path / "x.npy", "-o", out, "-O", "seed")
    assert "KEY=VALUE" in err
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    err = run_error(capsys, "run", bundle, "-i", tmp_path / "x.npy", "-o", out)
    assert "not a compiled bundle" in err
    (bundle / "manifest.json").write_text("{}")
    err = run_error(capsys, "run", bundle, "-i", tmp_path / "x.npy", "-o", out, "-b", "float")
    assert "backend 'float' needs a model" in err and "compiled bundle" in err
    assert not out.exists()


def test_info_errors(tmp_path, capsys):
    err = run_error(capsys, "info", "no-such-model")
    assert "unknown model 'no-such-model'" in err and "resnet18-cifar" in err
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    err = run_error(capsys, "info", broken)
    assert "broken.onnx" in err


DIGITS_CNN = files("bitline.sw.models").joinpath("digits_cnn.onnx")


@pytest.mark.skipif(not DIGITS_CNN.is_file(), reason="digits_cnn.onnx not generated yet")
def test_info_digits_cnn_macs():
    summary = json.loads(invoke("info", "digits-cnn", "--json").output)
    assert summary["total_macs"] == 9216 + 294912 + 147456 + 8192 + 640 == 460416
    assert summary["input_shape"] == [1, 8, 8] and summary["output_shape"] == [10]
