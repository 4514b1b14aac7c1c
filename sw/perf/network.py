"""Performance of a whole-network run: cycles per node and per image, latency, images/s.

A program compiled ``--network`` runs on the accelerator from one start command
(docs/network.md): the host streams the input image, the sequencer runs the nodes **one at a
time** (:mod:`bitline.hw.net.sequencer`) and the last node's outputs go back to the host.
This model prices such a run with the one cycle formula the RTL realizes,
:mod:`bitline.hw.spec.net_timing` (the RTL's CYCLES and NODE_* counters equal it for a host
that never waits; the cocotb bench checks that), plus the event counts of each COMPUTE
node's layer job (:func:`bitline.sw.perf.analyze_layer` with ``V = P`` output pixels):

* node ``i``: ``cycles_i`` (NODE_CYCLES), ``input_stall_i`` (the reader's start),
  ``output_stall_i = 0``;
* run: ``cycles = INPUT_SETUP + C*H*W + NODE_START + sum_i cycles_i + (n - 1) * NODE_SWITCH``
  -- the **latency per image**; with nodes run in sequence and one image at a time the
  accelerator also finishes **one image per** ``cycles``, so ``images/s = clock / cycles``;
* OU reads, ADC conversions and reduction operands: the sums over the COMPUTE nodes.

The stage model of :mod:`bitline.sw.perf.pipeline` (one image per ``T_max = max_l T_l``
cycles, layers working on successive images at once) is not what a sequential design does;
:func:`pipeline_comparison` gives its figures for the same program next to the sequential
ones, and every report says which is which.

A program compiled ``--network --pipeline`` (``pipeline_stages > 0``, docs/network.md
section 6) runs its nodes on stage engines, successive images at once. Its report,
:func:`pipelined_report`, is the exact schedule of
:func:`bitline.hw.spec.net_timing.pipeline_schedule` for a batch of ``N`` images (the RTL's
counters equal it for a host that never waits): LATENCY (image 0's last output), INTERVAL
(between the last two images' last outputs: one image per INTERVAL cycles in steady
state, ``clock / INTERVAL`` images/s) and CYCLES of the batch (``N * clock / CYCLES``
images/s), set beside the stage model's ``T_max`` and ``sum T_l`` with the deviation and
its cause: the bottleneck engine's nodes as :func:`~bitline.hw.spec.net_timing.node_timing`
prices them (``T_l`` plus the reader's start for a COMPUTE node; pool and add nodes, which
the stage model does not count), the engine's fixed overhead per image (record fetch and
start), or the input writer's ``C*H*W`` cycles per image when it is the slowest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bitline.hw.spec.net_timing import (
    INPUT_SETUP_CYCLES, NODE_START_CYCLES, NODE_SWITCH_CYCLES, READER_START_CYCLES,
    network_timing, node_timing,
)
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.program import Program
from bitline.hw.spec.registers import NODE_COUNTERS

__all__ = ["NodePerf", "NetworkPerf", "PipelineFigures", "PipelinedPerf", "network_report",
           "pipeline_comparison", "pipelined_report", "format_network_report",
           "format_pipelined_report", "PIPELINE_BATCH", "node_images"]

#: Images of the pipelined report's batch (``compile`` / ``report``): enough for the
#: steady state's INTERVAL (between the last two images) to be reached.
PIPELINE_BATCH = 8

#: What every report of this model says about the pipeline (printed with the figures).
SEQUENTIAL_NOTE = ("sequential: this design runs one node at a time, one image at a time; "
                   "the stage model's figures assume the inter-layer pipeline, which "
                   "compile --network --pipeline builds (docs/network.md section 6)")


@dataclass(frozen=True)
class NodePerf:
    """One node of a whole-network run (a host that never waits).

    Attributes
    ----------
    index, name, kind:
        Position in the execution order, the IR layer it runs, its :class:`NodeKind`.
    cycles, input_stall, output_stall:
        The NODE_CYCLES, NODE_INPUT_STALL and NODE_OUTPUT_STALL counters.
    ou_reads, adc_conversions, reduction_operands:
        Events of a COMPUTE node's layer job (0 for the other kinds).
    outputs:
        Values the node writes (``dst_channels * P``).
    """

    index: int
    name: str
    kind: NodeKind
    cycles: int
    input_stall: int
    output_stall: int
    ou_reads: int
    adc_conversions: int
    reduction_operands: int
    outputs: int

    def counters(self) -> dict[str, int]:
        """The node's counters under the register names of
        :data:`bitline.hw.spec.registers.NODE_COUNTERS`."""
        values = (self.cycles, self.input_stall, self.output_stall)
        return {name: int(value) for (name, _), value in zip(NODE_COUNTERS, values)}


@dataclass(frozen=True)
class PipelineFigures:
    """The pipeline model's figures for the same program (one copy per layer).

    Attributes
    ----------
    bottleneck_cycles:
        ``T_max = max_l T_l`` over the compute layers (cycles per image in steady state).
    latency_cycles:
        ``sum_l T_l``.
    """

    bottleneck_cycles: int
    latency_cycles: int

    def images_per_second(self, clock_mhz: float) -> float:
        """``clock / T_max``."""
        return clock_mhz * 1e6 / self.bottleneck_cycles


@dataclass(frozen=True)
class NetworkPerf:
    """A whole-network run of one image (module docstring).

    Attributes
    ----------
    strategy:
        The program's mapping strategy.
    nodes:
        Per node in execution order (up to the ``to_host`` node).
    input_codes:
        Codes of the network input streamed in the input phase (``C * H * W``).
    cycles:
        CYCLES of a run: the latency of one image in clock cycles.
    clock_mhz:
        The program's config clock (the default of :meth:`images_per_second`).
    """

    strategy: str
    nodes: list[NodePerf]
    input_codes: int
    cycles: int
    clock_mhz: float

    @property
    def overhead_cycles(self) -> int:
        """Cycles outside the nodes: the input phase and the record fetches between nodes."""
        return self.cycles - sum(node.cycles for node in self.nodes)

    def total(self, name: str) -> int:
        """Sum of a :class:`NodePerf` count over the nodes (``ou_reads``, ...)."""
        return int(sum(getattr(node, name) for node in self.nodes))

    def run_counters(self) -> dict[str, int]:
        """The run's counters under :data:`bitline.hw.spec.registers.COUNTERS` names."""
        return {"cycles": self.cycles, "ou_reads": self.total("ou_reads"),
                "adc_conversions": self.total("adc_conversions"), "stall_cycles": 0,
                "reduction_operands": self.total("reduction_operands")}

    def latency_us(self, clock_mhz: float | None = None) -> float:
        """Latency of one image in microseconds at ``clock_mhz`` (default: the config's)."""
        return self.cycles / _clock(self, clock_mhz)

    def images_per_second(self, clock_mhz: float | None = None) -> float:
        """Images per second at ``clock_mhz``: ``clock / cycles`` (sequential runs)."""
        return _clock(self, clock_mhz) * 1e6 / self.cycles


def _clock(report, clock_mhz: float | None) -> float:
    clock = report.clock_mhz if clock_mhz is None else float(clock_mhz)
    if not clock > 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz}")
    return clock


def network_report(program: Program) -> NetworkPerf:
    """Return the whole-network run of ``program`` (one image, a host that never waits).

    Raises
    ------
    ValueError
        If the program has no node records (compile with ``--network``).
    """
    from bitline.sw.perf.report import analyze_layer

    config = program.config
    if not program.nodes:
        raise ValueError("the program has no network nodes (compile with --network): "
                         "its performance is the per-layer report (bitline report)")
    cycles, timings = network_timing(config, program)
    nodes = []
    for index, (node, timing) in enumerate(zip(program.nodes, timings)):
        kind = NodeKind(int(node.kind))
        events = (0, 0, 0)
        if kind == NodeKind.COMPUTE:
            perf = analyze_layer(program.layers[node.layer], config, node.out_pixels)
            events = (perf.ou_reads, perf.adc_conversions, perf.reduction_transfers)
        nodes.append(NodePerf(index, node.name, kind, timing.cycles, timing.input_stall,
                              timing.output_stall, *events, node.dst_size))
    return NetworkPerf(program.strategy, nodes, program.nodes[0].window.size, cycles,
                       config.clock_mhz)


def pipeline_comparison(program: Program) -> PipelineFigures:
    """Return the pipeline model's figures of ``program``'s layers (one copy each).

    ``T_l`` is :func:`bitline.hw.spec.timing.layer_cycles` of each compute layer over its
    output pixels (:mod:`bitline.sw.perf.pipeline`); a node list gives the pixels. A
    replica group of ``R`` (docs/network.md section 7) is one stage with ``R`` copies,
    ``T_l(R)``: the stage model splits the vectors of every image over the copies, where
    the replicas split the images (section 7's deviation).
    """
    from bitline.sw.perf.report import analyze_layer

    if not program.nodes:
        raise ValueError("the program has no network nodes (compile with --network)")
    stages = []
    for node in program.nodes:
        if NodeKind(int(node.kind)) != NodeKind.COMPUTE or int(node.phase):
            continue
        layer = program.layers[node.layer]
        count = 1 << int(node.replicas_log2)
        if count > 1:               # the stage model's copies: T_l(c), vectors split
            width = len(layer.xbars)
            layer = replace(layer, copy_xbars=np.arange((count - 1) * width,
                                                        dtype=np.int64).reshape(count - 1,
                                                                                width))
        stages.append(analyze_layer(layer, program.config, node.out_pixels).cycles)
    return PipelineFigures(max(stages), sum(stages))


def format_network_report(report: NetworkPerf, clock_mhz: float | None = None,
                          pipeline: PipelineFigures | None = None) -> str:
    """Return a text table: per node, then per image (latency, images/s) and the note.

    ``pipeline`` (:func:`pipeline_comparison`) adds the pipeline model's line.
    """
    clock = _clock(report, clock_mhz)
    lines = [f"{'node':>4}  {'kind':<9} {'cycles':>9} {'ou_reads':>9}  layer"]
    for node in report.nodes:
        lines.append(f"{node.index:>4}  {node.kind.name:<9} {node.cycles:>9,} "
                     f"{node.ou_reads:>9,}  {node.name}")
    lines.append(f"      input phase and node switches: {report.overhead_cycles:,} cycles "
                 f"({INPUT_SETUP_CYCLES} + {report.input_codes} input codes + "
                 f"{NODE_START_CYCLES} + {NODE_SWITCH_CYCLES} per later node)")
    lines.append(f"per image: {report.cycles:,} cycles = {report.latency_us(clock):,.2f} us "
                 f"at {clock:g} MHz, {report.images_per_second(clock):,.0f} images/s")
    if pipeline is not None:
        lines.append(f"stage model (with --pipeline): {pipeline.bottleneck_cycles:,} "
                     f"cycles per image (T_max), {pipeline.images_per_second(clock):,.0f} "
                     f"images/s, latency {pipeline.latency_cycles:,} cycles")
    lines.append(SEQUENTIAL_NOTE)
    return "\n".join(lines)


@dataclass(frozen=True)
class PipelinedPerf:
    """A pipelined run of ``n_images`` images (module docstring), a host that never waits.

    Attributes
    ----------
    n_images:
        Images of the batch (N_IMAGES).
    kinds, stages, copies:
        Per node: its :class:`NodeKind`, its engine and the copies of its output map.
    node_counters:
        Per node ``(NODE_CYCLES, NODE_INPUT_STALL, NODE_OUTPUT_STALL)`` summed over the
        images (:func:`~bitline.hw.spec.net_timing.pipeline_schedule`).
    cycles, latency, interval:
        CYCLES of the batch, LATENCY (to image 0's last output), INTERVAL (between the last
        outputs of the last two images; 0 for one image).
    node_cycles:
        Per node its cycles for one image (:func:`~bitline.hw.spec.net_timing.node_timing`).
    input_codes:
        ``C*H*W`` of the network input: the input writer's cycles per image.
    stage_model:
        The stage model's figures (:func:`pipeline_comparison`).
    clock_mhz:
        The config's clock.
    replicas:
        Per node ``R`` of its replica group (docs/network.md section 7; 1 without), or
        ``None`` (every node 1).
    sequential_cycles:
        One image's cycles with the same nodes run one at a time, each replica group once
        (:func:`~bitline.hw.spec.net_timing.network_timing`); 0: not computed.
    period_cycles:
        With replicas (largest group ``R``): the mean cycles per image over the last ``R``
        outputs, ``(end[M-1] - end[M-1-R]) / R`` rounded, of a batch of ``M = max(N,
        4R)`` images (the schedule of a longer batch when this one is short). Replicas
        deliver images in bursts, so INTERVAL (the last two outputs) may be one fast
        engine's time, not the rate; 0 without replicas.
    """

    n_images: int
    kinds: list[NodeKind]
    stages: list[int]
    copies: list[int]
    node_counters: list[tuple[int, int, int]]
    cycles: int
    latency: int
    interval: int
    node_cycles: list[int]
    input_codes: int
    stage_model: PipelineFigures
    clock_mhz: float
    replicas: list[int] | None = None
    sequential_cycles: int = 0
    period_cycles: int = 0

    @property
    def engines(self) -> int:
        """Stage engines the nodes run on."""
        return max(self.stages) + 1

    def engine_cycles(self) -> list[int]:
        """Per engine, the cycles an image costs it when it never waits: its nodes'
        cycles plus :data:`~bitline.hw.spec.net_timing.NODE_SWITCH_CYCLES` each (FETCH,
        LOAD, SETUP, START), a replica's divided by its group's ``R`` (rounded up)."""
        busy = [0] * self.engines
        replicas = self.replicas or [1] * len(self.stages)
        for stage, cycles, count in zip(self.stages, self.node_cycles, replicas):
            # a replica of R runs one image in R: its share per image, rounded up
            busy[stage] += -(-(cycles + NODE_SWITCH_CYCLES) // count)
        return busy

    @property
    def bottleneck_engine(self) -> int:
        """The engine an image costs the most cycles (the first of equals)."""
        busy = self.engine_cycles()
        return busy.index(max(busy))

    @property
    def steady_cycles(self) -> int:
        """Cycles per image in steady state: INTERVAL (CYCLES for a single image), with
        replicas :attr:`period_cycles`."""
        if self.period_cycles:
            return self.period_cycles
        return self.interval if self.interval else self.cycles

    @property
    def deviation_cycles(self) -> int:
        """``INTERVAL - T_max``: what the stage model leaves out per image."""
        return self.steady_cycles - self.stage_model.bottleneck_cycles

    def latency_us(self, clock_mhz: float | None = None) -> float:
        """Latency of image 0 in microseconds."""
        return self.latency / _clock(self, clock_mhz)

    def images_per_second(self, clock_mhz: float | None = None) -> float:
        """Steady state: ``clock / INTERVAL``."""
        return _clock(self, clock_mhz) * 1e6 / self.steady_cycles

    def batch_images_per_second(self, clock_mhz: float | None = None) -> float:
        """The batch: ``N * clock / CYCLES`` (the pipeline's fill and drain included)."""
        return self.n_images * _clock(self, clock_mhz) * 1e6 / self.cycles

    def cause(self, names: list[str] | None = None) -> str:
        """Why INTERVAL is not ``T_max``: the slowest stage's cycles per image, split into
        what the stage model counts (its compute layers' ``T_l``) and what it does not (the
        readers' starts, pool and add nodes, each node's record fetch and start; or the
        input writer's ``C*H*W`` codes per image when it is the slowest), and any cycles
        the schedule waited beyond them."""
        engine = self.bottleneck_engine
        busy = self.engine_cycles()[engine]
        members = [i for i, stage in enumerate(self.stages) if stage == engine]
        compute = [i for i in members if self.kinds[i] == NodeKind.COMPUTE]
        t_l = sum(self.node_cycles[i] - READER_START_CYCLES for i in compute)
        others = sum(self.node_cycles[i] for i in members if i not in compute)
        if self.input_codes > busy:
            slowest = (f"the input writer's {self.input_codes} codes per image, more than "
                       f"any engine's {busy:,} cycles")
            counted = self.input_codes
        else:
            label = ", ".join(names[i] if names else f"node {i}" for i in members)
            replicas = self.replicas or [1] * len(self.stages)
            share = "".join(f", replica of {replicas[i]} running one image in "
                            f"{replicas[i]}" for i in members if replicas[i] > 1)
            parts = (f"T_l {t_l:,} + reader starts {READER_START_CYCLES * len(compute)} + "
                     f"pool/add nodes {others:,} + record fetch and start "
                     f"{NODE_SWITCH_CYCLES * len(members)}")
            split = {replicas[i] for i in members}
            if len(members) == 1 and max(split) > 1:
                parts = f"({parts}) / {max(split)}"
            slowest = f"engine {engine} ({label}{share}): {parts} = {busy:,} cycles per image"
            counted = busy
        waited = self.steady_cycles - counted
        tail = f", {waited:+,} cycles of waiting" if waited else ""
        return (f"the slowest stage is {slowest}{tail}; the stage model counts the compute "
                "layers' T_l only")


def pipelined_report(program: Program, n_images: int = PIPELINE_BATCH) -> PipelinedPerf:
    """Return the pipelined run of ``program`` for ``n_images`` images (module docstring).

    Raises
    ------
    ValueError
        If the program has no node records or its config no pipeline (``pipeline_stages``
        0: compile with ``--network --pipeline``), or ``n_images < 1``.
    """
    from bitline.hw.spec.net_timing import pipeline_schedule

    config = program.config
    if not program.nodes or not config.pipeline_stages:
        raise ValueError("the program is not pipelined (compile with --network --pipeline): "
                         "its whole-network run is network_report's")
    if int(n_images) < 1:
        raise ValueError(f"n_images must be at least 1, not {n_images}")
    schedule = pipeline_schedule(config, program, int(n_images))
    nodes = program.nodes
    kinds = [NodeKind(int(node.kind)) for node in nodes]
    node_cycles = [node_timing(config, node, program.layers[node.layer]
                               if kind == NodeKind.COMPUTE else None).cycles
                   for node, kind in zip(nodes, kinds)]
    _check_replica_schedule(nodes, schedule, node_cycles, int(n_images))
    replicas = [1 << int(node.replicas_log2) for node in nodes]
    # the same nodes one at a time: each replica group once (its first node)
    sequential, _ = network_timing(config, replace(
        program, nodes=[node for node in nodes if not int(node.phase)]))
    period, span = 0, max(replicas)
    if span > 1:
        # the rate of a longer batch when this one is short (each replica a few images)
        count = max(int(n_images), 4 * span)
        longer = schedule if count == int(n_images) else \
            pipeline_schedule(config, program, count)
        ends = np.asarray(longer.end)[len(nodes) - 1]
        period = int(round((int(ends[count - 1]) - int(ends[count - 1 - span])) / span))
    counters = [(int(t.cycles), int(t.input_stall), int(t.output_stall))
                for t in schedule.nodes]
    return PipelinedPerf(
        int(n_images), kinds, [int(node.stage) for node in nodes],
        [int(node.copies) for node in nodes], counters, int(schedule.cycles),
        int(schedule.latency), int(schedule.interval), node_cycles, nodes[0].window.size,
        pipeline_comparison(program), config.clock_mhz, replicas, int(sequential), period)


def node_images(node, n_images: int) -> int:
    """Images node ``node`` runs in a batch of ``n_images`` (docs/network.md 7.2): replica
    ``phase`` of ``R`` runs ``ceil((N - phase) / R)`` of them (0 when ``phase >= N``)."""
    count = 1 << int(node.replicas_log2)
    return max(0, -(-(int(n_images) - int(node.phase)) // count))


def _check_replica_schedule(nodes, schedule, node_cycles, n_images: int) -> None:
    """Refuse a schedule that runs a replica on images of another phase.

    A replica's NODE_CYCLES is its own images' (7.4): ``node_images`` times its cycles per
    image. A ``pipeline_schedule`` without replicas runs every node on every image; its
    figures for a replicated program would be wrong, so they are refused, naming the node.
    """
    for index, (node, timing) in enumerate(zip(nodes, schedule.nodes)):
        if not int(node.replicas_log2):
            continue
        need = node_images(node, n_images) * node_cycles[index]
        if int(timing.cycles) != need:
            raise ValueError(
                f"node {index} ({node.name!r}), replica {node.phase} of "
                f"{1 << int(node.replicas_log2)}: net_timing.pipeline_schedule gives it "
                f"{int(timing.cycles):,} cycles over {n_images} images, but it runs "
                f"{node_images(node, n_images)} of them ({need:,} cycles): the schedule does "
                "not model layer replicas (docs/network.md 7.2), so no pipelined figures")


def format_pipelined_report(report: NetworkPerf, piped: PipelinedPerf,
                            clock_mhz: float | None = None) -> str:
    """Return a text table of a pipelined run: per node (engine, copies, cycles per image,
    counters over the batch), then latency, steady interval, images/s and the stage
    model's line with the deviation and its cause."""
    clock = _clock(report, clock_mhz)
    names = [node.name for node in report.nodes]
    lines = [f"{'node':>4}  {'kind':<9} {'engine':>6} {'copies':>6} {'cycles':>9} "
             f"{'in_stall':>9} {'out_stall':>9}  layer   (stalls summed over "
             f"{piped.n_images} images)"]
    for node, stage, copies, counters in zip(report.nodes, piped.stages, piped.copies,
                                             piped.node_counters):
        lines.append(f"{node.index:>4}  {node.kind.name:<9} {stage:>6} {copies:>6} "
                     f"{node.cycles:>9,} {counters[1]:>9,} {counters[2]:>9,}  {node.name}")
    lines.append(f"latency (image 0): {piped.latency:,} cycles = "
                 f"{piped.latency_us(clock):,.2f} us at {clock:g} MHz")
    span = max(piped.replicas or [1])
    what = (f"the mean of the last {span} outputs of {max(piped.n_images, 4 * span)} "
            f"images; INTERVAL {piped.interval:,}" if piped.period_cycles else "INTERVAL")
    lines.append(f"steady state: one image per {piped.steady_cycles:,} cycles ({what}) = "
                 f"{piped.images_per_second(clock):,.0f} images/s; batch of "
                 f"{piped.n_images}: {piped.cycles:,} cycles = "
                 f"{piped.batch_images_per_second(clock):,.0f} images/s")
    model = piped.stage_model
    share = piped.deviation_cycles / model.bottleneck_cycles
    lines.append(f"stage model (sw/perf/pipeline.py): T_max {model.bottleneck_cycles:,} "
                 f"cycles per image, sum T_l {model.latency_cycles:,}; "
                 f"{'steady' if piped.period_cycles else 'INTERVAL'} - T_max = "
                 f"{piped.deviation_cycles:+,} cycles ({share:+.1%}): {piped.cause(names)}")
    replicas = piped.replicas or [1] * len(piped.stages)
    if max(replicas) > 1:
        groups = ", ".join(f"{names[i]} x{count}" for i, count in enumerate(replicas)
                           if count > 1 and (i == 0 or names[i - 1] != names[i]))
        lines.append(f"replicas ({groups}) split the images, the stage model's copies "
                     f"split each image's vectors (docs/network.md section 7): the "
                     f"interval per group is T_l / R, but an image's latency keeps the "
                     f"whole T_l (LATENCY {piped.latency:,} cycles vs the stage model's "
                     f"sum T_l(c) {model.latency_cycles:,})")
    sequential = piped.sequential_cycles or report.cycles
    per_second = clock * 1e6 / sequential
    lines.append(f"sequential (pipeline_stages = 0, the same nodes one at a time"
                 f"{', each replica group once' if max(replicas) > 1 else ''}): "
                 f"{sequential:,} cycles per image = {per_second:,.0f} "
                 f"images/s; the pipeline's steady state is "
                 f"{sequential / piped.steady_cycles:.2f}x that")
    lines.append(f"pipelined: {piped.engines} stage engines run successive images at once "
                 "(docs/network.md section 6); figures from net_timing.pipeline_schedule")
    return "\n".join(lines)
