"""One crossbar unit's digital periphery: row drivers, OU controller, ADC mux, shift-and-add.

::

    load ──► RowDriver ◄── rows ──┐
                                  │
    go ──► OUController ─reads─► ADCMux ─read──► crossbar port (emulator / analog model)
                                  ▲      ◄─result─┘
                                  └─updates─► ShiftAdd ─drained─► reduction
                                                 ▲
                                               drain

The crossbar itself sits outside, behind :class:`~bitline.hw.unit.xbar_port.CrossbarSignature`
(``read`` and ``result`` here; the loader drives the port's ``write`` side).
"""

from __future__ import annotations

import numpy as np
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.unit.adc_mux import ADCMux
from bitline.hw.unit.ou_controller import OUController, entry_write_layout
from bitline.hw.unit.row_driver import RowDriver, input_layout, map_write_layout
from bitline.hw.unit.shift_add import ShiftAdd, drained_layout
from bitline.hw.unit.xbar_port import ReadSignature, ResultSignature

__all__ = ["CrossbarUnit"]


class CrossbarUnit(wiring.Component):
    """The periphery of one crossbar unit.

    Parameters
    ----------
    config:
        Accelerator configuration.
    entry_depth:
        Entry-memory depth.
    channels:
        Partial-sum words per accumulator lane.
    row_map, entries:
        Optional initial row map (``(rows,)``, -1 unused) and packed entry words.

    Attributes
    ----------
    load, swap, map_write:
        Row drivers (see :class:`~bitline.hw.unit.row_driver.RowDriver`).
    go, n_entries, entry_write:
        OU controller (see :class:`~bitline.hw.unit.ou_controller.OUController`).
    busy:
        The OU controller is busy or a conversion is on its way to the port (the ADC mux's
        ``in_flight``): low once the last strobe has reached the port.
    read, result:
        The crossbar port's read side.
    drain, drained:
        Shift-and-add readout (see :class:`~bitline.hw.unit.shift_add.ShiftAdd`).
    read_issued, conversions, protocol_error:
        Event outputs of the ADC mux (performance counters, error status).
    """

    def __init__(self, config: AcceleratorConfig, entry_depth: int, channels: int,
                 row_map: np.ndarray | None = None, entries: list[int] | None = None):
        self.config = config
        self.entry_depth = entry_depth
        self.channels = channels
        self._row_map = row_map
        self._entries = entries
        super().__init__({
            "load": In(stream.Signature(input_layout(config), always_ready=True)),
            "swap": In(1),
            "map_write": In(stream.Signature(map_write_layout(config), always_ready=True)),
            "go": In(1),
            "n_entries": In(range(entry_depth + 1)),
            "entry_write": In(stream.Signature(entry_write_layout(config, entry_depth),
                                               always_ready=True)),
            "busy": Out(1),
            "read": Out(ReadSignature(config)),
            "result": Out(ResultSignature(config)),
            "drain": In(stream.Signature(range(channels), always_ready=True)),
            "drained": Out(stream.Signature(drained_layout(config), always_ready=True)),
            "read_issued": Out(1),
            "conversions": Out(range(config.adcs_per_xbar + 1)),
            "protocol_error": Out(1),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        m.submodules.rows = rows = RowDriver(config, self._row_map)
        m.submodules.controller = controller = OUController(config, self.entry_depth,
                                                            self._entries)
        m.submodules.adc_mux = adc_mux = ADCMux(config)
        m.submodules.shift_add = shift_add = ShiftAdd(config, self.channels)

        connect(m, flipped(self.load), rows.load)
        connect(m, flipped(self.map_write), rows.map_write)
        connect(m, flipped(self.entry_write), controller.entry_write)
        connect(m, controller.reads, adc_mux.reads)
        connect(m, adc_mux.rows, rows.select)
        connect(m, adc_mux.read, flipped(self.read))
        connect(m, adc_mux.result, flipped(self.result))
        connect(m, adc_mux.updates, shift_add.updates)
        connect(m, flipped(self.drain), shift_add.drain)
        connect(m, shift_add.drained, flipped(self.drained))
        m.d.comb += [
            rows.swap.eq(self.swap),
            controller.go.eq(self.go),
            controller.n_entries.eq(self.n_entries),
            self.busy.eq(controller.busy | adc_mux.in_flight),
            self.read_issued.eq(adc_mux.read_issued),
            self.conversions.eq(adc_mux.conversions),
            self.protocol_error.eq(adc_mux.protocol_error),
        ]
        return m
