"""OU controller: walks one crossbar unit's OU entries and issues its OU reads.

A crossbar unit holds one layer, so its entries (in the image's execution order, with the
zero-slice entries dropped by the loader) sit in the unit's own entry memory at addresses
``0 .. n_entries - 1``. On ``go`` the controller fetches them in order and emits, per entry,
one OU-read command per issued input slice ``t = slice_lo, slice_lo + 1, .., slice_hi - 1``
(BWQ activation widths: only the slices the entry asks for).

The entry memory's read data feeds an *entry register*, the current entry (so the OU issue
path starts from a flip-flop, not from the memory's slow clock-to-out; docs/fpga.md section
4), and the memory always reads one entry ahead (prefetch): the entry register is refilled
from the memory's data in the cycle its last slice is accepted while the memory reads the
entry after it, so back-to-back entries issue without a bubble and a unit with ``R`` reads
keeps ``reads.valid`` high for exactly ``R * conversions_per_read`` cycles when the ADC mux
takes one command per ``conversions_per_read`` cycles. The first command is valid
``ENTRY_FETCH_CYCLES`` (:mod:`bitline.hw.spec.timing`) cycles after ``go``: the memory read
and the entry register. ``busy`` is high from ``go`` to the cycle the last command is
accepted.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from bitline.hw._component import rejects_quietly
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import column_layout, entry_layout
from bitline.hw.unit.row_driver import slice_bits

__all__ = ["OUController", "read_command_layout", "entry_write_layout"]


def read_command_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return one OU-read command: which OU, which input slice, the column descriptors."""
    return data.StructLayout({
        "row_group": clog2(config.row_groups),
        "col_group": clog2(config.col_groups),
        "slice_index": slice_bits(config),
        "cols": data.ArrayLayout(column_layout(config), config.ou_cols),
    })


def entry_write_layout(config: AcceleratorConfig, depth: int) -> data.StructLayout:
    """Return an entry-memory write: address and :func:`~bitline.hw.spec.encoding.entry_layout`."""
    return data.StructLayout({"addr": clog2(depth), "entry": entry_layout(config)})


class OUController(wiring.Component):
    """Entry memory, entry fetch and slice sequencing of one crossbar unit.

    Parameters
    ----------
    config:
        Accelerator configuration.
    depth:
        Entries the unit can hold.
    init:
        Optional initial entry words (packed :func:`~bitline.hw.spec.encoding.entry_layout`
        integers, as :func:`bitline.hw.core.memories.program_memories` returns them).

    Attributes
    ----------
    go: In(1)
        Start walking entries ``0 .. n_entries - 1`` (one-cycle pulse).
    n_entries: In(range(depth + 1))
        Entries of the unit (held stable by the loader / top).
    entry_write: In(stream.Signature(entry_write_layout, always_ready=True))
        Programming port of the entry memory.
    reads: Out(stream.Signature(read_command_layout))
        OU-read commands; the ADC mux sets ``ready`` on the command's last conversion.
    busy: Out(1)
        An entry is being fetched or issued.
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, depth: int, init: list[int] | None = None):
        if depth < 1:
            raise ValueError(f"depth must be at least 1, not {depth}")
        if init is not None and len(init) > depth:
            raise ValueError(f"{len(init)} initial entries do not fit depth {depth}")
        self.config = config
        self.depth = depth
        self._init = list(init or [])
        super().__init__({
            "go": In(1),
            "n_entries": In(range(depth + 1)),
            "entry_write": In(stream.Signature(entry_write_layout(config, depth),
                                               always_ready=True)),
            "reads": Out(stream.Signature(read_command_layout(config))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        layout = entry_layout(config)
        memory = Memory(shape=layout.size, depth=self.depth,
                        init=self._init + [0] * (self.depth - len(self._init)))
        m.submodules.entries = memory
        write = memory.write_port()
        m.d.comb += [
            write.addr.eq(self.entry_write.payload.addr),
            write.data.eq(self.entry_write.payload.entry),
            write.en.eq(self.entry_write.valid),
        ]
        read = memory.read_port()
        entry = Signal(layout)                    # the entry register: the current entry

        address = Signal(range(self.depth + 1))  # next entry to fetch
        running = Signal()                        # entries remain to be fetched
        pending = Signal()                        # `read.data` holds the next entry
        fetched = Signal()                        # `entry` holds an entry being issued
        offset = Signal(slice_bits(config) + 1)   # slices of `entry` already issued

        slice_index = Signal(clog2(config.max_slices + 1))
        m.d.comb += slice_index.eq(entry.slice_lo + offset)
        last_slice = slice_index + 1 >= entry.slice_hi
        consumed = self.reads.valid & self.reads.ready & last_slice
        advance = ~fetched | consumed

        m.d.comb += [
            self.reads.valid.eq(fetched),
            self.reads.payload.row_group.eq(entry.row_group),
            self.reads.payload.col_group.eq(entry.col_group),
            self.reads.payload.slice_index.eq(slice_index),
            self.reads.payload.cols.eq(entry.cols),
            self.busy.eq(self.go | pending | fetched),
        ]

        with m.If(self.reads.valid & self.reads.ready):
            m.d.sync += offset.eq(Mux(last_slice, 0, offset + 1))

        with m.If(self.go):
            m.d.comb += [read.addr.eq(0), read.en.eq(1)]
            m.d.sync += [
                address.eq(1),
                running.eq(self.n_entries > 1),
                pending.eq(self.n_entries > 0),
                fetched.eq(0),
                offset.eq(0),
            ]
        with m.Elif(advance):
            # move the prefetched entry into the register and read the one after it
            m.d.sync += fetched.eq(pending)
            with m.If(pending):
                m.d.sync += [entry.eq(read.data), pending.eq(running)]
                m.d.comb += [read.addr.eq(address), read.en.eq(running)]
                with m.If(running):
                    m.d.sync += [
                        address.eq(address + 1),
                        running.eq(address + 1 < self.n_entries),
                    ]
            with m.Else():
                m.d.comb += read.en.eq(0)
        with m.Else():
            m.d.comb += read.en.eq(0)  # hold the prefetched entry
        return m
