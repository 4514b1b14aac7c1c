"""The CLI's conventions: same flag, same meaning; choices; one error style; exit codes;
JSON shapes; presets, config show, quant template; bundle detection in ``run``; tables that
never cut a name."""

from __future__ import annotations

import json

import click
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from bitline.hw.spec.config import PRESETS, AcceleratorConfig
from bitline.sim import backends
from bitline.sw.cli import cli, main

#: Commands that print results: every one has --json and -q/--quiet.
PRINTING = ["info", "run", "compile", "report", "compare", "accuracy", "sweep", "presets",
            "verilog", "fpga", "board run", "config show"]
#: Commands that need hardware: every one has --config and --preset.
HARDWARE = ["compile", "compare", "accuracy", "sweep", "verilog", "fpga", "config show"]
#: Commands that write files: -o/--output.
WRITING = ["run", "compile", "verilog", "fpga", "board run", "quant template"]


def command(path: str) -> click.Command:
    ctx = click.Context(cli)
    found = cli
    for name in path.split():
        found = found.get_command(ctx, name)
        assert found is not None, path
    return found


def flags(path: str) -> set[str]:
    return {opt for param in command(path).params for opt in param.opts + param.secondary_opts}


@pytest.mark.parametrize("path", PRINTING)
def test_printing_commands_have_json_and_quiet(path):
    assert {"--json", "--quiet", "-q"} <= flags(path)


@pytest.mark.parametrize("path", HARDWARE)
def test_hardware_commands_have_config_and_preset(path):
    assert {"--config", "--preset"} <= flags(path)
    preset = next(p for p in command(path).params if p.name == "preset_name")
    assert set(preset.type.choices) == set(PRESETS)          # listed in the help


@pytest.mark.parametrize("path", WRITING)
def test_writing_commands_have_output(path):
    assert {"-o", "--output"} <= flags(path)


def test_one_meaning_for_short_flags():
    for path in ("compile", "compare", "accuracy", "sweep", "run", "info"):
        options = {opt: param.name for param in command(path).params for opt in param.opts}
        if "-q" in options:
            assert options["-q"] == "quiet", path
        if "-s" in options:
            assert options["-s"] == "strategy", path
        if "-d" in options:
            assert options["-d"] == "dataset", path
    assert "--calib-dataset" not in flags("compile")


@pytest.mark.parametrize("argv, value", [
    (["compile", "digits-cnn", "-s", "magic", "-o", "o"], "'magic'"),
    (["compile", "digits-cnn", "-s", "bwq", "--preset", "nope", "-o", "o"], "'nope'"),
    (["compare", "digits-cnn", "--strategies", "isaac,warp"], "warp"),
    (["fpga", "--board", "breadboard", "-o", "o"], "'breadboard'"),
    (["run", "digits-cnn", "-i", "x.npy", "-o", "y.npz", "-b", "quantum"], "'quantum'"),
    (["config", "show", "--preset", "tiny"], "'tiny'"),
    (["compile", "digits-cnn", "-s", "bwq", "--bogus", "-o", "o"], "--bogus"),
    (["config", "show", "--config", "missing.toml"], "missing.toml"),
])
def test_usage_errors_exit_2_with_one_error_line(argv, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert value in err


def test_failed_run_exits_1(tmp_path, capsys, monkeypatch):
    def broken(target, x, options):
        raise RuntimeError("the simulator crashed")

    monkeypatch.setitem(backends.BACKENDS, "broken",
                        backends.Backend("broken", "model", broken))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8)))
    code = main(["run", "digits-cnn", "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npz"), "-b", "broken"])
    assert code == 1
    assert capsys.readouterr().err.startswith("error: backend 'broken': the simulator crashed")


def test_run_option_errors_name_the_option(tmp_path):
    target = backends.Target("m", model=object())
    with pytest.raises(ValueError, match="option max_vectors must be int, not 'many'"):
        backends.parse_run_options("rtl", {"max_vectors": "many"})
    assert backends.parse_run_options("rtl", {"seed": "7", "check": "yes"})["seed"] == 7
    with pytest.raises(ValueError, match="backend 'golden' needs a compiled bundle"):
        backends.run_backend("golden", target, np.zeros((1, 1)), {})


def invoke(*args) -> str:
    result = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_presets_lists_every_preset():
    text = invoke("presets")
    for name in PRESETS:
        assert name in text
    data = json.loads(invoke("presets", "--json"))
    assert [row["name"] for row in data["presets"]] == sorted(PRESETS)
    assert all(row["summary"] and row["config"] for row in data["presets"])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_show_round_trips_through_config(name, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(invoke("config", "show", "--preset", name))
    assert AcceleratorConfig.load(path) == PRESETS[name]
    again = invoke("config", "show", "--config", path, "--json")
    assert json.loads(again)["config"] == PRESETS[name].to_dict()


def test_quant_template_lists_every_layer_and_round_trips(tmp_path):
    from bitline.sw.flow import calibration_inputs
    from bitline.sw.models import resolve_model
    from bitline.sw.quant import load_spec, quantize_model

    path = tmp_path / "spec.toml"
    invoke("quant", "template", "digits-cnn", "-o", path)
    model = resolve_model("digits-cnn")
    spec = load_spec(path)
    assert list(spec.layers) == [layer.name for layer in model.compute_layers]
    calib_x, _ = calibration_inputs(model, "digits")
    ours, base = (quantize_model(model, s, calib_x) for s in (spec, "int8"))
    for name in spec.layers:
        np.testing.assert_array_equal(ours.layers[name].weight.values,
                                      base.layers[name].weight.values)
    # an edit takes effect: a 4-bit first layer
    first = next(iter(spec.layers))
    text = path.read_text().replace(f'[layers."{first}"]\nscheme = "int"\nbits = 8',
                                    f'[layers."{first}"]\nscheme = "int"\nbits = 4')
    path.write_text(text)
    assert load_spec(path).layers[first].weights.bits == 4
    assert main(["quant", "template", "digits-cnn", "--quant", "bwq3"]) == 2


def test_run_on_a_bundle_defaults_to_the_executor(tmp_path):
    from bitline.sw.datasets import load_dataset

    out = tmp_path / "bundle"
    compiled = json.loads(invoke("compile", "digits-cnn", "-s", "bwq", "--quant", "int4",
                                 "-o", out, "--json"))
    assert compiled["bundle"] == str(out) and compiled["crossbars"] > 0
    assert isinstance(compiled["sizing"], list) and "layers" in compiled["report"]
    np.save(tmp_path / "x.npy", load_dataset("digits", "test")[0][:2])
    shown = json.loads(invoke("run", out, "-i", tmp_path / "x.npy", "-o", tmp_path / "y.npz",
                              "--json"))
    assert shown["backend"] == "executor"
    assert [array["name"] for array in shown["arrays"]] == ["output", "output_int"]
    assert invoke("run", out, "-i", tmp_path / "x.npy", "-o", tmp_path / "z.npz", "-q") == ""


def test_compare_json_is_an_object_with_rows():
    data = json.loads(invoke("compare", "digits-cnn", "--strategies", "isaac,bwq",
                             "--no-baselines", "--json"))
    assert set(data) == {"model", "labels", "rows"}
    assert [row["strategy"] for row in data["rows"]] == ["isaac", "bwq"]
    assert all(isinstance(row["sizing"], list) for row in data["rows"])


LONG = "encoder.stage_three.block_seven.depthwise_separable_convolution_with_a_long_name"


def long_name_model(path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((3, 16)).astype(np.float32), "w")]
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w"], ["y"], name=LONG, transB=1)]
    graph = helper.make_graph(
        nodes, "long", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_tables_never_cut_a_long_layer_name(tmp_path):
    path = long_name_model(tmp_path / "long.onnx")
    assert LONG in invoke("info", path)
    assert any(LONG in line for line in invoke("info", path).splitlines())
    assert invoke("info", path, "-q") == ""


def test_run_help_lists_the_registry():
    from bitline.sw.cli.model import BACKEND_NAMES

    assert BACKEND_NAMES == tuple(backends.BACKENDS)
    help_text = " ".join(CliRunner().invoke(cli, ["run", "-h"]).output.split())
    for backend in backends.BACKENDS.values():
        assert backend.name in help_text
        for option in backend.options:
            assert option.name in help_text
