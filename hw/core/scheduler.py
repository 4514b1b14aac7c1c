"""Temporal scheduler: sequences the load, compute and drain phases of a layer job.

A layer job runs ``n_vectors`` input vectors through the units of one layer
(``layer.xbar_mask``). Per vector (docs/contract.md section 5, :mod:`bitline.hw.spec.timing`):

1. **load** -- the host's input codes are broadcast, one per cycle with their index, to
   every unit's row drivers (which capture them through their row maps into the shadow
   bank). Loading runs whenever the shadow bank is free, independent of the phase below.
2. **compute** -- when the vector is loaded and the previous vector's partial sums have been
   read out, the banks ``swap`` and every unit of the layer gets ``go``: each unit's OU
   controller walks its own entries in parallel. When no unit is busy any more the scheduler
   waits ``adc_latency + ACCUMULATE_CYCLES - 1`` cycles
   (:func:`~bitline.hw.spec.timing.pipeline_latency`) for the last codes to be accumulated.
3. **drain** -- channels ``0 .. n_outputs - 1``, one per cycle, are read (and cleared) from
   every unit's partial sums into the reduction / output-unit pipeline. A credit counter
   (outputs issued but not yet taken by the host) keeps the output FIFO from overflowing;
   with a host that always takes outputs it never throttles.

The scheduler also sums each vector's input codes as they are loaded (double-buffered like
the row drivers' banks): ``input_sum`` is the sum of the vector being computed and drained,
from the cycle after its ``swap`` to the cycle after the next (the codes are registered before
they are summed). The output path multiplies it by the layer's
``weight_offset`` for the offset weight encoding's correction (docs/contract.md section 4).

**Copies** (docs/hardware.md, "Copies"). Every ``inputs`` beat has ``max_copies`` lanes; lane
``k`` carries a code of copy ``k``'s current vector, and the copies run in lockstep: the job
has ``n_share = ceil(V / c)`` vectors per lane (``V = n_vectors``), lane ``k`` taking vectors
``[k * n_share, (k + 1) * n_share)`` of the job (:func:`bitline.hw.spec.timing.copy_shares`).
Lane ``k`` is *active* for the ``j``-th vector of the lanes when ``k * n_share + j < V``;
only active lanes' units get ``go`` (an idle lane reads nothing, so the counters equal the
copies' shares), and ``lanes_active`` tells the output path which lanes' outputs are real.
Each lane has its own ``input_sum``.

``busy`` is high from the cycle after ``start`` to the cycle the last output is taken;
``done`` then stays high until the next ``start``. A job with ``n_vectors = 0`` or
``n_share = 0`` is done at once.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import lane_bits, layer_layout
from bitline.hw.spec.registers import VECTOR_BITS
from bitline.hw.spec.timing import (ACCUMULATE_CYCLES, DRAIN_STAGES, ENTRY_FETCH_CYCLES,
                                     ROW_SELECT_CYCLES)

__all__ = ["Scheduler", "OUTPUT_FIFO_DEPTH", "input_sum_bits", "lanes_layout", "load_layout",
           "unit_lane"]

#: Outputs in flight (drain pipeline + output FIFO) that never throttle a host that always
#: takes outputs: an output is taken ``len(DRAIN_STAGES)`` cycles after its channel is read.
OUTPUT_FIFO_DEPTH = len(DRAIN_STAGES) + 1
#: Width of the vector count of a job.


def input_sum_bits(config: AcceleratorConfig) -> int:
    """Width of a vector's input-code sum: ``max_in_features`` codes of ``max_act_bits``."""
    return config.max_act_bits + clog2(config.max_in_features + 1)


def lanes_layout(config: AcceleratorConfig, shape) -> data.ArrayLayout:
    """Return ``max_copies`` lanes of ``shape`` (lane ``k``: copy ``k``)."""
    return data.ArrayLayout(shape, config.max_copies)


def load_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return one broadcast input beat: the code index and the code of every lane."""
    return data.StructLayout({
        "index": clog2(config.max_in_features),
        "codes": lanes_layout(config, config.max_act_bits),
    })


def unit_lane(config: AcceleratorConfig, layer, unit: int):
    """Return unit ``unit``'s lane in the layer record ``layer`` (a Value)."""
    width = lane_bits(config)
    return layer.lanes[unit * width:(unit + 1) * width]


class Scheduler(wiring.Component):
    """Layer-job sequencer.

    Attributes
    ----------
    start: In(1)
        Start a job (one-cycle pulse, ignored while busy).
    layer: In(layer_layout)
        The selected layer's record (stable while busy).
    n_vectors, n_share: In(VECTOR_BITS)
        Input vectors of the job (``V``) and vectors per lane (``ceil(V / c)``; ``V``
        without copies), sampled at ``start``.
    inputs: In(stream.Signature(ArrayLayout(max_act_bits, max_copies)))
        Input codes from the host, vector after vector, one code of every lane per beat.
    load: Out(stream.Signature(load_layout, always_ready=True))
        Broadcast to the row drivers (a unit takes its lane's code).
    swap: Out(1)
    go: Out(n_xbars)
        Per-unit start pulse (only the layer's units of active lanes).
    lanes_active: Out(max_copies)
        Lanes whose vector is real, for the vector in compute / drain (updated at ``swap``).
    units_busy: In(n_xbars)
    drain: Out(stream.Signature(range(max_out_channels), always_ready=True))
        Channel to read out of every unit.
    output_taken: In(1)
        The host took an output this cycle (returns a credit).
    busy, done: Out(1)
    input_stall: Out(1)
        The row drivers wait for an input code the host has not sent.
    input_sum: Out(ArrayLayout(input_sum_bits(config), max_copies))
        Sum of the input codes of each lane's vector in compute / drain (updated the cycle
        after ``swap``).
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "start": In(1),
            "layer": In(layer_layout(config)),
            "n_vectors": In(VECTOR_BITS),
            "n_share": In(VECTOR_BITS),
            "inputs": In(stream.Signature(lanes_layout(config, config.max_act_bits))),
            "load": Out(stream.Signature(load_layout(config), always_ready=True)),
            "swap": Out(1),
            "go": Out(config.n_xbars),
            "lanes_active": Out(config.max_copies),
            "units_busy": In(config.n_xbars),
            "drain": Out(stream.Signature(range(config.max_out_channels), always_ready=True)),
            "output_taken": In(1),
            "busy": Out(1),
            "done": Out(1),
            "input_stall": Out(1),
            "input_sum": Out(lanes_layout(config, input_sum_bits(config))),
        })

    def elaborate(self, platform):
        config = self.config
        m = Module()
        layer = self.layer

        vectors = Signal(VECTOR_BITS)        # vectors of the job per lane
        loaded = Signal(VECTOR_BITS)         # vectors fully loaded so far
        drained = Signal(VECTOR_BITS)        # vectors whose drain has been issued
        in_index = Signal(clog2(config.max_in_features))
        shadow_full = Signal()
        channel = Signal(range(config.max_out_channels))
        # cycles from the last strobe on the port to its codes in the partial sums
        accumulate_wait = config.adc_latency + ACCUMULATE_CYCLES - 1
        tail = Signal(range(accumulate_wait + 1))
        outstanding = Signal(range(OUTPUT_FIFO_DEPTH + 1))
        go = Signal()
        # A unit's first read reaches the port ENTRY_FETCH + ROW_SELECT cycles after go; a
        # layer without units (all weights zero: no cell, no entry) still waits that long,
        # so its job lasts what the formula says for C_comp = 0 (it drained 4 cycles early).
        settle_cycles = ENTRY_FETCH_CYCLES + ROW_SELECT_CYCLES
        settle = Signal(range(settle_cycles + 1))
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)

        # ---- input loading (runs under every busy state) --------------------------------
        want_input = self.busy & ~shadow_full & (loaded < vectors)
        accept = want_input & self.inputs.valid
        last_input = in_index == layer.n_inputs - 1
        m.d.comb += [
            self.inputs.ready.eq(want_input),
            self.load.valid.eq(accept),
            self.load.payload.index.eq(in_index),
            self.load.payload.codes.eq(self.inputs.payload),
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
        # The accepted code and the swap are registered first, so the host's code (on the
        # FPGA an EBR read in the UART bridge) does not run into the sum's carry chain
        # (docs/fpga.md section 4). input_sum therefore changes one cycle after swap, which
        # no counter sees: the output path samples it when a channel is issued, the previous
        # vector's last channel no later than the swap, the next vector's first channel
        # ENTRY_FETCH_CYCLES + ROW_SELECT_CYCLES cycles or more after it.
        load_sums = []
        swapped_in = Signal()
        m.d.sync += swapped_in.eq(self.swap)
        for lane in range(config.max_copies):
            load_sum = Signal(input_sum_bits(config), name=f"load_sum{lane}")
            code = Signal(config.max_act_bits, name=f"load_code{lane}")
            load_sums.append(load_sum)
            m.d.sync += code.eq(Mux(accept, self.inputs.payload[lane], 0))
            loaded_sum = load_sum + code
            with m.If(swapped_in):
                m.d.sync += [self.input_sum[lane].eq(loaded_sum), load_sum.eq(0)]
            with m.Else():
                m.d.sync += load_sum.eq(loaded_sum)

        # ---- copies: which lanes hold a real vector (module docstring) ------------------
        # lane_left[k] = max(0, V - k * n_share): the vectors of lane k's share
        lane_left = [Signal(VECTOR_BITS, name=f"lane_left{lane}")
                     for lane in range(config.max_copies)]
        swapped = Signal(VECTOR_BITS)        # vectors of each lane swapped in so far
        with m.If(self.swap):
            m.d.sync += [
                swapped.eq(swapped + 1),
                self.lanes_active.eq(Cat(swapped < left for left in lane_left)),
            ]
        active = Array(self.lanes_active)
        unit_active = Cat(active[unit_lane(config, layer, unit)] if config.max_copies > 1
                          else self.lanes_active[0] for unit in range(config.n_xbars))

        # ---- output credits -------------------------------------------------------------
        issue = Signal()
        with m.If(issue & ~self.output_taken):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(~issue & self.output_taken):
            m.d.sync += outstanding.eq(outstanding - 1)
        m.d.comb += [
            self.drain.valid.eq(issue),
            self.drain.payload.eq(channel),
            self.go.eq(Mux(go, layer.xbar_mask & unit_active, 0)),
        ]
        m.d.sync += go.eq(0)

        def begin_compute():
            m.d.comb += self.swap.eq(1)
            m.d.sync += [go.eq(1), settle.eq(settle_cycles)]
            m.next = "COMPUTE"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    empty = (self.n_vectors == 0) | (self.n_share == 0)
                    m.d.sync += [
                        vectors.eq(self.n_share),
                        loaded.eq(0),
                        drained.eq(0),
                        swapped.eq(0),
                        in_index.eq(0),
                        shadow_full.eq(0),
                        self.done.eq(empty),
                    ]
                    m.d.sync += [load_sum.eq(0) for load_sum in load_sums]
                    for lane, left in enumerate(lane_left):
                        base = self.n_share * lane     # a constant multiple: adders only
                        m.d.sync += left.eq(Mux(self.n_vectors > base,
                                                self.n_vectors - base, 0))
                    with m.If(~empty):
                        m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.busy.eq(1)
                with m.If(vector_ready):
                    begin_compute()
            with m.State("COMPUTE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~go & (self.units_busy == 0) & (settle == 0)):
                    if accumulate_wait:
                        m.d.sync += tail.eq(accumulate_wait - 1)
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
