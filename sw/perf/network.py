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

The inter-layer pipeline of :mod:`bitline.sw.perf.pipeline` (one image per ``T_max =
max_l T_l`` cycles, layers working on successive images at once) is **not** what the RTL
does yet (issue 18 item 4); :func:`pipeline_comparison` gives its figures for the same
program next to the sequential ones, and every report says which is which.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitline.hw.spec.net_timing import (
    INPUT_SETUP_CYCLES, NODE_START_CYCLES, NODE_SWITCH_CYCLES, network_timing,
)
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.program import Program
from bitline.hw.spec.registers import NODE_COUNTERS

__all__ = ["NodePerf", "NetworkPerf", "PipelineFigures", "network_report",
           "pipeline_comparison", "format_network_report"]

#: What every report of this model says about the pipeline (printed with the figures).
SEQUENTIAL_NOTE = ("sequential: the RTL runs one node at a time, one image at a time; the "
                   "pipeline model's figures assume the inter-layer pipeline (issue 18 "
                   "item 4), which the RTL does not have yet")


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


def _clock(report: NetworkPerf, clock_mhz: float | None) -> float:
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
    output pixels (:mod:`bitline.sw.perf.pipeline`); a node list gives the pixels.
    """
    from bitline.sw.perf.report import analyze_layer

    if not program.nodes:
        raise ValueError("the program has no network nodes (compile with --network)")
    stages = [analyze_layer(program.layers[node.layer], program.config,
                            node.out_pixels).cycles
              for node in program.nodes if NodeKind(int(node.kind)) == NodeKind.COMPUTE]
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
        lines.append(f"pipeline model (not in the RTL): {pipeline.bottleneck_cycles:,} "
                     f"cycles per image (T_max), {pipeline.images_per_second(clock):,.0f} "
                     f"images/s, latency {pipeline.latency_cycles:,} cycles")
    lines.append(SEQUENTIAL_NOTE)
    return "\n".join(lines)
