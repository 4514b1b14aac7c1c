"""`bitline compile` / `bitline run` on an already-quantized model (a 2/3/4-bit QONNX file).

Without ``--quant`` the file's quantization is mapped as it is; ``--quant`` alone is an error
(exit 2, naming the model and the way out); ``--quant`` with ``--requantize`` quantizes the
dequantized float weights again. The bundle's golden run equals the library's golden run
of the file's quantized model.
"""

from __future__ import annotations

import json
import numpy as np
import pytest
from click.testing import CliRunner

from bitline.sw.cli import cli, main

from support.qonnx_models import qonnx_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quantized")
    path = tmp / "lowbit.onnx"
    path.write_bytes(qonnx_model().SerializeToString())
    from bitline.sw.datasets import load_dataset

    np.save(tmp / "x.npy", load_dataset("digits", "test")[0][:6])
    return tmp, path


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_compile_maps_the_files_quantization(files):
    tmp, path = files
    out = tmp / "own"
    output = invoke("compile", path, "-s", "ivq-temporal", "-o", out)
    assert "(file (qonnx))" in output
    sidecar = json.loads((out / "compile.json").read_text())
    assert sidecar["quant"] == "file (qonnx)"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quant_spec"]["mode"] == "file"
    invoke("run", out, "--input", tmp / "x.npy", "-o", tmp / "y.npz", "-b", "golden")
    from bitline.sim.golden import run_golden
    from bitline.sw.frontend.onnx_import import load_onnx
    from bitline.sw.quant.prequantized import quantized_from_file

    expected = run_golden(quantized_from_file(load_onnx(path)), np.load(tmp / "x.npy")).output
    np.testing.assert_array_equal(np.load(tmp / "y.npz")["output"], np.asarray(expected))


def test_quant_with_a_quantized_model_is_an_error(files, capsys):
    tmp, path = files
    code = main(["compile", str(path), "-s", "bwq", "--quant", "int8", "-o", str(tmp / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "already quantized" in err and "--requantize" in err
    assert not (tmp / "x").exists()


def test_requantize(files):
    tmp, path = files
    out = tmp / "re"
    invoke("compile", path, "-s", "bwq", "--quant", "int8", "--requantize", "-o", out)
    assert json.loads((out / "compile.json").read_text())["quant"] == "int8"


def test_requantize_needs_a_quantized_model(files, capsys):
    tmp, _ = files
    code = main(["compile", "digits-cnn", "-s", "bwq", "--requantize", "-o", str(tmp / "z")])
    assert code == 2
    assert "not a quantized model" in capsys.readouterr().err


def test_notes_name_regridded_and_dropped_tensors():
    from bitline.sw.cli.compile import _file_quantization_notes

    notes = _file_quantization_notes({"mode": "file", "regridded": ["/pool/GAP"],
                                      "dropped": ["m"]})
    assert len(notes) == 2 and "/pool/GAP" in notes[0] and notes[1].endswith(": m")
    assert "conv1 (exact)" in _file_quantization_notes({"mode": "file",
                                                        "rescaled": ["conv1"]})[0]
    assert _file_quantization_notes({"mode": "bwq"}) == []
    assert _file_quantization_notes({"mode": "file", "regridded": [], "dropped": []}) == []


def test_accuracy_uses_the_files_quantization(files, capsys):
    """``bitline accuracy`` on a quantized file evaluates the file's own quantization; a
    ``--quant`` is an error without ``--requantize`` (it used to re-quantize silently)."""
    tmp, path = files
    report = json.loads(invoke("accuracy", path, "--dataset", "digits", "--json"))
    assert (report["spec"], report["mode"]) == ("file (qonnx)", "file")
    from bitline.sw.frontend.onnx_import import load_onnx
    from bitline.sw.quant.prequantized import quantized_from_file

    stats = quantized_from_file(load_onnx(path)).spec["stats"]
    assert report["avg_weight_bits"] == pytest.approx(stats["avg_weight_bits"])
    assert main(["accuracy", str(path), "--dataset", "digits", "--quant", "int4"]) == 2
    assert "--requantize" in capsys.readouterr().err
    again = json.loads(invoke("accuracy", path, "--dataset", "digits", "--quant", "int4",
                              "--requantize", "--json"))
    assert again["spec"] == "int4" and again["avg_weight_bits"] == 4.0
