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
With ``config.pipeline_stages = E > 0`` the
:class:`~bitline.hw.net.pipeline.Pipeline` takes the sequencer's place: ``E`` stage
engines, engine ``e > 0`` with its own scheduler, reduction, output unit and output FIFO
(submodules ``scheduler_engine{e}`` ...; engine 0 uses the layer-job path), its own
layer-table and parameter read ports; crossbar unit ``u`` takes ``load`` / ``swap`` /
``go`` / ``drain`` from the engine whose busy scheduler's layer has bit ``u`` in its
``xbar_mask`` (docs/network.md section 6).

**Copies** (docs/hardware.md, "Copies"): the ``inputs`` and ``outputs`` payloads have
``max_copies`` lanes. The units of a layer's copy ``k`` (the layer record's ``lanes``) take
lane ``k`` of every input beat; the reduction sums each lane's units apart and one output
unit per lane (all reading the same channel's parameters, since every lane drains the same
channel in the same cycle) writes lane ``k`` of the output beat.
"""

from __future__ import annotations

from functools import reduce
from operator import add as operator_add
from operator import or_
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
from bitline.hw.net.pipeline import Pipeline
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


class _Path(NamedTuple):
    """One engine's job path: scheduler, reduction, output units and output FIFO."""

    scheduler: Scheduler
    reduction: Reduction
    output_units: tuple[OutputUnit, ...]
    output_fifo: SyncFIFO


class _Blocks(NamedTuple):
    """The accelerator's fixed blocks; field names are their submodule names."""

    host: HostInterface
    loader: Loader
    scheduler: Scheduler
    reduction: Reduction
    output_units: tuple[OutputUnit, ...]
    output_fifo: SyncFIFO
    sequencer: Sequencer | None     # only with config.network and no pipeline
    pipeline: Pipeline | None       # only with config.pipeline
    engine_paths: tuple[_Path, ...]  # the job paths of pipeline engines 1 .. E - 1

    @property
    def paths(self) -> tuple[_Path, ...]:
        """Every job path: the layer-job path (engine 0's), then the other engines'."""
        return (_Path(self.scheduler, self.reduction, self.output_units,
                      self.output_fifo),) + self.engine_paths

    @property
    def network(self):
        """The whole-network block (sequencer or pipeline), or None."""
        return self.sequencer if self.pipeline is None else self.pipeline


def _engine(network, name: str, engine: int = 0):
    """``network``'s per-engine port ``name`` (the sequencer has engine 0 only)."""
    port = getattr(network, name)
    return port[engine] if isinstance(network, Pipeline) else port


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
        layers, param_reads = self._add_tables(m, blocks)
        sweep = self._add_sweep(m, blocks)
        job_error = self._add_job_control(m, blocks, layers, sweep)
        units = self._add_units(m, blocks, layers, job_error, sweep)
        self._add_output_path(m, blocks, units, layers, param_reads, sweep)
        self._add_status(m, blocks, units, job_error, sweep)
        busy = blocks.scheduler.busy
        if blocks.network is not None:
            busy = busy | blocks.network.busy       # a network run is one "job" outside
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
        schedulers = [path.scheduler for path in blocks.paths]
        dirty = Signal(reset_less=True)
        checked = Signal()                 # 0 only in the first cycle after a reset
        running = Signal()
        sweep = _Sweep(Signal(name="sweeping"),
                       Signal(range(config.max_out_channels), name="sweep_channel"))
        m.d.sync += checked.eq(1)
        if len(schedulers) == 1:
            swapped, ended = scheduler.swap, scheduler.done & ~scheduler.busy
        else:       # pipeline engines: clean once no engine's job is under way
            swapped = Cat(s.swap for s in schedulers).any()
            ended = (Cat(s.done for s in schedulers).any()
                     & ~Cat(s.busy for s in schedulers).any())
        with m.If(swapped):
            m.d.sync += dirty.eq(1)
        with m.Elif(ended):
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
            sequencer=Sequencer(config) if self.network and not config.pipeline else None,
            pipeline=Pipeline(config) if config.pipeline else None,
            engine_paths=tuple(
                _Path(Scheduler(config), Reduction(config), (OutputUnit(config),),
                      SyncFIFO(width=config.acc_bits, depth=OUTPUT_FIFO_DEPTH))
                for _ in range(1, config.pipeline_stages)),
        )
        for name, block in blocks._asdict().items():
            if name not in ("output_units", "engine_paths") and block is not None:
                m.submodules[name] = block
        for lane, output_unit in enumerate(blocks.output_units):
            m.submodules["output_unit" + (f"_lane{lane}" if lane else "")] = output_unit
        for engine, path in enumerate(blocks.engine_paths, start=1):
            for name, block in zip(("scheduler", "reduction", "output_unit", "output_fifo"),
                                   (path.scheduler, path.reduction, path.output_units[0],
                                    path.output_fifo)):
                m.submodules[f"{name}_engine{engine}"] = block
        connect(m, flipped(self.csr), blocks.host.csr)
        connect(m, flipped(self.program), blocks.loader.bytes)
        network, scheduler = blocks.network, blocks.scheduler
        if network is None:
            connect(m, flipped(self.inputs), scheduler.inputs)
            return blocks
        # a run takes the host's inputs (the input phase) and feeds the scheduler itself
        running = network.busy
        job_inputs = _engine(network, "job_inputs")
        m.d.comb += [
            network.host_inputs.valid.eq(running & self.inputs.valid),
            network.host_inputs.payload.eq(self.inputs.payload[0]),
            scheduler.inputs.valid.eq(Mux(running, job_inputs.valid, self.inputs.valid)),
            scheduler.inputs.payload.eq(Mux(running, job_inputs.payload,
                                            self.inputs.payload)),
            job_inputs.ready.eq(running & scheduler.inputs.ready),
            self.inputs.ready.eq(Mux(running, network.host_inputs.ready,
                                     scheduler.inputs.ready)),
        ]
        for engine, path in enumerate(blocks.engine_paths, start=1):
            job_inputs = _engine(network, "job_inputs", engine)
            m.d.comb += [
                path.scheduler.inputs.valid.eq(job_inputs.valid),
                path.scheduler.inputs.payload[0].eq(job_inputs.payload),
                job_inputs.ready.eq(path.scheduler.inputs.ready),
            ]
        return blocks

    def _add_tables(self, m: Module, blocks: _Blocks):
        """Add the layer table and the output-parameter memory, written by the loader.

        Returns per job path (one without the pipeline) the current layer record (the one
        ``host.layer_index`` selects, or the path's node's) and the parameter read port
        (addressed by the channel the path's scheduler drains).
        """
        config, mem = self.config, self.memories
        host, loader = blocks.host, blocks.loader
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
        network = blocks.network
        if network is None:
            m.d.comb += layer_read.addr.eq(host.layer_index)
        else:
            # a run addresses the layer table with its node's layer (per engine)
            m.d.comb += layer_read.addr.eq(Mux(network.busy, _engine(network, "layer"),
                                               host.layer_index))
            self._add_nodes(m, blocks)
        layer_list = [layer_type(layer_read.data)]
        for engine in range(1, len(blocks.paths)):
            engine_read = layers.read_port()
            m.d.comb += engine_read.addr.eq(_engine(network, "layer", engine))
            layer_list.append(layer_type(engine_read.data))

        param_type = output_param_layout(config)
        params = Memory(shape=param_type.size, depth=param_capacity(config),
                        init=(mem.params if mem else []))
        m.submodules.params = params
        param_write = params.write_port()
        m.d.comb += [
            param_write.addr.eq(loader.param_write.payload.addr),
            param_write.data.eq(loader.param_write.payload.record),
            param_write.en.eq(loader.param_write.valid),
        ]
        param_reads = []
        for path, layer in zip(blocks.paths, layer_list):
            param_read = params.read_port()
            m.d.comb += param_read.addr.eq(layer.param_start + path.scheduler.drain.payload)
            param_reads.append(param_read)
        return layer_list, param_reads

    def _add_nodes(self, m: Module, blocks: _Blocks) -> None:
        """Add the node memory (written by the loader, read by the sequencer or by each
        pipeline engine through its own port)."""
        config, mem = self.config, self.memories
        loader, sequencer, host = blocks.loader, blocks.network, blocks.host
        nodes = Memory(shape=node_layout(config).size, depth=config.max_nodes,
                       init=(mem.nodes if mem else []))
        m.submodules.nodes = nodes
        for engine in range(len(blocks.paths)):
            node_read = nodes.read_port()
            m.d.comb += [
                node_read.addr.eq(_engine(sequencer, "node_addr", engine)),
                _engine(sequencer, "node_record", engine).eq(node_read.data),
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
        if blocks.pipeline is not None:
            m.d.comb += [
                blocks.pipeline.n_images.eq(host.n_images),
                host.latency.eq(blocks.pipeline.latency),
                host.interval.eq(blocks.pipeline.interval),
            ]

    def _add_job_control(self, m: Module, blocks: _Blocks, layers, sweep: _Sweep) -> Signal:
        """Start jobs, network runs and loads; return the job error register (0: no error)."""
        host, loader, scheduler = blocks.host, blocks.loader, blocks.scheduler
        sequencer = blocks.network
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
            loader.restart.eq(host.load & idle),
            loader.clear_error.eq(host.clear_error),
        ]
        for path, layer in zip(blocks.paths, layers):
            m.d.comb += path.scheduler.layer.eq(layer)
        if sequencer is None:
            m.d.comb += [scheduler.n_vectors.eq(host.n_vectors),
                         scheduler.n_share.eq(host.n_share)]
        else:
            with m.If(_engine(sequencer, "job_start")):     # never with a host start
                m.d.comb += scheduler.start.eq(1)
            n_vectors = _engine(sequencer, "n_vectors")
            m.d.comb += [
                scheduler.n_vectors.eq(Mux(sequencer.busy, n_vectors, host.n_vectors)),
                scheduler.n_share.eq(Mux(sequencer.busy, n_vectors, host.n_share)),
            ]
            for engine, path in enumerate(blocks.engine_paths, start=1):
                n_vectors = _engine(sequencer, "n_vectors", engine)
                m.d.comb += [
                    path.scheduler.start.eq(_engine(sequencer, "job_start", engine)),
                    path.scheduler.n_vectors.eq(n_vectors),
                    path.scheduler.n_share.eq(n_vectors),
                ]
        return job_error

    def _add_units(self, m: Module, blocks: _Blocks, layers, job_error: Signal,
                   sweep: _Sweep) -> list[CrossbarUnit]:
        """Add the crossbar units and their crossbars (emulated or external ports).

        Each unit is fed by the scheduler and the loader and drains into the reduction; a
        unit's protocol error sets ``job_error``. Returns the units, in index order. With
        the pipeline, unit ``u`` takes ``load`` / ``swap`` / ``go`` / ``drain`` from the
        engine whose busy scheduler's layer has bit ``u`` in ``xbar_mask`` (disjoint by
        the contract, docs/network.md 6.3), every engine's scheduler sees only its own
        layer's units busy, and every engine's reduction sees every unit's drained sums.
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
            if blocks.pipeline is not None:
                self._own_unit(m, blocks, layers, index, unit, sweep)
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

    @staticmethod
    def _own_unit(m: Module, blocks: _Blocks, layers, index: int, unit: CrossbarUnit,
                  sweep: _Sweep) -> None:
        """Pipeline: drive unit ``index`` from the engine that owns it (``_add_units``)."""
        owners = [path.scheduler.busy & layer.xbar_mask[index]
                  for path, layer in zip(blocks.paths, layers)]
        schedulers = [path.scheduler for path in blocks.paths]

        def owned(value):
            return reduce(or_, [Mux(owner, value(s), 0)
                                for owner, s in zip(owners, schedulers)])
        m.d.comb += [
            unit.load.valid.eq(owned(lambda s: s.load.valid)),
            unit.load.payload.index.eq(owned(lambda s: s.load.payload.index)),
            unit.load.payload.code.eq(owned(lambda s: s.load.payload.codes[0])),
            unit.swap.eq(owned(lambda s: s.swap)),
            unit.go.eq(owned(lambda s: s.go[index])),
            unit.drain.valid.eq(owned(lambda s: s.drain.valid) | sweep.active),
            unit.drain.payload.eq(Mux(sweep.active, sweep.channel,
                                      owned(lambda s: s.drain.payload))),
        ]
        for path, layer in zip(blocks.paths, layers):
            m.d.comb += path.scheduler.units_busy[index].eq(unit.busy
                                                            & layer.xbar_mask[index])
            if path.reduction is not blocks.reduction:
                m.d.comb += path.reduction.units.payload[index].eq(unit.drained.payload)

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

    def _add_output_path(self, m: Module, blocks: _Blocks, units: list[CrossbarUnit],
                         layers, param_reads, sweep: _Sweep) -> None:
        """Connect reduction -> output units (with the channel's parameters) -> FIFO -> outputs.

        One output unit per lane; lane ``k``'s reduction mask holds the layer's units of lane
        ``k`` while that lane's vector is real (``scheduler.lanes_active``). With the
        pipeline every engine's job path has its own (one lane); its reduction takes the
        drained sums when its own drain, delayed to the reduction, says so.
        """
        config = self.config
        for engine, (path, layer, param_read) in enumerate(zip(blocks.paths, layers,
                                                                param_reads)):
            self._add_path_output(m, engine, path, units, layer, param_read, sweep,
                                  pipelined=blocks.pipeline is not None)
        fifo, scheduler = blocks.output_fifo, blocks.scheduler
        sequencer = blocks.network
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
        job_outputs = _engine(sequencer, "job_outputs")
        m.d.comb += [
            job_outputs.valid.eq(running & fifo.r_rdy),
            job_outputs.payload.eq(fifo.r_data[:config.acc_bits]),
            self.outputs.valid.eq(Mux(running, sequencer.host_outputs.valid, fifo.r_rdy)),
            self.outputs.payload.eq(Mux(running, sequencer.host_outputs.payload,
                                        fifo.r_data)),
            sequencer.host_outputs.ready.eq(running & self.outputs.ready),
            fifo.r_en.eq(Mux(running, job_outputs.ready, self.outputs.ready)),
            scheduler.output_taken.eq(fifo.r_rdy & fifo.r_en),
        ]
        for engine, path in enumerate(blocks.engine_paths, start=1):
            job_outputs, fifo = _engine(sequencer, "job_outputs", engine), path.output_fifo
            m.d.comb += [
                job_outputs.valid.eq(fifo.r_rdy),
                job_outputs.payload.eq(fifo.r_data),
                fifo.r_en.eq(job_outputs.ready),
                path.scheduler.output_taken.eq(fifo.r_rdy & fifo.r_en),
            ]

    def _add_path_output(self, m: Module, engine: int, path: _Path,
                         units: list[CrossbarUnit], layer, param_read, sweep: _Sweep, *,
                         pipelined: bool) -> None:
        """One job path's reduction, output units and FIFO input (``_add_output_path``)."""
        config = self.config
        reduction, output_units = path.reduction, path.output_units
        fifo, scheduler = path.output_fifo, path.scheduler
        suffix = f"_engine{engine}" if engine else ""
        # Stages from a channel's issue to the reduction's input (partial-sum read, lane
        # sum): what the drain issue knows (active lanes, the vector's input sum) is delayed
        # as much, so the next vector's swap cannot change it under way.
        to_reduction = DRAIN_STAGES.index("unit_sum")
        active = scheduler.lanes_active
        swept = sweep.active                # a sweep's drained values are dropped
        drained = scheduler.drain.valid
        for stage in range(to_reduction):
            later = Signal(config.max_copies, name=f"lanes_active_d{stage + 1}{suffix}")
            swept_later = Signal(name=f"swept_d{stage + 1}{suffix}")
            m.d.sync += [later.eq(active), swept_later.eq(swept)]
            active, swept = later, swept_later
            if pipelined:
                drained_later = Signal(name=f"drained_d{stage + 1}{suffix}")
                m.d.sync += drained_later.eq(drained)
                drained = drained_later
        lanes = [unit_lane(config, layer, unit) for unit in range(config.n_xbars)]
        if pipelined:
            m.d.comb += reduction.units.valid.eq(drained)
        else:
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
            later = Signal(param_type, name=f"param_d{stage + 1}{suffix}")
            m.d.sync += later.eq(param)
            param = later
        for lane, output_unit in enumerate(output_units):
            # Offset weight encoding: weight_offset * sum(x) of the lane's vector being
            # drained, taken when its channel is issued and delayed like the channel's
            # accumulator (to the reduction, then its sum).
            corrections = [Signal(config.acc_bits, name=f"correction{lane}_d{stage}{suffix}")
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

    def _add_status(self, m: Module, blocks: _Blocks, units: list[CrossbarUnit],
                    job_error: Signal, sweep: _Sweep) -> None:
        """Drive the host interface's status fields and performance counters."""
        host, loader, scheduler = blocks.host, blocks.loader, blocks.scheduler
        error = Signal(8)
        sequencer = blocks.network
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
            host.operands.eq(reduce(operator_add, [path.reduction.contributions
                                                   for path in blocks.paths])),
        ]

