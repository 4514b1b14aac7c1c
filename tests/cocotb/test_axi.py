"""The AXI variant (``bitline verilog --bus axi``) end to end with cocotbext-axi.

The digits CNN (the bwq3 bundle on :data:`bitline.sim.rtl.DIGITS_CONFIG`, emulated
crossbars) runs through AXI4-Lite and AXI4-Stream only: first without backpressure (every
counter equal to the performance model, cycles included), then with a seeded random pause
on every channel (AW, W, B, AR, R, image, input, output: outputs still equal to golden, OU
reads, conversions and reduction operands equal to the model, cycles within
``[model, model + stall_cycles]``). The bench is ``bitline.sim.cocotb.tb_axi``; it also checks
``tlast`` framing and the SLVERR / DECERR answers. Verilator only (the digits design).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bitline.hw.io.axi import AxiAccelerator, AxiTop
from bitline.hw.toolchain.verilog import port_table
from bitline.sim.cocotb.runner import build_and_test, component_verilog
from bitline.sim.rtl import DIGITS_CONFIG, design_unit_entries

from support.e2e import verilator_only

TOPLEVEL = "bitline_axi"


def _design(program, folder):
    """Verilog of the AXI top for the bundle's config and a .vlt making only ports public."""
    top = AxiTop(AxiAccelerator(DIGITS_CONFIG, "emulated",
                                unit_entries=design_unit_entries(DIGITS_CONFIG, [program])))
    verilog = folder / f"{TOPLEVEL}.v"
    verilog.write_text(component_verilog(top, TOPLEVEL))
    names = ["clk", "rst"] + [port["name"] for port in port_table(top)]
    vlt = folder / f"{TOPLEVEL}-ports.vlt"
    vlt.write_text("`verilator_config\n" + "".join(
        f'public_flat_rw -module "{TOPLEVEL}" -var "{name}"\n' for name in names))
    return verilog, vlt


@pytest.mark.cocotb
@pytest.mark.slow
@verilator_only
def test_digits_cnn_through_axi_with_random_backpressure(workloads, tmp_path):
    bundle_dir, program, x_path = workloads.digits()
    assert program.config == DIGITS_CONFIG
    x1 = tmp_path / "x1.npy"
    np.save(x1, np.load(x_path)[:1])
    verilog, vlt = _design(program, tmp_path)
    spec = {"config": DIGITS_CONFIG.to_dict(), "max_vectors": None, "runs": [
        {"bundle": str(bundle_dir), "input": str(x1), "pause": 0.0, "seed": 0},
        {"bundle": str(bundle_dir), "input": str(x1), "pause": 0.3, "seed": 1},
    ]}
    spec_path = tmp_path / "run.json"
    spec_path.write_text(json.dumps(spec))
    result = build_and_test(verilog, TOPLEVEL, "bitline.sim.cocotb.tb_axi",
                            extra_env={"BITLINE_RUN": str(spec_path)},
                            verilator_args=["--no-public-flat-rw", str(vlt)])
    assert result.tests == 1 and result.failed == 0
    print(f"\naxi digits: build {result.build_seconds:.1f} s "
          f"({'cached' if result.cached else 'fresh'}), run {result.test_seconds:.1f} s")
