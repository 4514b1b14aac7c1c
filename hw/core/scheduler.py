"""Temporal scheduler: sequences the load, compute and drain phases of a layer job.

A layer job runs ``n_vectors`` input vectors through the units of one layer
(``layer.xbar_mask``). Per vector (docs/contract.md section 5, :mod:`bitline.hw.spec.timing`):

1. **load** -- the host's input codes are broadcast, one per cycle with their index, to
   every unit's row drivers (which capture them through their row maps into the shadow
   bank). Loading runs whenever the shadow bank is free, independent of the phase below.
2. **compute** -- when the vector is loaded and the previous vector's partial sums have been
   read out, the banks ``swap`` and every unit of the layer gets ``go``: each unit's OU
   controller walks its own entries in parallel. When no unit is busy any more the scheduler
   waits ``adc_latency`` cycles (:func:`~bitline.hw.spec.timing.pipeline_latency`) for the last
   codes to be accumulated.
3. **drain** -- channels ``0 .. n_outputs - 1``, one per cycle, are read (and cleared) from
   every unit's partial sums into the reduction / output-unit pipeline. A credit counter
   (outputs issued but not yet taken by the host) keeps the output FIFO from overflowing;
   with a host that always takes outputs it never throttles.

The scheduler also sums each vector's input codes as they are loaded (double-buffered like
the row drivers' banks): ``input_sum`` is the sum of the vector being computed and drained,
from its ``swap`` to the next. The output path multiplies it by the layer's
``weight_offset`` for the offset weight encoding's correction (docs/contract.md section 4).

``busy`` is high from the cycle after ``start`` to the cycle the last output is taken;
``done`` then stays high until the next ``start``. A job with ``n_vectors = 0`` is done at
once.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import layer_layout
from bitline.hw.spec.registers import VECTOR_BITS
from bitline.hw.spec.timing import DRAIN_STAGES
from bitline.hw.unit.row_driver import input_layout

__all__ = ["Scheduler", "OUTPUT_FIFO_DEPTH", "input_sum_bits"]

#: Outputs in flight (drain pipeline + output FIFO) that never throttle a host that always
#: takes outputs: an output is taken ``len(DRAIN_STAGES)`` cycles after its channel is read.
OUTPUT_FIFO_DEPTH = len(DRAIN_STAGES) + 1
#: Width of the vector count of a job.


def input_sum_bits(config: AcceleratorConfig) -> int:
    """Width of a vector's input-code sum: ``max_in_features`` codes of ``max_act_bits``."""
    return config.max_act_bits + clog2(config.max_in_features + 1)


class Scheduler(wiring.Component):
    """Layer-job sequencer.

    Attributes
    ----------
    start: In(1)
        Start a job (one-cycle pulse, ignored while busy).
    layer: In(layer_layout)
        The selected layer's record (stable while busy).
    n_vectors: In(VECTOR_BITS)
        Input vectors of the job, sampled at ``start``.
    inputs: In(stream.Signature(max_act_bits))
        Input codes from the host, vector after vector.
    load: Out(stream.Signature(input_layout, always_ready=True))
        Broadcast to the row drivers.
    swap: Out(1)
    go: Out(n_xbars)
        Per-unit start pulse (only the layer's units).
    units_busy: In(n_xbars)
    drain: Out(stream.Signature(range(max_out_channels), always_ready=True))
        Channel to read out of every unit.
    output_taken: In(1)
        The host took an output this cycle (returns a credit).
    busy, done: Out(1)
    input_stall: Out(1)
        The row drivers wait for an input code the host has not sent.
    input_sum: Out(input_sum_bits(config))
        Sum of the input codes of the vector in compute / drain (updated at ``swap``).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "start": In(1),
            "layer": In(layer_layout(config)),
            "n_vectors": In(VECTOR_BITS),
            "inputs": In(stream.Signature(config.max_act_bits)),
            "load": Out(stream.Signature(input_layout(config), always_ready=True)),
            "swap": Out(1),
            "go": Out(config.n_xbars),
            "units_busy": In(config.n_xbars),
            "drain": Out(stream.Signature(range(config.max_out_channels), always_ready=True)),
            "output_taken": In(1),
            "busy": Out(1),
            "done": Out(1),
            "input_stall": Out(1),
            "input_sum": Out(input_sum_bits(config)),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        layer = self.layer

        vectors = Signal(VECTOR_BITS)        # vectors of the job
        loaded = Signal(VECTOR_BITS)         # vectors fully loaded so far
        drained = Signal(VECTOR_BITS)        # vectors whose drain has been issued
        in_index = Signal(clog2(config.max_in_features))
        shadow_full = Signal()
        channel = Signal(range(config.max_out_channels))
        tail = Signal(range(config.adc_latency + 1))
        outstanding = Signal(range(OUTPUT_FIFO_DEPTH + 1))
        go = Signal()

        # ---- input loading (runs under every busy state) --------------------------------
        want_input = self.busy & ~shadow_full & (loaded < vectors)
        accept = want_input & self.inputs.valid
        last_input = in_index == layer.n_inputs - 1
        m.d.comb += [
            self.inputs.ready.eq(want_input),
            self.load.valid.eq(accept),
            self.load.payload.index.eq(in_index),
            self.load.payload.code.eq(self.inputs.payload),
            self.input_stall.eq(want_input & ~self.inputs.valid),
        ]
        with m.If(accept):
            m.d.sync += in_index.eq(Mux(last_input, 0, in_index + 1))
            with m.If(last_input):
                m.d.sync += [shadow_full.eq(1), loaded.eq(loaded + 1)]
        vector_ready = shadow_full | (accept & last_input)
        with m.If(self.swap):
            m.d.sync += shadow_full.eq(0)

        # ---- input sum (offset encoding): loads into load_sum, swaps into input_sum -----
        # An input accepted in a swap cycle is the last one of the vector being swapped in.
        load_sum = Signal(input_sum_bits(config))
        loaded_sum = load_sum + Mux(accept, self.inputs.payload, 0)
        with m.If(self.swap):
            m.d.sync += [self.input_sum.eq(loaded_sum), load_sum.eq(0)]
        with m.Elif(accept):
            m.d.sync += load_sum.eq(loaded_sum)

        # ---- output credits -------------------------------------------------------------
        issue = Signal()
        with m.If(issue & ~self.output_taken):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(~issue & self.output_taken):
            m.d.sync += outstanding.eq(outstanding - 1)
        m.d.comb += [
            self.drain.valid.eq(issue),
            self.drain.payload.eq(channel),
            self.go.eq(Mux(go, layer.xbar_mask, 0)),
        ]
        m.d.sync += go.eq(0)

        def begin_compute():
            m.d.comb += self.swap.eq(1)
            m.d.sync += go.eq(1)
            m.next = "COMPUTE"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [
                        vectors.eq(self.n_vectors),
                        loaded.eq(0),
                        drained.eq(0),
                        in_index.eq(0),
                        shadow_full.eq(0),
                        load_sum.eq(0),
                        self.done.eq(self.n_vectors == 0),
                    ]
                    with m.If(self.n_vectors != 0):
                        m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.busy.eq(1)
                with m.If(vector_ready):
                    begin_compute()
            with m.State("COMPUTE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~go & (self.units_busy == 0)):
                    if config.adc_latency:
                        m.d.sync += tail.eq(config.adc_latency - 1)
                        m.next = "TAIL"
                    else:
                        m.d.sync += channel.eq(0)
                        m.next = "DRAIN"
            with m.State("TAIL"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [tail.eq(tail - 1), channel.eq(0)]
                with m.If(tail == 0):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.comb += [self.busy.eq(1), issue.eq(outstanding < OUTPUT_FIFO_DEPTH)]
                with m.If(issue):
                    m.d.sync += channel.eq(channel + 1)
                    with m.If(channel == layer.n_outputs - 1):
                        m.d.sync += drained.eq(drained + 1)
                        with m.If(drained + 1 == vectors):
                            m.next = "FLUSH"
                        with m.Elif(vector_ready):
                            begin_compute()
                        with m.Else():
                            m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += self.busy.eq(1)
                with m.If(vector_ready):
                    begin_compute()
            with m.State("FLUSH"):
                m.d.comb += self.busy.eq(1)
                with m.If((outstanding == 0) | ((outstanding == 1) & self.output_taken)):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        return m
