"""Generated Verilog: port description, Verilator lint, Yosys synthesis, `bitline verilog`."""

import json
import shutil

import pytest

from bitline.hw.toolchain.tools import (
    VERILATOR_WAIVERS,
    verilator_lint,
    yosys_command,
    yosys_synth,
)
from bitline.hw.toolchain.verilog import write_verilog
from bitline.sw.cli import main

from support.configs import TEST_CONFIGS, TINY_MLP_CONFIG, small_config
from support.networks import tiny_mlp_onnx


def lint_config(**overrides):
    """A small accelerator with small memories (fast lint / synthesis)."""
    return small_config(**{"max_layers": 2, "max_out_channels": 8, **overrides})


#: (geometry, crossbar mode) of the designs generated once for this module.
DESIGNS = [("full-adc", "emulated"), ("full-adc", "external"), ("ragged-2bit", "emulated")]


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    root = tmp_path_factory.mktemp("verilog")
    return {(name, crossbar): write_verilog(lint_config(**TEST_CONFIGS[name]),
                                            root / f"{name}-{crossbar}", crossbar=crossbar)
            for name, crossbar in DESIGNS}


def test_description_lists_ports_and_config(designs):
    config = lint_config(**TEST_CONFIGS["full-adc"])
    design = designs["full-adc", "external"]
    description = json.loads(design.description.read_text())
    assert description["config"] == config.to_dict()
    assert description["digest"] == config.digest
    assert design.filelist.read_text().split() == [design.verilog.name]
    ports = {port["name"]: port for port in description["ports"]}
    text = design.verilog.read_text()
    for name in ("csr__addr", "program__payload", "inputs__valid", "outputs__payload",
                 "xbars__1__read__strobe", "xbars__0__result__codes", "xbars__1__write__levels"):
        assert name in ports and name in text
    assert ports["outputs__payload"] == {"name": "outputs__payload", "direction": "output",
                                         "width": config.acc_bits, "signed": True}
    assert ports["xbars__0__result__codes"]["direction"] == "input"
    assert ports["xbars__0__read__dac"]["width"] == config.ou_rows * config.dac_bits
    emulated = designs["full-adc", "emulated"]
    names = {p["name"] for p in json.loads(emulated.description.read_text())["ports"]}
    assert not any(name.startswith("xbars") for name in names)


@pytest.mark.parametrize("key", DESIGNS, ids=["-".join(key) for key in DESIGNS])
def test_verilator_lint_all_warnings_with_waivers(designs, key):
    design = designs[key]
    result = verilator_lint([design.verilog], design.top)
    assert result.ok, result.log[-3000:]
    assert result.warnings == {}
    assert len(VERILATOR_WAIVERS) <= 6  # the documented, short waiver list


def test_verilator_lint_finds_problems_without_waivers(designs):
    design = designs["ragged-2bit", "emulated"]
    result = verilator_lint([design.verilog], design.top, waivers={})
    assert not result.ok
    assert set(result.warnings) <= set(VERILATOR_WAIVERS)


@pytest.mark.slow
def test_yosys_synthesis(designs):
    try:
        yosys_command()
    except RuntimeError as error:
        pytest.skip(str(error))
    design = designs["full-adc", "emulated"]
    result = yosys_synth([design.verilog], design.top, abc=False)
    assert result.ok, result.log[-3000:]
    assert "ERROR" not in result.log
    assert result.total_cells > 1000
    assert result.cells.get("$_DFFE_PP_", 0) + result.cells.get("$_SDFFE_PP0P_", 0) > 0


def write_toml(path, config):
    config.save(path)
    return path


def test_cli_verilog_from_config_and_preset_errors(tmp_path):
    config = lint_config()
    toml = write_toml(tmp_path / "hw.toml", config)
    assert main(["verilog", "--config", str(toml), "--crossbar", "external",
                 "-o", str(tmp_path / "out")]) == 0
    description = json.loads((tmp_path / "out" / "bitline_top.json").read_text())
    assert description["crossbar"] == "external" and description["config"] == config.to_dict()
    assert main(["verilog", "-o", str(tmp_path / "none")]) != 0
    assert main(["verilog", "--preset", "nope", "-o", str(tmp_path / "none")]) == 2


def test_cli_rejects_an_accumulator_too_narrow(tmp_path, capsys):
    toml = write_toml(tmp_path / "narrow.toml",
                      small_config(acc_bits=16, adc_bits=8, max_act_bits=8, max_weight_bits=2))
    assert main(["verilog", "--config", str(toml), "-o", str(tmp_path / "out")]) == 2
    assert "cannot hold one shift-and-add term" in capsys.readouterr().err


def test_cli_bundle_preloaded_and_too_few_crossbars(tmp_path, capsys):
    bundle = tmp_path / "bundle"
    toml = write_toml(tmp_path / "hw.toml", TINY_MLP_CONFIG)
    assert main(["compile", str(tiny_mlp_onnx(tmp_path / "tiny.onnx")), "-s", "bwq", "--quant",
                 "bwq3", "--config", str(toml), "-o", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["verilog", "--bundle", str(bundle), "-o", str(tmp_path / "out")]) == 0
    description = json.loads((tmp_path / "out" / "bitline_top.json").read_text())
    assert description["programmed"] is True
    used = description["config"]["n_xbars"]
    small = write_toml(tmp_path / "small.toml", TINY_MLP_CONFIG.replace(n_xbars=used - 1))
    assert main(["verilog", "--bundle", str(bundle), "--config", str(small),
                 "-o", str(tmp_path / "out2")]) == 2
    assert f"needs {used} crossbar units, the hardware has n_xbars = {used - 1}" in (
        capsys.readouterr().err)
    other = write_toml(tmp_path / "other.toml",
                       TINY_MLP_CONFIG.replace(n_xbars=used, adc_latency=2))
    assert main(["verilog", "--bundle", str(bundle), "--config", str(other),
                 "-o", str(tmp_path / "out3")]) == 2
    assert "adc_latency 1 (hardware 2)" in capsys.readouterr().err
    assert main(["verilog", "--bundle", str(bundle), "--unit-entries", "1",
                 "-o", str(tmp_path / "out4")]) == 2
    assert "its entry memory holds 1" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "out")
