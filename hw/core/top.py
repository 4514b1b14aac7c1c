"""The accelerator top level: host interface, loader, scheduler, units, reduction, output.

::

     csr ──► HostInterface ──start/layer/n_vectors──► Scheduler ◄── units_busy
                 ▲  counters                            │ load/swap/go/drain
     program ──► Loader ──writes──► layer table, output params, per-unit row maps,
                                    entry memories, crossbar write ports
     inputs ───────────────────────► Scheduler ──load──► CrossbarUnit x n_xbars ◄──► crossbar
                                                          (row drivers, OU controller,    port
                                                           ADC mux, shift-and-add)      (emulator
                                                              │ drained                 or external)
                       output params ──► OutputUnit ◄── Reduction
                                            │
     outputs ◄──── output FIFO ◄────────────┘

``Accelerator(config, crossbar="emulated")`` places a
:class:`~bitline.hw.unit.emulator.CrossbarEmulator` behind every unit's port;
``crossbar="external"`` exposes the ports as ``xbars[u]`` for the analog model.

**Whole-network mode** (docs/hardware.md, "Whole-network mode"): with ``config.network``
the top adds the node memory and the :class:`~bitline.hw.net.sequencer.Sequencer`
(activation buffer, im2col readers, pool unit, residual add). CTRL.RUN_NETWORK starts a
run: the sequencer takes the ``inputs`` stream (lane 0) for the network input, feeds the
scheduler from the buffer, addresses the layer table and starts its jobs, takes the output
FIFO, and sends the last node's results on ``outputs`` (lane 0). Without a run (and on a
design without ``config.network``, which has none of this) the layer-job mode is unchanged.

**Copies** (docs/hardware.md, "Copies"): the ``inputs`` and ``outputs`` payloads have
``max_copies`` lanes. The units of a layer's copy ``k`` (the layer record's ``lanes``) take
lane ``k`` of every input beat; the reduction sums each lane's units apart and one output
unit per lane (all reading the same channel's parameters, since every lane drains the same
channel in the same cycle) writes lane ``k`` of the output beat.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, connect, flipped

from bitline.hw._component import rejects_quietly
from bitline.hw.core.host_interface import CSRSignature, HostInterface
from bitline.hw.core.memories import (
    AcceleratorMemories,
    default_unit_entries,
    param_capacity,
)
from bitline.hw.core.output_unit import OutputUnit
from bitline.hw.core.reduction import Reduction
from bitline.hw.core.scheduler import OUTPUT_FIFO_DEPTH, Scheduler, lanes_layout, unit_lane
from bitline.hw.loader.loader import Loader
from bitline.hw.net.sequencer import Sequencer
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import layer_layout, output_param_layout
from bitline.hw.spec.network import node_layout
from bitline.hw.spec.registers import ErrorCode
from bitline.hw.spec.timing import DRAIN_STAGES
from bitline.hw.spec.validate import check_config
from bitline.hw.unit.crossbar_unit import CrossbarUnit
from bitline.hw.unit.emulator import CrossbarEmulator
from bitline.hw.unit.xbar_port import CrossbarSignature

__all__ = ["Accelerator", "CROSSBAR_MODES"]

#: Where the crossbars are: inside (digital emulator) or outside (ports at the top).
CROSSBAR_MODES = ("emulated", "external")


class _Sweep(NamedTuple):
    """The partial-sum sweep after a reset (:meth:`Accelerator._add_sweep`)."""

    active: Signal
    channel: Signal


class _Blocks(NamedTuple):
    """The accelerator's fixed blocks; field names are their submodule names."""

    host: HostInterface
    loader: Loader
    scheduler: Scheduler
    reduction: Reduction
    output_units: tuple[OutputUnit, ...]
    output_fifo: SyncFIFO
    sequencer: Sequencer | None     # only with config.network


class Accelerator(wiring.Component):
    """A complete crossbar PIM accelerator for ``config``.

    Parameters
    ----------
    config:
        Accelerator configuration; rejected (``ValueError``) if its datapath cannot hold a
        shift-and-add term (:func:`~bitline.hw.spec.validate.check_config`).
    crossbar:
        ``"emulated"`` or ``"external"``.
    memories:
        Optional initial memory contents (:func:`~bitline.hw.core.memories.program_memories`):
        the accelerator starts programmed, as after loading the image.
    unit_entries:
        Entry-memory depth per unit (default: one entry per OU of a crossbar, or the
        ``memories``' depth).

    Attributes
    ----------
    csr: In(CSRSignature())
        Control/status registers (:mod:`bitline.hw.core.host_interface`).
    program: In(stream.Signature(8))
        ``image.bin`` bytes.
    inputs: In(stream.Signature(ArrayLayout(max_act_bits, max_copies)))
        Input codes: ``N_SHARE`` vectors of the layer's ``n_inputs`` codes, lane ``k`` the
        vector of copy ``k`` (one lane without copies).
    outputs: Out(stream.Signature(ArrayLayout(signed(acc_bits), max_copies)))
        ``n_outputs`` values per vector, channel 0 first, lane ``k`` copy ``k``'s (lanes of
        an idle copy are don't-care).
    xbars: Out(CrossbarSignature(config)).array(n_xbars)
        Only with ``crossbar="external"``.
    job_busy: Signal
        Not a port: the scheduler's ``busy`` (high from the cycle after CTRL.START to the
        cycle the job's last output is taken), for wrappers that frame the output stream
        (the AXI4-Stream ``tlast`` of :mod:`bitline.hw.io.axi`); with ``config.network``
        also high through a whole-network run (to its last output), so ``tlast`` marks
        the run's last output.
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, crossbar: str = "emulated",
                 memories: AcceleratorMemories | None = None,
                 unit_entries: int | None = None):
        if crossbar not in CROSSBAR_MODES:
            raise ValueError(f"crossbar must be one of {CROSSBAR_MODES}, not {crossbar!r}")
        check_config(config)
        if memories is not None:
            if memories.config != config:
                raise ValueError("memories were built for another accelerator config")
            if unit_entries is not None and unit_entries != memories.unit_entries:
                raise ValueError(f"unit_entries {unit_entries} differs from the memories' "
                                 f"{memories.unit_entries}")
            unit_entries = memories.unit_entries
        self.config = config
        self.network = bool(config.network)
        if memories is not None and bool(memories.nodes) and not self.network:
            raise ValueError("memories hold network node records but the config has no "
                             "whole-network hardware (act_buffer_depth = 0)")
        self.crossbar = crossbar
        self.memories = memories
        self.unit_entries = default_unit_entries(config) if unit_entries is None else unit_entries
        if self.unit_entries < 1:
            raise ValueError(f"unit_entries must be at least 1, not {self.unit_entries}")
        members = {
            "csr": In(CSRSignature()),
            "program": In(stream.Signature(8)),
            "inputs": In(stream.Signature(lanes_layout(config, config.max_act_bits))),
            "outputs": Out(stream.Signature(lanes_layout(config, signed(config.acc_bits)))),
        }
        if crossbar == "external":
            members["xbars"] = Out(CrossbarSignature(config)).array(config.n_xbars)
        super().__init__(members)
        self.job_busy = Signal()

    def elaborate(self, platform):
        m = Module()
        blocks = self._add_blocks(m)
        layer, param_read = self._add_tables(m, blocks)
        sweep = self._add_sweep(m, blocks)
        job_error = self._add_job_control(m, blocks, layer, sweep)
        units = self._add_units(m, blocks, job_error, sweep)
        self._add_output_path(m, blocks, units, layer, param_read, sweep)
        self._add_status(m, blocks, units, job_error, sweep)
        busy = blocks.scheduler.busy
        if blocks.sequencer is not None:
            busy = busy | blocks.sequencer.busy     # a network run is one "job" outside
        m.d.comb += self.job_busy.eq(busy)
        return m

    def _add_sweep(self, m: Module, blocks: _Blocks) -> "_Sweep":
        """Clear the partial sums a reset left behind (docs/hardware.md, "Reset and recovery").

        A reset clears every register but no memory: a job interrupted between its first
        ``swap`` and its last drain leaves accumulated values (and touched bits) in the
        units' partial-sum memories, which the next job would add to. ``dirty`` (not reset)
        is set at every ``swap`` and cleared when a job ends; in the first cycle after a
        reset with ``dirty`` set, ``sweeping`` drains channels ``0 .. max_out_channels - 1``
        of every unit, one per cycle, and the drained values are dropped before the
        reduction. Meanwhile jobs are refused (NOT_PROGRAMMED) and STATUS.programmed is low.
        A power-up or a reset with clean partial sums costs nothing (no job's cycles change).
        """
        config, scheduler = self.config, blocks.scheduler
        dirty = Signal(reset_less=True)
        checked = Signal()                 # 0 only in the first cycle after a reset
        running = Signal()
        sweep = _Sweep(Signal(name="sweeping"),
                       Signal(range(config.max_out_channels), name="sweep_channel"))
        m.d.sync += checked.eq(1)
        with m.If(scheduler.swap):
            m.d.sync += dirty.eq(1)
        with m.Elif(scheduler.done & ~scheduler.busy):
            m.d.sync += dirty.eq(0)
        # active from the first cycle after the reset (STATUS never shows programmed early)
        m.d.comb += sweep.active.eq(running | (~checked & dirty))
        with m.If(sweep.active):
            m.d.sync += [running.eq(1), sweep.channel.eq(sweep.channel + 1)]
            with m.If(sweep.channel == config.max_out_channels - 1):
                m.d.sync += [running.eq(0), dirty.eq(0)]
        return sweep

    def _add_blocks(self, m: Module) -> _Blocks:
        """Add the host interface, loader, scheduler, reduction, output unit and output FIFO.

        Connects the top's ``csr``, ``program`` and ``inputs`` to them and returns them.
        """
        config, mem = self.config, self.memories
        blocks = _Blocks(
            host=HostInterface(config),
            loader=Loader(config, self.unit_entries,
                          initial_counts=[u.n_entries for u in mem.units] if mem else None,
                          initial_layers=len(mem.layers) if mem else None,
                          **({"initial_nodes": len(mem.nodes) if mem else None}
                             if self.network else {})),
            scheduler=Scheduler(config),
            reduction=Reduction(config),
            output_units=tuple(OutputUnit(config) for _ in range(config.max_copies)),
            output_fifo=SyncFIFO(width=config.acc_bits * config.max_copies,
                                 depth=OUTPUT_FIFO_DEPTH),
            sequencer=Sequencer(config) if self.network else None,
        )
        for name, block in blocks._asdict().items():
            if name != "output_units" and block is not None:
                m.submodules[name] = block
        for lane, output_unit in enumerate(blocks.output_units):
            m.submodules["output_unit" + (f"_lane{lane}" if lane else "")] = output_unit
        connect(m, flipped(self.csr), blocks.host.csr)
        connect(m, flipped(self.program), blocks.loader.bytes)
        sequencer, scheduler = blocks.sequencer, blocks.scheduler
        if sequencer is None:
            connect(m, flipped(self.inputs), scheduler.inputs)
            return blocks
        # a run takes the host's inputs (the input phase) and feeds the scheduler itself
        running = sequencer.busy
        m.d.comb += [
            sequencer.host_inputs.valid.eq(running & self.inputs.valid),
            sequencer.host_inputs.payload.eq(self.inputs.payload[0]),
            scheduler.inputs.valid.eq(Mux(running, sequencer.job_inputs.valid,
                                          self.inputs.valid)),
            scheduler.inputs.payload.eq(Mux(running, sequencer.job_inputs.payload,
                                            self.inputs.payload)),
            sequencer.job_inputs.ready.eq(running & scheduler.inputs.ready),
            self.inputs.ready.eq(Mux(running, sequencer.host_inputs.ready,
                                     scheduler.inputs.ready)),
        ]
        return blocks

    def _add_tables(self, m: Module, blocks: _Blocks):
        """Add the layer table and the output-parameter memory, written by the loader.

        Returns the current layer record (the one ``host.layer_index`` selects) and the
        parameter read port (addressed by the channel the scheduler drains).
        """
        config, mem = self.config, self.memories
        host, loader, scheduler = blocks.host, blocks.loader, blocks.scheduler
        layer_type = layer_layout(config)
        layers = Memory(shape=layer_type.size, depth=config.max_layers,
                        init=(mem.layers if mem else []))
        m.submodules.layers = layers
        layer_write = layers.write_port()
        layer_read = layers.read_port()
        m.d.comb += [
            layer_write.addr.eq(loader.layer_write.payload.addr),
            layer_write.data.eq(loader.layer_write.payload.record),
            layer_write.en.eq(loader.layer_write.valid),
        ]
        sequencer = blocks.sequencer
        if sequencer is None:
            m.d.comb += layer_read.addr.eq(host.layer_index)
        else:
            # a run addresses the layer table with its node's layer
            m.d.comb += layer_read.addr.eq(Mux(sequencer.busy, sequencer.layer,
                                               host.layer_index))
            self._add_nodes(m, blocks)
        layer = layer_type(layer_read.data)

        param_type = output_param_layout(config)
        params = Memory(shape=param_type.size, depth=param_capacity(config),
                        init=(mem.params if mem else []))
        m.submodules.params = params
        param_write = params.write_port()
        param_read = params.read_port()
        m.d.comb += [
            param_write.addr.eq(loader.param_write.payload.addr),
            param_write.data.eq(loader.param_write.payload.record),
            param_write.en.eq(loader.param_write.valid),
            param_read.addr.eq(layer.param_start + scheduler.drain.payload),
        ]
        return layer, param_read

    def _add_nodes(self, m: Module, blocks: _Blocks) -> None:
        """Add the node memory (written by the loader, read by the sequencer)."""
        config, mem = self.config, self.memories
        loader, sequencer, host = blocks.loader, blocks.sequencer, blocks.host
        nodes = Memory(shape=node_layout(config).size, depth=config.max_nodes,
                       init=(mem.nodes if mem else []))
        m.submodules.nodes = nodes
        node_read = nodes.read_port()
        m.d.comb += [
            node_read.addr.eq(sequencer.node_addr),
            sequencer.node_record.eq(node_read.data),
        ]
        members = loader.signature.members
        if "node_write" in members:
            node_write = nodes.write_port()
            m.d.comb += [
                node_write.addr.eq(loader.node_write.payload.addr),
                node_write.data.eq(loader.node_write.payload.record),
                node_write.en.eq(loader.node_write.valid),
            ]
        if "n_nodes" in members:
            m.d.comb += sequencer.n_nodes.eq(loader.n_nodes)
        else:
            m.d.comb += sequencer.n_nodes.eq(len(mem.nodes) if mem else 0)
        m.d.comb += [
            host.n_nodes.eq(sequencer.n_nodes),
            sequencer.node_select.eq(host.node_select),
            host.node_cycles.eq(sequencer.node_cycles),
            host.node_input_stall.eq(sequencer.node_input_stall),
            host.node_output_stall.eq(sequencer.node_output_stall),
        ]

    def _add_job_control(self, m: Module, blocks: _Blocks, layer, sweep: _Sweep) -> Signal:
        """Start jobs, network runs and loads; return the job error register (0: no error)."""
        host, loader, scheduler = blocks.host, blocks.loader, blocks.scheduler
        sequencer = blocks.sequencer
        job_error = Signal(8)
        idle = ~scheduler.busy if sequencer is None else ~scheduler.busy & ~sequencer.busy
        start = host.start & idle
        with m.If(start):
            with m.If(~loader.programmed | loader.loading | sweep.active):
                m.d.sync += job_error.eq(ErrorCode.NOT_PROGRAMMED)
            with m.Elif(host.layer_index >= loader.n_layers):
                m.d.sync += job_error.eq(ErrorCode.BAD_LAYER)
            with m.Else():
                m.d.sync += job_error.eq(0)
                m.d.comb += scheduler.start.eq(1)
        with m.If(host.run_network & idle):
            if sequencer is None:
                m.d.sync += job_error.eq(ErrorCode.NO_NETWORK)
            else:
                with m.If(~loader.programmed | loader.loading | sweep.active):
                    m.d.sync += job_error.eq(ErrorCode.NOT_PROGRAMMED)
                with m.Elif(sequencer.n_nodes == 0):
                    m.d.sync += job_error.eq(ErrorCode.NO_NETWORK)
                with m.Else():
                    m.d.sync += job_error.eq(0)
                    m.d.comb += sequencer.run.eq(1)
        with m.If(host.clear_error | host.load):
            m.d.sync += job_error.eq(0)
        m.d.comb += [
            scheduler.layer.eq(layer),
            loader.restart.eq(host.load & idle),
            loader.clear_error.eq(host.clear_error),
        ]
        if sequencer is None:
            m.d.comb += [scheduler.n_vectors.eq(host.n_vectors),
                         scheduler.n_share.eq(host.n_share)]
        else:
            with m.If(sequencer.job_start):                # never with a host start
                m.d.comb += scheduler.start.eq(1)
            m.d.comb += [
                scheduler.n_vectors.eq(Mux(sequencer.busy, sequencer.n_vectors,
                                           host.n_vectors)),
                scheduler.n_share.eq(Mux(sequencer.busy, sequencer.n_vectors,
                                         host.n_share)),
            ]
        return job_error

    def _add_units(self, m: Module, blocks: _Blocks, job_error: Signal,
                   sweep: _Sweep) -> list[CrossbarUnit]:
        """Add the crossbar units and their crossbars (emulated or external ports).

        Each unit is fed by the scheduler and the loader and drains into the reduction; a
        unit's protocol error sets ``job_error``. Returns the units, in index order.
        """
        config, mem = self.config, self.memories
        loader, scheduler = blocks.loader, blocks.scheduler
        reduction = blocks.reduction
        units, protocol = [], []
        codes = scheduler.load.payload.codes
        for index in range(config.n_xbars):
            unit_mem = mem.units[index] if mem else None
            unit = CrossbarUnit(
                config, self.unit_entries, config.max_out_channels,
                row_map=unit_mem.row_map if unit_mem else None,
                entries=unit_mem.entries if unit_mem else None)
            m.submodules[f"unit{index}"] = unit
            units.append(unit)
            m.d.comb += [
                unit.load.valid.eq(scheduler.load.valid),
                unit.load.payload.index.eq(scheduler.load.payload.index),
                # the unit's lane of the beat (its copy of the layer)
                unit.load.payload.code.eq(
                    Array(codes[lane] for lane in range(config.max_copies))[
                        unit_lane(config, blocks.scheduler.layer, index)]
                    if config.max_copies > 1 else codes[0]),
                unit.swap.eq(scheduler.swap),
                unit.go.eq(scheduler.go[index]),
                unit.n_entries.eq(loader.n_entries[index]),
                unit.drain.valid.eq(scheduler.drain.valid | sweep.active),
                unit.drain.payload.eq(Mux(sweep.active, sweep.channel,
                                          scheduler.drain.payload)),
                scheduler.units_busy[index].eq(unit.busy),
                unit.map_write.valid.eq(loader.map_write.valid
                                        & (loader.map_write.payload.unit == index)),
                unit.map_write.payload.eq(loader.map_write.payload.write),
                unit.entry_write.valid.eq(loader.entry_write.valid
                                          & loader.entry_write.payload.units[index]),
                unit.entry_write.payload.eq(loader.entry_write.payload.write),
                reduction.units.payload[index].eq(unit.drained.payload),
            ]
            write = self._add_crossbar(m, index, unit, unit_mem)
            m.d.comb += [
                write.en.eq(loader.cell_write.valid & (loader.cell_write.payload.unit == index)),
                write.row.eq(loader.cell_write.payload.row),
                write.levels.eq(loader.cell_write.payload.levels),
            ]
            protocol.append(unit.protocol_error)
        with m.If(sum(protocol) != 0):
            m.d.sync += job_error.eq(ErrorCode.XBAR_PROTOCOL)
        return units

    def _add_crossbar(self, m: Module, index: int, unit: CrossbarUnit, unit_mem):
        """Connect ``unit`` to its crossbar; return the crossbar's cell write port."""
        if self.crossbar == "external":
            port = self.xbars[index]
            connect(m, unit.read, flipped(port.read))
            connect(m, unit.result, flipped(port.result))
            return port.write
        emulator = CrossbarEmulator(self.config, unit_mem.cells if unit_mem else None)
        m.submodules[f"xbar{index}"] = emulator
        connect(m, unit.read, emulator.port.read)
        connect(m, unit.result, emulator.port.result)
        return emulator.port.write

    def _add_output_path(self, m: Module, blocks: _Blocks, units: list[CrossbarUnit], layer,
                         param_read, sweep: _Sweep) -> None:
        """Connect reduction -> output units (with the channel's parameters) -> FIFO -> outputs.

        One output unit per lane; lane ``k``'s reduction mask holds the layer's units of lane
        ``k`` while that lane's vector is real (``scheduler.lanes_active``).
        """
        config = self.config
        reduction, output_units = blocks.reduction, blocks.output_units
        fifo, scheduler = blocks.output_fifo, blocks.scheduler
        # Stages from a channel's issue to the reduction's input (partial-sum read, lane
        # sum): what the drain issue knows (active lanes, the vector's input sum) is delayed
        # as much, so the next vector's swap cannot change it under way.
        to_reduction = DRAIN_STAGES.index("unit_sum")
        active = scheduler.lanes_active
        swept = sweep.active                # a sweep's drained values are dropped
        for stage in range(to_reduction):
            later = Signal(config.max_copies, name=f"lanes_active_d{stage + 1}")
            swept_later = Signal(name=f"swept_d{stage + 1}")
            m.d.sync += [later.eq(active), swept_later.eq(swept)]
            active, swept = later, swept_later
        lanes = [unit_lane(config, layer, unit) for unit in range(config.n_xbars)]
        m.d.comb += reduction.units.valid.eq(units[0].drained.valid & ~swept)
        for lane in range(config.max_copies):
            members = Cat((lanes[unit] == lane) if config.max_copies > 1 else 1
                          for unit in range(config.n_xbars))
            m.d.comb += reduction.masks[lane].eq(
                Mux(active[lane], layer.xbar_mask & members, 0))
        param_type = output_param_layout(config)
        # the parameter memory's read is the first of the to_reduction + 1 cycles to the
        # output unit's input
        param = param_read.data
        for stage in range(to_reduction):
            later = Signal(param_type, name=f"param_d{stage + 1}")
            m.d.sync += later.eq(param)
            param = later
        for lane, output_unit in enumerate(output_units):
            # Offset weight encoding: weight_offset * sum(x) of the lane's vector being
            # drained, taken when its channel is issued and delayed like the channel's
            # accumulator (to the reduction, then its sum).
            corrections = [Signal(config.acc_bits, name=f"correction{lane}_d{stage}")
                           for stage in range(1, to_reduction + 2)]
            m.d.sync += corrections[0].eq(scheduler.input_sum[lane] * layer.weight_offset)
            m.d.sync += [later.eq(earlier)
                         for earlier, later in zip(corrections, corrections[1:])]
            m.d.comb += [
                output_unit.inputs.valid.eq(reduction.sums.valid),
                output_unit.inputs.payload.acc.eq(reduction.sums.payload[lane]),
                output_unit.inputs.payload.param.eq(param),
                output_unit.correction.eq(corrections[-1]),
                output_unit.mode.eq(layer.mode),
                output_unit.zero_point.eq(layer.zero_point),
                output_unit.clamp_lo.eq(layer.clamp_lo),
                output_unit.clamp_hi.eq(layer.clamp_hi),
            ]
        m.d.comb += [
            fifo.w_en.eq(output_units[0].outputs.valid),
            fifo.w_data.eq(Cat(unit.outputs.payload for unit in output_units)),
        ]
        sequencer = blocks.sequencer
        if sequencer is None:
            m.d.comb += [
                self.outputs.valid.eq(fifo.r_rdy),
                self.outputs.payload.eq(fifo.r_data),
                fifo.r_en.eq(self.outputs.ready),
                scheduler.output_taken.eq(self.outputs.valid & self.outputs.ready),
            ]
            return
        # a run sends the FIFO to the sequencer, and the sequencer's results to the host
        running = sequencer.busy
        m.d.comb += [
            sequencer.job_outputs.valid.eq(running & fifo.r_rdy),
            sequencer.job_outputs.payload.eq(fifo.r_data[:config.acc_bits]),
            self.outputs.valid.eq(Mux(running, sequencer.host_outputs.valid, fifo.r_rdy)),
            self.outputs.payload.eq(Mux(running, sequencer.host_outputs.payload,
                                        fifo.r_data)),
            sequencer.host_outputs.ready.eq(running & self.outputs.ready),
            fifo.r_en.eq(Mux(running, sequencer.job_outputs.ready, self.outputs.ready)),
            scheduler.output_taken.eq(fifo.r_rdy & fifo.r_en),
        ]

    def _add_status(self, m: Module, blocks: _Blocks, units: list[CrossbarUnit],
                    job_error: Signal, sweep: _Sweep) -> None:
        """Drive the host interface's status fields and performance counters."""
        host, loader, scheduler = blocks.host, blocks.loader, blocks.scheduler
        reduction = blocks.reduction
        error = Signal(8)
        sequencer = blocks.sequencer
        if sequencer is None:
            m.d.comb += [
                host.busy.eq(scheduler.busy),
                host.done.eq(scheduler.done),
                host.stall.eq(scheduler.input_stall
                              | (self.outputs.valid & ~self.outputs.ready)),
            ]
        else:
            # STATUS.done is the last command's: a network run's or a layer job's
            network_ran = Signal()
            with m.If(sequencer.run):
                m.d.sync += network_ran.eq(1)
            with m.Elif(scheduler.start & ~sequencer.busy):
                m.d.sync += network_ran.eq(0)
            m.d.comb += [
                host.busy.eq(scheduler.busy | sequencer.busy),
                host.done.eq(Mux(network_ran, sequencer.done & ~sequencer.busy,
                                 scheduler.done)),
                # a run counts only the cycles it waits for the host
                host.stall.eq(Mux(sequencer.busy, sequencer.host_stall,
                                  scheduler.input_stall
                                  | (self.outputs.valid & ~self.outputs.ready))),
            ]
        m.d.comb += [
            error.eq(Mux(loader.error != 0, loader.error, job_error)),  # first error wins
            host.loading.eq(loader.loading),
            host.programmed.eq(loader.programmed & ~sweep.active),
            host.error.eq(error),
            host.n_layers.eq(loader.n_layers),
            host.cycle.eq(host.busy),
            host.reads.eq(sum(unit.read_issued for unit in units)),
            host.conversions.eq(sum(unit.conversions for unit in units)),
            host.operands.eq(reduction.contributions),
        ]

