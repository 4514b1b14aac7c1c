"""Row drivers: a crossbar unit's double-buffered input registers and its row map.

Every row ``r`` of the crossbar has two ``max_act_bits`` registers (banks) and a row-map
entry ``(valid, index)``: the input code with that index drives the row. The input vector is
broadcast to all units one code per cycle (``load``); each row whose map names the code's
index captures it into the *shadow* bank. ``swap`` exchanges the banks (the shadow bank
becomes the *active* one that OU reads see, and the old active bank becomes the shadow bank
the next vector loads into), so loading vector ``v + 1`` overlaps computing vector ``v``.

The read side is combinational: for ``row_group`` ``g`` and ``slice_index`` ``t`` it
returns, for each row ``k`` of the group, ``wordline_en[k]`` (the row is mapped) and
``dac[k] = (x >> (t * dac_bits)) & dac_max`` of the active code (0 for an unmapped row),
exactly the ``slice_t(x[in(r)])`` of docs/contract.md section 4.
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Module, Signal
from amaranth.lib import data, stream, wiring
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
    """Ask the row drivers for a row group / slice; get wordline enables and DAC slices."""

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
    """Double-buffered input registers of one crossbar unit.

    Parameters
    ----------
    config:
        Accelerator configuration.
    row_map:
        Optional int ``(rows,)`` initial row map (input index per row, -1 unused).

    Attributes
    ----------
    load: In(stream.Signature(input_layout, always_ready=True))
        Broadcast input codes; captured into the shadow bank by every row mapped to them.
    swap: In(1)
        Exchange the active and shadow banks at the end of this cycle.
    map_write: In(stream.Signature(...))
        Row-map programming: payload ``(row, entry)`` with ``entry`` a
        :func:`~bitline.hw.spec.image.rowmap_layout` record (always ready).
    select: In(RowSelectSignature(config))
        ``row_group`` / ``slice_index`` in; ``wordline_en`` / ``dac`` of those rows out
        (combinational).
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

    def elaborate(self, platform):
        config = self.config
        m = Module()
        map_layout = rowmap_layout(config)
        padded_rows = config.row_groups * config.ou_rows

        active = Signal()  # bank that OU reads see; the other one is the shadow bank
        with m.If(self.swap):
            m.d.sync += active.eq(~active)

        codes = []  # per row: Array of the two banks
        mapped = []
        for row in range(padded_rows):
            if row >= config.rows:
                codes.append(None)
                mapped.append(None)
                continue
            init = {"valid": 0, "index": 0}
            if self._row_map is not None and self._row_map[row] >= 0:
                init = {"valid": 1, "index": int(self._row_map[row])}
            entry = Signal(map_layout, name=f"map{row}", init=init)
            with m.If(self.map_write.valid & (self.map_write.payload.row == row)):
                m.d.sync += entry.eq(self.map_write.payload.entry)
            banks = [Signal(config.max_act_bits, name=f"row{row}_bank{bank}")
                     for bank in range(2)]
            hit = (self.load.valid & entry.valid
                   & (entry.index == self.load.payload.index))
            for bank in range(2):
                # Bank `bank` is the shadow bank while `active` points at the other one.
                with m.If(hit & (active != bank)):
                    m.d.sync += banks[bank].eq(self.load.payload.code)
            codes.append(Array(banks)[active])
            mapped.append(entry.valid)

        for k in range(config.ou_rows):
            group_codes = []
            group_mapped = []
            for group in range(config.row_groups):
                row = group * config.ou_rows + k
                group_codes.append(codes[row] if codes[row] is not None else 0)
                group_mapped.append(mapped[row] if mapped[row] is not None else 0)
            code = Signal(config.max_act_bits, name=f"code{k}")
            used = Signal(name=f"used{k}")
            if config.row_groups == 1:
                m.d.comb += [code.eq(group_codes[0]), used.eq(group_mapped[0])]
            else:
                m.d.comb += [code.eq(Array(group_codes)[self.select.row_group]),
                             used.eq(Array(group_mapped)[self.select.row_group])]
            slices = [code[t * config.dac_bits:(t + 1) * config.dac_bits]
                      for t in range(config.max_slices)]
            slice_value = (Array(slices)[self.select.slice_index] if len(slices) > 1
                           else slices[0])
            m.d.comb += [
                self.select.wordline_en[k].eq(used),
                self.select.dac[k].eq(Cat(slice_value).as_unsigned()
                                      & used.replicate(config.dac_bits)),
            ]
        return m
