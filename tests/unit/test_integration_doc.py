"""docs/integration.md: its generated sections equal what scripts/integration_doc.py builds.

The tables (ports, streams, registers, the host driver's register sequence, the instance
template) and the AXI4-Lite timing diagram come from the hardware's definitions and the
Amaranth simulation of the bridge; a change to any of them without re-running the script
fails here. The last test shows the check bites: an edited table is reported stale.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("integration_doc",
                                                  ROOT / "scripts" / "integration_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sections(script):
    return script.sections()


def test_generated_sections_are_current(script, sections):
    text = (ROOT / "docs" / "integration.md").read_text()
    for name, body in sections.items():
        assert f"<!-- begin {name} -->\n{body.strip()}\n<!-- end {name} -->" in text, (
            f"section {name} is stale: run python scripts/integration_doc.py")


def test_sections_name_every_register_port_and_code(sections):
    from bitline.hw.io.axi import AxiResp
    from bitline.hw.spec.registers import ErrorCode, Register

    for register in Register:
        assert f"| {register.name}" in sections["integration-registers"]
        assert f"0x{4 * register:03x}" in sections["integration-registers"]
    for code in ErrorCode:
        assert f"| {code.name} | {int(code)} |" in sections["integration-registers"]
    for resp in AxiResp:
        assert f"| {resp.name} | {int(resp)} |" in sections["integration-registers"]
    for role in ("awaddr", "wstrb", "bresp", "araddr", "rresp"):
        assert f"`s_axil_{role}`" in sections["integration-ports"]
    for stream in ("s_axis_image", "s_axis_input", "m_axis_output"):
        for role in ("tdata", "tvalid", "tready", "tlast"):
            assert f"`{stream}_{role}`" in sections["integration-ports"]
            assert f".{stream}_{role}" in sections["integration-instance"]


def test_an_edited_table_is_reported_stale(script, sections, tmp_path):
    copy = tmp_path / "integration.md"
    text = (ROOT / "docs" / "integration.md").read_text()
    copy.write_text(text.replace("| CTRL | 0x008 |", "| CTRL | 0x00c |", 1))
    assert script.stale(copy, sections) == ["integration-registers"]
    copy.write_text(text)
    assert script.stale(copy, sections) == []
