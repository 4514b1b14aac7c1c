"""The loader's top: the four stages of :mod:`bitline.hw.loader` joined, and the error status.

Pipelining (for the FPGA clock; none of it changes what is loaded, and the loader's cycles
are not part of any job's cycle count):

* ``restart`` is registered before it fans out to the stages: it acts one cycle after its
  pulse and empties the input buffer (no byte is accepted in that cycle; a byte offered in
  or before the pulse's cycle is dropped or goes to the previous image, so an image is sent
  after its ``restart``);
* the input has a two-byte skid buffer (:class:`~bitline.hw.loader.buffer.SkidBuffer`): a
  byte reaches the parsers the cycle after it is accepted;
* each section costs three cycles between sections (fetch, check, decide), see
  :class:`~bitline.hw.loader.sections.SectionRouter`;
* memory writes are registered: a record reaches its memory the cycle after its last byte;
  ``programmed`` rises at least two cycles after the last write, three cycles after the
  router took the image's last byte.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from bitline.hw.loader.buffer import SkidBuffer
from bitline.hw.loader.common import ERROR_SHAPE
from bitline.hw.loader.header import HeaderParser
from bitline.hw.loader.sections import SectionRouter
from bitline.hw.loader.writer import RecordWriter, write_ports
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.image import HEADER_LAYOUT

__all__ = ["Loader"]


class Loader(wiring.Component):
    """The image.bin loader: bytes in, memory writes out, one byte per cycle.

    The first error stops loading; its :class:`~bitline.hw.spec.registers.ErrorCode` stays
    in ``error`` (the rest of the stream is swallowed) until ``restart`` or ``clear_error``.
    Records are written before their section's CRC is known: a CRC error means the memories
    must be reloaded, which ``programmed = 0`` tells the host.

    Parameters
    ----------
    config:
        Accelerator configuration (record layouts, capacities, digest).
    unit_entries:
        Entry-memory depth of each unit.
    initial_counts:
        Per-unit entry counts (and ``initial_layers``) of memories initialised at elaboration
        (simulation from :func:`~bitline.hw.core.memories.program_memories`); the accelerator then
        starts ``programmed``.

    Attributes
    ----------
    bytes: In(stream.Signature(8))
        The image, first byte first.
    restart, clear_error: In(1)
    layer_write, param_write, map_write, entry_write, cell_write: Out(stream ...)
        Memory writes (always ready); ``unit`` selects the crossbar unit.
    node_write: Out(stream ...)
        Whole-network hardware only (``config.network``): NETWORK record ``i`` at address
        ``i`` (:func:`~bitline.hw.spec.network.node_layout`).
    n_entries: Out(ArrayLayout(range(unit_entries + 1), n_xbars))
    n_layers: Out(range(max_layers + 1))
    n_nodes: Out(range(max_nodes + 1))
        Whole-network hardware only: NETWORK records loaded (0 until their section's CRC
        checked; more than ``max_nodes`` records is a ``CAPACITY`` error).
    loading, programmed: Out(1)
    error: Out(8)
    """

    def __init__(self, config: AcceleratorConfig, unit_entries: int,
                 initial_counts: list[int] | None = None, initial_layers: int | None = None,
                 initial_nodes: int | None = None):
        self.config = config
        self.unit_entries = unit_entries
        self._counts = list(initial_counts) if initial_counts is not None else None
        self._layers = initial_layers
        self._nodes = initial_nodes
        nodes = ({"n_nodes": Out(range(config.max_nodes + 1), init=initial_nodes or 0)}
                 if config.network else {})
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "restart": In(1),
            "clear_error": In(1),
            **write_ports(config, unit_entries),
            "n_entries": Out(data.ArrayLayout(range(unit_entries + 1), config.n_xbars),
                             init=self._counts or [0] * config.n_xbars),
            "n_layers": Out(range(config.max_layers + 1), init=initial_layers or 0),
            "loading": Out(1),
            "programmed": Out(1, init=int(initial_layers is not None)),
            "error": Out(ERROR_SHAPE),
            **nodes,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = SkidBuffer(8)
        m.submodules.parser = parser = HeaderParser(self.config)
        m.submodules.router = router = SectionRouter(self.config, self._layers, self._nodes)
        m.submodules.writer = writer = RecordWriter(self.config, self.unit_entries,
                                                    self._counts)

        # ``restart`` fans out to most of the loader's registers: it is registered first, so
        # that fan-out starts at a flip-flop and not at the host's CTRL decode
        restart = Signal()
        m.d.sync += restart.eq(self.restart)
        m.d.comb += [buffer.flush.eq(restart), parser.start.eq(restart),
                     router.start.eq(restart), writer.start.eq(restart)]

        connect(m, flipped(self.bytes), buffer.i)
        connect(m, parser.table, router.table)
        connect(m, router.payload, writer.payload)
        for name in write_ports(self.config, self.unit_entries):
            connect(m, getattr(writer, name), flipped(getattr(self, name)))

        # the header parser and then the router take the buffered bytes (never both: each
        # is ready only in its own states); after an error the rest of the image is drained
        error = Signal(ERROR_SHAPE)
        drain = (error != 0) & ~restart
        take = buffer.o.valid & buffer.o.ready
        m.d.comb += [
            parser.bytes.valid.eq(buffer.o.valid),
            parser.bytes.payload.eq(buffer.o.payload),
            router.bytes.valid.eq(buffer.o.valid),
            router.bytes.payload.eq(buffer.o.payload),
            buffer.o.ready.eq(parser.bytes.ready | router.bytes.ready | drain),
        ]
        position = Signal(HEADER_LAYOUT["image_bytes"].shape)  # image bytes consumed
        with m.If(restart):
            m.d.sync += position.eq(0)
        with m.Elif(take):
            m.d.sync += position.eq(position + 1)
        m.d.comb += router.position.eq(position)

        # the first error is kept (the stage that reports it stops); clear_error only matters
        # once loading has stopped, as error is zero while any stage runs
        with m.If(restart):
            m.d.sync += error.eq(0)
        with m.Elif(parser.error.valid):
            m.d.sync += error.eq(parser.error.payload)
        with m.Elif(router.error.valid):
            m.d.sync += error.eq(router.error.payload)
        with m.Elif(self.clear_error):
            m.d.sync += error.eq(0)

        m.d.comb += [
            self.error.eq(error),
            self.loading.eq(parser.busy | router.busy),
            self.programmed.eq(router.programmed),
            self.n_layers.eq(router.n_layers),
            self.n_entries.eq(writer.n_entries),
        ]
        if self.config.network:
            m.d.comb += self.n_nodes.eq(router.n_nodes)
        return m
