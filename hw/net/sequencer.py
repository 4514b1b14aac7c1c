"""Layer sequencer: runs a whole network, node after node, from one start command.

The sequencer owns the whole-network datapath of :class:`~bitline.hw.core.top.Accelerator`
(docs/network.md, "Sequencer"; docs/hardware.md, "Whole-network mode"): the
:class:`~bitline.hw.net.buffer.ActivationBuffer` (two read ports), two
:class:`~bitline.hw.net.im2col.Im2colReader` (``reader`` for every node's ``src0``,
``reader_b`` for an ADD's ``src1``), the :class:`~bitline.hw.net.pool.PoolUnit` and the
:class:`~bitline.hw.net.residual.ResidualAdd`. The node records
(:func:`bitline.hw.spec.network.node_layout`) sit in the top's node memory; the sequencer
reads record ``index`` through ``node_addr`` / ``node_record`` (synchronous read).

One run (``run`` for one cycle; nodes run one at a time)::

    FETCH -> LOAD -> SETUP -> INPUT            node 0's record; the host's C*H*W input
                                               codes (``host_inputs``) written at 0 in C order
    -> SETUP -> START -> RUN                   node 0
    -> FETCH -> LOAD -> SETUP -> START -> RUN  node 1, ...   until the ``to_host`` node

* FETCH presents the node index to the node memory; LOAD registers its record (the layer
  table is addressed by the registered ``layer`` from then on); SETUP registers the output
  pixel count ``P = out_h * out_w`` (the input phase: ``H * W`` of node 0's map, its one
  multiplier) and restarts the buffer's write counters; START pulses the readers' ``start``
  (``reader_b`` only for ADD) and, for a COMPUTE node, the scheduler's (``job_start``,
  ``n_vectors = P``).
* RUN routes the reader's elements to the node's consumer - the scheduler (``job_inputs``,
  one code per element, a ``vector_last`` run being one input vector), the pool unit, or
  the residual add with ``reader_b`` - and the consumer's results (``job_outputs`` from the
  output FIFO, the pool's or the add's codes) to the buffer's write stream (producer order
  at ``dst_base``) or, for the ``to_host`` node, to ``host_outputs``. The node ends in the
  cycle its ``dst_channels * P``-th result is written or taken; the run ends with the
  ``to_host`` node (or the last loaded node).

Counters per node (written to a small memory at the node's end, read at ``node_select``):
``node_cycles`` (its RUN cycles: from the cycle after START to its last result, inclusive),
``node_input_stall`` (RUN cycles in which a reader of the node had elements left but none
valid) and ``node_output_stall`` (a result valid but not taken: the host's ``outputs`` not
ready). ``host_stall`` is the run's share of STALL_CYCLES: the input phase waiting for the
host, or a ``to_host`` result waiting for it. :mod:`bitline.hw.spec.net_timing` gives every
count for a host that never waits.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect

from bitline.hw.net.buffer import ActivationBuffer
from bitline.hw.net.im2col import Im2colReader
from bitline.hw.net.node_datapath import node_datapath
from bitline.hw.net.pool import PoolUnit
from bitline.hw.net.residual import ResidualAdd
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.network import NetGeometry, NodeKind, node_layout
from bitline.hw.spec.registers import COUNTER_BITS, VECTOR_BITS

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Whole-network mode: the node FSM and the network datapath (module docstring).

    Attributes
    ----------
    run: In(1)
        Start a run (one cycle; the top has checked that an image with nodes is loaded).
    busy: Out(1)
        From the cycle after ``run`` to the cycle the run's last output is taken.
    done: Out(1)
        Set when a run ends, cleared by the next ``run``.
    n_nodes: In(clog2(max_nodes + 1))
        Node records loaded.
    node_addr: Out(clog2(max_nodes)); node_record: In(node_layout)
        The node memory's read port (data one cycle after the address).
    host_inputs: In(stream.Signature(act_bits))
        The network input's codes (the input phase only).
    host_outputs: Out(stream.Signature(signed(acc_bits)))
        The ``to_host`` node's results (a code zero-extended, or a raw layer's value).
    job_start: Out(1); layer: Out(clog2(max_layers)); n_vectors: Out(VECTOR_BITS)
        A COMPUTE node's scheduler job; ``layer`` addresses the layer table while busy.
    job_inputs: Out(stream.Signature(act_bits))
        A COMPUTE node's input codes, to the scheduler (lane 0).
    job_outputs: In(stream.Signature(signed(acc_bits)))
        The output FIFO, during a COMPUTE node.
    host_stall: Out(1)
        This cycle counts as waiting for the host (STALL_CYCLES).
    node_select: In(clog2(max_nodes))
        Node whose counters ``node_cycles``, ``node_input_stall``, ``node_output_stall``
        (Out(COUNTER_BITS) each, one cycle after ``node_select``: a synchronous read) show.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        self.geometry = NetGeometry.from_config(config)
        act = unsigned(config.max_act_bits)
        super().__init__({
            "run": In(1),
            "busy": Out(1),
            "done": Out(1),
            "n_nodes": In(clog2(config.max_nodes + 1)),
            "node_addr": Out(clog2(config.max_nodes)),
            "node_record": In(node_layout(config)),
            "host_inputs": In(stream.Signature(act)),
            "host_outputs": Out(stream.Signature(signed(config.acc_bits))),
            "job_start": Out(1),
            "layer": Out(clog2(config.max_layers)),
            "n_vectors": Out(VECTOR_BITS),
            "job_inputs": Out(stream.Signature(act)),
            "job_outputs": In(stream.Signature(signed(config.acc_bits))),
            "host_stall": Out(1),
            "node_select": In(clog2(config.max_nodes)),
            "node_cycles": Out(COUNTER_BITS),
            "node_input_stall": Out(COUNTER_BITS),
            "node_output_stall": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        config, geometry = self.config, self.geometry
        m = Module()
        m.submodules.buffer = buffer = ActivationBuffer(geometry, read_ports=2)
        m.submodules.reader = reader = Im2colReader(geometry)
        m.submodules.reader_b = reader_b = Im2colReader(geometry)
        m.submodules.pool = pool = PoolUnit(geometry)
        m.submodules.residual = residual = ResidualAdd(geometry)
        connect(m, reader.read, buffer.read)
        connect(m, reader_b.read, buffer.read_b)

        node = Signal(node_layout(config))
        index = Signal(clog2(config.max_nodes))
        input_phase = Signal()
        pixels = Signal(geometry.addr_bits + 1)           # P (input phase: H * W)
        channel = Signal(geometry.channel_bits)           # results of the node: c, p
        pixel = Signal(geometry.addr_bits + 1)
        window = node.window
        kind = node.kind
        compute = kind == NodeKind.COMPUTE
        adding = kind == NodeKind.ADD
        m.d.comb += [
            self.node_addr.eq(index),
            self.layer.eq(node.layer),
            self.n_vectors.eq(pixels),
        ]

        # ---- the readers, the node's consumer and its results (node_datapath) ---------
        running = Signal()                                # the RUN state
        result_valid, result, result_ready = node_datapath(
            m, config.acc_bits, node, running, reader, reader_b, pool, residual,
            self.job_inputs, self.job_outputs, self.host_outputs.ready, window.base,
            node.src1_base)
        m.d.comb += [
            self.host_outputs.valid.eq(result_valid & node.to_host),
            self.host_outputs.payload.eq(result),
        ]

        # ---- the buffer's write stream: the network input, or a node's results ---------
        inputting = Signal()                              # the INPUT state
        m.d.comb += [
            self.host_inputs.ready.eq(inputting),
            buffer.write.valid.eq(Mux(inputting, self.host_inputs.valid,
                                      result_valid & ~node.to_host)),
            buffer.write.payload.eq(Mux(inputting, self.host_inputs.payload,
                                        result[:config.max_act_bits])),
            buffer.write_base.eq(Mux(input_phase, 0, node.dst_base)),
            buffer.write_channels.eq(Mux(input_phase, window.channels, node.dst_channels)),
            buffer.write_pixels.eq(pixels),
            buffer.write_linear.eq(input_phase),
        ]

        # A result (or an input code) is written / taken; the last one ends the phase.
        taken = Mux(inputting, self.host_inputs.valid, result_valid & result_ready)
        channels = Mux(input_phase, window.channels, node.dst_channels)
        last = (channel + 1 == channels) & (pixel + 1 == pixels)
        with m.If(taken):
            with m.If(channel + 1 == channels):
                m.d.sync += [channel.eq(0), pixel.eq(pixel + 1)]
            with m.Else():
                m.d.sync += channel.eq(channel + 1)
        ends = taken & last

        # ---- per-node counters ---------------------------------------------------------
        cycles = Signal(COUNTER_BITS)
        input_stall = Signal(COUNTER_BITS)
        output_stall = Signal(COUNTER_BITS)
        starved = ((reader.busy & ~reader.outputs.valid)
                   | (adding & reader_b.busy & ~reader_b.outputs.valid))
        held = result_valid & ~result_ready
        now = [(cycles + 1)[:COUNTER_BITS], (input_stall + starved)[:COUNTER_BITS],
               (output_stall + held)[:COUNTER_BITS]]
        with m.If(running):
            m.d.sync += [cycles.eq(now[0]), input_stall.eq(now[1]), output_stall.eq(now[2])]
        m.d.comb += self.host_stall.eq((inputting & ~self.host_inputs.valid)
                                       | (held & node.to_host))
        m.submodules.node_counters = counters = Memory(
            shape=3 * COUNTER_BITS, depth=config.max_nodes, init=[])
        counter_write = counters.write_port()
        counter_read = counters.read_port()
        m.d.comb += [
            counter_write.addr.eq(index),
            counter_write.data.eq(Cat(*now)),
            counter_write.en.eq(running & ends),
            counter_read.addr.eq(self.node_select),
            self.node_cycles.eq(counter_read.data[:COUNTER_BITS]),
            self.node_input_stall.eq(counter_read.data[COUNTER_BITS:2 * COUNTER_BITS]),
            self.node_output_stall.eq(counter_read.data[2 * COUNTER_BITS:]),
        ]

        # ---- the FSM -------------------------------------------------------------------
        with m.FSM(name="sequencer") as fsm:
            with m.State("IDLE"):
                with m.If(self.run):
                    m.d.sync += [index.eq(0), input_phase.eq(1), self.done.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += node.eq(self.node_record)
                m.next = "SETUP"
            with m.State("SETUP"):
                m.d.sync += [
                    pixels.eq(Mux(input_phase, window.height * window.width,
                                  window.out_h * window.out_w)),
                    channel.eq(0), pixel.eq(0),
                ]
                m.d.comb += buffer.write_start.eq(1)
                with m.If(input_phase):
                    m.next = "INPUT"
                with m.Else():
                    m.next = "START"
            with m.State("INPUT"):
                m.d.comb += inputting.eq(1)
                with m.If(ends):
                    m.d.sync += input_phase.eq(0)
                    m.next = "SETUP"
            with m.State("START"):
                m.d.comb += [
                    reader.start.eq(1),
                    reader_b.start.eq(adding),
                    self.job_start.eq(compute),
                ]
                m.d.sync += [cycles.eq(0), input_stall.eq(0), output_stall.eq(0)]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(ends):
                    with m.If(node.to_host | (index + 1 >= self.n_nodes)):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += index.eq(index + 1)
                        m.next = "FETCH"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
