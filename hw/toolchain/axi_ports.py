"""Port table and interface description of the AXI variant (``bitline verilog --bus axi``).

:func:`axi_ports` is :func:`bitline.hw.toolchain.verilog.accelerator_ports` for an
:class:`~bitline.hw.io.axi.AxiTop`: ``clk``, ``rst`` and (with external crossbars) the
``xbars__*`` ports exactly as on the native top, and every bus port with ``kind``
(``axi4-lite`` / ``axi4-stream``), ``interface`` (``s_axil``, ``s_axis_image``, ...),
``role`` (the AXI signal: ``awaddr``, ``tdata``, ...) and a one-line ``description``.
:func:`axi_interfaces` is the ports JSON's ``axi`` entry. docs/integration.md is generated
from both (``scripts/integration_doc.py``).
"""

from __future__ import annotations

from bitline.hw.io.axi import (
    AXIL_ADDR_BITS,
    BUS_INTERFACES,
    AxiResp,
    AxiTop,
    input_lane_bits,
    output_lane_bits,
)
from bitline.hw.toolchain.verilog import accelerator_ports, port_table

__all__ = ["axi_ports", "axi_interfaces", "AXI_ROLES"]

#: What each AXI signal does here, by role (AXI4-Lite, then AXI4-Stream).
AXI_ROLES = {
    "awaddr": "write address: byte offset of the register (4 * word; bits 1..0 ignored)",
    "awprot": "write protection type (accepted, ignored)",
    "awvalid": "write address valid",
    "awready": "write address taken (high while the address holding register is empty)",
    "wdata": "write data (one 32-bit register)",
    "wstrb": "write strobes: 0b1111 writes, 0 writes nothing, anything else is SLVERR",
    "wvalid": "write data valid",
    "wready": "write data taken (high while the data holding register is empty)",
    "bresp": "write response: OKAY, SLVERR (read-only register, partial wstrb), DECERR "
             "(unmapped)",
    "bvalid": "write response valid (the cycle after the write)",
    "bready": "write response taken",
    "araddr": "read address: byte offset of the register (bits 1..0 ignored)",
    "arprot": "read protection type (accepted, ignored)",
    "arvalid": "read address valid",
    "arready": "read address taken (no read response waiting, no write this cycle)",
    "rdata": "read data (0 with an error response)",
    "rresp": "read response: OKAY, SLVERR (CTRL is write-only), DECERR (unmapped)",
    "rvalid": "read data valid (the cycle after the address is taken)",
    "rready": "read data taken",
    "tdata": "beat payload",
    "tvalid": "beat offered",
    "tready": "beat taken (a beat moves at each rising clk edge with tvalid and tready)",
    "tlast": "last beat of a packet",
}


def axi_ports(top: AxiTop) -> list[dict]:
    """Every top-level port of the AXI variant, ``clk`` and ``rst`` first (module docstring).

    Raises
    ------
    ValueError
        If a bus port has no role description.
    """
    native = {port["name"]: port for port in accelerator_ports(top.core.accelerator)}
    ports = [native["clk"], native["rst"]]
    for port, (name, path, _, _) in zip(port_table(top), top.links):
        assert port["name"] == name
        interface = str(path[0])
        if interface not in BUS_INTERFACES:
            ports.append(native[name])      # the crossbar ports of an external design
            continue
        role = str(path[-1])
        if role not in AXI_ROLES:
            raise ValueError(f"port {name} has no description in "
                             f"bitline.hw.toolchain.axi_ports.AXI_ROLES")
        kind, meaning = BUS_INTERFACES[interface]
        what = AXI_ROLES[role]
        if role == "tdata" or role == "tlast":
            what = f"{what}; {meaning}"
        port.update(kind=kind, interface=interface, role=role,
                    description=f"{interface} ({kind}) {role}: {what}")
        ports.append(port)
    return ports


def axi_interfaces(top: AxiTop) -> dict:
    """``{interface: {kind, direction, ...}}``: the ports JSON's ``axi`` entry."""
    config = top.core.config
    lanes = config.max_copies
    info = {
        "s_axil": {"kind": "axi4-lite", "direction": "subordinate", "data_bits": 32,
                   "addr_bits": AXIL_ADDR_BITS,
                   "responses": {resp.name: int(resp) for resp in AxiResp}},
        "s_axis_image": {"kind": "axi4-stream", "direction": "input", "tdata_bits": 8,
                         "lanes": 1, "lane_bits": 8, "tkeep": False},
        "s_axis_input": {"kind": "axi4-stream", "direction": "input",
                         "tdata_bits": lanes * input_lane_bits(config), "lanes": lanes,
                         "lane_bits": input_lane_bits(config), "tkeep": False},
        "m_axis_output": {"kind": "axi4-stream", "direction": "output",
                          "tdata_bits": lanes * output_lane_bits(config), "lanes": lanes,
                          "lane_bits": output_lane_bits(config), "signed": True,
                          "tkeep": False},
    }
    for name, entry in info.items():
        entry["carries"] = BUS_INTERFACES[name][1]
    return info
