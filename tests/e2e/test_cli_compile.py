"""Tests of `bitline compile`, `bitline report`, `bitline compare` and the bundle backends of
`bitline run`, on the trained digits-cnn (a few seconds end to end)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.hw.spec.program import STRATEGIES
from bitline.sw.cli import cli, main
from bitline.sw.flow import (
    DEFAULT_SPECS,
    calibration_inputs,
    is_synthetic,
    parse_xbars,
    strategy_specs,
)

pytest.importorskip("sklearn")

MODEL = "digits-cnn"
COMPARE_KEYS = {"strategy", "cycles", "energy_pj", "ou_reads", "adc_conversions", "crossbars",
                "speedup_vs_isaac", "energy_saving_vs_isaac", "efficiency"}


def invoke(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "bwq"
    output = invoke("compile", MODEL, "--strategy", "bwq", "--quant", "bwq3", "-o", str(out))
    assert "compiled digits-cnn with bwq" in output
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from bitline.sw.datasets import load_dataset

    path = tmp_path_factory.mktemp("x") / "x.npy"
    np.save(path, load_dataset("digits", "test")[0][:4])
    return path


@pytest.fixture(scope="module")
def comparison():
    return json.loads(invoke("compare", MODEL, "--json"))["rows"]


def test_compile_writes_bundle_and_sidecar(bundle):
    for name in ("image.bin", "manifest.json", "compile.json"):
        assert (bundle / name).is_file()
    sidecar = json.loads((bundle / "compile.json").read_text())
    assert sidecar["strategy"] == "bwq" and sidecar["quant"] == "bwq3"
    assert sidecar["labels"]["calibration"] == "digits/calib"
    assert "weights" not in sidecar["labels"]          # trained weights, not synthetic


def test_report_matches_perf_model(bundle):
    from bitline.sw.bundle import read_bundle
    from bitline.sw.perf import analyze

    data = json.loads(invoke("report", str(bundle), "--json"))
    loaded = read_bundle(bundle)
    expected = analyze(loaded.program, loaded.qmodel)
    assert data["strategy"] == "bwq"
    assert data["totals"]["cycles"] == expected.cycles
    assert data["totals"]["ou_reads"] == expected.ou_reads
    assert data["totals"]["energy_pj"] == pytest.approx(sum(data["energy_pj"].values()))
    assert [layer["name"] for layer in data["layers"]] == [
        layer.name for layer in loaded.program.layers]
    assert "Energy by component" in invoke("report", str(bundle))


def test_run_golden_and_executor_agree(bundle, inputs, tmp_path):
    outputs = {}
    for backend in ("golden", "executor"):
        path = tmp_path / f"{backend}.npz"
        invoke("run", str(bundle), "-i", str(inputs), "-o", str(path), "-b", backend,
               "--all-layers")
        with np.load(path) as data:
            outputs[backend] = {key: data[key] for key in data.files}
    golden, executor = outputs["golden"], outputs["executor"]
    assert golden.keys() == executor.keys()
    assert golden["output"].shape == (4, 10) and golden["output"].dtype == np.float64
    assert np.issubdtype(golden["output_int"].dtype, np.integer)
    layer_keys = [key for key in golden if key.startswith("layer/")]
    assert len(layer_keys) >= 5                          # every layer of digits-cnn
    for key in golden:
        np.testing.assert_array_equal(golden[key], executor[key], err_msg=key)


def test_run_without_all_layers_has_two_arrays(bundle, inputs, tmp_path):
    path = tmp_path / "y.npz"
    invoke("run", str(bundle), "-i", str(inputs), "-o", str(path), "-b", "golden")
    with np.load(path) as data:
        assert sorted(data.files) == ["output", "output_int"]


def test_bundle_backend_rejects_a_model(inputs, tmp_path, capsys):
    code = main(["run", MODEL, "-i", str(inputs), "-o", str(tmp_path / "y.npz"),
                 "-b", "golden"])
    assert code == 2
    assert "bundle" in capsys.readouterr().err


def test_compare_json_rows(comparison):
    labels = [row["strategy"] for row in comparison]
    assert labels == [*STRATEGIES, "bwq-a", "isaac-ou-16b", "isaac-ou-8b", "isaac-paper"]
    for row in comparison:
        assert COMPARE_KEYS <= row.keys()
        assert row["cycles"] > 0 and row["energy_pj"] > 0
        assert 0 < row["efficiency"] <= 1
    by_name = {row["strategy"]: row for row in comparison}
    assert by_name["isaac"]["speedup_vs_isaac"] == 1.0
    assert by_name["isaac"]["quant"] == DEFAULT_SPECS["isaac"]
    assert by_name["isaac-paper"]["config"] == "isaac"
    assert by_name["isaac-paper"]["quant"] == "int16-a16"
    for row in comparison:           # every ratio names the row it is relative to
        for name in ("isaac", "isaac-ou-16b", "isaac-ou-8b", "isaac-paper"):
            assert row[f"speedup_vs_{name}"] == by_name[name]["cycles"] / row["cycles"]


def test_compare_predicted_ordering(comparison):
    """The papers' predicted ordering on digits-cnn (docs/performance.md section 6)."""
    cycles = {row["strategy"]: row["cycles"] for row in comparison}
    energy = {row["strategy"]: row["energy_pj"] for row in comparison}
    assert cycles["ivq-spatial"] <= cycles["ivq-naive"]
    assert cycles["ivq-temporal"] <= cycles["ivq-spatial"]
    assert cycles["bwq"] < cycles["isaac"]
    assert energy["bwq"] < energy["isaac"]
    reads = {row["strategy"]: row["ou_reads"] for row in comparison}
    assert reads["ivq-spatial"] <= reads["ivq-naive"]          # hollow OUs skipped
    assert reads["ivq-temporal"] <= reads["ivq-spatial"]


def test_compare_table_output():
    output = invoke("compare", MODEL, "--strategies", "isaac,bwq", "--no-baselines")
    assert "speedup / E saving vs isaac" in output and "bwq" in output
    assert "isaac-paper" not in output


def test_compare_activation_variant_row():
    rows = json.loads(invoke("compare", MODEL, "--strategies", "bwq,bwq-a", "--no-baselines",
                             "--quant", "bwq-a=bwq3-a6", "--json"))["rows"]
    bwq, bwq_a = rows
    assert (bwq_a["strategy"], bwq_a["mapping"], bwq_a["quant"]) == ("bwq-a", "bwq", "bwq3-a6")
    assert bwq_a["ou_reads"] < bwq["ou_reads"]      # fewer activation slices, same weights
    assert "speedup_vs_isaac" in bwq_a and bwq_a["speedup_vs_isaac"] is None
    help_text = invoke("compare", "--help")
    for label in ("isaac-ou-16b", "isaac-ou-8b", "isaac-paper", "bwq-a", "speedup_vs_<row>"):
        assert label in help_text


def test_strategy_specs_overrides():
    specs = strategy_specs(STRATEGIES)
    assert specs == DEFAULT_SPECS
    assert set(strategy_specs(["isaac", "bwq"], ["int4"]).values()) == {"int4"}
    assert strategy_specs(["isaac", "bwq"], ["bwq=bwq2"]) == {"isaac": "int8", "bwq": "bwq2"}
    with pytest.raises(ValueError, match="ivq-naive"):
        strategy_specs(["isaac"], ["ivq-naive=varied3"])


def test_parse_xbars():
    assert parse_xbars("auto") == "auto" and parse_xbars("12") == 12
    for bad in ("0", "-3", "many"):
        with pytest.raises(ValueError, match="--xbars"):
            parse_xbars(bad)


def test_calibration_inputs_synthetic_and_dataset():
    class Fake:
        name = "fake"
        input_shape = (3, 4, 4)

    x, label = calibration_inputs(Fake(), samples=5, seed=1)
    again, _ = calibration_inputs(Fake(), samples=5, seed=1)
    assert x.shape == (5, 3, 4, 4) and x.dtype == np.float32 and x.min() >= 0
    np.testing.assert_array_equal(x, again)
    assert label == "random(seed=1, n=5)"
    x, label = calibration_inputs(Fake(), model_name="digits-cnn")
    assert label == "digits/calib" and x.shape[1:] == (1, 8, 8)
    assert is_synthetic("vgg16") and is_synthetic("resnet18-cifar")
    assert not is_synthetic("digits-cnn")


@pytest.mark.parametrize("argv, message", [
    (["compile", MODEL, "-s", "bwq", "--preset", "bwq", "--config", "x.toml", "-o", "o"],
     "either --config or --preset"),
    (["compile", MODEL, "-s", "bwq", "--xbars", "zero", "-o", "o"], "--xbars"),
    (["compile", MODEL, "-s", "isaac", "--xbars", "1", "-o", "o"], "crossbar units"),
    (["compare", MODEL, "--strategies", "isaac,magic"], "magic"),
    (["compare", MODEL, "--strategies", "ivq-naive-a"], "ivq-naive-a"),
    (["compile", MODEL, "-s", "bwq", "--preset", "nope", "-o", "o"], "unknown preset"),
])
def test_user_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
