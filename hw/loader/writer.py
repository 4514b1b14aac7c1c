"""The loader's last stage: assemble a section's records and write them to the memories."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.core.memories import param_capacity
from bitline.hw.loader.sections import (
    PayloadSignature,
    section_capacities,
    section_record_bytes,
)
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import (
    entry_layout,
    layer_layout,
    output_param_layout,
    record_bytes,
)
from bitline.hw.spec.image import SectionId, cell_row_layout, cells_layout
from bitline.hw.spec.network import node_layout
from bitline.hw.spec.registers import ErrorCode
from bitline.hw.unit.ou_controller import entry_write_layout
from bitline.hw.unit.row_driver import map_write_layout

__all__ = ["RecordWriter", "write_ports"]


def write_ports(config: AcceleratorConfig, unit_entries: int) -> dict[str, wiring.Member]:
    """Return the loader's memory-write ports (always ready), by name, as signature members.

    ``layer_write`` and ``param_write`` carry an address and a record; ``map_write``,
    ``entry_write`` and ``cell_write`` name the crossbar ``unit`` they are for; an
    ``entry_write`` goes to every unit of its ``units`` mask (``unit`` and the units that
    copy it). With the whole-network hardware (``config.network``) ``node_write`` carries
    a NETWORK record (:func:`~bitline.hw.spec.network.node_layout`) and its address.
    """
    unit = clog2(config.n_xbars)
    nodes = {"node_write": Out(stream.Signature(data.StructLayout({
        "addr": clog2(config.max_nodes), "record": node_layout(config)}),
        always_ready=True))} if config.network else {}
    return {
        "layer_write": Out(stream.Signature(data.StructLayout({
            "addr": clog2(config.max_layers), "record": layer_layout(config)}),
            always_ready=True)),
        "param_write": Out(stream.Signature(data.StructLayout({
            "addr": clog2(param_capacity(config)),
            "record": output_param_layout(config)}), always_ready=True)),
        "map_write": Out(stream.Signature(data.StructLayout({
            "unit": unit, "write": map_write_layout(config)}), always_ready=True)),
        "entry_write": Out(stream.Signature(data.StructLayout({
            "unit": unit, "units": config.n_xbars,
            "write": entry_write_layout(config, unit_entries)}),
            always_ready=True)),
        "cell_write": Out(stream.Signature(data.StructLayout({
            "unit": unit, "row": clog2(config.rows),
            "levels": data.ArrayLayout(config.cell_bits, config.cols)}),
            always_ready=True)),
        **nodes,
    }


class RecordWriter(wiring.Component):
    """Assemble each section's records from its payload bytes and write them to memory.

    Where the records go (the section layouts are :mod:`bitline.hw.spec.image`):

    * LAYERS -> ``layer_write``, record ``i`` at address ``i``;
    * OUTPUT -> ``param_write``, record ``i`` at address ``i``;
    * NETWORK (whole-network hardware only) -> ``node_write``, record ``i`` at address ``i``;
    * ROWMAPS -> ``map_write``, record ``i`` to unit ``i // rows``, row ``i % rows``;
    * CELLS -> a unit word (``BAD_RECORD`` if the unit or its ``source`` does not exist, or a
      reserved bit is set; the unit runs ``source``'s entries from then on), then
      ``cell_write`` of one crossbar row per :func:`~bitline.hw.spec.image.cell_row_layout`
      word, row 0 first;
    * ENTRIES -> ``entry_write`` of the record's ``xbar`` (``BAD_RECORD`` if it does not
      exist) at that unit's next address (``CAPACITY`` when the unit's memory is full), to
      that unit and to every unit whose CELLS record named it as ``source`` (the copies of a
      layer run copy 0's entries); entries without a slice to issue are dropped.
      ``n_entries`` counts them per unit.

    A write leaves from registers in the cycle after its record's last byte (the record is
    complete in ``assembly`` by then and the next record's first byte lands at the end of
    that cycle at the earliest), so no memory port is in series with the byte multiplexer.
    A refused record is reported on ``payload.error`` in the cycle of its last byte (or the
    unit word's) and is not written.

    Parameters
    ----------
    config:
        Accelerator configuration (record layouts).
    unit_entries:
        Entry-memory depth of each unit.
    initial_counts:
        ``n_entries`` after reset (memories initialised at elaboration), else zeros.

    Attributes
    ----------
    payload: In(PayloadSignature())
        From the section router.
    start: In(1)
        A new image begins: ``n_entries`` returns to zero.
    layer_write, param_write, map_write, entry_write, cell_write: Out(stream ...)
        Memory writes (always ready); ``unit`` selects the crossbar unit.
    node_write: Out(stream ...)
        NETWORK records (only with ``config.network``).
    n_entries: Out(ArrayLayout(range(unit_entries + 1), n_xbars))
        Entries written to each unit since ``start``.
    """

    def __init__(self, config: AcceleratorConfig, unit_entries: int,
                 initial_counts: list[int] | None = None):
        self.config = config
        self.unit_entries = unit_entries
        self._counts = list(initial_counts) if initial_counts is not None else None
        super().__init__({
            "payload": In(PayloadSignature()),
            "start": In(1),
            **write_ports(config, unit_entries),
            "n_entries": Out(data.ArrayLayout(range(unit_entries + 1), config.n_xbars),
                             init=self._counts or [0] * config.n_xbars),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        sizes = section_record_bytes(config)
        row_bytes = record_bytes(cell_row_layout(config))
        unit_word_bytes = cells_layout(config)["rows"].offset // 8
        assembly_bytes = max([sizes[s] for s in sizes if s != SectionId.CELLS]
                             + [row_bytes, unit_word_bytes])

        byte = self.payload.bytes.payload
        take = self.payload.bytes.valid
        index = Signal(range(assembly_bytes))  # byte of the record being assembled
        assembly = Signal(assembly_bytes * 8)
        # the record including this cycle's byte (only meaningful when ``take``)
        current = Signal(assembly_bytes * 8)
        m.d.comb += current.eq(Cat(
            Mux(index == i, byte, assembly[8 * i:8 * i + 8]) for i in range(assembly_bytes)))
        with m.If(take):
            m.d.sync += assembly.eq(current)

        state = SimpleNamespace(
            index=index, current=current,
            record=Signal(range(max(section_capacities(config).values()) + 1)),
            unit=Signal(clog2(config.n_xbars)),   # ROWMAPS / CELLS unit
            row=Signal(range(config.rows)),        # ROWMAPS / CELLS row
            in_cells_row=Signal(),                 # CELLS: past the unit word of the record
            counts=Array(Signal(range(self.unit_entries + 1), name=f"count{u}",
                                init=(self._counts[u] if self._counts else 0))
                         for u in range(config.n_xbars)),
            # the unit whose entries each unit runs (CELLS ``source``; itself until named)
            sources=Array(Signal(clog2(config.n_xbars), name=f"source{u}", init=u)
                          for u in range(config.n_xbars)),
        )
        for u in range(config.n_xbars):
            m.d.comb += self.n_entries[u].eq(state.counts[u])
        writes = self._write_ports(m, assembly, state)

        with m.If(self.payload.begin):
            m.d.sync += [index.eq(0), state.record.eq(0), state.unit.eq(0), state.row.eq(0),
                         state.in_cells_row.eq(0)]
        with m.If(take):
            m.d.sync += index.eq(index + 1)
            with m.Switch(self.payload.section):
                indexed = [(SectionId.LAYERS, writes.layer, writes.layer_addr),
                           (SectionId.OUTPUT, writes.param, writes.param_addr)]
                if config.network:
                    indexed.append((SectionId.NETWORK, writes.node, writes.node_addr))
                for kind, strobe, addr in indexed:
                    with m.Case(int(kind)):
                        with m.If(index == sizes[kind] - 1):
                            m.d.sync += [index.eq(0), state.record.eq(state.record + 1),
                                         strobe.eq(1), addr.eq(state.record)]
                with m.Case(int(SectionId.ROWMAPS)):
                    self._rowmap_byte(m, state, writes, sizes[SectionId.ROWMAPS])
                with m.Case(int(SectionId.ENTRIES)):
                    self._entry_byte(m, state, writes, sizes[SectionId.ENTRIES])
                with m.Case(int(SectionId.CELLS)):
                    self._cells_byte(m, state, writes, unit_word_bytes, row_bytes)
        with m.If(self.start):
            m.d.sync += [count.eq(0) for count in state.counts]
            m.d.sync += [source.eq(u) for u, source in enumerate(state.sources)]
        return m

    def _write_ports(self, m, assembly, state) -> SimpleNamespace:
        """Drive the write ports from registered strobes and addresses and ``assembly``."""
        config = self.config
        writes = SimpleNamespace(
            layer=Signal(), layer_addr=Signal.like(self.layer_write.payload.addr),
            param=Signal(), param_addr=Signal.like(self.param_write.payload.addr),
            map=Signal(), map_unit=Signal.like(state.unit), map_row=Signal.like(state.row),
            entry=Signal(), entry_unit=Signal.like(state.unit),
            entry_units=Signal(config.n_xbars),
            entry_addr=Signal.like(self.entry_write.payload.write.addr),
            cell=Signal(), cell_unit=Signal.like(state.unit), cell_row=Signal.like(state.row),
            node=Signal(), node_addr=Signal(clog2(config.max_nodes) if config.network else 1),
        )
        m.d.sync += [writes.layer.eq(0), writes.param.eq(0), writes.map.eq(0),
                     writes.entry.eq(0), writes.cell.eq(0), writes.node.eq(0)]
        if config.network:
            m.d.comb += [
                self.node_write.valid.eq(writes.node),
                self.node_write.payload.addr.eq(writes.node_addr),
                self.node_write.payload.record.eq(assembly[:node_layout(config).size]),
            ]
        map_width = self.map_write.payload.write.entry.shape().size
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
            self.entry_write.payload.units.eq(writes.entry_units),
            self.entry_write.payload.write.addr.eq(writes.entry_addr),
            self.entry_write.payload.write.entry.eq(assembly[:entry_layout(config).size]),
            self.cell_write.valid.eq(writes.cell),
            self.cell_write.payload.unit.eq(writes.cell_unit),
            self.cell_write.payload.row.eq(writes.cell_row),
            self.cell_write.payload.levels.eq(assembly[:config.cols * config.cell_bits]),
        ]
        return writes

    def _fail(self, m, code: ErrorCode):
        m.d.comb += [self.payload.error.valid.eq(1), self.payload.error.payload.eq(code)]

    def _rowmap_byte(self, m, state, writes, size: int):
        """ROWMAPS: record ``i`` goes to unit ``i // rows``, row ``i % rows``."""
        last_row = self.config.rows - 1
        with m.If(state.index == size - 1):
            m.d.sync += [state.index.eq(0), state.record.eq(state.record + 1),
                         state.row.eq(Mux(state.row == last_row, 0, state.row + 1))]
            with m.If(state.row == last_row):
                m.d.sync += state.unit.eq(state.unit + 1)
            m.d.sync += [writes.map.eq(1), writes.map_unit.eq(state.unit),
                         writes.map_row.eq(state.row)]

    def _entry_byte(self, m, state, writes, size: int):
        """ENTRIES: append the entry to its unit's memory, unless it issues no slice."""
        layout = entry_layout(self.config)
        with m.If(state.index == size - 1):
            m.d.sync += [state.index.eq(0), state.record.eq(state.record + 1)]
            entry = layout(state.current[:layout.size])
            count = state.counts[entry.xbar]
            # the entry's unit and its copies (whose counts equal its count)
            takers = [source == entry.xbar for source in state.sources]
            with m.If(entry.xbar >= self.config.n_xbars):
                self._fail(m, ErrorCode.BAD_RECORD)
            with m.Elif(entry.slice_hi > entry.slice_lo):
                with m.If(count == self.unit_entries):
                    self._fail(m, ErrorCode.CAPACITY)
                with m.Else():
                    m.d.sync += [writes.entry.eq(1), writes.entry_unit.eq(entry.xbar),
                                 writes.entry_units.eq(Cat(takers)),
                                 writes.entry_addr.eq(count)]
                    for unit_count, taker in zip(state.counts, takers):
                        with m.If(taker):
                            m.d.sync += unit_count.eq(unit_count + 1)

    def _cells_byte(self, m, state, writes, unit_word_bytes: int, row_bytes: int):
        """CELLS: the unit word, then one crossbar row per ``row_bytes`` bytes."""
        with m.If(~state.in_cells_row):
            with m.If(state.index == unit_word_bytes - 1):
                word = state.current[:unit_word_bytes * 8]
                bits = len(state.unit)
                unit, source, reserved = word[:bits], word[bits:2 * bits], word[2 * bits:]
                m.d.sync += [state.index.eq(0), state.in_cells_row.eq(1), state.row.eq(0),
                             state.unit.eq(unit)]
                with m.If((unit >= self.config.n_xbars) | (source >= self.config.n_xbars)
                          | (reserved != 0)):
                    self._fail(m, ErrorCode.BAD_RECORD)
                with m.Else():
                    m.d.sync += state.sources[unit].eq(source)
        with m.Else():
            with m.If(state.index == row_bytes - 1):
                m.d.sync += [state.index.eq(0), state.row.eq(state.row + 1)]
                with m.If(state.row == self.config.rows - 1):
                    m.d.sync += [state.in_cells_row.eq(0), state.record.eq(state.record + 1)]
                m.d.sync += [writes.cell.eq(1), writes.cell_unit.eq(state.unit),
                             writes.cell_row.eq(state.row)]
