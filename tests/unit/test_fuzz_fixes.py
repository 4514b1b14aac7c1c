"""Fixes of the failures the fuzzing found or the brief listed (issue 15, item 4).

Each test fails on the code before its fix:

* ``board run`` counts the inputs outside the calibrated range (a warning) and ``--strict``
  refuses them, before the board is opened, as ``run`` does;
* float weights near 3e38 give the clear calibration error without numpy's overflow
  ``RuntimeWarning`` first, and the float backend refuses an output that overflows instead
  of writing inf logits with exit 0;
* the output unit's fixed-point multiplier: a real at or above ``2**(mult_bits-1)`` was
  halved silently (32773 became 16386 at shift 0) or, huge, overflowed the int64 cast with a
  ``RuntimeWarning``; it is refused naming the layer;
* a ``reference.npz`` without an optional array the manifest records (a layer's bias or
  multipliers) crashed the run with a TypeError (fuzzing): it is named as missing;
* non-finite BatchNormalization parameters, and ones or a Gemm ``alpha`` that overflow
  float32 once folded, leaked numpy warnings (campaigns): named at import;
* ``report`` took its labels from any ``compile.json`` (another compile's named another
  model; a JSON list crashed it): the side file now names its bundle's image;
* a non-numeric (STRING) initializer, a NaN / inf constant of Mul / Div / Add, keys outside
  the ``[accelerator]`` table: refused instead of parsed, folded or ignored.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from bitline.sw.cli import main
from click.testing import CliRunner
from onnx import numpy_helper
from support.networks import tiny_mlp_onnx


def run_cli(*args):
    """``(exit code, stdout, stderr)`` of ``bitline ARGS`` through :func:`main`."""
    runner = CliRunner()
    with runner.isolation() as (out, err, *_):
        code = main([str(arg) for arg in args])
        return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model = tiny_mlp_onnx(folder / "tiny.onnx")
    assert run_cli("compile", model, "-s", "bwq", "-o", folder / "out", "-q")[0] == 0
    return model, folder / "out"


def test_board_run_counts_clamped_inputs_and_strict_refuses_them(tiny_bundle, tmp_path):
    _, bundle = tiny_bundle
    x = tmp_path / "x.npy"
    np.save(x, np.full((2, 8), 5.0, np.float32))        # far above the calibrated [0, 1)
    port = tmp_path / "no-such-tty"
    code, _, err = run_cli("board", "run", bundle, "-i", x, "--port", port, "--strict")
    assert code == 2, err
    assert "16 of 16 input values lie outside the calibrated input range" in err
    assert "(strict: refused)" in err and "serial port" not in err     # refused first
    code, _, err = run_cli("board", "run", bundle, "-i", x, "--port", port)
    assert err.startswith("warning: ") and "16 of 16 input values" in err
    assert "serial port" in err and code == 2             # then the port that is not there
    np.save(x, np.full((2, 8), 0.5, np.float32))
    code, _, err = run_cli("board", "run", bundle, "-i", x, "--port", port, "--strict")
    assert "warning" not in err and "input values" not in err and "serial port" in err


def _edited_mlp(folder, name: str, key: str, index, value: float):
    """The tiny MLP with ``initializer[key][index] = value``, saved as ``folder/name``."""
    model = onnx.load(tiny_mlp_onnx(folder / "tiny.onnx"))
    for tensor in model.graph.initializer:
        if tensor.name == key:
            array = numpy_helper.to_array(tensor).copy()
            array[index] = value
            tensor.CopyFrom(numpy_helper.from_array(array, key))
    onnx.save(model, folder / name)
    return folder / name


def _cli_and_runtime_warnings(*args):
    """``(code, stderr, RuntimeWarning messages)`` of ``bitline ARGS``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = run_cli(*args)
    return code, err, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_overflowing_weights_give_one_clear_error_and_no_numpy_warning(tmp_path):
    # finite float32 weights whose sum of two overflows
    model = _edited_mlp(tmp_path, "huge.onnx", "w1", (0, slice(None)), 3e38)
    x = tmp_path / "x.npy"
    np.save(x, np.full((2, 8), 0.5, np.float32))
    code, err, noise = _cli_and_runtime_warnings("compile", model, "-s", "bwq", "-o",
                                                 tmp_path / "out", "-q")
    assert code == 2 and "tensor hr is not finite on the calibration inputs" in err
    assert noise == []
    code, err, noise = _cli_and_runtime_warnings("run", model, "-i", x, "-o", tmp_path / "y.npz")
    assert code == 2, err
    assert "backend 'float': model tiny: 8 of 8 output values are not finite" in err
    assert noise == [] and not (tmp_path / "y.npz").exists()


def test_a_multiplier_that_does_not_fit_is_refused_not_halved():
    from bitline.sw.integer.qmodel import fixed_point

    mult, shift = fixed_point(np.array([32767.4, 1.0, 0.0, 0.75]), 16)
    assert mult.tolist() == [32767, 16384, 0, 24576] and shift.tolist() == [0, 14, 0, 15]
    for real in (2 ** 15 + 5, 32767.7, 1e300):      # 32773 was encoded as 16386 * 2**0
        with pytest.raises(ValueError, match="multiplier too large for the output unit"):
            fixed_point(np.array([1.0, real]), 16)


def test_huge_weights_on_an_inner_layer_name_it_without_a_warning(tmp_path):
    """A weight of -3.4e38 in the first of two gemms, whose ReLU zeroes that channel: the
    output scale stays small, the channel's requantization multiplier is about 1e36 (found
    by the fuzzing as an int64 cast warning before a wrong-looking mult error)."""
    model = _edited_mlp(tmp_path, "huge.onnx", "w1", (0, 0), -3.4e38)
    code, err, noise = _cli_and_runtime_warnings("compile", model, "-s", "isaac", "-o",
                                                 tmp_path / "out", "-q")
    assert code == 2 and "layer fc1: multiplier too large for the output unit" in err, err
    assert noise == []


@pytest.mark.parametrize("key", ["L0.bias", "L0.mult", "L1.ir_bias"])
def test_a_recorded_optional_reference_array_that_is_missing_is_named(tiny_bundle, tmp_path,
                                                                      key):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle[1], bundle)
    with np.load(bundle / "reference.npz") as archive:
        arrays = {name: archive[name] for name in archive.files if name != key}
    np.savez(bundle / "reference.npz", **arrays)
    np.save(tmp_path / "x.npy", np.full((1, 8), 0.5, np.float32))
    code, _, err = run_cli("run", bundle, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npz")
    assert code == 2, err
    assert f"reference.npz: missing array '{key}' (layer 'fc" in err and "internal" not in err


def test_a_string_initializer_is_refused_not_parsed_as_numbers(tmp_path):
    """An initializer of data type STRING holding "0.12"-like text was converted to float
    weights and compiled with exit 0 (fuzzing); onnx's reference cannot run such a model."""
    model = onnx.load(tiny_mlp_onnx(tmp_path / "tiny.onnx"))
    tensor = model.graph.initializer[0]
    array = numpy_helper.to_array(tensor)
    text = np.array([str(value) for value in array.ravel()], object).reshape(array.shape)
    tensor.CopyFrom(numpy_helper.from_array(text, tensor.name))
    onnx.save(model, tmp_path / "text.onnx")
    for command in (["info", tmp_path / "text.onnx"],
                    ["compile", tmp_path / "text.onnx", "-s", "bwq", "-o", tmp_path / "out"]):
        code, _, err = run_cli(*command)
        assert code == 2 and "initializer 'w1' has data type STRING, not a number type" in err


def test_a_bias_beyond_any_accumulator_is_named_without_a_cast_warning(tmp_path):
    """A byte flip made a bias 1.7e34: its integer overflowed the int64 cast (a numpy
    RuntimeWarning, then a garbage value in the program validator's message)."""
    model = _edited_mlp(tmp_path, "bias.onnx", "b2", 1, -1.7e34)
    code, err, noise = _cli_and_runtime_warnings("compile", model, "-s", "bwq", "-o",
                                                 tmp_path / "out", "-q")
    assert code == 2, err
    assert "layer fc2 channel 1: bias -1.7e+34 over the accumulator scale" in err
    assert "beyond any integer accumulator" in err and noise == []


def test_report_uses_the_labels_of_its_own_compile_json_only(tiny_bundle, tmp_path):
    import json
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle[1], bundle)
    code, out, err = run_cli("report", bundle, "--json")
    assert code == 0 and err == "" and json.loads(out)["labels"]["model"].endswith("tiny.onnx")
    sidecar = json.loads((bundle / "compile.json").read_text())
    for text, why in ((json.dumps({**sidecar, "image_sha256": "0" * 64}), "is not this bundle's"),
                      ("[1]", "is not this bundle's"), ("{", "not valid JSON"),
                      (json.dumps({**sidecar, "labels": ["x"]}), "labels must be an object")):
        (bundle / "compile.json").write_text(text)
        code, out, err = run_cli("report", bundle, "--json")
        assert code == 0 and json.loads(out)["labels"] == {}, err
        assert err.startswith("warning: ") and why in err and "compile.json" in err
    (bundle / "compile.json").unlink()
    code, out, err = run_cli("report", bundle, "--json")
    assert code == 0 and "compile.json: not found" in err


@pytest.mark.parametrize("op, value", [("Mul", np.inf), ("Div", np.nan), ("Add", np.nan)])
def test_a_non_finite_affine_constant_is_named_before_it_is_folded(tmp_path, op, value):
    """Conv then Mul by inf (fuzzing): folded into the conv, 0 * inf made NaN weights with
    a numpy warning, and only calibration noticed them; a NaN constant was said to vary over
    the spatial axes (NaN != NaN)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((2, 1, 1, 1)).astype(np.float32),
              "k": np.float32(value), "fc": rng.standard_normal((3, 8)).astype(np.float32),
              "s": np.array([-1, 8], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node(op, ["c", "k"], ["a"], name="affine"),
             helper.make_node("Reshape", ["a", "s"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(np.asarray(a), k) for k, a in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
              tmp_path / "m.onnx")
    code, err, noise = _cli_and_runtime_warnings("compile", tmp_path / "m.onnx", "-s", "bwq",
                                                 "-o", tmp_path / "out", "-q")
    assert code == 2, err
    assert f"node 'affine' ({op}): " in err and "holds NaN or infinity" in err
    assert noise == [] and "varies over the spatial axes" not in err


def test_config_keys_outside_the_accelerator_table_are_refused(tiny_bundle, tmp_path):
    """``n_xbar = 175`` before an ``[accelerator]`` table was ignored with exit 0 (fuzzing):
    only the table was read. A lone table, or top-level keys alone, still load."""
    from bitline.hw.spec.config import AcceleratorConfig

    for text in ("n_xbars = 3\n[accelerator]\n", "[accelerator]\nrows = 64\n[extra]\na = 1\n"):
        (tmp_path / "chip.toml").write_text(text)
        with pytest.raises(ValueError, match=r"chip.toml: key\(s\) (n_xbars|extra) outside the "
                                             r"\[accelerator\] table"):
            AcceleratorConfig.load(tmp_path / "chip.toml")
    code, _, err = run_cli("compile", tiny_bundle[0], "-s", "bwq", "--config",
                           tmp_path / "chip.toml", "-o", tmp_path / "out")
    assert code == 2 and "outside the [accelerator] table" in err
    (tmp_path / "chip.toml").write_text("[accelerator]\n")
    assert AcceleratorConfig.load(tmp_path / "chip.toml").pinned == frozenset()
    (tmp_path / "chip.toml").write_text("n_xbars = 3\n")
    assert AcceleratorConfig.load(tmp_path / "chip.toml").n_xbars == 3


def _bn_gemm_model(path, beta=0.0, mean=0.0, alpha=1.0, weight=1.0):
    """x (N, 2, 2, 2) -> BatchNormalization (bn) -> Reshape -> Gemm (fc, alpha)."""
    from onnx import TensorProto, helper

    arrays = {"g": np.ones(2, np.float32), "b": np.array([0.0, beta], np.float32),
              "m": np.array([0.0, mean], np.float32), "v": np.ones(2, np.float32),
              "w": np.full((3, 8), weight, np.float32), "s": np.array([-1, 8], np.int64)}
    nodes = [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"],
                              name="bn"),
             helper.make_node("Reshape", ["n", "s"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w"], ["y"], name="fc", transB=1, alpha=alpha)]
    graph = helper.make_graph(
        nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(a, k) for k, a in arrays.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


@pytest.mark.parametrize("params, message", [
    ({"beta": -np.inf}, "node 'bn' (BatchNormalization): B holds NaN or infinity"),
    # finite float32 parameters whose folded shift B - mean * gain is not (-3e38 - 3e38)
    ({"beta": -3e38, "mean": 3e38}, ("node 'bn' (BatchNormalization): its scale / sqrt(var "
                                     "+ epsilon) or B - mean * that overflows float32")),
    ({"alpha": 2.0, "weight": 3e38}, "node 'fc' (Gemm): weight B times alpha=2.0 overflows"),
])
def test_parameters_that_are_or_fold_to_non_finite_values_are_named(tmp_path, params,
                                                                    message):
    """Found by the campaigns: a BatchNormalization beta of -inf, a shift that overflows
    float32 once folded, a Gemm weight times alpha over float32 each leaked a numpy
    RuntimeWarning before a later, vaguer error; each is named at import."""
    model = _bn_gemm_model(tmp_path / "m.onnx", **params)
    code, err, noise = _cli_and_runtime_warnings("compile", model, "-s", "bwq", "-o",
                                                 tmp_path / "out", "-q")
    assert code == 2 and message in err, err
    assert noise == []
