"""Write the generated sections of docs/integration.md from the hardware's own definitions.

Each section sits between ``<!-- begin NAME -->`` / ``<!-- end NAME -->`` markers
(:mod:`readme_sections`) and is rebuilt from:

* ``integration-ports`` -- the port table of the AXI top (:func:`bitline.hw.toolchain.axi_ports.axi_ports`)
  of the reference config (the ``bwq`` preset);
* ``integration-streams`` -- the AXI interfaces (:func:`~bitline.hw.toolchain.axi_ports.axi_interfaces`);
* ``integration-registers`` -- the register map, CTRL / STATUS bits, error codes and AXI
  responses (:mod:`bitline.hw.spec.registers`, :class:`bitline.hw.io.axi.AxiResp`);
* ``integration-waves`` -- AXI4-Lite handshakes recorded from the Amaranth simulation of
  :class:`~bitline.hw.io.axi.AxiLiteBridge` in front of the real
  :class:`~bitline.hw.core.host_interface.HostInterface` (ASCII and WaveDrom);
* ``integration-sequence`` -- the register accesses of the project's host driver
  (:class:`bitline.sw.host.driver.Device`) loading an image, running a layer job and reading
  the counters, recorded on a transport that logs them;
* ``integration-instance`` -- a Verilog instantiation template of the AXI top.

``python scripts/integration_doc.py`` rewrites the file; ``--check`` exits 1 when it is out
of date (tests/unit/test_integration_doc.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_sections import read_section, replace_section  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "integration.md"
#: The reference configuration of the tables' widths.
PRESET = "bwq"


def _reference_top():
    from bitline.hw.io.axi import AxiAccelerator, AxiTop
    from bitline.hw.spec.config import preset

    top = AxiTop(AxiAccelerator(preset(PRESET)))
    # only the signatures are read: never elaborated, so no "created but never used"
    for elaboratable in (top, top.core, top.core.accelerator):
        elaboratable._MustUse__silence = True
    return top


def ports_section(top) -> str:
    from bitline.hw.toolchain.axi_ports import axi_ports

    lines = [f"Widths for the `{PRESET}` preset (`bitline verilog --bus axi --preset {PRESET}`"
             "; the JSON next to the Verilog has them for every build).", "",
             "| port | dir | width | description |", "|---|---|---|---|"]
    for port in axi_ports(top):
        direction = {"input": "in", "output": "out"}[port["direction"]]
        lines.append(f"| `{port['name']}` | {direction} | {port['width']} "
                     f"| {port['description']} |")
    return "\n".join(lines)


def streams_section(top) -> str:
    from bitline.hw.toolchain.axi_ports import axi_interfaces

    lines = ["| interface | kind | direction | data bits | lanes x lane bits | carries |",
             "|---|---|---|---|---|---|"]
    for name, info in axi_interfaces(top).items():
        bits = info.get("tdata_bits", info.get("data_bits"))
        lanes = f"{info['lanes']} x {info['lane_bits']}" if "lanes" in info else "-"
        lines.append(f"| `{name}` | {info['kind']} | {info['direction']} | {bits} | {lanes} "
                     f"| {info['carries']} |")
    return "\n".join(lines)


def registers_section() -> str:
    from bitline.hw.io.axi import AxiResp
    from bitline.hw.spec.registers import COUNTERS, Ctrl, ErrorCode, Register, Status
    from bitline.hw.toolchain.cheader import ERROR_SHIFT, PREFIX, register_access

    counters = {int(low): name for name, low in COUNTERS}
    lines = ["| register | byte offset | word | access | C macro |", "|---|---|---|---|---|"]
    for register in Register:
        note = ""
        if int(register) in counters:
            note = f" (counter `{counters[int(register)]}`, low word)"
        elif int(register) - 1 in counters:
            note = f" (counter `{counters[int(register) - 1]}`, high word)"
        lines.append(f"| {register.name}{note} | 0x{4 * register:03x} | {int(register)} | "
                     f"{register_access(register)} | `{PREFIX}REG_{register.name}` |")
    lines += ["", "| CTRL bit | value | | STATUS bit | value |", "|---|---|---|---|---|"]
    ctrl, status = list(Ctrl), list(Status)
    for row in range(max(len(ctrl), len(status))):
        left = f"{ctrl[row].name} | {int(ctrl[row])}" if row < len(ctrl) else " | "
        right = f"{status[row].name} | {int(status[row])}" if row < len(status) else " | "
        lines.append(f"| {left} | | {right} |")
    lines.append(f"| | | | error code | bits {ERROR_SHIFT}..{ERROR_SHIFT + 7} |")
    lines += ["", "| error code | value |", "|---|---|"]
    lines += [f"| {code.name} | {int(code)} |" for code in ErrorCode]
    lines += ["", "| AXI response | value |", "|---|---|"]
    lines += [f"| {resp.name} | {int(resp)} |" for resp in AxiResp]
    return "\n".join(lines)


def _record_bridge() -> dict[str, list[int]]:
    """Simulate bridge + host: a write with W two cycles before AW and a late bready, then a
    read of the register written; return the handshake signals per cycle."""
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, connect, flipped
    from amaranth.sim import Simulator

    from bitline.hw.core.host_interface import HostInterface
    from bitline.hw.io.axi import AXI4LiteSignature, AxiLiteBridge
    from bitline.hw.spec.config import preset
    from bitline.hw.spec.registers import Register

    class Dut(wiring.Component):
        def __init__(self):
            self.bridge = AxiLiteBridge()
            super().__init__({"axil": In(AXI4LiteSignature())})

        def elaborate(self, platform):
            m = Module()
            m.submodules.bridge = self.bridge
            m.submodules.host = host = HostInterface(preset(PRESET))
            connect(m, flipped(self.axil), self.bridge.axil)
            connect(m, self.bridge.csr, host.csr)
            return m

    dut = Dut()
    bus = dut.axil
    names = ["awvalid", "awready", "wvalid", "wready", "bvalid", "bready", "arvalid",
             "arready", "rvalid", "rready"]
    # stimulus per cycle: (awvalid, wvalid, bready, arvalid, rready); each valid drops
    # after its handshake (below)
    plan = {1: dict(wvalid=1), 3: dict(awvalid=1), 6: dict(bready=1), 8: dict(arvalid=1),
            10: dict(rready=1)}
    trace = {name: [] for name in names + ["csr_w_en", "csr_r_en", "rdata"]}

    async def bench(ctx):
        ctx.set(bus.awaddr, 4 * Register.LAYER)
        ctx.set(bus.araddr, 4 * Register.LAYER)
        ctx.set(bus.wdata, 5)
        ctx.set(bus.wstrb, 0b1111)
        for cycle in range(13):
            for name, value in plan.get(cycle, {}).items():
                ctx.set(getattr(bus, name), value)
            for name in names:
                trace[name].append(int(ctx.get(getattr(bus, name))))
            trace["csr_w_en"].append(int(ctx.get(dut.bridge.csr.w_en)))
            trace["csr_r_en"].append(int(ctx.get(dut.bridge.csr.r_en)))
            trace["rdata"].append(int(ctx.get(bus.rdata)) if ctx.get(bus.rvalid) else None)
            moved = {name: ctx.get(getattr(bus, name + "valid"))
                     and ctx.get(getattr(bus, name + "ready")) for name in ("aw", "w", "ar")}
            done = {name: ctx.get(getattr(bus, name + "valid"))
                    and ctx.get(getattr(bus, name + "ready")) for name in ("b", "r")}
            await ctx.tick()
            for name, went in moved.items():
                if went:
                    ctx.set(getattr(bus, name + "valid"), 0)
            for name, went in done.items():
                if went:
                    ctx.set(getattr(bus, name + "ready"), 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return trace


def waves_section() -> str:
    trace = _record_bridge()
    cycles = len(trace["awvalid"])
    lines = ["```", "cycle     " + "".join(f"{c:<3}" for c in range(cycles))]
    for name, values in trace.items():
        if name == "rdata":
            row = "".join(f"{v:<3}" if v is not None else ".  " for v in values)
        else:
            row = "".join("‾‾‾" if v else "___" for v in values)
        lines.append(f"{name:<10}{row}")
    lines.append("```")
    signals = [{"name": "clk", "wave": "p" + "." * (cycles - 1)}]
    for name, values in trace.items():
        if name == "rdata":
            wave = "".join("=" if v is not None else "x" for v in values)
            signals.append({"name": name, "wave": wave,
                            "data": [str(v) for v in values if v is not None][:1]})
            continue
        wave = "".join(str(v) if i == 0 or v != values[i - 1] else "."
                       for i, v in enumerate(values))
        signals.append({"name": name, "wave": wave})
    lines += ["", "WaveDrom (paste into https://wavedrom.com/editor.html):", "",
              "```wavedrom", json.dumps({"signal": signals}), "```"]
    return "\n".join(lines)


class _RecordingTransport:
    """A :class:`~bitline.sw.host.driver.Transport` that logs every access and answers like
    a device that finishes each image and job at once."""

    def __init__(self, config):
        from bitline.hw.spec.image import FORMAT_VERSION, MAGIC_WORD, config_digest_bytes
        from bitline.hw.spec.registers import Register, Status

        digest = config_digest_bytes(config)
        self.values = {Register.ID: MAGIC_WORD, Register.VERSION: FORMAT_VERSION,
                       Register.STATUS: 0, Register.N_LAYERS: 0}
        for word in range(4):
            self.values[Register.DIGEST0 + word] = int.from_bytes(
                digest[4 * word:4 * word + 4], "little")
        self.status = Status
        self.log: list[tuple] = []

    def write_register(self, register, value):
        from bitline.hw.spec.registers import Ctrl, Register

        self.log.append(("write", Register(register), int(value)))
        if register == Register.CTRL and value & Ctrl.LOAD:
            self.values[Register.STATUS] = int(self.status.LOADING)

    def read_register(self, register):
        from bitline.hw.spec.registers import Register

        value = self.values.get(Register(register), 0)
        self.log.append(("read", Register(register), value))
        return value

    def send_image(self, image):
        from bitline.hw.spec.registers import Register

        self.log.append(("image", len(image)))
        self.values[Register.STATUS] = int(self.status.PROGRAMMED)

    def start_job(self, codes, n_outputs):
        from bitline.hw.spec.registers import Ctrl, Register

        self.write_register(Register.CTRL, Ctrl.START)
        self.log.append(("job", len(codes), n_outputs))
        self.values[Register.STATUS] = int(self.status.PROGRAMMED | self.status.DONE)
        return np.zeros(n_outputs, dtype=np.int64)


def sequence_section() -> str:
    from bitline.hw.spec.config import preset
    from bitline.hw.spec.registers import Ctrl, Status
    from bitline.sw.host.driver import Device

    config = preset(PRESET)
    transport = _RecordingTransport(config)
    device = Device(transport)
    device.check_config(config)
    device.program(bytes(1000))
    vectors, inputs, outputs = 4, 9, 10
    device.run_layer_job(0, np.zeros((vectors, inputs), dtype=np.int64), outputs)
    device.counters()
    lines = [f"Recorded from `bitline.sw.host.driver.Device` (check the hardware, load a "
             f"1000-byte image, run layer 0 with {vectors} vectors of {inputs} codes and "
             f"{outputs} outputs, read the counters); offsets are AXI4-Lite byte addresses.",
             "", "| step | access | register | offset | value | what |", "|---|---|---|---|---|---|"]
    for step, entry in enumerate(transport.log, 1):
        if entry[0] == "image":
            lines.append(f"| {step} | stream | | | {entry[1]} bytes | `s_axis_image`: image.bin,"
                         f" `tlast` on the last byte |")
            continue
        if entry[0] == "job":
            lines.append(f"| {step} | stream | | | {entry[1]} / {entry[2]} beats | "
                         f"`s_axis_input` in, `m_axis_output` out (`tlast` on the job's last "
                         f"output beat) |")
            continue
        kind, register, value = entry
        what = ""
        if register.name == "CTRL":
            what = " ".join(flag.name for flag in Ctrl if value & flag)
        elif register.name == "STATUS":
            what = " ".join(flag.name.lower() for flag in Status if value & flag) or "idle"
        lines.append(f"| {step} | {kind} | {register.name} | 0x{4 * register:03x} | "
                     f"0x{value:x} | {what} |")
    return "\n".join(lines)


def instance_section(top) -> str:
    from bitline.hw.toolchain.axi_ports import axi_ports

    ports = axi_ports(top)
    width = max(len(port["name"]) for port in ports)
    lines = ["```verilog", "bitline_top u_bitline ("]
    for index, port in enumerate(ports):
        comma = "," if index < len(ports) - 1 else ""
        lines.append(f"    .{port['name']:<{width}} ({port['name']}){comma}")
    lines += [");", "```"]
    return "\n".join(lines)


def sections() -> dict[str, str]:
    """``{section name: text}`` of every generated section."""
    top = _reference_top()
    return {
        "integration-ports": ports_section(top),
        "integration-streams": streams_section(top),
        "integration-registers": registers_section(),
        "integration-waves": waves_section(),
        "integration-sequence": sequence_section(),
        "integration-instance": instance_section(top),
    }


def stale(path: Path = DOC, generated: dict[str, str] | None = None) -> list[str]:
    """Names of the sections of ``path`` that differ from ``generated`` (default
    :func:`sections`)."""
    generated = sections() if generated is None else generated
    return [name for name, body in generated.items()
            if (read_section(name, path) or "").strip() != body.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/integration.md is out of date")
    args = parser.parse_args(argv)
    if args.check:
        names = stale()
        if names:
            print(f"out of date: {', '.join(names)}; run python scripts/integration_doc.py")
            return 1
        return 0
    for name, body in sections().items():
        replace_section(name, body, DOC)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
