"""Program loader: parses the ``image.bin`` byte stream into the accelerator's memories.

The image layout is :mod:`bitline.hw.spec.image` (header, section table, sections). The
loader takes one byte per cycle through a two-byte input buffer (``bytes`` is ready while
the buffer has room) and

* checks the header (magic, version, sizes, the config digest) and its CRC-32, then the
  section table's CRC-32, in hardware (:data:`~bitline.hw.spec.image.CRC_ALGORITHM`);
* for every section in table order: checks its id, record size, length and capacity, skips
  the alignment padding, writes each record to its memory as it completes and checks the
  section's CRC-32 at its end:

  - LAYERS -> the layer table (record ``i`` at address ``i``);
  - ROWMAPS -> unit ``i // rows``, row ``i % rows`` of the row drivers;
  - CELLS -> a unit word, then one crossbar write-port row per ``cell_row_layout`` word;
  - ENTRIES -> the entry memory of the record's ``xbar`` at that unit's next address
    (entries without a slice to issue are dropped); the per-unit counts are ``n_entries``;
  - OUTPUT -> the output-parameter memory (record ``i`` at address ``i``);

* consumes bytes up to ``image_bytes`` and reports ``programmed``.

The first error stops parsing; its :class:`~bitline.hw.core.host_interface.ErrorCode` stays in ``error``
(the rest of the stream is swallowed) until ``restart`` or ``clear_error``. Records are
written before their section's CRC is known: a CRC error means the memories must be
reloaded, which ``programmed = 0`` tells the host.

Pipelining (for the FPGA clock; none of it changes what is loaded, and the loader's cycles
are not part of any job's cycle count):

* ``restart`` is registered before it fans out to the FSM and the counters: it acts one
  cycle after its pulse and empties the input buffer (no byte is accepted in that cycle; a
  byte offered in or before the pulse's cycle is dropped or goes to the previous image, so
  an image is sent after its ``restart``);
* the input has a two-byte skid buffer: the parser's byte and ``valid`` and the producer's
  ``ready`` are flip-flops (on the board the byte comes straight from the UART bridge's
  block-RAM FIFO, whose clock-to-out alone is about 6 ns). A byte reaches the parser the
  cycle after it is accepted; up to two bytes may wait in the buffer while the parser is
  not taking any (they are dropped by the next ``restart``);
* a section's table entry is fetched in SECTION, checked into registers in SECTION_CHECK
  (id, record size, ``record_count * size`` against its length, capacity, offset and end)
  and decided in SECTION_DECIDE, so each section costs two cycles more; the trailer's
  position checks are registered in SECTION, in parallel;
* PAD and TRAILER count a registered ``gap`` down to the target position and the payload
  keeps registered ``first`` / ``last`` flags, so the parser's ``ready`` and the CRC's
  ``start`` come from flip-flops and no 32-bit compare of ``position`` sits in the byte path;
* the record multiplexer (``current``) is selected by ``index`` alone, not by ``take``;
* memory writes are registered: a record reaches its memory the cycle after its last byte,
  from ``assembly``; ``programmed`` rises at least two cycles after the last write, three
  cycles after the parser took the image's last byte.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.core.memories import param_capacity
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import (
    entry_layout,
    layer_layout,
    output_param_layout,
    record_bytes,
)
from bitline.hw.spec.image import (
    CRC_ALGORITHM,
    FORMAT_VERSION,
    HEADER_BYTES,
    HEADER_LAYOUT,
    MAGIC_WORD,
    SECTION_ENTRY_BYTES,
    SECTION_ENTRY_LAYOUT,
    SectionId,
    cell_row_layout,
    config_digest_bytes,
    section_capacity,
    section_layout,
)
from bitline.hw.spec.registers import ErrorCode
from bitline.hw.unit.ou_controller import entry_write_layout
from bitline.hw.unit.row_driver import map_write_layout

__all__ = ["Loader", "MAX_SECTIONS"]

#: Section-table entries the loader holds (one per section id).
MAX_SECTIONS = len(SectionId)
_CRC_BYTES = 4


def _times(value, constant: int):
    """Return ``value * constant`` (``constant >= 1``) as a tree of shifted adds."""
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


class Loader(wiring.Component):
    """The image.bin parser.

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
    n_entries: Out(ArrayLayout(range(unit_entries + 1), n_xbars))
    n_layers: Out(range(max_layers + 1))
    loading, programmed: Out(1)
    error: Out(8)
    """

    def __init__(self, config: AcceleratorConfig, unit_entries: int,
                 initial_counts: list[int] | None = None, initial_layers: int | None = None):
        self.config = config
        self.unit_entries = unit_entries
        self.params = param_capacity(config)
        self._counts = list(initial_counts) if initial_counts is not None else None
        self._layers = initial_layers
        unit = clog2(config.n_xbars)
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "restart": In(1),
            "clear_error": In(1),
            "layer_write": Out(stream.Signature(data.StructLayout({
                "addr": clog2(config.max_layers), "record": layer_layout(config)}),
                always_ready=True)),
            "param_write": Out(stream.Signature(data.StructLayout({
                "addr": clog2(self.params), "record": output_param_layout(config)}),
                always_ready=True)),
            "map_write": Out(stream.Signature(data.StructLayout({
                "unit": unit, "write": map_write_layout(config)}), always_ready=True)),
            "entry_write": Out(stream.Signature(data.StructLayout({
                "unit": unit, "write": entry_write_layout(config, unit_entries)}),
                always_ready=True)),
            "cell_write": Out(stream.Signature(data.StructLayout({
                "unit": unit, "row": clog2(config.rows),
                "levels": data.ArrayLayout(config.cell_bits, config.cols)}),
                always_ready=True)),
            "n_entries": Out(data.ArrayLayout(range(unit_entries + 1), config.n_xbars),
                             init=self._counts or [0] * config.n_xbars),
            "n_layers": Out(range(config.max_layers + 1), init=initial_layers or 0),
            "loading": Out(1),
            "programmed": Out(1, init=int(initial_layers is not None)),
            "error": Out(8),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        m.submodules.crc = crc = CRC_ALGORITHM(data_width=8).create()

        sizes = {
            SectionId.LAYERS: record_bytes(layer_layout(config)),
            SectionId.ROWMAPS: record_bytes(section_layout(config, SectionId.ROWMAPS)),
            SectionId.CELLS: record_bytes(section_layout(config, SectionId.CELLS)),
            SectionId.ENTRIES: record_bytes(entry_layout(config)),
            SectionId.OUTPUT: record_bytes(output_param_layout(config)),
        }
        capacity = {section: section_capacity(config, section) for section in SectionId}
        capacity[SectionId.OUTPUT] = self.params
        row_bytes = record_bytes(cell_row_layout(config))
        assembly_bytes = max([sizes[s] for s in SectionId if s != SectionId.CELLS]
                             + [row_bytes, 4, SECTION_ENTRY_BYTES, HEADER_BYTES])

        # ``restart`` fans out to most of the loader's registers (the FSM, the counters, the
        # section table's write enables): it is registered first, so that fan-out starts at
        # a flip-flop and not at the host's CTRL decode. Every use below is this copy.
        restart = Signal()
        m.d.sync += restart.eq(self.restart)

        # Input skid buffer (two bytes): the parser's byte and ``valid`` come from
        # flip-flops, not from the producer (on the board, a block RAM's output with its
        # long clock-to-out), and ``bytes.ready`` is a flip-flop too (the buffer is not
        # full), not the parser's state decode. ``restart`` empties it: bytes offered before
        # the restart acts are dropped, as an idle loader would never take them.
        main_valid = Signal()
        main_byte = Signal(8)
        skid_valid = Signal()
        skid_byte = Signal(8)
        ready = Signal()                   # the parser takes ``byte`` this cycle if valid
        byte = main_byte
        take = main_valid & ready
        arrive = self.bytes.valid & self.bytes.ready
        m.d.comb += self.bytes.ready.eq(~skid_valid & ~restart)
        with m.If(restart):
            m.d.sync += [main_valid.eq(0), skid_valid.eq(0)]
        with m.Elif(take | ~main_valid):
            with m.If(skid_valid):
                m.d.sync += [main_byte.eq(skid_byte), main_valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [main_byte.eq(self.bytes.payload), main_valid.eq(arrive)]
        with m.Elif(arrive):
            m.d.sync += [skid_byte.eq(self.bytes.payload), skid_valid.eq(1)]
        position = Signal(32)              # bytes of the image consumed so far
        index = Signal(range(assembly_bytes))  # byte of the record being assembled
        assembly = Signal(assembly_bytes * 8)
        # the record including this cycle's byte; only meaningful when ``take`` (every use
        # is), so ``take`` -- which depends on the state and the producer's ``valid`` -- is
        # not in the byte multiplexer's select: the record checks start at flip-flops
        current = Signal(assembly_bytes * 8)
        m.d.comb += current.eq(Cat(
            Mux(index == i, byte, assembly[8 * i:8 * i + 8])
            for i in range(assembly_bytes)))
        with m.If(take):
            m.d.sync += [assembly.eq(current), position.eq(position + 1)]

        header = Signal(HEADER_LAYOUT)
        entry = SECTION_ENTRY_LAYOUT(current[:SECTION_ENTRY_LAYOUT.size])
        table = Array(Signal(SECTION_ENTRY_LAYOUT, name=f"section{i}")
                      for i in range(MAX_SECTIONS))
        section_index = Signal(range(MAX_SECTIONS + 1))
        section = Signal(SECTION_ENTRY_LAYOUT)
        remaining = Signal(32)             # payload bytes left in the section
        record = Signal(range(max(capacity.values()) + 1))  # records done in the section
        unit = Signal(clog2(config.n_xbars))   # ROWMAPS / CELLS unit
        row = Signal(range(config.rows))       # ROWMAPS / CELLS row
        in_cells_row = Signal()                # CELLS: past the unit word of the record

        counts = Array(Signal(range(self.unit_entries + 1), name=f"count{u}",
                              init=(self._counts[u] if self._counts else 0))
                       for u in range(config.n_xbars))
        for u in range(config.n_xbars):
            m.d.comb += self.n_entries[u].eq(counts[u])

        error = Signal(8)
        m.d.comb += self.error.eq(error)

        def fail(code: ErrorCode):
            m.d.sync += error.eq(code)
            m.next = "ERROR"

        digest = int.from_bytes(config_digest_bytes(config), "little")
        header_view = HEADER_LAYOUT(current[:HEADER_LAYOUT.size])

        # Memory writes leave from registers in the cycle after a record's last byte: the
        # record is complete in ``assembly`` by then (the next record's first byte lands at
        # the end of that cycle at the earliest), so only the strobe and the address fields
        # are registered, and no memory port is in series with the byte multiplexer. The
        # writes are always ready; the last one lands long before TRAILER sets
        # ``programmed``.
        writes = SimpleNamespace(
            layer=Signal(), layer_addr=Signal(len(self.layer_write.payload.addr)),
            param=Signal(), param_addr=Signal(len(self.param_write.payload.addr)),
            map=Signal(), map_unit=Signal(len(unit)), map_row=Signal(len(row)),
            entry=Signal(), entry_unit=Signal(len(unit)),
            entry_addr=Signal(len(self.entry_write.payload.write.addr)),
            cell=Signal(), cell_unit=Signal(len(unit)), cell_row=Signal(len(row)),
        )
        m.d.sync += [writes.layer.eq(0), writes.param.eq(0), writes.map.eq(0),
                     writes.entry.eq(0), writes.cell.eq(0)]
        map_width = self.map_write.payload.write.entry.shape().size
        entry_width = entry_layout(config).size
        m.d.comb += [
            self.layer_write.valid.eq(writes.layer),
            self.layer_write.payload.addr.eq(writes.layer_addr),
            self.layer_write.payload.record.eq(assembly[:layer_layout(config).size]),
            self.param_write.valid.eq(writes.param),
            self.param_write.payload.addr.eq(writes.param_addr),
            self.param_write.payload.record.eq(assembly[:output_param_layout(config).size]),
            self.map_write.valid.eq(writes.map),
            self.map_write.payload.unit.eq(writes.map_unit),
            self.map_write.payload.write.row.eq(writes.map_row),
            self.map_write.payload.write.entry.eq(assembly[:map_width]),
            self.entry_write.valid.eq(writes.entry),
            self.entry_write.payload.unit.eq(writes.entry_unit),
            self.entry_write.payload.write.addr.eq(writes.entry_addr),
            self.entry_write.payload.write.entry.eq(assembly[:entry_width]),
            self.cell_write.valid.eq(writes.cell),
            self.cell_write.payload.unit.eq(writes.cell_unit),
            self.cell_write.payload.row.eq(writes.cell_row),
            self.cell_write.payload.levels.eq(assembly[:config.cols * config.cell_bits]),
        ]

        # per-section checks, registered in SECTION_CHECK and decided in SECTION_DECIDE
        known = Signal()                   # the id is a SectionId
        size_ok = Signal()                 # record_bytes is that section's record size
        count_ok = Signal()                # record_count fits the memory
        expected_length = Signal(32 + max(sizes.values()).bit_length())
        section_end = Signal(33)           # offset + length
        behind = Signal()                  # the skip target lies before ``position``
        empty = Signal()                   # length == 0
        # PAD and TRAILER skip ``gap`` bytes to a target position; ``gap_zero`` is registered
        # so that ``bytes.ready`` is a flip-flop, not a 32-bit compare
        gap = Signal(32)
        gap_zero = Signal()
        first = Signal()                   # PAYLOAD: the section's first byte (CRC start)
        last = Signal()                    # PAYLOAD: remaining == 1

        with m.FSM():
            with m.State("IDLE"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    with m.If(self.clear_error):
                        m.d.sync += error.eq(0)
            with m.State("HEADER"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    # HEADER starts at position 0 with index 0: index is the position here
                    m.d.comb += [
                        self.loading.eq(1),
                        ready.eq(1),
                        crc.start.eq(index == 0),
                        crc.data.eq(byte),
                        crc.valid.eq(take & (index < HEADER_BYTES - _CRC_BYTES)),
                    ]
                    with m.If(take):
                        m.d.sync += index.eq(index + 1)
                        with m.If(index == HEADER_BYTES - 1):
                            m.d.sync += [header.eq(header_view), index.eq(0)]
                            m.next = "CHECK_HEADER"
            with m.State("CHECK_HEADER"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    digest_bits = Cat(header.digest[i]
                                      for i in range(len(config_digest_bytes(config))))
                    with m.If(header.magic != MAGIC_WORD):
                        fail(ErrorCode.BAD_MAGIC)
                    with m.Elif(header.version != FORMAT_VERSION):
                        fail(ErrorCode.BAD_VERSION)
                    with m.Elif((header.header_bytes != HEADER_BYTES)
                                | (header.table_entry_bytes != SECTION_ENTRY_BYTES)
                                | (header.section_count > MAX_SECTIONS)):
                        fail(ErrorCode.BAD_HEADER)
                    with m.Elif(digest_bits != digest):
                        fail(ErrorCode.BAD_DIGEST)
                    with m.Elif(crc.crc != header.header_crc):
                        fail(ErrorCode.HEADER_CRC)
                    with m.Elif(header.section_count == 0):
                        m.next = "CHECK_TABLE"
                    with m.Else():
                        m.d.sync += [section_index.eq(0), index.eq(0)]
                        m.next = "TABLE"
            with m.State("TABLE"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    # the table's first byte (position HEADER_BYTES) is entry 0, byte 0
                    m.d.comb += [
                        self.loading.eq(1),
                        ready.eq(1),
                        crc.start.eq((section_index == 0) & (index == 0)),
                        crc.data.eq(byte),
                        crc.valid.eq(take),
                    ]
                    with m.If(take):
                        m.d.sync += index.eq(index + 1)
                        with m.If(index == SECTION_ENTRY_BYTES - 1):
                            m.d.sync += [table[section_index].eq(entry), index.eq(0),
                                         section_index.eq(section_index + 1)]
                            with m.If(section_index + 1 == header.section_count):
                                m.next = "CHECK_TABLE"
            with m.State("CHECK_TABLE"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    with m.If((header.section_count != 0) & (crc.crc != header.table_crc)):
                        fail(ErrorCode.TABLE_CRC)
                    with m.Else():
                        m.d.sync += section_index.eq(0)
                        m.next = "SECTION"
            with m.State("SECTION"):
                # fetch the next table entry into ``section`` (its checks take two more
                # cycles, SECTION_CHECK and SECTION_DECIDE, so that neither the table's
                # multiplexer nor the 32-bit arithmetic is in series with the FSM)
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    current_entry = table[section_index]
                    m.d.sync += [
                        section.eq(current_entry),
                        remaining.eq(current_entry.length),
                        record.eq(0), unit.eq(0), row.eq(0), in_cells_row.eq(0), index.eq(0),
                    ]
                    with m.If(section_index == header.section_count):
                        # the trailer: skip to ``image_bytes`` (registers only, in parallel)
                        m.d.sync += [
                            behind.eq(position > header.image_bytes),
                            gap.eq(header.image_bytes - position),
                            gap_zero.eq(position == header.image_bytes),
                        ]
                        m.next = "TRAILER"
                    with m.Else():
                        m.next = "SECTION_CHECK"
            with m.State("SECTION_CHECK"):
                # ``record_count * size`` as shifts and adds of a constant: written as a
                # product, Yosys shares one multiplier between the section kinds (constant
                # multiplexer -> DSP block -> adders), which was the critical path
                products = {kind: _times(section.record_count, sizes[kind])
                            for kind in SectionId}
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    m.d.sync += [known.eq(0), size_ok.eq(0), count_ok.eq(0),
                                 expected_length.eq(0)]
                    with m.Switch(section.id):
                        for kind in SectionId:
                            with m.Case(int(kind)):
                                m.d.sync += [
                                    known.eq(1),
                                    size_ok.eq(section.record_bytes == sizes[kind]),
                                    count_ok.eq(section.record_count <= capacity[kind]),
                                    expected_length.eq(products[kind]),
                                ]
                    m.d.sync += [
                        section_end.eq(section.offset + section.length),
                        behind.eq(section.offset < position),
                        empty.eq(section.length == 0),
                        gap.eq(section.offset - position),
                        gap_zero.eq(section.offset == position),
                        last.eq(section.length == 1),
                    ]
                    m.next = "SECTION_DECIDE"
            with m.State("SECTION_DECIDE"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    with m.If(~known | ~size_ok | (expected_length != section.length) | behind
                              | (section_end > header.image_bytes)):
                        fail(ErrorCode.BAD_SECTION)
                    with m.Elif(~count_ok):
                        fail(ErrorCode.CAPACITY)
                    with m.Else():
                        m.next = "PAD"
            with m.State("PAD"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += [self.loading.eq(1), ready.eq(~gap_zero)]
                    with m.If(take):
                        m.d.sync += [gap.eq(gap - 1), gap_zero.eq(gap == 1)]
                    with m.If(gap_zero):
                        m.d.sync += first.eq(1)
                        with m.If(empty):
                            m.next = "SECTION_END"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += [
                        self.loading.eq(1),
                        ready.eq(1),
                        crc.start.eq(first),
                        crc.data.eq(byte),
                        crc.valid.eq(take),
                    ]
                    with m.If(take):
                        m.d.sync += [remaining.eq(remaining - 1), index.eq(index + 1),
                                     first.eq(0), last.eq(remaining == 2)]
                        with m.If(last):
                            m.next = "SECTION_END"
                        self._payload_byte(m, section.id, index, current, record, unit, row,
                                           in_cells_row, counts, sizes, row_bytes, fail,
                                           writes)
            with m.State("SECTION_END"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    with m.If(~empty & (crc.crc != section.crc)):
                        fail(ErrorCode.SECTION_CRC)
                    with m.Else():
                        with m.If(section.id == SectionId.LAYERS):
                            m.d.sync += self.n_layers.eq(section.record_count)
                        m.d.sync += section_index.eq(section_index + 1)
                        m.next = "SECTION"
            with m.State("TRAILER"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += [self.loading.eq(1),
                                 ready.eq(~behind & ~gap_zero)]
                    with m.If(behind):
                        fail(ErrorCode.BAD_SECTION)
                    with m.Elif(gap_zero):
                        m.d.sync += self.programmed.eq(1)
                        m.next = "IDLE"
                    with m.If(take):
                        m.d.sync += [gap.eq(gap - 1), gap_zero.eq(gap == 1)]
            with m.State("ERROR"):
                with m.If(restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += ready.eq(1)  # swallow the rest of the image
                    with m.If(self.clear_error):
                        m.d.sync += error.eq(0)
                        m.next = "IDLE"

        with m.If(restart):
            m.d.sync += [
                position.eq(0), index.eq(0), error.eq(0),
                self.programmed.eq(0), self.n_layers.eq(0),
            ]
            m.d.sync += [count.eq(0) for count in counts]
        return m

    def _payload_byte(self, m, kind, index, current, record, unit, row, in_cells_row,
                      counts, sizes, row_bytes, fail, writes):
        """Handle one payload byte (``take`` is true): complete and dispatch records.

        A completed record's write is registered (``writes``): it reaches its memory in the
        next cycle, from ``assembly``.
        """
        config = self.config
        with m.Switch(kind):
            for section_id, strobe, addr in (
                (SectionId.LAYERS, writes.layer, writes.layer_addr),
                (SectionId.OUTPUT, writes.param, writes.param_addr),
            ):
                with m.Case(int(section_id)):
                    with m.If(index == sizes[section_id] - 1):
                        m.d.sync += [index.eq(0), record.eq(record + 1),
                                     strobe.eq(1), addr.eq(record)]
            with m.Case(int(SectionId.ROWMAPS)):
                with m.If(index == sizes[SectionId.ROWMAPS] - 1):
                    m.d.sync += [index.eq(0), record.eq(record + 1),
                                 row.eq(Mux(row == config.rows - 1, 0, row + 1))]
                    with m.If(row == config.rows - 1):
                        m.d.sync += unit.eq(unit + 1)
                    m.d.sync += [writes.map.eq(1), writes.map_unit.eq(unit),
                                 writes.map_row.eq(row)]
            with m.Case(int(SectionId.ENTRIES)):
                layout = entry_layout(config)
                with m.If(index == sizes[SectionId.ENTRIES] - 1):
                    m.d.sync += [index.eq(0), record.eq(record + 1)]
                    entry = layout(current[:layout.size])
                    target = entry.xbar
                    count = counts[target]
                    with m.If(target >= config.n_xbars):
                        fail(ErrorCode.BAD_RECORD)
                    with m.Elif(entry.slice_hi > entry.slice_lo):
                        with m.If(count == self.unit_entries):
                            fail(ErrorCode.CAPACITY)
                        with m.Else():
                            m.d.sync += [count.eq(count + 1), writes.entry.eq(1),
                                         writes.entry_unit.eq(target),
                                         writes.entry_addr.eq(count)]
            with m.Case(int(SectionId.CELLS)):
                with m.If(~in_cells_row):
                    with m.If(index == 3):
                        word = current[:32]
                        m.d.sync += [index.eq(0), in_cells_row.eq(1), row.eq(0),
                                     unit.eq(word[:len(unit)])]
                        with m.If(word >= config.n_xbars):
                            fail(ErrorCode.BAD_RECORD)
                with m.Else():
                    with m.If(index == row_bytes - 1):
                        m.d.sync += [index.eq(0), row.eq(row + 1)]
                        with m.If(row == config.rows - 1):
                            m.d.sync += [in_cells_row.eq(0), record.eq(record + 1)]
                        m.d.sync += [writes.cell.eq(1), writes.cell_unit.eq(unit),
                                     writes.cell_row.eq(row)]
