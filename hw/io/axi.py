"""The accelerator behind standard buses: AXI4-Lite registers, AXI4-Stream data (drop-in IP).

:class:`AxiAccelerator` wraps the same :class:`~bitline.hw.core.top.Accelerator` that the
native interface exposes (``bitline verilog --bus axi``; docs/integration.md):

* ``s_axil`` -- :class:`AXI4LiteSignature` (subordinate): the register map of
  :mod:`bitline.hw.spec.registers` at **byte** address ``4 * word``
  (:data:`AXIL_ADDR_BITS` address bits, 32-bit data). :class:`AxiLiteBridge` turns it into
  the native register bus. Write address and write data are accepted independently (each
  into its own holding register, ``awready`` / ``wready`` high while it is empty); the write
  happens in the cycle both are held and the write response channel is free, and ``bvalid``
  rises in the next cycle. A read is accepted when no read response is waiting and no write
  happens in that cycle (the register bus has one address); ``rvalid`` rises in the next
  cycle. Address bits 1..0 are ignored. Responses (:class:`AxiResp`): OKAY; SLVERR for a
  write to a mapped register that is not writable (``registers.WRITABLE``), a read of a
  mapped register that is not readable (CTRL, ``registers.READABLE``) or a write whose
  ``wstrb`` is neither ``0b1111`` nor ``0`` (registers are whole words: a partial write
  has no effect); DECERR for an address the register map does not name. A write answered
  with an error, or with ``wstrb == 0``, changes nothing; an error read returns 0. ``awprot``
  and ``arprot`` are accepted and ignored.
* ``s_axis_image`` -- :class:`AXI4StreamSignature` of 8 bits: ``image.bin`` bytes in file
  order (the ``program`` stream).
* ``s_axis_input`` -- input codes: one beat per code position, ``max_copies`` lanes of
  :func:`input_lane_bits` bits (``max_act_bits`` rounded up to whole bytes; the code in the
  low bits, the rest ignored), lane ``k`` copy ``k``'s (the ``inputs`` stream).
* ``m_axis_output`` -- output values: ``max_copies`` lanes of :func:`output_lane_bits`
  bits (``acc_bits`` rounded up to whole bytes, sign-extended), lane ``k`` copy ``k``'s (the
  ``outputs`` stream); ``tlast`` marks the last beat of a layer job (``N_SHARE *
  n_outputs`` beats).

``tlast`` on the two subordinate streams is the producer's end-of-packet mark (the last
byte of an image, the last beat of a job's vectors); the IP does not need it -- the loader
reads the image length from its header and the scheduler counts ``N_SHARE * n_inputs``
beats -- so it is accepted and ignored. No ``tkeep``: every byte of a beat is valid (the
beats are whole bytes, :data:`AXIS_TKEEP` documents this). The output stream has one
register stage for ``tlast``: a beat is offered once the next one has left the
accelerator or the job has ended (its busy flag fell), so ``tlast`` is known with the beat;
the accelerator's counters see the wrapper as a host that takes every output at once as
long as ``m_axis_output`` keeps up.

:class:`AxiTop` is the Verilog face: the same ports, flattened with AXI names
(``s_axil_awaddr``, ``s_axis_image_tdata``, ``m_axis_output_tlast``, ...).
"""

from __future__ import annotations

import enum

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from bitline.hw._component import rejects_quietly
from bitline.hw.core.host_interface import CSRSignature
from bitline.hw.core.top import Accelerator
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.registers import CSR_ADDR_BITS, CSR_DATA_BITS, READABLE, Register, WRITABLE

__all__ = [
    "AxiResp", "AXI4LiteSignature", "AXI4StreamSignature", "AxiLiteBridge", "AxiAccelerator",
    "AxiTop", "AXIL_ADDR_BITS", "AXIS_TKEEP", "BUS_INTERFACES", "input_lane_bits",
    "output_lane_bits", "verilog_name",
]

#: Byte address width of ``s_axil``: the register word address and two byte-offset bits.
AXIL_ADDR_BITS = CSR_ADDR_BITS + 2
#: The streams have no ``tkeep`` (every byte of every beat is valid).
AXIS_TKEEP = False


class AxiResp(enum.IntEnum):
    """``bresp`` / ``rresp`` codes (AXI specification, IHI 0022)."""

    OKAY = 0
    SLVERR = 2
    DECERR = 3


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite seen from the manager (initiator); the IP takes ``In`` of it.

    Members are the AXI signal names without the interface prefix (``awaddr``, ``awprot``,
    ``awvalid``, ``awready``, ``wdata``, ``wstrb``, ``wvalid``, ``wready``, ``bresp``,
    ``bvalid``, ``bready``, ``araddr``, ``arprot``, ``arvalid``, ``arready``, ``rdata``,
    ``rresp``, ``rvalid``, ``rready``).
    """

    def __init__(self, addr_width: int = AXIL_ADDR_BITS, data_width: int = CSR_DATA_BITS):
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(self) is type(other) and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    __hash__ = None


class AXI4StreamSignature(wiring.Signature):
    """AXI4-Stream seen from the transmitter: ``tdata`` (``width`` bits, a multiple of 8),
    ``tvalid``, ``tready`` (in), ``tlast``."""

    def __init__(self, width: int):
        if width < 8 or width % 8:
            raise ValueError(f"AXI4-Stream tdata must be whole bytes, not {width} bits")
        self.width = width
        super().__init__({"tdata": Out(width), "tvalid": Out(1), "tready": In(1),
                          "tlast": Out(1)})

    def __eq__(self, other):
        return type(self) is type(other) and self.width == other.width

    __hash__ = None


def _whole_bytes(bits: int) -> int:
    return 8 * -(-bits // 8)


def input_lane_bits(config: AcceleratorConfig) -> int:
    """Bits of one lane of ``s_axis_input``: ``max_act_bits`` rounded up to whole bytes."""
    return _whole_bytes(config.max_act_bits)


def output_lane_bits(config: AcceleratorConfig) -> int:
    """Bits of one lane of ``m_axis_output``: ``acc_bits`` rounded up to whole bytes."""
    return _whole_bytes(config.acc_bits)


#: The bus interfaces of :class:`AxiAccelerator`: name -> (kind, meaning).
BUS_INTERFACES = {
    "s_axil": ("axi4-lite", "control and status registers, performance counters "
                            "(byte address = 4 * register word address)"),
    "s_axis_image": ("axi4-stream", "image.bin bytes in file order; tlast on the last byte "
                                    "(ignored by the IP)"),
    "s_axis_input": ("axi4-stream", "input codes of a layer job, one beat per code, lane k "
                                    "copy k's; tlast on the job's last beat (ignored)"),
    "m_axis_output": ("axi4-stream", "output values of a layer job, signed, sign-extended "
                                     "lanes, lane k copy k's; tlast on the job's last beat"),
}


def _response(m: Module, word, *, write: bool, strobes=None) -> Signal:
    """Return the AXI response of an access to register ``word`` (module docstring)."""
    resp = Signal(2, name="wresp" if write else "rresp_next")
    allowed = WRITABLE if write else READABLE
    mapped = [int(register) for register in Register]
    with m.Switch(word):
        with m.Case(*sorted(int(register) for register in allowed)):
            if write:
                whole = (strobes == (1 << len(strobes)) - 1) | (strobes == 0)
                m.d.comb += resp.eq(Mux(whole, AxiResp.OKAY, AxiResp.SLVERR))
            else:
                m.d.comb += resp.eq(AxiResp.OKAY)
        others = sorted(set(mapped) - {int(register) for register in allowed})
        if others:
            with m.Case(*others):
                m.d.comb += resp.eq(AxiResp.SLVERR)
        with m.Default():
            m.d.comb += resp.eq(AxiResp.DECERR)
    return resp


class AxiLiteBridge(wiring.Component):
    """AXI4-Lite subordinate in front of the native register bus (module docstring).

    Attributes
    ----------
    axil: In(AXI4LiteSignature())
    csr: Out(CSRSignature())
        To :class:`~bitline.hw.core.host_interface.HostInterface`.
    """

    def __init__(self):
        super().__init__({"axil": In(AXI4LiteSignature()), "csr": Out(CSRSignature())})

    def elaborate(self, platform):
        m = Module()
        bus, csr = self.axil, self.csr
        # write: address and data arrive independently, each into its holding register
        aw_full, w_full = Signal(), Signal()
        aw_word = Signal(CSR_ADDR_BITS)
        w_data = Signal(CSR_DATA_BITS)
        w_strb = Signal(CSR_DATA_BITS // 8)
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full)]
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_word.eq(bus.awaddr[2:])]
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        write = Signal()
        m.d.comb += write.eq(aw_full & w_full & ~bus.bvalid)
        wresp = _response(m, aw_word, write=True, strobes=w_strb)
        with m.If(write):
            m.d.comb += [csr.addr.eq(aw_word), csr.w_data.eq(w_data),
                         csr.w_en.eq((wresp == AxiResp.OKAY) & (w_strb != 0))]
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bus.bvalid.eq(1),
                         bus.bresp.eq(wresp)]
        with m.Elif(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)

        # read: r_data arrives the cycle after r_en, with rvalid; it holds until taken
        # (no other read is issued before)
        m.d.comb += bus.arready.eq(~bus.rvalid & ~write)
        word = bus.araddr[2:]
        rresp = _response(m, word, write=False)
        with m.If(bus.arvalid & bus.arready):
            m.d.comb += [csr.addr.eq(word), csr.r_en.eq(rresp == AxiResp.OKAY)]
            m.d.sync += [bus.rvalid.eq(1), bus.rresp.eq(rresp)]
        with m.Elif(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        # an error read returns 0 (r_data is not refreshed for it)
        m.d.comb += bus.rdata.eq(Mux(bus.rresp == AxiResp.OKAY, csr.r_data, 0))
        return m


class AxiAccelerator(wiring.Component):
    """:class:`~bitline.hw.core.top.Accelerator` on AXI4-Lite and AXI4-Stream.

    Parameters are the accelerator's (``config``, ``crossbar``, ``memories``,
    ``unit_entries``).

    Attributes
    ----------
    s_axil: In(AXI4LiteSignature())
    s_axis_image: In(AXI4StreamSignature(8))
    s_axis_input: In(AXI4StreamSignature(max_copies * input_lane_bits(config)))
    m_axis_output: Out(AXI4StreamSignature(max_copies * output_lane_bits(config)))
    xbars: Out(CrossbarSignature(config)).array(n_xbars)
        Only with ``crossbar="external"`` (as on the native top).
    accelerator:
        The wrapped accelerator.
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, crossbar: str = "emulated", *,
                 memories=None, unit_entries: int | None = None):
        self.config = config
        self.accelerator = Accelerator(config, crossbar=crossbar, memories=memories,
                                 unit_entries=unit_entries)
        members = {
            "s_axil": In(AXI4LiteSignature()),
            "s_axis_image": In(AXI4StreamSignature(8)),
            "s_axis_input": In(AXI4StreamSignature(config.max_copies
                                                   * input_lane_bits(config))),
            "m_axis_output": Out(AXI4StreamSignature(config.max_copies
                                                     * output_lane_bits(config))),
        }
        if crossbar == "external":
            members["xbars"] = self.accelerator.signature.members["xbars"]
        super().__init__(members)

    @property
    def crossbar(self) -> str:
        return self.accelerator.crossbar

    @property
    def unit_entries(self) -> int:
        return self.accelerator.unit_entries

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.accelerator = acc = self.accelerator
        m.submodules.axil = bridge = AxiLiteBridge()
        connect(m, flipped(self.s_axil), bridge.axil)
        connect(m, bridge.csr, acc.csr)
        if "xbars" in self.signature.members:
            for unit in range(config.n_xbars):
                connect(m, acc.xbars[unit], flipped(self.xbars[unit]))

        image = self.s_axis_image
        m.d.comb += [acc.program.payload.eq(image.tdata), acc.program.valid.eq(image.tvalid),
                     image.tready.eq(acc.program.ready)]
        inputs, lane_in = self.s_axis_input, input_lane_bits(config)
        m.d.comb += [acc.inputs.valid.eq(inputs.tvalid), inputs.tready.eq(acc.inputs.ready)]
        m.d.comb += [acc.inputs.payload[lane].eq(inputs.tdata[lane * lane_in:][
            :config.max_act_bits]) for lane in range(config.max_copies)]
        self._add_output(m, acc)
        return m

    def _add_output(self, m: Module, acc: Accelerator) -> None:
        """Output stream with ``tlast``: a held beat and an output register.

        ``held`` is the newest beat out of the accelerator; it moves to the output register
        when the next beat comes (not the job's last) or once the job's busy flag has
        fallen (the last: the scheduler ends the job the cycle after its last output is
        taken). The accelerator is ready whenever ``held`` is empty or can move.
        """
        config, out = self.config, self.m_axis_output
        lane_out = output_lane_bits(config)
        beat = Cat(_sign_extend(acc.outputs.payload[lane], lane_out)
                   for lane in range(config.max_copies))
        held, held_valid, held_last = Signal(len(beat)), Signal(), Signal()
        was_busy = Signal()
        m.d.sync += was_busy.eq(acc.job_busy)
        ended = was_busy & ~acc.job_busy
        can_move = ~out.tvalid | out.tready
        take = acc.outputs.valid & acc.outputs.ready
        m.d.comb += acc.outputs.ready.eq(~held_valid | can_move)
        with m.If(ended & held_valid):
            m.d.sync += held_last.eq(1)
        with m.If(out.tvalid & out.tready):
            m.d.sync += out.tvalid.eq(0)
        with m.If(take):
            m.d.sync += [held.eq(beat), held_valid.eq(1), held_last.eq(0)]
            with m.If(held_valid):
                m.d.sync += [out.tdata.eq(held), out.tlast.eq(0), out.tvalid.eq(1)]
        with m.Elif(held_valid & (held_last | ended) & can_move):
            m.d.sync += [out.tdata.eq(held), out.tlast.eq(1), out.tvalid.eq(1),
                         held_valid.eq(0), held_last.eq(0)]


def _sign_extend(value, width: int):
    """``value`` (a signed view of ``acc_bits``) sign-extended to ``width`` bits."""
    signed = value.as_signed()
    return Cat(signed, *([signed[-1]] * (width - len(signed))))


def verilog_name(path: tuple) -> str:
    """Verilog port name of a member path: ``s_axil_awaddr`` for the bus interfaces (the AXI
    naming convention), Amaranth's ``xbars__0__read__strobe`` for the rest."""
    if str(path[0]) in BUS_INTERFACES:
        return "_".join(str(part) for part in path)
    return "__".join(str(part) for part in path)


class AxiTop(wiring.Component):
    """The Verilog face of an :class:`AxiAccelerator`: every port flat, AXI names.

    ``core`` is the wrapped :class:`AxiAccelerator`; :attr:`links` lists ``(port name,
    member path, flow)`` in signature order.
    """

    def __init__(self, core: AxiAccelerator):
        self.core = core
        self.links = []
        members = {}
        for path, member, value in core.signature.flatten(core):
            name = verilog_name(path)
            members[name] = (In if member.flow == In else Out)(member.shape)
            self.links.append((name, path, member.flow, value))
        super().__init__(members)

    @property
    def unit_entries(self) -> int:
        return self.core.unit_entries

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = self.core
        for name, _, flow, inner in self.links:
            outer = getattr(self, name)
            m.d.comb += inner.eq(outer) if flow == In else outer.eq(inner)
        return m
