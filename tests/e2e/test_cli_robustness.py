"""The CLI honours every config value a user sets, and no traceback reaches a user (issue 15).

* Config pinning: the keys a config file sets are honoured or refused with an error naming
  the field, its value and what the network needs; only unset fields are sized.
* The named crashes (zero-channel, Identity-only and Relu-only models, a 4096x4096 input,
  ``preset = ["bwq"]``, ``--top 'bad name!'``, a ``nan`` budget, non-finite options) give
  their own ``error: ...`` line, never the generic internal-error one.
* The generic handler exists: an unexpected exception becomes one line with a ``--debug``
  hint (exit 1), and ``--debug`` / ``BITLINE_DEBUG=1`` re-raise it.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from bitline.hw.spec.config import PRESETS, AcceleratorConfig
from bitline.sw.cli import cli, main
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

INTERNAL = "internal error"


def run_cli(*args, env=None):
    """``(exit code, stderr)`` of ``bitline ARGS`` through :func:`main` (its error path)."""
    runner = CliRunner()
    with runner.isolation(env=env) as (_, err, *_):
        code = main([str(arg) for arg in args])
        return code, err.getvalue().decode()


def write_toml(path, text):
    path.write_text(text)
    return path


def onnx_model(path, nodes, input_shape, output_shape, initializers=()):
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


# ----------------------------------------------------------------------- config pinning
@pytest.mark.parametrize("key, value, needs", [
    ("n_xbars", 1, "crossbar units of the bwq mapping"),
    ("max_in_features", 10, "largest layer input"),
    ("max_out_channels", 2, "largest layer output"),
    ("max_entries", 1, "OU entries of the program"),
])
def test_a_pinned_field_too_small_for_the_network_is_refused(tmp_path, key, value, needs):
    config = write_toml(tmp_path / "chip.toml", f"[accelerator]\n{key} = {value}\n")
    code, err = run_cli("compile", "digits-cnn", "-s", "bwq", "--config", config,
                        "-o", tmp_path / "out")
    assert code == 2, err
    # the file that pins the field is named (the flow's "the config sets" on the CLI)
    assert f"{config} sets {key} = {value}, but the network needs" in err
    assert needs in err and "remove the key" in err and INTERNAL not in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_pinned_values_are_kept_and_unset_ones_sized(tmp_path):
    """n_xbars = 40 (more than the 22 units the mapping uses) is kept, not lowered; the
    unset max_entries is sized and reported."""
    config = write_toml(tmp_path / "chip.toml", "[accelerator]\nn_xbars = 40\n")
    out = tmp_path / "out"
    code, err = run_cli("compile", "digits-cnn", "-s", "bwq", "--config", config, "-o", out,
                        "-q")
    assert code == 0, err
    bundle_config = json.loads((out / "manifest.json").read_text())["config"]
    sidecar = json.loads((out / "compile.json").read_text())
    assert bundle_config["n_xbars"] == 40
    assert all(record["field"] != "n_xbars" for record in sidecar["sizing"])
    # the same compile from the preset, where n_xbars is unset, sizes it (a second count)
    preset_out = tmp_path / "preset"
    assert run_cli("compile", "digits-cnn", "-s", "bwq", "-o", preset_out, "-q")[0] == 0
    used = json.loads((preset_out / "manifest.json").read_text())["config"]["n_xbars"]
    preset_sizing = json.loads((preset_out / "compile.json").read_text())["sizing"]
    assert 1 < used < 40
    assert {"field": "n_xbars", "requested": PRESETS["bwq"].n_xbars, "chosen": used} \
        .items() <= next(r for r in preset_sizing if r["field"] == "n_xbars").items()
    for record in sidecar["sizing"]:     # what was sized is what the preset run sized
        assert record in preset_sizing


def test_the_xbars_flag_overrides_a_pinned_n_xbars_and_says_so(tmp_path):
    """A command-line flag overrides the file: --xbars 25 replaces n_xbars = 30 (a Sizing
    record names --xbars); the mapping is then refused only if it needs more."""
    config = write_toml(tmp_path / "chip.toml", "[accelerator]\nn_xbars = 30\n")
    out = tmp_path / "out"
    code, err = run_cli("compile", "digits-cnn", "-s", "bwq", "--config", config,
                        "--xbars", "25", "-o", out, "-q")
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["config"]["n_xbars"] == 25
    assert json.loads((out / "compile.json").read_text())["sizing"] == [
        {"field": "n_xbars", "requested": 30, "chosen": 25, "reason": "--xbars"}]
    code, err = run_cli("compile", "digits-cnn", "-s", "bwq", "--config", config,
                        "--xbars", "2", "-o", tmp_path / "two")
    assert code == 2 and "n_xbars" in err and INTERNAL not in err


def test_a_budget_beyond_a_pinned_n_xbars_is_refused(tmp_path):
    config = write_toml(tmp_path / "chip.toml", "[accelerator]\nn_xbars = 22\n")
    code, err = run_cli("compile", "digits-cnn", "-s", "bwq", "--config", config,
                        "--budget", "xbars:64", "-o", tmp_path / "out")
    assert code == 2, err
    assert f"{config} sets n_xbars = 22" in err and "--budget xbars:64" in err


def test_pinned_keys_are_the_keys_the_file_sets(tmp_path):
    path = write_toml(tmp_path / "c.toml",
                      '[accelerator]\npreset = "isaac"\nn_xbars = 4\nrows = 128\n')
    config = AcceleratorConfig.load(path)
    assert config.pinned == {"n_xbars", "rows"}
    assert config == PRESETS["isaac"].replace(n_xbars=4)        # pinned is not hardware
    assert "pinned" not in config.to_dict() and config.digest == \
        PRESETS["isaac"].replace(n_xbars=4).digest
    assert config.replace(max_entries=9).pinned == config.pinned
    with pytest.raises(ValueError, match="unknown field"):
        AcceleratorConfig.load(write_toml(tmp_path / "p.toml", "pinned = ['rows']\n"))


def test_config_show_comments_the_sized_fields_unless_pinned(tmp_path):
    text = CliRunner().invoke(cli, ["config", "show", "--preset", "isaac"]).output
    assert '\npreset = "isaac"\n' in text and "\n# n_xbars = 16 " in text
    saved = write_toml(tmp_path / "isaac.toml", text)
    assert AcceleratorConfig.load(saved) == PRESETS["isaac"]
    assert AcceleratorConfig.load(saved).pinned.isdisjoint({"n_xbars", "max_entries"})
    pinned = write_toml(tmp_path / "pinned.toml", "[accelerator]\nn_xbars = 3\n")
    text = CliRunner().invoke(cli, ["config", "show", "--config", str(pinned)]).output
    assert "\nn_xbars = 3\n" in text and "\n# max_entries = " in text


def test_verilog_with_a_bundle_refuses_a_sized_field_the_file_sets(tmp_path):
    """verilog/fpga --bundle: the image only runs on its own config, so a sized field the
    config file sets (pinned) must equal the bundle's, or the command is refused naming it;
    a sized field the file leaves unset is sized by the bundle and reported."""
    from bitline.sw.flow.hardware import choose_hardware

    out = tmp_path / "out"
    assert run_cli("compile", "digits-cnn", "-s", "bwq", "-o", out, "-q")[0] == 0
    pinned = write_toml(tmp_path / "pinned.toml",
                        "[accelerator]\nn_xbars = 40\nmax_entries = 70000\n")
    code, err = run_cli("verilog", "--bundle", out, "--config", pinned, "-o", tmp_path / "v")
    assert code == 2 and INTERNAL not in err, err
    assert "n_xbars" in err and "(hardware 40, set by the config file)" in err
    assert "max_entries" in err and "(hardware 70000, set by the config file)" in err
    assert not (tmp_path / "v").exists()
    bundle_config = json.loads((out / "manifest.json").read_text())["config"]
    same = write_toml(tmp_path / "same.toml",
                      f"[accelerator]\nn_xbars = {bundle_config['n_xbars']}\n")
    choice = choose_hardware(str(same), None, str(out))     # the same pinned value is fine
    assert choice.config.to_dict() == bundle_config


# ------------------------------------------------------------------ the named crashes
def test_models_with_nothing_to_map_get_clear_errors(tmp_path):
    vector = [1, 4]
    cases = {
        "identity": (onnx_model(tmp_path / "identity.onnx",
                                [helper.make_node("Identity", ["x"], ["y"])], vector, vector),
                     "has no compute layer"),
        "relu": (onnx_model(tmp_path / "relu.onnx", [helper.make_node("Relu", ["x"], ["y"])],
                            vector, vector), "has no compute layer"),
        "zero-gemm": (onnx_model(
            tmp_path / "zero.onnx", [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)],
            vector, [1, 0], [numpy_helper.from_array(np.zeros((0, 4), np.float32), "w")]),
            "has no output channels (weight shape (0, 4))"),
        "zero-conv": (onnx_model(
            tmp_path / "zconv.onnx", [helper.make_node("Conv", ["x", "w"], ["y"])],
            [1, 1, 8, 8], [1, 0, 6, 6],
            [numpy_helper.from_array(np.zeros((0, 1, 3, 3), np.float32), "w")]),
            "has no output channels (weight shape (0, 1, 3, 3))"),
    }
    for name, (path, message) in cases.items():
        code, err = run_cli("compile", path, "-s", "bwq", "-o", tmp_path / f"out-{name}")
        assert code == 2 and message in err and INTERNAL not in err, (name, err)
        assert err.count("\n") == 1, err


def test_a_huge_input_is_refused_before_calibration_allocates(tmp_path):
    from bitline.sw.models import resolve_model
    from bitline.sw.quant.calibrate import CALIBRATION_MEMORY_LIMIT, calibration_bytes

    weight = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    path = onnx_model(tmp_path / "big.onnx", [helper.make_node("Conv", ["x", "w"], ["y"])],
                      [1, 1, 4096, 4096], [1, 4, 4094, 4094], [weight])
    code, err = run_cli("compile", path, "-s", "bwq", "-o", tmp_path / "out")
    assert code == 2 and INTERNAL not in err, err
    assert "calibrating on 16 input(s) of shape (1, 4096, 4096) needs 14.0 GiB" in err
    assert "--calib-samples" in err
    # the estimate by hand: 16 images of (input + output + the conv's im2col) float32
    pixels = 4094 * 4094
    by_hand = 16 * 4 * (4096 * 4096 + 4 * pixels + pixels * 9)
    assert calibration_bytes(resolve_model(str(path)), 16)[0] == by_hand
    assert by_hand > CALIBRATION_MEMORY_LIMIT > calibration_bytes(resolve_model(str(path)),
                                                                  1)[0]


def test_a_preset_that_is_not_a_string_is_a_clear_error(tmp_path):
    config = write_toml(tmp_path / "chip.toml", '[accelerator]\npreset = ["bwq"]\n')
    code, err = run_cli("config", "show", "--config", config)
    assert code == 2 and "preset must be a preset name (a string" in err
    assert "['bwq']" in err and "chip.toml" in err and INTERNAL not in err


def test_verilog_refuses_a_top_name_that_is_not_an_identifier(tmp_path):
    code, err = run_cli("verilog", "--preset", "bwq", "--top", "bad name!",
                        "-o", tmp_path / "rtl")
    assert code == 2 and "'bad name!' is not a Verilog identifier" in err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_quantization_budget_is_refused(tmp_path, value):
    spec = write_toml(tmp_path / "spec.toml", f'mode = "bwq"\n[bwq]\nbudget = {value}\n')
    code, err = run_cli("quant", "template", "digits-cnn", "--quant", spec,
                        "-o", tmp_path / "t.toml")
    assert code == 2 and f"bwq.budget: must be a finite number, not {float(value)!r}" in err


@pytest.mark.parametrize("args, message", [
    (["board", "run", "OUT", "--input", "x.npy", "--port", "/dev/null", "--timeout", "nan"],
     "'--timeout': must be a finite number above 0, not 'nan'"),
    (["board", "run", "OUT", "--input", "x.npy", "--port", "/dev/null", "--timeout", "0"],
     "'--timeout': must be a finite number above 0, not '0'"),
    (["compile", "digits-cnn", "-s", "bwq", "--calib-samples", "0", "-o", "OUT"],
     "'--calib-samples': 0 is not in the range x>=1"),
])
def test_non_finite_and_non_positive_options_are_usage_errors(tmp_path, args, message):
    (tmp_path / "OUT").mkdir()
    args = [str(tmp_path / "OUT") if arg == "OUT" else arg for arg in args]
    code, err = run_cli(*args)
    assert code == 2 and message in err, err


# ------------------------------------------------------------------ the generic handler
def _explode(*args, **kwargs):
    raise ZeroDivisionError("float division by zero")


def test_an_unexpected_exception_is_one_line_and_debug_reraises(tmp_path, monkeypatch):
    import bitline.sw.flow.compile as flow_compile

    monkeypatch.setattr(flow_compile, "compile_model", _explode)
    args = ["compile", "digits-cnn", "-s", "bwq", "-o", tmp_path / "out"]
    code, err = run_cli(*args)
    assert code == 1
    assert err == ("error: internal error: ZeroDivisionError: float division by zero "
                   "(rerun with --debug for the traceback)\n")
    with pytest.raises(ZeroDivisionError):
        run_cli("--debug", *args)
    with pytest.raises(ZeroDivisionError):      # after the command name too
        run_cli(*args[:1], "--debug", *args[1:])
    with pytest.raises(ZeroDivisionError):
        run_cli(*args, "--debug")
    with pytest.raises(ZeroDivisionError):
        run_cli(*args, env={"BITLINE_DEBUG": "1"})
    assert run_cli(*args, env={"BITLINE_DEBUG": "0"})[0] == 1
    monkeypatch.setattr(flow_compile, "compile_model",
                        lambda *a, **k: (_ for _ in ()).throw(MemoryError("cannot allocate")))
    code, err = run_cli(*args)
    assert code == 1 and err.startswith("error: out of memory: cannot allocate (rerun with")


def test_debug_shows_the_traceback_of_an_input_error_too(tmp_path):
    config = write_toml(tmp_path / "chip.toml", '[accelerator]\npreset = ["bwq"]\n')
    assert run_cli("config", "show", "--config", config)[0] == 2
    with pytest.raises(ValueError, match="preset must be a preset name"):
        run_cli("--debug", "config", "show", "--config", config)
    with pytest.raises(ValueError, match="preset must be a preset name"):
        run_cli("config", "show", "--debug", "--config", config)    # a group's subcommand
    assert run_cli("config", "show", "--config", config)[0] == 2     # not left switched on


def test_a_pinned_max_weight_bits_refuses_wider_weights_even_after_a_cached_sizing(tmp_path):
    """adaptivfloat8 needs more magnitude planes than 8-bit weights hold: unpinned, the
    sizing raises max_weight_bits; pinned, the same (cached) quantization is refused."""
    from bitline.hw.spec.config import preset
    from bitline.sw.flow import calibration_inputs, resolve_target
    from bitline.sw.flow.compile import sized_quantization

    spec = write_toml(tmp_path / "af8.toml", '[weights]\nscheme = "adaptivfloat"\nbits = 8\n')
    model = resolve_target("digits-cnn").model
    calib_x, _ = calibration_inputs(model, None, model_name="digits-cnn")
    cache: dict = {}
    config, _, records = sized_quantization(model, str(spec), calib_x, preset("bwq"),
                                            qmodels=cache)
    assert [record.field for record in records] == ["max_weight_bits"]
    assert config.max_weight_bits > 8
    with pytest.raises(ValueError, match=r"magnitude bit planes.*the config sets "
                                         r"max_weight_bits = 8; raise it"):
        sized_quantization(model, str(spec), calib_x,
                           preset("bwq").replace(pinned={"max_weight_bits"}), qmodels=cache)


@pytest.mark.parametrize("value", ['["int"]', "{a = 1}", "3", "true", "nan"])
def test_a_scheme_of_the_wrong_type_is_a_clear_error(tmp_path, value):
    """The scheme was used as a table key before it was checked (TypeError / KeyError)."""
    spec = write_toml(tmp_path / "spec.toml", f"[weights]\nscheme = {value}\nbits = 4\n")
    code, err = run_cli("quant", "template", "digits-cnn", "--quant", spec,
                        "-o", tmp_path / "t.toml")
    assert code == 2 and "weights.scheme: unknown scheme" in err and INTERNAL not in err


@pytest.mark.parametrize("fill", [3e38, np.nan])
def test_weights_whose_float_model_is_not_finite_are_refused(tmp_path, fill):
    """Huge float32 weights overflow the float model (and NaN weights are NaN): calibration
    would fall back to a threshold of 1 and compile a wrong program with exit 0."""
    weight = numpy_helper.from_array(np.full((3, 4), fill, np.float32), "w")
    path = onnx_model(tmp_path / "w.onnx",
                      [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [1, 4], [1, 3],
                      [weight])
    with np.errstate(over="ignore", invalid="ignore"):
        code, err = run_cli("compile", path, "-s", "bwq", "-o", tmp_path / "out")
    assert code == 2 and INTERNAL not in err, err
    assert "not finite" in err or "NaN or infinity" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_network_of_zero_weights_compiles_and_runs(tmp_path):
    """All weights zero: no cell is programmed (an empty CELLS section), the bundle writes
    and reads back, and golden and executor both give the bias-only outputs."""
    w = numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.array([0.1, -0.2, 0.3, 0.0], np.float32), "b")
    wf = numpy_helper.from_array(np.zeros((10, 4 * 6 * 6), np.float32), "wf")
    model = onnx_model(tmp_path / "zero.onnx",
                       [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
                        helper.make_node("Relu", ["c"], ["r"]),
                        helper.make_node("Flatten", ["r"], ["f"]),
                        helper.make_node("Gemm", ["f", "wf"], ["y"], transB=1)],
                       [1, 1, 8, 8], [1, 10], [w, b, wf])
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).uniform(0, 1, (3, 1, 8, 8)).astype(np.float32))
    assert run_cli("compile", model, "-s", "bwq", "-o", tmp_path / "out")[0] == 0
    outputs = []
    for backend in ("golden", "executor"):
        code, err = run_cli("run", tmp_path / "out", "--input", x, "-o",
                            tmp_path / f"{backend}.npz", "-b", backend)
        assert code == 0, err
        outputs.append(np.load(tmp_path / f"{backend}.npz")["output_int"])
    np.testing.assert_array_equal(*outputs)
