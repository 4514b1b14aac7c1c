"""Icarus Verilog builds: Yosys' start-up trigger is set by ``initial #0`` (outputs defined at 0).

Yosys' Verilog starts each combinational process through a register initializer that Icarus 11
does not turn into an event; an FSM-decoded output then stays ``X`` after reset until the
state first changes (see :func:`bitline.sim.cocotb.runner.icarus_start_up`). The first test
checks the rewrite itself, the second runs a tiny Amaranth FSM on Icarus through the project's
runner. This file is also the cocotb test module of that run (:func:`busy_after_reset`, which
pytest does not collect: cocotb imports this file by its module name in the simulator).
"""

# No ``from __future__ import annotations``: wiring.Component reads the annotations as objects.
import re

import cocotb
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from bitline.sim.cocotb.runner import (
    build_and_test,
    component_verilog,
    icarus_start_up,
    missing_tools,
)


class FsmBusy(wiring.Component):
    """``busy`` is decoded from an FSM's state: 0 in IDLE, 1 for the one cycle after ``start``.

    The scheduler's ``busy`` has this shape; reset does not change the state register (it
    starts in IDLE), so only the start-up run of the combinational process defines ``busy``.
    """

    start: In(1)
    busy: Out(1)

    def elaborate(self, platform):
        m = Module()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.next = "IDLE"
        return m


def test_rewrite_changes_exactly_the_start_up_trigger():
    verilog = component_verilog(FsmBusy(), "fsm_busy")
    rewritten = icarus_start_up(verilog)
    pattern = r"  reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+)  = 0;"
    triggers = [line for line in verilog.splitlines() if re.fullmatch(pattern, line)]
    assert len(triggers) == 1  # one per module with combinational processes
    name = re.fullmatch(pattern, triggers[0]).group(1)
    assert rewritten == verilog.replace(
        triggers[0], f"  reg {name} ;\n  initial #0 {name} = 1'b0;")

    # Only that declaration: other registers keep their initializers, and a comment, a
    # wider register or another initial value is left alone.
    text = ("module m;\n"
            "  reg \\$auto$verilog_backend.cc:2355:dump_module$7  = 0;\n"
            "  reg state = 1'h0;\n"
            "  reg \\$auto$verilog_backend.cc:2355:dump_module$8  = 1;\n"
            "  reg [1:0] \\$auto$verilog_backend.cc:2355:dump_module$9  = 0;\n"
            "  // reg \\$auto$verilog_backend.cc:2355:dump_module$10  = 0;\n"
            "endmodule\n")
    assert icarus_start_up(text) == text.replace(
        "  reg \\$auto$verilog_backend.cc:2355:dump_module$7  = 0;\n",
        "  reg \\$auto$verilog_backend.cc:2355:dump_module$7 ;\n"
        "  initial #0 \\$auto$verilog_backend.cc:2355:dump_module$7 = 1'b0;\n")


@pytest.mark.cocotb
@pytest.mark.skipif(bool(missing_tools("icarus")),
                    reason=f"Icarus Verilog not installed: {', '.join(missing_tools('icarus'))}")
def test_fsm_output_is_defined_right_after_reset_on_icarus(monkeypatch, tmp_path):
    monkeypatch.setenv("BITLINE_SIM", "icarus")
    result = build_and_test(FsmBusy(), "fsm_busy", __name__, build_root=tmp_path)
    assert result.simulator == "icarus" and result.tests == 1 and result.failed == 0


@cocotb.test()
async def busy_after_reset(dut):
    """Two reset cycles, then ``busy`` must read 0 (not X) with ``start`` low."""
    dut.start.value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert dut.busy.value.is_resolvable, f"busy = {dut.busy.value} after reset"
    assert int(dut.busy.value) == 0
