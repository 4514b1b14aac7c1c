"""Program loader: parses the ``image.bin`` byte stream into the accelerator's memories.

The image layout is :mod:`bitline.hw.bundle_format` (header, section table, sections). The
loader takes one byte per cycle (``bytes`` is ready while an image is being loaded) and

* checks the header (magic, version, sizes, the config digest) and its CRC-32, then the
  section table's CRC-32, in hardware (:data:`~bitline.hw.bundle_format.CRC_ALGORITHM`);
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

The first error stops parsing; its :class:`~bitline.hw.host.ErrorCode` stays in ``error``
(the rest of the stream is swallowed) until ``restart`` or ``clear_error``. Records are
written before their section's CRC is known: a CRC error means the memories must be
reloaded, which ``programmed = 0`` tells the host.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .bundle_format import (
    CRC_ALGORITHM, FORMAT_VERSION, HEADER_BYTES, HEADER_LAYOUT, MAGIC_WORD,
    SECTION_ENTRY_BYTES, SECTION_ENTRY_LAYOUT, SectionId, cell_row_layout,
    config_digest_bytes, section_capacity, section_layout,
)
from .config import AcceleratorConfig, clog2
from .encoding import entry_layout, layer_layout, output_param_layout, record_bytes
from .host import ErrorCode
from .memories import param_capacity
from .ou_controller import entry_write_layout
from .row_driver import map_write_layout

__all__ = ["Loader", "MAX_SECTIONS"]

#: Section-table entries the loader holds (one per section id).
MAX_SECTIONS = len(SectionId)
_CRC_BYTES = 4


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
        (simulation from :func:`~bitline.hw.memories.program_memories`); the accelerator then
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

        byte = self.bytes.payload
        take = self.bytes.valid & self.bytes.ready
        position = Signal(32)              # bytes of the image consumed so far
        index = Signal(range(assembly_bytes))  # byte of the record being assembled
        assembly = Signal(assembly_bytes * 8)
        current = Signal(assembly_bytes * 8)   # the record including this cycle's byte
        m.d.comb += current.eq(Cat(
            Mux(take & (index == i), byte, assembly[8 * i:8 * i + 8])
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

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    with m.If(self.clear_error):
                        m.d.sync += error.eq(0)
            with m.State("HEADER"):
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += [
                        self.loading.eq(1),
                        self.bytes.ready.eq(1),
                        crc.start.eq(position == 0),
                        crc.data.eq(byte),
                        crc.valid.eq(take & (position < HEADER_BYTES - _CRC_BYTES)),
                    ]
                    with m.If(take):
                        m.d.sync += index.eq(index + 1)
                        with m.If(index == HEADER_BYTES - 1):
                            m.d.sync += [header.eq(header_view), index.eq(0)]
                            m.next = "CHECK_HEADER"
            with m.State("CHECK_HEADER"):
                with m.If(self.restart):
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
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += [
                        self.loading.eq(1),
                        self.bytes.ready.eq(1),
                        crc.start.eq(position == HEADER_BYTES),
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
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    with m.If((header.section_count != 0) & (crc.crc != header.table_crc)):
                        fail(ErrorCode.TABLE_CRC)
                    with m.Else():
                        m.d.sync += section_index.eq(0)
                        m.next = "SECTION"
            with m.State("SECTION"):
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    current_entry = table[section_index]
                    m.d.sync += [
                        section.eq(current_entry),
                        remaining.eq(current_entry.length),
                        record.eq(0), unit.eq(0), row.eq(0), in_cells_row.eq(0), index.eq(0),
                    ]
                    size_ok = Signal()
                    count_ok = Signal()
                    known = Signal()
                    with m.Switch(current_entry.id):
                        for kind in SectionId:
                            with m.Case(int(kind)):
                                m.d.comb += [
                                    known.eq(1),
                                    size_ok.eq((current_entry.record_bytes == sizes[kind])
                                               & (current_entry.length
                                                  == current_entry.record_count * sizes[kind])),
                                    count_ok.eq(current_entry.record_count <= capacity[kind]),
                                ]
                    with m.If(section_index == header.section_count):
                        m.next = "TRAILER"
                    with m.Elif(~known | ~size_ok | (current_entry.offset < position)
                                | (current_entry.offset + current_entry.length
                                   > header.image_bytes)):
                        fail(ErrorCode.BAD_SECTION)
                    with m.Elif(~count_ok):
                        fail(ErrorCode.CAPACITY)
                    with m.Else():
                        m.next = "PAD"
            with m.State("PAD"):
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += [self.loading.eq(1),
                                 self.bytes.ready.eq(position != section.offset)]
                    with m.If(position == section.offset):
                        with m.If(section.length == 0):
                            m.next = "SECTION_END"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += [
                        self.loading.eq(1),
                        self.bytes.ready.eq(1),
                        crc.start.eq(remaining == section.length),
                        crc.data.eq(byte),
                        crc.valid.eq(take),
                    ]
                    with m.If(take):
                        m.d.sync += [remaining.eq(remaining - 1), index.eq(index + 1)]
                        with m.If(remaining == 1):
                            m.next = "SECTION_END"
                        self._payload_byte(m, section.id, index, current, record, unit, row,
                                           in_cells_row, counts, sizes, row_bytes, fail)
            with m.State("SECTION_END"):
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.loading.eq(1)
                    with m.If((section.length != 0) & (crc.crc != section.crc)):
                        fail(ErrorCode.SECTION_CRC)
                    with m.Else():
                        with m.If(section.id == SectionId.LAYERS):
                            m.d.sync += self.n_layers.eq(section.record_count)
                        m.d.sync += section_index.eq(section_index + 1)
                        m.next = "SECTION"
            with m.State("TRAILER"):
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += [self.loading.eq(1),
                                 self.bytes.ready.eq(position < header.image_bytes)]
                    with m.If(position > header.image_bytes):
                        fail(ErrorCode.BAD_SECTION)
                    with m.Elif(position == header.image_bytes):
                        m.d.sync += self.programmed.eq(1)
                        m.next = "IDLE"
            with m.State("ERROR"):
                with m.If(self.restart):
                    m.next = "HEADER"
                with m.Else():
                    m.d.comb += self.bytes.ready.eq(1)  # swallow the rest of the image
                    with m.If(self.clear_error):
                        m.d.sync += error.eq(0)
                        m.next = "IDLE"

        with m.If(self.restart):
            m.d.sync += [
                position.eq(0), index.eq(0), error.eq(0),
                self.programmed.eq(0), self.n_layers.eq(0),
            ]
            m.d.sync += [count.eq(0) for count in counts]
        return m

    def _payload_byte(self, m, kind, index, current, record, unit, row, in_cells_row,
                      counts, sizes, row_bytes, fail):
        """Handle one payload byte (``take`` is true): complete and dispatch records."""
        config = self.config
        with m.Switch(kind):
            for section_id, port, layout in (
                (SectionId.LAYERS, self.layer_write, layer_layout(config)),
                (SectionId.OUTPUT, self.param_write, output_param_layout(config)),
            ):
                with m.Case(int(section_id)):
                    with m.If(index == sizes[section_id] - 1):
                        m.d.sync += [index.eq(0), record.eq(record + 1)]
                        m.d.comb += [
                            port.valid.eq(1),
                            port.payload.addr.eq(record),
                            port.payload.record.eq(current[:layout.size]),
                        ]
            with m.Case(int(SectionId.ROWMAPS)):
                with m.If(index == sizes[SectionId.ROWMAPS] - 1):
                    m.d.sync += [index.eq(0), record.eq(record + 1),
                                 row.eq(Mux(row == config.rows - 1, 0, row + 1))]
                    with m.If(row == config.rows - 1):
                        m.d.sync += unit.eq(unit + 1)
                    width = self.map_write.payload.write.entry.shape().size
                    m.d.comb += [
                        self.map_write.valid.eq(1),
                        self.map_write.payload.unit.eq(unit),
                        self.map_write.payload.write.row.eq(row),
                        self.map_write.payload.write.entry.eq(current[:width]),
                    ]
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
                            m.d.sync += count.eq(count + 1)
                            m.d.comb += [
                                self.entry_write.valid.eq(1),
                                self.entry_write.payload.unit.eq(target),
                                self.entry_write.payload.write.addr.eq(count),
                                self.entry_write.payload.write.entry.eq(entry),
                            ]
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
                        m.d.comb += [
                            self.cell_write.valid.eq(1),
                            self.cell_write.payload.unit.eq(unit),
                            self.cell_write.payload.row.eq(row),
                            self.cell_write.payload.levels.eq(
                                current[:config.cols * config.cell_bits]),
                        ]
