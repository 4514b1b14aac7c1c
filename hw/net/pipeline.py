"""Inter-layer pipeline: stage engines that run a network's nodes concurrently on images.

With ``config.pipeline_stages = E > 0`` the :class:`~bitline.hw.core.top.Accelerator` adds
a :class:`Pipeline` instead of the :class:`~bitline.hw.net.sequencer.Sequencer`
(docs/network.md section 6, the contract; section 6.8, what is built). It holds:

* the activation buffer: one memory with a write port per engine, one for the input
  writer, and two read ports per engine (every map has its own region, section 6.2, so the
  ports never collide; write addresses are generated per writer by
  :func:`~bitline.hw.net.buffer.write_address`);
* the **input writer**: takes the host's ``N * S_in`` input codes (``host_inputs``, C
  order, image after image) and writes image ``n`` to input copy ``n mod input_copies``
  at ``(n mod input_copies) * S_in``;
* ``E`` **engines**: engine ``e`` has the per-node FSM of the sequencer, two
  :class:`~bitline.hw.net.im2col.Im2colReader`, a :class:`~bitline.hw.net.pool.PoolUnit`,
  a :class:`~bitline.hw.net.residual.ResidualAdd` and its own node-memory read port
  (``node_addr[e]`` / ``node_record[e]``); for a COMPUTE node it starts a job on its own
  scheduler (``job_start[e]``, ``layer[e]``, ``n_vectors[e]``), feeds it
  (``job_inputs[e]``) and takes its output FIFO (``job_outputs[e]``). The top builds a
  Scheduler, Reduction, OutputUnit and output FIFO per engine and gives crossbar unit
  ``u`` to the engine whose busy scheduler's layer has bit ``u`` in ``xbar_mask``.

One run (``run`` for one cycle, ``n_images`` sampled then; 0 counts as 1)::

    INIT   n_nodes + 1 cycles: every node record is read once through engine 0's port and
           the tables the synchronization needs are registered: per node stage, copies,
           src0_node, src1_node, ADD or not, to_host, replicas_log2, phase (its next
           image starts at phase, its copy counters at phase mod copies); node 0's
           input_copies and S_in = C*H*W; per engine its first and last node
    RUN    from the next cycle the input writer takes codes; in the cycle after, every
           engine with nodes starts FETCH of its first node

**Replicas** (docs/network.md section 7): node ``i`` of a group of ``R_i = 2**replicas_log2``
runs the images ``n = phase + j * R_i`` (``next_image``, advanced by ``R_i`` at each end;
``done_i`` counts them). A group (first node ``g``, src value ``g + 1``) has *finished*
image ``n`` when ``done`` of its member ``g + (n mod R)`` exceeds ``n div R`` (the low bits
and a shift). With ``R = 1`` everywhere every rule below is section 6.4's.

Engine ``e`` runs its nodes (``stage == e``, contiguous in node order) in node order,
round after round; a node without a further image in the run (``next_image >= N``) costs
one FETCH cycle and is skipped; the engine is finished when none of its nodes has one (at
once if a replica's phase is ``>= N``). Per node and image::

    FETCH -> LOAD -> SETUP [-> WAIT ...] -> START -> RUN

FETCH presents the node index (record and counters memory), LOAD registers the record and
the node's counters so far (0 for image 0), SETUP registers ``P = out_h * out_w``, the
source size ``C * H * W``, the copy offsets (reader base ``window.base + (n mod k0) *
S_src``, ``src1_base + (n mod k1) * S_src``, write base ``dst_base + (n mod copies) *
dst_size``, kept per node as wrapping counters and running sums) and starts the write
counters; it goes to START if the node may start its image ``n`` (section 7.2: (a) each
source group finished ``n``, the input writer's ``in_done > n`` for the network input;
(b) each group reading the node's group finished ``n - copies_i``, or ``n < copies_i``; a
replicated ``to_host`` group also finished ``n - 1``, so the host gets the images in
order), else to WAIT until it may. START and RUN are the sequencer's; the node finishes
the image in the cycle its last result is written (or taken by the host), and ``done_i``
counts it from the next cycle; its copy counters advance by ``R_i`` modulo their copies.
The input writer takes image ``n = in_done`` while each group reading the input finished
``n - input_copies`` (or ``n < input_copies``). The run ends in the cycle the last engine
finishes its last image (``busy`` low from the next cycle, ``done`` set).

Counters (section 6.6), per node summed over the run's images (a memory written at the
node's end, read at ``node_select``; a node that ran no image in the last run reads 0):
``node_cycles`` (RUN cycles), ``node_input_stall``
(WAIT cycles for (a) - the reason registered the cycle before, so every WAIT cycle counts
once - and reader-starved RUN cycles), ``node_output_stall`` (WAIT cycles for (b) and
results held by the host). ``latency``: cycles from RUN_NETWORK to the ``to_host`` node's
end of image 0 (CYCLES counted the same way); ``interval``: between its ends of the last
two images (0 for one image). ``host_stall`` (STALL_CYCLES): the input writer wanting a
code the host has not sent, or a ``to_host`` result held.
:func:`bitline.hw.spec.net_timing.pipeline_schedule` gives every count for a host that
never waits.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from bitline.hw.net.buffer import write_address
from bitline.hw.net.im2col import Im2colReader
from bitline.hw.net.node_datapath import node_datapath
from bitline.hw.net.pool import PoolUnit
from bitline.hw.net.residual import ResidualAdd
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.network import (
    COPY_BITS,
    REPLICA_LOG2_BITS,
    NetGeometry,
    NodeKind,
    node_layout,
)
from bitline.hw.spec.registers import COUNTER_BITS, VECTOR_BITS

__all__ = ["IMAGE_BITS", "Pipeline"]

#: Width of N_IMAGES and of the per-node image counters.
IMAGE_BITS = 32


def _select(choices) -> object:
    """OR of ``Mux(sel, value, 0)`` over ``(sel, value)`` pairs (at most one sel is set)."""
    return reduce(or_, [Mux(sel, value, 0) for sel, value in choices])


class Pipeline(wiring.Component):
    """The inter-layer pipeline's engines, buffer and synchronization (module docstring).

    Attributes
    ----------
    run: In(1)
        Start a run (one cycle; the top has checked that node records are loaded).
    busy: Out(1); done: Out(1)
        As the sequencer's: busy from the cycle after ``run`` to the run's end, ``done``
        set at the end and cleared by the next ``run``.
    n_nodes: In(clog2(max_nodes + 1)); n_images: In(IMAGE_BITS)
        Node records loaded; images of the next run (N_IMAGES).
    node_addr: Out(clog2(max_nodes)).array(E); node_record: In(node_layout).array(E)
        Each engine's node-memory read port (data one cycle after the address); port 0
        also serves INIT.
    host_inputs: In(stream.Signature(act_bits))
        The network input codes of all images.
    host_outputs: Out(stream.Signature(signed(acc_bits)))
        The ``to_host`` node's results, image after image.
    job_start, layer, n_vectors, job_inputs, job_outputs: arrays of E
        Per engine, as the sequencer's: its COMPUTE node's scheduler job.
    host_stall: Out(1)
        This cycle waits for the host (STALL_CYCLES).
    node_select: In(clog2(max_nodes))
        Node whose counters ``node_cycles``, ``node_input_stall``, ``node_output_stall``
        show (one cycle later).
    latency, interval: Out(COUNTER_BITS)
        The last run's LATENCY and INTERVAL.
    """

    def __init__(self, config: AcceleratorConfig):
        if not config.pipeline:
            raise ValueError("Pipeline needs config.pipeline_stages > 0")
        self.config = config
        self.geometry = NetGeometry.from_config(config)
        engines = config.pipeline_stages
        act = unsigned(config.max_act_bits)
        node_bits = clog2(config.max_nodes)
        super().__init__({
            "run": In(1),
            "busy": Out(1),
            "done": Out(1),
            "n_nodes": In(clog2(config.max_nodes + 1)),
            "n_images": In(IMAGE_BITS),
            "node_addr": Out(node_bits).array(engines),
            "node_record": In(node_layout(config)).array(engines),
            "host_inputs": In(stream.Signature(act)),
            "host_outputs": Out(stream.Signature(signed(config.acc_bits))),
            "job_start": Out(1).array(engines),
            "layer": Out(clog2(config.max_layers)).array(engines),
            "n_vectors": Out(VECTOR_BITS).array(engines),
            "job_inputs": Out(stream.Signature(act)).array(engines),
            "job_outputs": In(stream.Signature(signed(config.acc_bits))).array(engines),
            "host_stall": Out(1),
            "node_select": In(node_bits),
            "node_cycles": Out(COUNTER_BITS),
            "node_input_stall": Out(COUNTER_BITS),
            "node_output_stall": Out(COUNTER_BITS),
            "latency": Out(COUNTER_BITS),
            "interval": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        config, geometry = self.config, self.geometry
        engines, max_nodes = config.pipeline_stages, config.max_nodes
        layout = node_layout(config)
        m = Module()
        m.submodules.store = store = Memory(shape=unsigned(geometry.act_bits),
                                            depth=geometry.depth, init=[])
        m.submodules.node_counters = counters = Memory(
            shape=3 * COUNTER_BITS, depth=max_nodes, init=[])
        host_read = counters.read_port()
        # a node that ran no image in the last run (a replica with phase >= N) reads 0,
        # not its counters of an earlier run
        selected_ran = Signal()
        shown = Mux(selected_ran, host_read.data, 0)
        m.d.comb += [
            host_read.addr.eq(self.node_select),
            self.node_cycles.eq(shown[:COUNTER_BITS]),
            self.node_input_stall.eq(shown[COUNTER_BITS:2 * COUNTER_BITS]),
            self.node_output_stall.eq(shown[2 * COUNTER_BITS:]),
        ]

        # ---- the tables INIT registers, and the run's state -----------------------------
        src_shape = layout.members["src0_node"]
        valid = [Signal(name=f"node{i}_valid") for i in range(max_nodes)]
        stage = [Signal(layout.members["stage"], name=f"node{i}_stage")
                 for i in range(max_nodes)]
        src0 = [Signal(src_shape, name=f"node{i}_src0") for i in range(max_nodes)]
        src1 = [Signal(src_shape, name=f"node{i}_src1") for i in range(max_nodes)]
        adds = [Signal(name=f"node{i}_add") for i in range(max_nodes)]
        copies = [Signal(COPY_BITS, name=f"node{i}_copies") for i in range(max_nodes)]
        done = [Signal(IMAGE_BITS, name=f"node{i}_done") for i in range(max_nodes)]
        # replicas (section 7): the group's size as a shift, the node's phase, its next
        # image (phase + done * R) and whether it has one in this run
        rlog = [Signal(REPLICA_LOG2_BITS, name=f"node{i}_replicas_log2")
                for i in range(max_nodes)]
        phase = [Signal(layout.members["phase"], name=f"node{i}_phase")
                 for i in range(max_nodes)]
        to_host = [Signal(name=f"node{i}_to_host") for i in range(max_nodes)]
        next_image = [Signal(IMAGE_BITS, name=f"node{i}_next_image") for i in range(max_nodes)]
        pending = [Signal(name=f"node{i}_pending") for i in range(max_nodes)]
        input_copies = Signal(COPY_BITS)
        input_size = Signal(geometry.addr_bits + 1)
        in_done = Signal(IMAGE_BITS)
        m.d.sync += selected_ran.eq(Array(done)[self.node_select] != 0)
        images = Signal(IMAGE_BITS)
        first = [Signal(clog2(max_nodes), name=f"engine{e}_first") for e in range(engines)]
        last = [Signal(clog2(max_nodes), name=f"engine{e}_last") for e in range(engines)]
        has = [Signal(name=f"engine{e}_has_nodes") for e in range(engines)]
        # the producer's image count, copies and replicas by src value (0: the network
        # input); done_of is padded so that src + (n mod R) stays in range
        done_of = Array([in_done] + done + [Const(0, IMAGE_BITS)] * ((1 << len(phase[0])) - 1))
        copies_of = Array([input_copies] + copies)
        rlog_of = Array([Const(0, REPLICA_LOG2_BITS)] + rlog)
        for i in range(max_nodes):
            m.d.comb += pending[i].eq(valid[i] & (next_image[i] < images))

        # per node: copy counters (write, source 0, source 1) and their offsets
        def per_node(name, shape):
            return [Signal(shape, name=f"node{i}_{name}") for i in range(max_nodes)]
        offset_shape = geometry.addr_bits + COPY_BITS + 1
        copy_state = {name: (per_node(name + "_copy", COPY_BITS),
                             per_node(name + "_offset", offset_shape))
                      for name in ("write", "read0", "read1")}

        # ---- the synchronization (sections 6.4, 7.2) per node ---------------------------
        def reads(c, value):
            """Node c reads the map of src value ``value``."""
            return valid[c] & ((src0[c] == value) | (adds[c] & (src1[c] == value)))

        # n mod R as a bit mask by replicas_log2
        phase_shape = layout.members["phase"]
        low_mask = Array([Const((1 << k) - 1, phase_shape)
                          for k in range(1 << REPLICA_LOG2_BITS)])

        def finished(value, n):
            """The group named by src value ``value`` (its first node + 1; 0 the input)
            has finished image ``n``: ``done`` of its member ``n mod R`` > ``n div R``."""
            shift = rlog_of[value]
            return done_of[value + (n & low_mask[shift])] > (n >> shift)

        def member_finished(c, n):
            """Node ``c`` is not the member of its group for image ``n``, or finished it."""
            return ((n & low_mask[rlog[c]]) != phase[c]) | (done[c] > (n >> rlog[c]))

        def consumers_finished(value, n, copies_free):
            """Every group reading src value ``value`` finished image ``n`` (or
            ``copies_free``: the image is below the copies)."""
            return copies_free | Cat(~reads(c, value) | member_finished(c, n)
                                     for c in range(max_nodes)).all()

        input_ok, output_ok = [], []
        for i in range(max_nodes):
            n = next_image[i]
            a = Signal(name=f"node{i}_input_ok")
            b = Signal(name=f"node{i}_output_ok")
            group = Signal(src_shape, name=f"node{i}_group")   # src value naming i's group
            m.d.comb += group.eq(i + 1 - phase[i])
            m.d.comb += [
                a.eq(finished(src0[i], n) & (~adds[i] | finished(src1[i], n))),
                # (b); a replicated to_host group also gives the host image n - 1 first
                b.eq(consumers_finished(group, (n - copies[i])[:IMAGE_BITS], n < copies[i])
                     & (~to_host[i] | (rlog[i] == 0) | (n == 0)
                        | finished(group, (n - 1)[:IMAGE_BITS]))),
            ]
            input_ok.append(a)
            output_ok.append(b)
        input_ok, output_ok = Array(input_ok), Array(output_ok)

        # ---- the run FSM and INIT ----------------------------------------------------------
        go = Signal()                  # first RUN cycle: the engines start
        running = Signal()             # RUN state
        init_k = Signal(range(max_nodes + 1))
        init_prev = Signal(clog2(max_nodes))
        init_valid = Signal()
        init_addr = Signal(clog2(max_nodes))
        finished = [Signal(name=f"engine{e}_finished") for e in range(engines)]
        finishing = [Signal(name=f"engine{e}_finishing") for e in range(engines)]
        record = self.node_record[0]
        init_window = record.window
        source_size_init = init_window.channels * init_window.height * init_window.width
        dst_size_init = record.dst_channels * init_window.out_h * init_window.out_w

        def src_copies(value):
            # node 0's input_copies is registered in the same cycle as its record is read
            return Mux(value == 0, Mux(init_prev == 0, record.input_copies, input_copies),
                       copies_of[value])
        m.d.sync += go.eq(0)
        with m.FSM(name="pipeline") as fsm:
            with m.State("IDLE"):
                with m.If(self.run):
                    m.d.sync += [
                        images.eq(Mux(self.n_images == 0, 1, self.n_images)),
                        init_k.eq(0), init_valid.eq(0), self.done.eq(0), in_done.eq(0),
                        *[flag.eq(0) for flag in valid + has + finished + done + next_image],
                        *[signal.eq(0) for pair in copy_state.values() for part in pair
                          for signal in part],
                    ]
                    m.next = "INIT"
            with m.State("INIT"):
                m.d.comb += init_addr.eq(init_k)
                m.d.sync += [init_k.eq(init_k + 1), init_prev.eq(init_k),
                             init_valid.eq(init_k < self.n_nodes)]
                with m.If(init_valid):
                    for i in range(max_nodes):
                        with m.If(init_prev == i):
                            m.d.sync += [
                                valid[i].eq(1), stage[i].eq(record.stage),
                                src0[i].eq(record.src0_node), src1[i].eq(record.src1_node),
                                adds[i].eq(record.kind == NodeKind.ADD),
                                copies[i].eq(record.copies),
                                rlog[i].eq(record.replicas_log2), phase[i].eq(record.phase),
                                to_host[i].eq(record.to_host),
                                next_image[i].eq(record.phase),
                            ]
                            # image `phase` is in copy `phase mod copies` of each map
                            for name, limit, size in (
                                    ("write", record.copies, dst_size_init),
                                    ("read0", src_copies(record.src0_node), source_size_init),
                                    ("read1", src_copies(record.src1_node), source_size_init)):
                                copy = (record.phase % limit)[:COPY_BITS]
                                m.d.sync += [copy_state[name][0][i].eq(copy),
                                             copy_state[name][1][i].eq(copy * size)]
                    with m.If(init_prev == 0):
                        window = record.window
                        m.d.sync += [input_copies.eq(record.input_copies),
                                     input_size.eq(window.channels * window.height
                                                   * window.width)]
                    for e in range(engines):
                        with m.If(record.stage == e):
                            m.d.sync += [has[e].eq(1), last[e].eq(init_prev)]
                            with m.If(~has[e]):
                                m.d.sync += first[e].eq(init_prev)
                    with m.If(init_prev + 1 == self.n_nodes):
                        m.d.sync += go.eq(1)
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(Cat(f | g for f, g in zip(finished, finishing)).all()):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))

        # ---- the input writer ------------------------------------------------------------
        writer_ok = consumers_finished(0, (in_done - input_copies)[:IMAGE_BITS],
                                       in_done < input_copies)
        writing = running & (in_done < images) & writer_ok
        taken = writing & self.host_inputs.valid
        in_count = Signal(geometry.addr_bits + 1)
        in_copy = Signal(COPY_BITS)
        in_offset = Signal(offset_shape)
        writer = store.write_port()
        m.d.comb += [
            self.host_inputs.ready.eq(writing),
            writer.addr.eq(in_offset + in_count),
            writer.data.eq(self.host_inputs.payload),
            writer.en.eq(taken),
        ]
        with m.If(self.run & ~self.busy):
            m.d.sync += [in_count.eq(0), in_copy.eq(0), in_offset.eq(0)]
        with m.Elif(taken):
            m.d.sync += in_count.eq(in_count + 1)
            with m.If(in_count + 1 == input_size):
                m.d.sync += [in_count.eq(0), in_done.eq(in_done + 1)]
                with m.If(in_copy + 1 == input_copies):
                    m.d.sync += [in_copy.eq(0), in_offset.eq(0)]
                with m.Else():
                    m.d.sync += [in_copy.eq(in_copy + 1), in_offset.eq(in_offset + input_size)]

        # ---- the engines ------------------------------------------------------------------
        host_results, held_to_host, to_host_ends, engine_addr = [], [], [], []
        for e in range(engines):
            result_valid, result, its_to_host, held, ends, index = self._engine(
                m, e, store, counters, go, images, first[e], last[e], has[e], finished[e],
                finishing[e], input_ok, output_ok, done, copies_of, copy_state, stage,
                rlog, next_image, pending)
            host_results.append((result_valid & its_to_host, result))
            held_to_host.append(held & its_to_host)
            to_host_ends.append(ends & its_to_host)
            engine_addr.append(index)
        m.d.comb += [
            self.node_addr[0].eq(Mux(fsm.ongoing("INIT"), init_addr, engine_addr[0])),
            self.host_outputs.valid.eq(Cat(v for v, _ in host_results).any()),
            self.host_outputs.payload.eq(_select(host_results)),
            self.host_stall.eq((writing & ~self.host_inputs.valid)
                               | Cat(held_to_host).any()),
        ]
        for e in range(1, engines):
            m.d.comb += self.node_addr[e].eq(engine_addr[e])

        # ---- LATENCY and INTERVAL ---------------------------------------------------------
        elapsed = Signal(COUNTER_BITS)
        last_output = Signal(COUNTER_BITS)
        outputs_seen = Signal()
        stamp = (elapsed + 1)[:COUNTER_BITS]
        with m.If(self.run & ~self.busy):
            m.d.sync += [elapsed.eq(0), last_output.eq(0), outputs_seen.eq(0),
                         self.latency.eq(0), self.interval.eq(0)]
        with m.Elif(self.busy):
            m.d.sync += elapsed.eq(stamp)
            with m.If(Cat(to_host_ends).any()):
                m.d.sync += [last_output.eq(stamp), outputs_seen.eq(1)]
                with m.If(outputs_seen):
                    m.d.sync += self.interval.eq(stamp - last_output)
                with m.Else():
                    m.d.sync += self.latency.eq(stamp)
        return m

    def _engine(self, m, e, store, counters, go, images, first, last, has, finished,
                finishing, input_ok, output_ok, done, copies_of, copy_state, stage, rlog,
                next_image, pending):
        """Add engine ``e``: its node FSM, readers, pool, residual add and write port.

        Returns ``(result_valid, result, to_host, held, ends, index)`` of its current node.
        """
        config, geometry = self.config, self.geometry
        max_nodes = config.max_nodes
        layout = node_layout(config)
        prefix = f"engine{e}_"
        reader = Im2colReader(geometry)
        reader_b = Im2colReader(geometry)
        pool = PoolUnit(geometry)
        residual = ResidualAdd(geometry)
        m.submodules[prefix + "reader"] = reader
        m.submodules[prefix + "reader_b"] = reader_b
        m.submodules[prefix + "pool"] = pool
        m.submodules[prefix + "residual"] = residual
        for port in (reader.read, reader_b.read):
            read_port = store.read_port(domain="sync")
            m.d.comb += [read_port.addr.eq(port.addr), read_port.en.eq(port.en),
                         port.data.eq(read_port.data)]

        node = Signal(layout, name=prefix + "node")
        index = Signal(clog2(max_nodes), name=prefix + "index")
        pixels = Signal(geometry.addr_bits + 1, name=prefix + "pixels")
        source_size = Signal(geometry.addr_bits + 1, name=prefix + "source_size")
        dst_size = Signal(geometry.addr_bits + 1, name=prefix + "dst_size")
        channel = Signal(geometry.channel_bits, name=prefix + "channel")
        pixel = Signal(geometry.addr_bits + 1, name=prefix + "pixel")
        wait_input = Signal(name=prefix + "wait_input")
        window = node.window
        kind = node.kind
        compute = kind == NodeKind.COMPUTE
        adding = kind == NodeKind.ADD
        job_inputs, job_outputs = self.job_inputs[e], self.job_outputs[e]
        m.d.comb += [self.layer[e].eq(node.layer), self.n_vectors[e].eq(pixels)]

        # the node's copy counters, loaded in SETUP and stored back at its end
        local = {}
        for name, (copy_regs, offset_regs) in copy_state.items():
            local[name] = (Signal(COPY_BITS, name=f"{prefix}{name}_copy"),
                           Signal(offset_regs[0].shape(), name=f"{prefix}{name}_offset"))
        bases = {name: Signal(geometry.addr_bits, name=f"{prefix}{name}_base")
                 for name in local}

        # ---- readers, consumer and results (node_datapath, as the sequencer's) ----------
        running = Signal(name=prefix + "running")
        result_valid, result, result_ready = node_datapath(
            m, config.acc_bits, node, running, reader, reader_b, pool, residual, job_inputs,
            job_outputs, self.host_outputs.ready, bases["read0"], bases["read1"], prefix)

        # ---- the engine's write port ----------------------------------------------------
        write_start = Signal(name=prefix + "write_start")
        write_valid = result_valid & ~node.to_host
        write_count = Signal(geometry.addr_bits + 1, name=prefix + "write_count")
        writer = store.write_port()
        address = write_address(m, geometry, write_valid, write_start, bases["write"],
                                node.dst_channels, pixels, 0, write_count)
        m.d.comb += [writer.addr.eq(address), writer.data.eq(result[:config.max_act_bits]),
                     writer.en.eq(write_valid)]

        taken = result_valid & result_ready
        last_result = (channel + 1 == node.dst_channels) & (pixel + 1 == pixels)
        with m.If(taken):
            with m.If(channel + 1 == node.dst_channels):
                m.d.sync += [channel.eq(0), pixel.eq(pixel + 1)]
            with m.Else():
                m.d.sync += channel.eq(channel + 1)
        ends = Signal(name=prefix + "ends")
        m.d.comb += ends.eq(running & taken & last_result)

        # ---- counters -----------------------------------------------------------------
        cycles = Signal(COUNTER_BITS, name=prefix + "cycles")
        input_stall = Signal(COUNTER_BITS, name=prefix + "input_stall")
        output_stall = Signal(COUNTER_BITS, name=prefix + "output_stall")
        waiting = Signal(name=prefix + "waiting")
        starved = ((reader.busy & ~reader.outputs.valid)
                   | (adding & reader_b.busy & ~reader_b.outputs.valid))
        held = result_valid & ~result_ready
        now = [(cycles + running)[:COUNTER_BITS],
               (input_stall + Mux(running, starved, waiting & wait_input))[:COUNTER_BITS],
               (output_stall + Mux(running, held, waiting & ~wait_input))[:COUNTER_BITS]]
        with m.If(running | waiting):
            m.d.sync += [cycles.eq(now[0]), input_stall.eq(now[1]), output_stall.eq(now[2])]
        counter_read = counters.read_port()
        counter_write = counters.write_port()
        m.d.comb += [
            counter_read.addr.eq(index),
            counter_write.addr.eq(index),
            counter_write.data.eq(Cat(*now)),
            counter_write.en.eq(ends),
        ]

        # ---- the copy counters of the node at its end ---------------------------------
        # the node's next image is R later: each copy counter advances by R mod its copies
        limits = {"write": copies_of[index + 1], "read0": copies_of[node.src0_node],
                  "read1": copies_of[node.src1_node]}
        steps = {"write": dst_size, "read0": source_size, "read1": source_size}
        replicas = Const(1, 1 << REPLICA_LOG2_BITS) << node.replicas_log2
        ready = input_ok[index] & output_ok[index]
        with m.If(ends):
            for i in range(max_nodes):
                with m.If(index == i):
                    m.d.sync += [done[i].eq(done[i] + 1),
                                 next_image[i].eq(next_image[i] + replicas)]
                    for name, (copy_regs, offset_regs) in copy_state.items():
                        copy, _ = local[name]
                        advanced = ((copy + replicas) % limits[name])[:COPY_BITS]
                        m.d.sync += [copy_regs[i].eq(advanced),
                                     offset_regs[i].eq(advanced * steps[name])]

        # ---- which node next: the engine's nodes in order, cyclically, skipping (one
        # FETCH cycle each) a node without a further image in this run ------------------
        mine = [(stage[i] == e) for i in range(max_nodes)]
        any_pending = Cat(own & p for own, p in zip(mine, pending)).any()
        current_more = (Array(next_image)[index] + replicas) < images
        more = Cat(own & Mux(index == i, current_more, pending[i])
                   for i, own in enumerate(mine)).any()
        following = Mux(index == last, first, index + 1)

        # ---- the FSM ------------------------------------------------------------------
        m.d.comb += finishing.eq(ends & ~more)
        with m.FSM(name=prefix + "fsm"):
            with m.State("IDLE"):
                with m.If(go):
                    m.d.sync += [index.eq(first), finished.eq(~has | ~any_pending)]
                    with m.If(has & any_pending):
                        m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(Array(pending)[index]):
                    m.next = "LOAD"
                with m.Else():
                    m.d.sync += index.eq(following)
            with m.State("LOAD"):
                old = counter_read.data
                first_image = Array(done)[index] == 0
                m.d.sync += [
                    node.eq(self.node_record[e]),
                    cycles.eq(Mux(first_image, 0, old[:COUNTER_BITS])),
                    input_stall.eq(Mux(first_image, 0, old[COUNTER_BITS:2 * COUNTER_BITS])),
                    output_stall.eq(Mux(first_image, 0, old[2 * COUNTER_BITS:])),
                ]
                m.next = "SETUP"
            with m.State("SETUP"):
                m.d.sync += [
                    pixels.eq(window.out_h * window.out_w),
                    source_size.eq(window.channels * window.height * window.width),
                    channel.eq(0), pixel.eq(0),
                    wait_input.eq(~input_ok[index]),
                ]
                for name, (copy_regs, offset_regs) in copy_state.items():
                    copy, offset = local[name]
                    m.d.sync += [copy.eq(Array(copy_regs)[index]),
                                 offset.eq(Array(offset_regs)[index])]
                m.d.sync += [
                    bases["read0"].eq(window.base + Array(copy_state["read0"][1])[index]),
                    bases["read1"].eq(node.src1_base + Array(copy_state["read1"][1])[index]),
                    bases["write"].eq(node.dst_base + Array(copy_state["write"][1])[index]),
                ]
                m.d.comb += write_start.eq(1)
                with m.If(ready):
                    m.next = "START"
                with m.Else():
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += waiting.eq(1)
                m.d.sync += wait_input.eq(~input_ok[index])
                with m.If(ready):
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [
                    reader.start.eq(1),
                    reader_b.start.eq(adding),
                    self.job_start[e].eq(compute),
                ]
                m.d.sync += dst_size.eq(node.dst_channels * pixels)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(ends):
                    with m.If(~more):
                        m.d.sync += finished.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += index.eq(following)
                        m.next = "FETCH"
        return result_valid, result, node.to_host, held, ends, index
