"""Cycle timing of a whole-network run: the one definition the sequencer realizes.

:class:`~bitline.hw.net.sequencer.Sequencer` runs the nodes one at a time
(docs/hardware.md, "Whole-network mode"). With a host that always has the next input code
ready and always takes an output, the counters of a run are exactly:

* **node cycles** (NODE_CYCLES: from the cycle after the node's START to the cycle its last
  result is written or taken, inclusive). The im2col reader's first element is valid
  :data:`READER_START_CYCLES` + 1 cycles after its ``start`` (set-up, first address, the
  buffer's read), so every node first waits :data:`READER_START_CYCLES` cycles
  (NODE_INPUT_STALL), then the reader streams one element per cycle:

  - COMPUTE: ``READER_START_CYCLES + job_cycles(K, O, P, C_comp)`` - the layer job of
    :mod:`bitline.hw.spec.timing` with ``V = P`` vectors (``P = out_h * out_w``), started in
    the node's START cycle, whose inputs come ``READER_START_CYCLES`` cycles late; after
    that the reader always has the next element (it holds one while the scheduler's
    shadow bank is full);
  - POOL_MAX / POOL_AVG: ``READER_START_CYCLES + E + pool_latency`` with ``E = P * C *
    KH * KW`` elements and ``pool_latency = max_act_bits + 1`` (the divider's stages,
    :attr:`bitline.hw.net.pool.PoolUnit.latency`);
  - ADD: ``READER_START_CYCLES + E + len(RESIDUAL_STAGES)`` with ``E = C * H * W`` pairs.

* **run cycles** (CYCLES: from the cycle after CTRL.RUN_NETWORK to the last output taken)::

      INPUT_SETUP_CYCLES + n_in + NODE_START_CYCLES
      + sum_i node_cycles_i + (n_nodes - 1) * NODE_SWITCH_CYCLES

  with ``n_in = C * H * W`` of node 0's source map: FETCH, LOAD and SETUP of node 0's record
  (:data:`INPUT_SETUP_CYCLES`), one input code per cycle, SETUP and START of node 0
  (:data:`NODE_START_CYCLES`), and per later node FETCH, LOAD, SETUP and START
  (:data:`NODE_SWITCH_CYCLES`).

The OU reads, ADC conversions and reduction operands of a run are the sums of its COMPUTE
nodes' layer jobs (:mod:`bitline.hw.spec.timing`); STALL_CYCLES counts only cycles waiting
for the host (0 here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.network import NodeKind, NodeProgram
from bitline.hw.spec.timing import job_cycles, vector_compute_cycles

__all__ = [
    "READER_START_CYCLES", "RESIDUAL_LATENCY", "INPUT_SETUP_CYCLES", "NODE_START_CYCLES",
    "NODE_SWITCH_CYCLES", "NodeTiming", "pool_latency", "node_timing", "run_cycles",
    "network_timing", "layer_unit_reads",
]

#: Cycles from the node's START to the reader's first valid element, less one: the reader's
#: SETUP (the four products of record fields), FIRST (the loop nest's start) and the
#: buffer's synchronous read (:mod:`bitline.hw.net.im2col`).
READER_START_CYCLES = 3
#: The residual add's register stages (``len(RESIDUAL_STAGES)`` of
#: :mod:`bitline.hw.net.residual`).
RESIDUAL_LATENCY = 5
#: FETCH, LOAD and SETUP of node 0's record before the input phase.
INPUT_SETUP_CYCLES = 3
#: SETUP and START of node 0 after the input phase.
NODE_START_CYCLES = 2
#: FETCH, LOAD, SETUP and START between two nodes.
NODE_SWITCH_CYCLES = 4


def pool_latency(config: AcceleratorConfig) -> int:
    """Cycles from a window's last element to its pooled code: ``max_act_bits + 1``."""
    return config.max_act_bits + 1


@dataclass(frozen=True)
class NodeTiming:
    """One node's counters in a run with a host that never waits."""

    cycles: int
    input_stall: int = READER_START_CYCLES
    output_stall: int = 0


def layer_unit_reads(config: AcceleratorConfig, layer) -> np.ndarray:
    """OU reads per input vector of each unit for a mapped layer (issued entries only).

    ``layer`` is a :class:`~bitline.hw.spec.program.LayerProgram`; an entry issues
    ``slice_hi - slice_lo`` reads on its unit (the image loader drops entries with none).
    """
    entries = layer.entries
    if not len(entries):
        return np.zeros(config.n_xbars, dtype=np.int64)
    slices = np.maximum(np.asarray(entries["slice_hi"], dtype=np.int64)
                        - np.asarray(entries["slice_lo"], dtype=np.int64), 0)
    return np.bincount(np.asarray(entries["xbar"], dtype=np.int64), weights=slices,
                       minlength=config.n_xbars).astype(np.int64)


def node_timing(config: AcceleratorConfig, node: NodeProgram, layer=None,
                unit_reads: Sequence[int] | np.ndarray | None = None) -> NodeTiming:
    """Return a node's counters (module docstring).

    Parameters
    ----------
    config:
        The accelerator.
    node:
        The node.
    layer:
        COMPUTE: its :class:`~bitline.hw.spec.program.LayerProgram` (``n_inputs``,
        ``n_outputs``, and its entries for the unit reads unless ``unit_reads`` is given).
    unit_reads:
        COMPUTE: OU reads per vector of each unit (overrides the layer's entries).

    Raises
    ------
    ValueError
        A COMPUTE node without its layer, or an unknown kind.
    """
    kind = NodeKind(int(node.kind))
    window = node.window
    pixels = node.out_pixels
    if kind == NodeKind.COMPUTE:
        if layer is None:
            raise ValueError(f"{node.label()}: a COMPUTE node's timing needs its layer")
        reads = layer_unit_reads(config, layer) if unit_reads is None else unit_reads
        job = job_cycles(config, layer.n_inputs, layer.n_outputs, pixels,
                         vector_compute_cycles(config, reads))
        return NodeTiming(READER_START_CYCLES + job)
    if kind in (NodeKind.POOL_MAX, NodeKind.POOL_AVG):
        elements = pixels * window.channels * window.kernel[0] * window.kernel[1]
        return NodeTiming(READER_START_CYCLES + elements + pool_latency(config))
    return NodeTiming(READER_START_CYCLES + window.size + RESIDUAL_LATENCY)


def run_cycles(input_codes: int, node_cycles: Sequence[int]) -> int:
    """Return CYCLES of a run: ``input_codes`` network inputs, then the nodes' cycles."""
    if not node_cycles:
        raise ValueError("a run has at least one node")
    return (INPUT_SETUP_CYCLES + int(input_codes) + NODE_START_CYCLES
            + sum(int(c) for c in node_cycles) + (len(node_cycles) - 1) * NODE_SWITCH_CYCLES)


def network_timing(config: AcceleratorConfig, program) -> tuple[int, list[NodeTiming]]:
    """Return ``(run cycles, per-node timings)`` of ``program`` (a Program with ``nodes``).

    The run ends with the first ``to_host`` node (the sequencer's end), or the last node.
    """
    nodes = list(program.nodes or [])
    if not nodes:
        raise ValueError("the program has no network nodes (compile with --network)")
    timings = []
    for node in nodes:
        layer = (program.layers[node.layer]
                 if NodeKind(int(node.kind)) == NodeKind.COMPUTE else None)
        timings.append(node_timing(config, node, layer))
        if node.to_host:
            break
    total = run_cycles(nodes[0].window.size, [t.cycles for t in timings])
    return total, timings
