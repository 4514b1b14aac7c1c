"""Generated Verilog: port description, Verilator lint, Yosys synthesis, `bitline verilog`."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from bitline.hw.toolchain.tools import (
    VERILATOR_WAIVERS,
    verilator_env,
    verilator_lint,
    yosys_command,
    yosys_synth,
)
from bitline.hw.toolchain.verilog import TIMESCALE, check_top_name, write_verilog
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
    assert design.filelist.read_text().split() == [str(design.verilog.resolve())]
    ports = {port["name"]: port for port in description["ports"]}
    text = design.verilog.read_text()
    for name in ("csr__addr", "program__payload", "inputs__valid", "outputs__payload",
                 "xbars__1__read__strobe", "xbars__0__result__codes", "xbars__1__write__levels"):
        assert name in ports and name in text
    payload = ports["outputs__payload"]
    assert {key: payload[key] for key in ("name", "direction", "width", "signed")} == {
        "name": "outputs__payload", "direction": "output", "width": config.acc_bits,
        "signed": True}
    assert ports["xbars__0__result__codes"]["direction"] == "input"
    assert ports["xbars__0__read__dac"]["width"] == config.ou_rows * config.dac_bits
    emulated = designs["full-adc", "emulated"]
    names = {p["name"] for p in json.loads(emulated.description.read_text())["ports"]}
    assert not any(name.startswith("xbars") for name in names)


def verilog_ports(text, top):
    """``{name: (direction, width)}`` of ``top``'s port declarations in Yosys' Verilog."""
    module = re.search(rf"^module {top}\(.*?^endmodule", text, re.S | re.M).group(0)
    return {name: (direction, int(high) + 1 if high else 1) for direction, high, name in
            re.findall(r"^\s*(input|output)\s+(?:signed\s+)?(?:\[(\d+):0\]\s+)?(\w+);",
                       module, re.M)}


@pytest.mark.parametrize("key", DESIGNS[:2], ids=["-".join(key) for key in DESIGNS[:2]])
def test_description_names_every_verilog_port(designs, key):
    """Cross-check: the JSON's ports are exactly the module's declarations (read back from
    the Verilog text), clk and rst included; each has a description, streams their roles."""
    design = designs[key]
    description = json.loads(design.description.read_text())
    declared = verilog_ports(design.verilog.read_text(), design.top)
    listed = {port["name"]: (port["direction"], port["width"]) for port in description["ports"]}
    assert listed == declared
    assert [port["name"] for port in description["ports"][:2]] == ["clk", "rst"]
    assert description["reset"] == {"port": "rst", "polarity": "active-high",
                                    "synchronous": True}
    # a synchronous reset: no always block is sensitive to rst
    assert "posedge rst" not in design.verilog.read_text()
    assert all(len(port["description"]) > 10 for port in description["ports"])
    streams = description["streams"]
    assert set(streams) == {"program", "inputs", "outputs"}
    assert streams["outputs"]["direction"] == "output"
    assert streams["inputs"]["payload"] == "inputs__payload"
    roles = {port["name"]: (port.get("stream"), port.get("role"))
             for port in description["ports"]}
    assert roles["outputs__ready"] == ("outputs", "ready")
    assert roles["program__payload"] == ("program", "payload")
    assert declared["outputs__ready"][0] == "input" and declared["inputs__ready"][0] == "output"


def test_verilog_has_a_timescale_and_the_filelist_works_from_any_directory(designs, tmp_path):
    design = designs["full-adc", "emulated"]
    assert design.verilog.read_text().splitlines()[0] == TIMESCALE
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    process = subprocess.run(
        ["verilator", "--lint-only", "-Wno-fatal", "--top-module", design.top, "-f",
         str(design.filelist.resolve())], cwd=elsewhere, env=verilator_env(),
        capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]


@pytest.mark.parametrize("name", ["module", "wire", "9top", "my-top", "top name", ""])
def test_top_name_must_be_a_verilog_identifier(name, tmp_path, capsys):
    with pytest.raises(ValueError, match="Verilog"):
        check_top_name(name)
    toml = write_toml(tmp_path / "hw.toml", lint_config())
    assert main(["verilog", "--config", str(toml), "--top", name,
                 "-o", str(tmp_path / "out")]) == 2
    assert "top module name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_top_name_accepts_identifiers():
    for name in ("bitline_top", "_x", "Top$1", "module_"):
        assert check_top_name(name) == name


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
    # the units the program uses (the config file pins n_xbars = 4: the bundle keeps it)
    from bitline.sw.bundle import read_bundle

    used = read_bundle(bundle).program.xbars_used
    assert description["config"]["n_xbars"] == TINY_MLP_CONFIG.n_xbars >= used
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


def test_cli_verilog_is_sized_by_the_bundle(tmp_path, capsys):
    """With --bundle the design has the bundle's config and entry memories exactly as deep
    as the program's busiest unit needs (counted here from the entry table); a base config
    that leaves the sized fields unset is sized down to the bundle, each change reported;
    one that sets them to other values is refused."""
    from bitline.sw.bundle import read_bundle

    bundle = tmp_path / "bundle"
    toml = write_toml(tmp_path / "hw.toml", TINY_MLP_CONFIG)
    assert main(["compile", str(tiny_mlp_onnx(tmp_path / "tiny.onnx")), "-s", "bwq", "--quant",
                 "bwq3", "--config", str(toml), "-o", str(bundle)]) == 0
    program = read_bundle(bundle).program
    issued = np.zeros(program.config.n_xbars, dtype=int)
    for layer in program.layers:
        for entry in layer.entries:
            if entry["slice_hi"] > entry["slice_lo"]:
                issued[entry["xbar"]] += 1
    big = write_toml(tmp_path / "big.toml", TINY_MLP_CONFIG.replace(
        n_xbars=program.config.n_xbars + 3, max_entries=program.config.max_entries + 100))
    capsys.readouterr()
    # sized fields the file sets are the user's: a bundle that differs is refused
    assert main(["verilog", "--bundle", str(bundle), "--config", str(big),
                 "-o", str(tmp_path / "out")]) == 2
    assert (f"n_xbars {program.config.n_xbars} (hardware {program.config.n_xbars + 3}, set "
            f"by the config file)") in capsys.readouterr().err
    # left unset (the bwq defaults: 16 units, 65536 entries), they are sized and reported
    from bitline.sw.flow.hardware import SIZED_FIELDS

    base = tmp_path / "base.toml"
    base.write_text("".join(line + "\n" for line in TINY_MLP_CONFIG.to_toml().splitlines()
                            if line.split(" ")[0] not in SIZED_FIELDS))
    assert main(["verilog", "--bundle", str(bundle), "--config", str(base), "--json",
                 "-o", str(tmp_path / "out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    description = json.loads((tmp_path / "out" / "bitline_top.json").read_text())
    assert description["config"] == program.config.to_dict()
    assert description["unit_entries"] == printed["unit_entries"] == issued.max()
    assert printed["n_xbars"] == program.config.n_xbars < 16
    assert f"n_xbars sized from 16 to {program.config.n_xbars} by the bundle" \
           in printed["sizing"]
    assert any(note.startswith("max_entries sized") for note in printed["sizing"])
    assert main(["verilog", "--bundle", str(bundle), "-o", str(tmp_path / "out2")]) == 0
    assert "wrote" in capsys.readouterr().out
    alone = json.loads((tmp_path / "out2" / "bitline_top.json").read_text())
    assert alone["unit_entries"] == issued.max() and alone["config"] == description["config"]
