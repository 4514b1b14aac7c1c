"""Row drivers: a crossbar unit's double-banked input vector and its row map, read per OU.

The input vector is broadcast to all units one code per cycle (``load``, its index and
code). A unit keeps it in ``ou_rows`` *lanes*, one per row position ``k`` inside a row
group; each lane has

* an **input memory** of ``2 * max_in_features`` codes at ``2 * index + bank``:
  every load writes its code into every lane's *shadow* bank at the code's index;
* a **row-map memory** of ``row_groups`` words: word ``g`` is the ``(valid, index)`` record
  of row ``g * ou_rows + k`` (the input that drives it).

``swap`` exchanges the banks (the shadow bank becomes the *active* one that OU reads see),
so loading vector ``v + 1`` overlaps computing vector ``v``.

A read of row group ``g`` and slice ``t`` (``select``) is a pipeline of
:data:`~bitline.hw.spec.timing.ROW_SELECT_CYCLES` registered steps, one new read per cycle:
the lanes read their row-map word ``g``; then their input memories at the active bank and
the mapped index; then ``wordline_en[k]`` (the row is mapped) and ``dac[k] = (x >> (t *
dac_bits)) & dac_max`` of the code (0 for an unmapped row) are registered -- exactly the
``slice_t(x[in(r)])`` of docs/contract.md section 4, ``ROW_SELECT_CYCLES`` cycles after the
request. Every step starts from a register or a memory read, so the OU issue path is short
(docs/fpga.md section 4), and the unit holds no per-row comparators or row multiplexers:
the ``rows x 2`` code registers and the ``row_groups``-way multiplexers of an earlier design
made a 128x128 unit's Verilog some 11k lines (docs/hardware.md, "Timing").

A row-map write lands one cycle after ``map_write`` (the lane and the address of a row are
registered). The banks swap only while no read is in flight (the scheduler swaps at ``go``).
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from bitline.hw._component import rejects_quietly
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.image import rowmap_layout

__all__ = [
    "RowDriver", "RowSelectSignature", "input_layout", "map_write_layout", "slice_bits",
]


def slice_bits(config: AcceleratorConfig) -> int:
    """Return the width of a slice index (``clog2(max_slices)``)."""
    return clog2(config.max_slices)


def input_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return one broadcast input: its index in the input vector and its code."""
    return data.StructLayout({
        "index": clog2(config.max_in_features),
        "code": config.max_act_bits,
    })


def map_write_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return one row-map write: the row and its :func:`~.bundle_format.rowmap_layout` entry."""
    return data.StructLayout({"row": clog2(config.rows), "entry": rowmap_layout(config)})


class RowSelectSignature(wiring.Signature):
    """Ask the row drivers for a row group / slice; get wordline enables and DAC slices.

    The answer comes :data:`~bitline.hw.spec.timing.ROW_SELECT_CYCLES` cycles after the
    request (one request per cycle).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "row_group": Out(clog2(config.row_groups)),
            "slice_index": Out(slice_bits(config)),
            "wordline_en": In(config.ou_rows),
            "dac": In(data.ArrayLayout(config.dac_bits, config.ou_rows)),
        })

    def __eq__(self, other):
        return type(self) is type(other) and self.config == other.config

    __hash__ = None


class RowDriver(wiring.Component):
    """Double-banked input memories and row map of one crossbar unit.

    Parameters
    ----------
    config:
        Accelerator configuration.
    row_map:
        Optional int ``(rows,)`` initial row map (input index per row, -1 unused).

    Attributes
    ----------
    load: In(stream.Signature(input_layout, always_ready=True))
        Broadcast input codes; written into every lane's shadow bank at their index.
    swap: In(1)
        Exchange the active and shadow banks at the end of this cycle.
    map_write: In(stream.Signature(...))
        Row-map programming: payload ``(row, entry)`` with ``entry`` a
        :func:`~bitline.hw.spec.image.rowmap_layout` record (always ready).
    select: In(RowSelectSignature(config))
        ``row_group`` / ``slice_index`` in; ``wordline_en`` / ``dac`` of those rows out,
        registered, :data:`~bitline.hw.spec.timing.ROW_SELECT_CYCLES` cycles later.
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, row_map: np.ndarray | None = None):
        self.config = config
        if row_map is not None:
            row_map = np.asarray(row_map, dtype=np.int64)
            if row_map.shape != (config.rows,):
                raise ValueError(f"row_map must have shape ({config.rows},), not {row_map.shape}")
            if row_map.max(initial=-1) >= config.max_in_features or row_map.min(initial=-1) < -1:
                raise ValueError(f"row map indices must be in -1..{config.max_in_features - 1}")
        self._row_map = row_map
        super().__init__({
            "load": In(stream.Signature(input_layout(config), always_ready=True)),
            "swap": In(1),
            "map_write": In(stream.Signature(map_write_layout(config), always_ready=True)),
            "select": In(RowSelectSignature(config)),
        })

    def _map_init(self, lane: int) -> list[int]:
        """Return lane ``lane``'s row-map words (packed ``rowmap_layout``), one per group."""
        config = self.config
        words = []
        for group in range(config.row_groups):
            row = group * config.ou_rows + lane
            index = -1 if self._row_map is None or row >= config.rows else self._row_map[row]
            # rowmap_layout: valid at bit 0, index above it
            words.append(0 if index < 0 else 1 | (int(index) << 1))
        return words

    def elaborate(self, platform):
        config = self.config
        m = Module()
        map_layout = rowmap_layout(config)
        select = self.select

        active = Signal()  # bank that OU reads see; the other one is the shadow bank
        with m.If(self.swap):
            m.d.sync += active.eq(~active)

        # Row-map writes, registered: lane ``row % ou_rows``, address ``row // ou_rows``
        # (the constant division stays off the memory's write path).
        map_lane = Signal(range(config.ou_rows))
        map_group = Signal(range(config.row_groups))
        map_entry = Signal(map_layout)
        map_valid = Signal()
        # lane and group from a table indexed by the row (a small ROM), not a divider
        row = self.map_write.payload.row
        lane_of = Array(Const(r % config.ou_rows, range(config.ou_rows))
                        for r in range(1 << len(row)))
        group_of = Array(Const(min(r // config.ou_rows, config.row_groups - 1),
                               range(config.row_groups))
                         for r in range(1 << len(row)))
        m.d.sync += [
            map_valid.eq(self.map_write.valid),
            map_lane.eq(lane_of[row]),
            map_group.eq(group_of[row]),
            map_entry.eq(self.map_write.payload.entry),
        ]

        # The read pipeline's control, delayed alongside the memories.
        slice_1 = Signal.like(select.slice_index, name="slice_1")
        slice_2 = Signal.like(select.slice_index, name="slice_2")
        m.d.sync += [slice_1.eq(select.slice_index), slice_2.eq(slice_1)]

        for lane in range(config.ou_rows):
            row_map = Memory(shape=map_layout.size, depth=config.row_groups,
                             init=self._map_init(lane))
            m.submodules[f"map{lane}"] = row_map
            write = row_map.write_port()
            m.d.comb += [
                write.addr.eq(map_group),
                write.data.eq(map_entry),
                write.en.eq(map_valid & (map_lane == lane)),
            ]
            map_read = row_map.read_port()
            m.d.comb += map_read.addr.eq(select.row_group)
            mapped = map_layout(map_read.data)

            # address = index * 2 + bank: exactly 2 * max_in_features words
            codes = Memory(shape=config.max_act_bits, depth=2 * config.max_in_features,
                           init=[])
            m.submodules[f"inputs{lane}"] = codes
            load = codes.write_port()
            m.d.comb += [
                load.addr.eq(Cat(~active, self.load.payload.index)),
                load.data.eq(self.load.payload.code),
                load.en.eq(self.load.valid),
            ]
            code_read = codes.read_port()
            m.d.comb += code_read.addr.eq(Cat(active, mapped.index))
            used = Signal(name=f"used_2_{lane}")
            m.d.sync += used.eq(mapped.valid)

            code = code_read.data
            slices = [code[t * config.dac_bits:(t + 1) * config.dac_bits]
                      for t in range(config.max_slices)]
            slice_value = Array(slices)[slice_2] if len(slices) > 1 else slices[0]
            m.d.sync += [
                select.wordline_en[lane].eq(used),
                select.dac[lane].eq(slice_value & used.replicate(config.dac_bits)),
            ]
        return m

