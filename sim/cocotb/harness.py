"""The cocotb bench top: the accelerator with a stream source and sink in front of its streams.

A cocotb coroutine that drives a stream costs tens of microseconds per clock cycle (a
simulator callback into Python), which caps a bench at ~15k simulated cycles per second
however fast the simulator is. :class:`BenchTop` removes Python from the per-cycle loop of
the host side, as a DMA engine would on a real system:

* the **source** -- a byte memory the bench fills ``fill_lanes`` bytes per cycle, then
  replays at one byte (image) or input code per cycle on the accelerator's ``program`` or
  ``inputs`` stream, honouring ``ready``;
* the **sink** -- takes every ``outputs`` value the cycle it is offered (the host never
  stalls) into a memory the bench reads back ``drain_lanes`` values at a time;
* ``source_start`` and a CSR write issued in the same cycle make the first input code
  available in the job's first busy cycle, exactly like the Amaranth testbench host
  (:func:`bitline.sim.amaranth.run_job`), so the performance counters equal the model's.

Everything else -- the register bus, the crossbar ports of an ``external`` accelerator --
is passed through unchanged, plus two summary vectors (``xbar_strobes``, ``xbar_writes``:
bit ``u`` = unit ``u``'s ``read.strobe`` / ``write.en``) so a Python crossbar model wakes
only in cycles in which some unit uses its port. The accelerator inside is the same
:class:`~bitline.hw.core.top.Accelerator` that ``bitline verilog`` writes; the image still enters
through ``program`` (loader, CRC checks) and every job through ``inputs``.

Ports (Verilog names; widths from the config and the harness parameters):

=================  ===  =========================================================================
port               dir  meaning
=================  ===  =========================================================================
``csr__*``         in   the accelerator's register bus (:class:`~bitline.hw.core.host_interface.CSRSignature`)
``fill_en``        in   write ``fill_data`` (``fill_lanes`` bytes, byte 0 lowest) to source row
``fill_addr``           ``fill_addr`` (source bytes ``[row * lanes, (row + 1) * lanes)``)
``source_start``   in   one-cycle pulse: replay bytes ``0 .. source_count - 1``
``source_target``  in   0: the ``program`` stream (image bytes), 1: ``inputs`` (codes; with
                        ``max_copies > 1`` beats of :func:`beat_bytes` bytes, one per lane,
                        and ``source_count`` counts beats)
``source_busy``    out  bytes left to send
``sink_start``     in   one-cycle pulse: take the next ``sink_count`` outputs into the sink
``sink_received``  out  outputs taken since ``sink_start``
``sink_done``      out  ``sink_count`` outputs taken
``drain_addr``     in   sink row (``drain_lanes`` outputs, output ``row * lanes + j`` in lane j;
                        an output is a beat of ``max_copies`` values, copy 0 lowest)
``drain_data``     out  that row, combinationally
``xbars__*``            (``external`` only) the crossbar ports of every unit
``xbar_strobes``   out  (``external`` only) ``read.strobe`` of every unit
``xbar_writes``    out  (``external`` only) ``write.en`` of every unit
``xbar_requests``  out  (``external`` only) ``xbar_strobes``, ``xbar_writes``, then every
                        unit's read request, unit 0 first, fields in
                        :func:`request_fields` order: what the crossbar model needs each
                        cycle in one simulator read
=================  ===  =========================================================================
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect, flipped

from bitline.hw._component import rejects_quietly
from bitline.hw.core.host_interface import CSRSignature
from bitline.hw.core.top import Accelerator
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.unit.xbar_port import CrossbarSignature

__all__ = ["BenchTop", "SOURCE_DEPTH", "SINK_DEPTH", "FILL_LANES", "DRAIN_LANES",
           "PROGRAM", "INPUTS", "beat_bytes", "request_fields"]

#: Default source capacity in bytes / input codes (one layer job's inputs must fit).
SOURCE_DEPTH = 1 << 16
#: Default sink capacity in output values (one layer job's outputs must fit).
SINK_DEPTH = 1 << 14
#: Default bytes written per fill cycle and outputs read per drain row.
FILL_LANES = 32
DRAIN_LANES = 8

#: ``source_target`` values.
PROGRAM = 0
INPUTS = 1


def request_fields(config: AcceleratorConfig) -> list[tuple[str, int]]:
    """Return ``[(read member, width)]`` of one unit's slice of ``xbar_requests``, lowest
    bits first (the crossbar model unpacks the vector with the same list)."""
    signature = CrossbarSignature(config).members["read"].signature
    fields = []
    for name in ("row_group", "wordline_en", "dac", "col_group", "phase", "adc_en"):
        fields.append((name, Shape.cast(signature.members[name].shape).width))
    return fields


def beat_bytes(config: AcceleratorConfig) -> int:
    """Source bytes of one ``inputs`` beat: ``max_copies`` lanes of one byte, rounded up to a
    power of two (beat ``b`` of a job occupies bytes ``[b * n, (b + 1) * n)``, lane ``k`` at
    byte ``k``; 1 without copies, where a beat is one code byte)."""
    return 1 << (config.max_copies - 1).bit_length()


def _power_of_two(name: str, value: int) -> int:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two, not {value}")
    return value


class BenchTop(wiring.Component):
    """:class:`~bitline.hw.core.top.Accelerator` plus a stream source and sink (module docstring).

    Parameters
    ----------
    config:
        The accelerator configuration.
    crossbar:
        ``"emulated"`` or ``"external"`` (passed to the accelerator).
    unit_entries:
        Entry-memory depth per unit (default: the accelerator's).
    source_depth, sink_depth:
        Capacities (powers of two) of the source (bytes) and the sink (outputs).
    fill_lanes, drain_lanes:
        Bytes per fill row and outputs per drain row (powers of two dividing the depths).
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, crossbar: str = "emulated", *,
                 unit_entries: int | None = None, source_depth: int = SOURCE_DEPTH,
                 sink_depth: int = SINK_DEPTH, fill_lanes: int = FILL_LANES,
                 drain_lanes: int = DRAIN_LANES):
        self.config = config
        self.crossbar = crossbar
        self.source_depth = _power_of_two("source_depth", source_depth)
        self.sink_depth = _power_of_two("sink_depth", sink_depth)
        self.fill_lanes = _power_of_two("fill_lanes", fill_lanes)
        self.drain_lanes = _power_of_two("drain_lanes", drain_lanes)
        if fill_lanes > source_depth or drain_lanes > sink_depth:
            raise ValueError("fill_lanes / drain_lanes must not exceed the depths")
        if beat_bytes(config) > fill_lanes:
            raise ValueError(f"fill_lanes ({fill_lanes}) must hold one input beat of "
                             f"max_copies = {config.max_copies} lanes")
        self.accelerator = Accelerator(config, crossbar=crossbar, unit_entries=unit_entries)
        members = {
            "csr": In(CSRSignature()),
            "fill_en": In(1),
            "fill_addr": In(range(source_depth // fill_lanes)),
            "fill_data": In(8 * fill_lanes),
            "source_start": In(1),
            "source_target": In(1),
            "source_count": In(range(source_depth + 1)),
            "source_busy": Out(1),
            "sink_start": In(1),
            "sink_count": In(range(sink_depth + 1)),
            "sink_received": Out(range(sink_depth + 1)),
            "sink_done": Out(1),
            "drain_addr": In(range(sink_depth // drain_lanes)),
            "drain_data": Out(config.acc_bits * config.max_copies * drain_lanes),
        }
        if crossbar == "external":
            members["xbars"] = Out(CrossbarSignature(config)).array(config.n_xbars)
            members["xbar_strobes"] = Out(config.n_xbars)
            members["xbar_writes"] = Out(config.n_xbars)
            members["xbar_requests"] = Out(2 * config.n_xbars + config.n_xbars * sum(
                width for _, width in request_fields(config)))
        super().__init__(members)

    @property
    def unit_entries(self) -> int:
        """Entry-memory depth per unit of the accelerator inside."""
        return self.accelerator.unit_entries

    def elaborate(self, platform):
        config = self.config
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        connect(m, flipped(self.csr), acc.csr)

        # ---- source: fill rows, replay bytes on program or inputs ---------------------
        lanes = self.fill_lanes
        source = Memory(shape=8 * lanes, depth=self.source_depth // lanes, init=[])
        m.submodules.source = source
        fill = source.write_port()
        m.d.comb += [fill.addr.eq(self.fill_addr), fill.data.eq(self.fill_data),
                     fill.en.eq(self.fill_en)]
        replay = source.read_port(domain="comb")
        position = Signal(range(self.source_depth + 1))
        count = Signal(range(self.source_depth + 1))
        target = Signal()
        lane_bits = (lanes - 1).bit_length()
        byte = Signal(8)
        m.d.comb += [replay.addr.eq(position >> lane_bits),
                     byte.eq(replay.data.word_select(position[:lane_bits] if lane_bits else 0,
                                                     8))]
        offering = Signal()
        m.d.comb += [
            offering.eq(position < count),
            acc.program.valid.eq(offering & (target == PROGRAM)),
            acc.program.payload.eq(byte),
            acc.inputs.valid.eq(offering & (target == INPUTS)),
            self.source_busy.eq(offering),
        ]
        if config.max_copies == 1:
            m.d.comb += acc.inputs.payload[0].eq(byte[:config.max_act_bits])
        else:
            # copies: ``position`` counts beats of beat_bytes() bytes, one byte per lane
            per_beat = beat_bytes(config)
            beat_bits = (lanes // per_beat - 1).bit_length()
            beat = Signal(8 * per_beat)
            with m.If(target == INPUTS):
                m.d.comb += replay.addr.eq(position >> beat_bits)
            m.d.comb += beat.eq(replay.data.word_select(position[:beat_bits] if beat_bits
                                                        else 0, 8 * per_beat))
            for lane in range(config.max_copies):
                m.d.comb += acc.inputs.payload[lane].eq(beat[8 * lane:8 * lane
                                                             + config.max_act_bits])
        taken = offering & Mux(target == INPUTS, acc.inputs.ready, acc.program.ready)
        with m.If(self.source_start):
            m.d.sync += [position.eq(0), count.eq(self.source_count),
                         target.eq(self.source_target)]
        with m.Elif(taken):
            m.d.sync += position.eq(position + 1)

        # ---- sink: take every output at once, read back by rows -----------------------
        width = config.acc_bits * config.max_copies   # one output beat, every lane
        out_lanes = self.drain_lanes
        sink = Memory(shape=width * out_lanes, depth=self.sink_depth // out_lanes, init=[])
        m.submodules.sink = sink
        store = sink.write_port(granularity=width)
        received = Signal(range(self.sink_depth + 1))
        expected = Signal(range(self.sink_depth + 1))
        out_bits = (out_lanes - 1).bit_length()
        accepting = Signal()
        m.d.comb += [
            accepting.eq(received < expected),
            acc.outputs.ready.eq(accepting),
            store.addr.eq(received >> out_bits),
            store.data.eq(Cat(*([acc.outputs.payload] * out_lanes))),
            self.sink_received.eq(received),
            self.sink_done.eq(~accepting),
        ]
        if out_lanes > 1:
            m.d.comb += store.en.eq(Mux(acc.outputs.valid & accepting,
                                        1 << received[:out_bits], 0))
        else:
            m.d.comb += store.en.eq(acc.outputs.valid & accepting)
        with m.If(self.sink_start):
            m.d.sync += [received.eq(0), expected.eq(self.sink_count)]
        with m.Elif(acc.outputs.valid & accepting):
            m.d.sync += received.eq(received + 1)
        readback = sink.read_port(domain="comb")
        m.d.comb += [readback.addr.eq(self.drain_addr), self.drain_data.eq(readback.data)]

        # ---- crossbar ports --------------------------------------------------------------
        if self.crossbar == "external":
            for unit in range(config.n_xbars):
                connect(m, acc.xbars[unit], flipped(self.xbars[unit]))
            m.d.comb += [
                self.xbar_strobes.eq(Cat(*(acc.xbars[u].read.strobe
                                           for u in range(config.n_xbars)))),
                self.xbar_writes.eq(Cat(*(acc.xbars[u].write.en
                                          for u in range(config.n_xbars)))),
                # one read per cycle instead of six per strobing unit (crossbar.py)
                self.xbar_requests.eq(Cat(self.xbar_strobes, self.xbar_writes, *(
                    getattr(acc.xbars[u].read, name)
                    for u in range(config.n_xbars) for name, _ in request_fields(config)))),
            ]
        return m
