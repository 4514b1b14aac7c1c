"""Generate the accelerator's Verilog, a filelist and a JSON description of its ports.

``bitline verilog`` (:mod:`bitline.sw.cli.hw`) calls :func:`write_verilog`; the lint and
synthesis tests use the same function, so every consumer sees one netlist (the cocotb bench
wraps the same :class:`~bitline.hw.core.top.Accelerator` in its harness,
:mod:`bitline.sim.rtl`). Output folder contents:

* ``<top>.v`` -- the whole design (Amaranth -> Yosys ``write_verilog``), starting with
  ```timescale 1ns / 1ps`` (:data:`TIMESCALE`; the design has no delays, the directive only
  keeps simulators that require one on every file, or warn when only some files have one,
  quiet);
* ``filelist.f`` -- the Verilog sources, one *absolute* path per line, so
  ``verilator -f OUT/filelist.f`` or ``iverilog -c OUT/filelist.f`` work from any working
  directory (both tools read ``-f`` paths relative to the working directory, not to the
  filelist); after moving the folder, regenerate it or use the file name itself, which is
  also the path relative to the filelist (Verilator's ``-F``);
* ``<top>.json`` -- ``top``, ``crossbar`` mode, ``config`` (the :class:`AcceleratorConfig`
  fields) and its ``digest``, ``unit_entries``, ``timing`` constants, the register map,
  ``clock`` / ``reset`` (port, edge, polarity, synchronous), ``streams`` (each valid/ready
  stream: its ``valid``, ``ready`` and ``payload`` ports, direction and what the payload
  carries) and ``ports``: every top-level port, ``clk`` and ``rst`` included, with
  :func:`port_table`'s fields plus ``kind`` and a one-line ``description``
  (docs/hardware.md, "Generated Verilog"); with ``bus="axi"`` also ``bus``, ``axi`` (the
  AXI interfaces: widths, lanes, responses) and ``register_offsets`` (byte offsets);
* ``<top>.core`` -- the FuseSoC core (CAPI2, :mod:`bitline.hw.toolchain.fusesoc`) and
  ``<top>_regs.h`` -- the C register map (:mod:`bitline.hw.toolchain.cheader`),
  docs/integration.md.

The top module name is checked with :func:`check_top_name` (a Verilog identifier that is no
keyword), before any elaboration.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from amaranth.hdl import Shape
from amaranth.lib import data, stream, wiring

from bitline.hw.core.memories import AcceleratorMemories
from bitline.hw.core.top import Accelerator
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.registers import Register
from bitline.hw.spec.timing import DRAIN_STAGES, drain_latency, pipeline_latency
from bitline.hw.toolchain.memory_init import convert_verilog

__all__ = ["GeneratedDesign", "port_table", "accelerator_ports", "check_top_name",
           "write_verilog", "DEFAULT_TOP", "TIMESCALE", "VERILOG_KEYWORDS", "BUSES"]

DEFAULT_TOP = "bitline_top"

#: Bus interfaces of the generated top (``--bus``): the native register bus and valid/ready
#: streams, or AXI4-Lite and AXI4-Stream (:mod:`bitline.hw.io.axi`).
BUSES = ("native", "axi")

#: First line of every generated Verilog file.
TIMESCALE = "`timescale 1ns / 1ps"

#: Reserved words of IEEE 1800-2017 (SystemVerilog, a superset of Verilog-2005's), which
#: Verilator, Yosys and vendor tools reject as a module name.
VERILOG_KEYWORDS = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic
before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle
checker class clocking cmos config const constraint context continue cover covergroup
coverpoint cross deassign default defparam design disable dist do edge else end endcase
endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
endmodule endpackage endprimitive endprogram endproperty endspecify endsequence endtable
endtask enum event eventually expect export extends extern final first_match for force
foreach forever fork forkjoin function generate genvar global highz0 highz1 if iff ifnone
ignore_bins illegal_bins implements implies import incdir include initial inout input inside
instance int integer interconnect interface intersect join join_any join_none large let
liblist library local localparam logic longint macromodule matches medium modport module
nand negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output
package packed parameter pmos posedge primitive priority program property protected pull0
pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase
randsequence rcmos real realtime ref reg reject_on release repeat restrict return rnmos
rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with scalared
sequence shortint shortreal showcancelled signed small soft solve specify specparam static
string strong strong0 strong1 struct super supply0 supply1 sync_accept_on sync_reject_on
table tagged task this throughout time timeprecision timeunit tran tranif0 tranif1 tri tri0
tri1 triand trior trireg type typedef union unique unique0 unsigned until until_with untyped
use uwire var vectored virtual void wait wait_order wand weak weak0 weak1 while wildcard wire
with within wor xnor xor
""".split())

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

#: One-line meaning of each accelerator port, by member path (``<u>`` stands for a unit
#: number). Stream members are described per stream in :data:`_STREAMS`.
_PORT_DESCRIPTIONS = {
    "csr__addr": "register bus: register address (docs/hardware.md register map)",
    "csr__w_en": "register bus: write csr__w_data to csr__addr this cycle",
    "csr__w_data": "register bus: write data",
    "csr__r_en": "register bus: read csr__addr; csr__r_data is valid the next cycle",
    "csr__r_data": "register bus: read data, one cycle after csr__r_en",
    "xbars__<u>__read__strobe": "unit <u> crossbar: one conversion cycle (OU read phase)",
    "xbars__<u>__read__row_group": "unit <u> crossbar: OU row group g (rows g*ou_rows ..)",
    "xbars__<u>__read__wordline_en": "unit <u> crossbar: bit k = row g*ou_rows+k is driven",
    "xbars__<u>__read__dac": "unit <u> crossbar: DAC slice of each OU row, row 0 lowest",
    "xbars__<u>__read__col_group": "unit <u> crossbar: OU column group h",
    "xbars__<u>__read__phase": "unit <u> crossbar: ADC a converts OU column phase*A + a",
    "xbars__<u>__read__adc_en": "unit <u> crossbar: bit a = ADC a converts (gated: code 0)",
    "xbars__<u>__result__valid": "unit <u> crossbar: codes valid, adc_latency cycles after "
                                 "the strobe",
    "xbars__<u>__result__codes": "unit <u> crossbar: ADC codes, adc_bits each, ADC 0 lowest",
    "xbars__<u>__write__en": "unit <u> crossbar: program row write__row this cycle",
    "xbars__<u>__write__row": "unit <u> crossbar: row being programmed",
    "xbars__<u>__write__levels": "unit <u> crossbar: cell levels of the row, cell_bits each, "
                                 "column 0 lowest",
}

#: What each stream of the accelerator carries (the payload's meaning).
_STREAMS = {
    "program": "image.bin bytes, in file order (the loader parses and checks them)",
    "inputs": "input codes of a layer job, vector by vector, input index order; one lane "
              "per copy of the layer (max_copies lanes, lane 0 lowest)",
    "outputs": "output values of a layer job, vector by vector, output channel order "
               "(signed; requantized codes or raw accumulators per the layer's mode); one "
               "lane per copy of the layer",
}


@dataclass
class GeneratedDesign:
    """Paths of a generated design."""

    verilog: Path
    filelist: Path
    description: Path
    top: str
    core: Path | None = None        # <top>.core (FuseSoC CAPI2, hw/toolchain/fusesoc.py)
    header: Path | None = None      # <top>_regs.h (C register map, hw/toolchain/cheader.py)
    bus: str = "native"


def check_top_name(name: str) -> str:
    """Return ``name`` if it is a Verilog identifier and no keyword; else ``ValueError``."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"top module name {name!r} is not a Verilog identifier (a letter or "
                         f"_ then letters, digits, _ or $)")
    if name in VERILOG_KEYWORDS:
        raise ValueError(f"top module name {name!r} is a (System)Verilog keyword")
    return name


def port_table(component: wiring.Component) -> list[dict]:
    """Return ``[{name, direction, width, signed}]`` for every port, in signature order.

    Only the signature's members (not ``clk`` / ``rst``, which Amaranth adds for the
    ``sync`` domain); :func:`accelerator_ports` adds those and the descriptions.
    """
    ports = []
    for path, member, value in component.signature.flatten(component):
        shape = Shape.cast(member.shape)
        port = {
            "name": "__".join(str(part) for part in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": shape.width,
            "signed": shape.signed,
        }
        if isinstance(member.shape, data.ArrayLayout):
            # lanes (the accelerator's copies, docs/hardware.md "Copies"): lane 0 lowest
            element = Shape.cast(member.shape.elem_shape)
            port.update(signed=element.signed, lanes=member.shape.length)
        ports.append(port)
    return ports


def _stream_info(component: wiring.Component) -> dict:
    """``{stream name: {direction, valid, ready, payload, ...}}`` of the stream members."""
    streams = {}
    for name, member in component.signature.members.items():
        if not (member.is_signature and isinstance(member.signature, stream.Signature)):
            continue
        # In(stream): the component is the receiver (valid and payload are its inputs).
        receiving = member.flow == wiring.In
        streams[name] = {
            "direction": "input" if receiving else "output",
            "protocol": "valid/ready: one payload moves at each rising clk edge at which "
                        "valid and ready are both high",
            "valid": f"{name}__valid", "ready": f"{name}__ready",
            "payload": f"{name}__payload",
            "carries": _STREAMS.get(name, ""),
        }
    return streams


def accelerator_ports(component: wiring.Component) -> list[dict]:
    """Return every top-level port of the generated accelerator, ``clk`` and ``rst`` first.

    Each entry: :func:`port_table`'s ``name``, ``direction``, ``width``, ``signed`` plus
    ``kind`` (``clock``, ``reset``, ``stream`` or ``signal``), ``description`` (one line),
    and for stream members ``stream`` (the stream's name) and ``role`` (``valid``,
    ``ready`` or ``payload``).

    Raises
    ------
    ValueError
        If a port has no description (a signature member added without documenting it).
    """
    ports = [
        {"name": "clk", "direction": "input", "width": 1, "signed": False, "kind": "clock",
         "description": "clock; every register samples on its rising edge"},
        {"name": "rst", "direction": "input", "width": 1, "signed": False, "kind": "reset",
         "description": "reset, active high, synchronous (sampled on the rising clk edge); "
                        "hold for at least one cycle"},
    ]
    streams = _stream_info(component)
    for port in port_table(component):
        name = port["name"]
        head, _, role = name.partition("__")
        if head in streams:
            info = streams[head]
            what = {"valid": "the payload is offered", "ready": "the receiver takes it",
                    "payload": info["carries"]}[role]
            port.update(kind="stream", stream=head, role=role,
                        description=f"{head} stream ({info['direction']}) {role}: {what}")
        else:
            key = re.sub(r"^xbars__\d+__", "xbars__<u>__", name)
            if key not in _PORT_DESCRIPTIONS:
                raise ValueError(f"port {name} has no description in "
                                 f"bitline.hw.toolchain.verilog._PORT_DESCRIPTIONS")
            unit = name.split("__")[1] if key != name else ""
            port.update(kind="signal",
                        description=_PORT_DESCRIPTIONS[key].replace("<u>", unit))
        ports.append(port)
    return ports


def write_verilog(config: AcceleratorConfig, out_dir: str | Path, *,
                  crossbar: str = "emulated", memories: AcceleratorMemories | None = None,
                  unit_entries: int | None = None, top: str = DEFAULT_TOP,
                  log: Callable[[str], None] | None = None,
                  bus: str = "native") -> GeneratedDesign:
    """Elaborate :class:`~bitline.hw.core.top.Accelerator` and write it to ``out_dir``.

    Parameters
    ----------
    log:
        Called with a line before each long step (elaboration and conversion, writing).
    bus:
        ``"native"`` (the register bus and valid/ready streams of
        :class:`~bitline.hw.core.top.Accelerator`) or ``"axi"`` (AXI4-Lite and AXI4-Stream,
        :class:`bitline.hw.io.axi.AxiTop`; the JSON gets ``bus``, ``axi`` and
        ``register_offsets``). Either way ``<top>.core`` (FuseSoC) and ``<top>_regs.h`` (C)
        are written too (docs/integration.md).

    Raises
    ------
    ValueError
        For a top name that is no Verilog identifier (:func:`check_top_name`), or a
        configuration (or program memories) the hardware cannot hold exactly.
    """
    check_top_name(top)
    if bus not in BUSES:
        raise ValueError(f"bus must be one of {BUSES}, not {bus!r}")
    log = log or (lambda message: None)
    out_dir = Path(out_dir)
    if bus == "axi":
        from bitline.hw.io.axi import AxiAccelerator, AxiTop

        design = AxiTop(AxiAccelerator(config, crossbar, memories=memories,
                                       unit_entries=unit_entries))
    else:
        design = Accelerator(config, crossbar=crossbar, memories=memories,
                             unit_entries=unit_entries)
    log(f"converting {config.n_xbars} units to Verilog (Amaranth, Yosys)")
    text = convert_verilog(design, name=top, emit_src=False)  # fast, compact memory init
    log(f"writing {len(text) / 1e6:.1f} MB of Verilog")
    out_dir.mkdir(parents=True, exist_ok=True)
    verilog_path = (out_dir / f"{top}.v").resolve()
    verilog_path.write_text(f"{TIMESCALE}\n{text}")
    filelist = out_dir / "filelist.f"
    filelist.write_text(f"{verilog_path}\n")
    description = {
        "top": top,
        "crossbar": crossbar,
        "config": config.to_dict(),
        "digest": config.digest,
        "unit_entries": design.unit_entries,
        "programmed": memories is not None,
        "timescale": TIMESCALE.split(None, 1)[1],
        "timing": {
            "pipeline_latency": pipeline_latency(config),
            "drain_latency": drain_latency(config),
            "drain_stages": list(DRAIN_STAGES),
            "conversions_per_read": config.conversions_per_read,
            "adc_latency": config.adc_latency,
        },
        "registers": {register.name: int(register) for register in Register},
        "clock": {"port": "clk", "edge": "rising"},
        "reset": {"port": "rst", "polarity": "active-high", "synchronous": True},
        "streams": _stream_info(design),
        "ports": accelerator_ports(design) if bus == "native" else None,
        "bus": bus,
    }
    if bus == "axi":
        from bitline.hw.toolchain.axi_ports import axi_interfaces, axi_ports

        description.update(ports=axi_ports(design), axi=axi_interfaces(design),
                           register_offsets={register.name: 4 * int(register)
                                             for register in Register})
    description_path = out_dir / f"{top}.json"
    description_path.write_text(json.dumps(description, indent=2) + "\n")
    core, header = _write_integration_files(config, out_dir, top, verilog_path.name, bus,
                                            crossbar, design.unit_entries)
    return GeneratedDesign(verilog=verilog_path, filelist=filelist,
                           description=description_path, top=top, core=core,
                           header=header, bus=bus)


def _write_integration_files(config, out_dir: Path, top: str, verilog_name: str, bus: str,
                             crossbar: str, unit_entries: int) -> tuple[Path, Path]:
    """Write ``<top>.core`` (FuseSoC) and ``<top>_regs.h`` (C); return their paths."""
    from bitline.hw.toolchain.cheader import c_header
    from bitline.hw.toolchain.fusesoc import core_file

    core = out_dir / f"{top}.core"
    core.write_text(core_file(config, top, verilog_name, bus=bus, crossbar=crossbar,
                              unit_entries=unit_entries))
    header = out_dir / f"{top}_regs.h"
    header.write_text(c_header(config, top, bus))
    return core, header
