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

**The inter-layer pipeline** (:class:`~bitline.hw.net.pipeline.Pipeline`, docs/network.md
section 6): :func:`pipeline_schedule` is the event recurrence its engines realize, cycle
0 being the cycle after CTRL.RUN_NETWORK:

* INIT reads the ``n`` node records in ``n + 1`` cycles (:func:`pipeline_init_cycles`);
  the input writer takes its first code in cycle ``n + 1`` and every engine with nodes
  fetches its first node in cycle ``n + 2`` (:data:`ENGINE_GO_CYCLES` later).
* Input image ``k`` takes ``S_in`` codes from cycle ``w_k = max(L_{k-1} + 1, end_c(k -
  input_copies) + 1 for each node c reading the input)``; it is in from ``L_k + 1``,
  ``L_k = w_k + S_in - 1``.
* Engine ``e`` runs its nodes in node order, image after image. A node's image ``k``
  fetches at ``f`` (the cycle after the engine's previous end, or the first fetch),
  sets up at ``s = f + 2``, may start from ``r = max(s, t_a, t_b)`` with ``t_a`` the
  cycle after its sources' ends of image ``k`` (``L_k + 1`` for the input) and ``t_b``
  the cycle after its consumers' ends of image ``k - copies``; START is ``r + 1`` and the
  image ends at ``end = r + 1 + node_cycles``. The ``r - s`` WAIT cycles count as input
  stall while the sources were not ready the cycle before (``min(r, t_a) - s`` of them),
  the rest as output stall.
* CYCLES is ``1 +`` the last end of any node's image ``N - 1``; LATENCY ``1 +`` the
  ``to_host`` node's end of image 0; INTERVAL the difference of its last two ends.

**Layer replicas** (docs/network.md section 7.2): node ``i``, phase ``k`` of a group of
``R`` replicas, runs the images ``k, k + R, ...`` below ``N``; "the group's end of image
``n``" is its member ``n mod R``'s. The sources' ends (a), the consumer groups' ends of
image ``n - copies`` (b) and the input writer's readers are taken per group; a replicated
``to_host`` group also waits for its end of image ``n - 1``. An engine visits its nodes
in node order round after round; a node without a further image costs one FETCH cycle
(its next node's FETCH is a cycle later) and the engine stops when none has one. Events
are computed as soon as what they wait for is known; a program whose engines would wait
on each other forever (e.g. a replica before its consumer on one engine in a long run)
is refused. With ``R = 1`` everywhere this is the recurrence above, unchanged.
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
    "network_timing", "layer_unit_reads", "ENGINE_GO_CYCLES", "PipelineSchedule",
    "pipeline_init_cycles", "pipeline_schedule",
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


#: Cycles from the first cycle the input writer may take a code to the engines' first
#: FETCH (the engines start from a registered ``go``).
ENGINE_GO_CYCLES = 1


def pipeline_init_cycles(n_nodes: int) -> int:
    """INIT of a pipelined run: ``n_nodes`` record reads, one cycle of read latency."""
    return int(n_nodes) + 1


@dataclass(frozen=True)
class PipelineSchedule:
    """A pipelined run for a host that never waits (:func:`pipeline_schedule`).

    Cycles count from the cycle after CTRL.RUN_NETWORK (cycle 0).

    Attributes
    ----------
    cycles, latency, interval:
        The CYCLES, LATENCY and INTERVAL registers.
    n_images:
        Images of the run (N_IMAGES, 0 counted as 1).
    nodes:
        Per node its NODE_* counters summed over the images (:class:`NodeTiming`).
    start, end:
        ``[node, image]``: the node's START cycle and the cycle of its last result (-1
        for an image the node does not run: a replica's other phases).
    input_end:
        ``[image]``: the cycle the input writer takes the image's last code.
    """

    cycles: int
    latency: int
    interval: int
    n_images: int
    nodes: tuple[NodeTiming, ...]
    start: np.ndarray
    end: np.ndarray
    input_end: np.ndarray

    def images_per_second(self, clock_hz: float) -> float:
        """Steady-state throughput at ``clock_hz``: ``clock / INTERVAL`` (``N * clock /
        CYCLES`` for a one-image run)."""
        if self.interval:
            return clock_hz / self.interval
        return self.n_images * clock_hz / self.cycles


def _replica_groups(nodes) -> tuple[list[int], list[int], list[int]]:
    """Per node its group's replica count, its phase and its group's first node (7.1).

    Raises
    ------
    ValueError
        A phase not below the replicas, or a group whose members are not consecutive
        nodes with phases 0 .. R-1 and one ``replicas_log2``, naming node, field and value.
    """
    replicas, phases, group_of = [], [], []
    for index, node in enumerate(nodes):
        log2 = int(getattr(node, "replicas_log2", 0))
        phase = int(getattr(node, "phase", 0))
        if not 0 <= phase < 1 << log2:
            raise ValueError(f"node {index}: field phase: {phase} is not below the group's "
                             f"{1 << log2} replicas")
        first = index - phase
        if first < 0 or any(int(getattr(nodes[first + k], "replicas_log2", 0)) != log2
                            or int(getattr(nodes[first + k], "phase", 0)) != k
                            for k in range(phase)):
            raise ValueError(f"node {index}: field phase: {phase}, but nodes {first} .. "
                             f"{index - 1} are not its group's phases 0 .. {phase - 1} "
                             f"with replicas_log2 {log2}")
        replicas.append(1 << log2)
        phases.append(phase)
        group_of.append(first)
    for index, (count, phase) in enumerate(zip(replicas, phases)):
        if phase == count - 1:
            continue
        if index + 1 >= len(nodes) or phases[index + 1] != phase + 1:
            raise ValueError(f"node {index}: field replicas_log2: the group of "
                             f"{count} replicas ends after phase {phase}")
    return replicas, phases, group_of


def pipeline_schedule(config: AcceleratorConfig, program, n_images: int) -> PipelineSchedule:
    """Return the pipelined run of ``program`` over ``n_images`` images (module docstring).

    ``program`` has ``.nodes`` (with the pipeline fields: ``stage``, ``copies``,
    ``input_copies``, ``src0_node``, ``src1_node``) and ``.layers`` like
    :func:`network_timing`'s. ``n_images`` 0 counts as 1, as N_IMAGES does.

    Raises
    ------
    ValueError
        No nodes, a negative image count, or a record the engines would wait on forever
        (``copies`` or node 0's ``input_copies`` below 1, a source that is not an earlier
        node, stages not below ``pipeline_stages``, a replica group's ``phase`` /
        ``replicas_log2`` out of order), naming node, field and value; or engines that
        wait on each other forever.

    ``start`` / ``end`` hold -1 for the images a replica does not run.
    """
    nodes = list(program.nodes or [])
    if not nodes:
        raise ValueError("the program has no network nodes (compile with --network)")
    if int(n_images) < 0:
        raise ValueError(f"n_images must be >= 0, not {n_images}")
    images = max(1, int(n_images))
    engines = max(1, int(config.pipeline_stages))
    count = len(nodes)
    timings, sources = [], []
    for index, node in enumerate(nodes):
        kind = NodeKind(int(node.kind))
        layer = program.layers[node.layer] if kind == NodeKind.COMPUTE else None
        timings.append(node_timing(config, node, layer))
        srcs = [int(node.src0_node)] + ([int(node.src1_node)] if kind == NodeKind.ADD else [])
        for name, value in zip(("src0_node", "src1_node"), srcs):
            if not 0 <= value <= index:
                raise ValueError(f"node {index}: field {name}: {value} is not the network "
                                 f"input (0) or an earlier node (1 .. {index})")
        sources.append(srcs)
        if int(node.copies) < 1:
            raise ValueError(f"node {index}: field copies: {node.copies} (at least 1)")
        if not 0 <= int(node.stage) < engines:
            raise ValueError(f"node {index}: field stage: {node.stage} is not below "
                             f"pipeline_stages ({engines})")
    input_copies = int(nodes[0].input_copies)
    if input_copies < 1:
        raise ValueError(f"node 0: field input_copies: {input_copies} (at least 1)")
    replicas, phases, group_of = _replica_groups(nodes)
    consumers = [[c for c in range(count) if i + 1 in sources[c]] for i in range(count)]
    input_readers = [c for c in range(count) if 0 in sources[c]]
    input_size = nodes[0].window.size

    def member(group: int, image: int) -> int:
        """The node of ``group`` (its first node) that runs ``image``."""
        return group + image % replicas[group]

    # per node the images it runs; per engine its visits (node, image, FETCH skips before)
    runs = [list(range(phases[i], images, replicas[i])) for i in range(count)]
    visits = []
    for engine in range(engines):
        own = [i for i in range(count) if int(nodes[i].stage) == engine]
        left = {i: list(runs[i]) for i in own}
        sequence, skips, position = [], 0, 0
        while own and any(left.values()):
            node = own[position]
            if left[node]:
                sequence.append((node, left[node].pop(0), skips))
                skips = 0
            else:
                skips += 1                # FETCH of a node without a further image
            position = (position + 1) % len(own)
        visits.append(sequence)

    start = np.full((count, images), -1, dtype=np.int64)
    end = np.full((count, images), -1, dtype=np.int64)
    input_end = np.full(images, -1, dtype=np.int64)
    wait_input = np.zeros(count, dtype=np.int64)
    wait_output = np.zeros(count, dtype=np.int64)
    first_write = pipeline_init_cycles(count)
    free = [first_write + ENGINE_GO_CYCLES] * engines     # each engine's next FETCH
    head = [0] * engines
    taken = 0                                             # images the writer has taken

    def ended(node: int, image: int):
        """Cycle after ``node``'s end of ``image`` (None: not yet known)."""
        value = int(end[node, image])
        return value + 1 if value >= 0 else None

    def groups_done(readers, image):
        """Cycle after every group in ``readers`` (nodes) finished ``image``."""
        times = [ended(member(group_of[c], image), image) for c in readers]
        return None if None in times else max([0] + times)

    # every event waits only for earlier events (7.2): take each engine's next visit and
    # the writer's next image as soon as what it waits for is known
    while taken < images or any(h < len(v) for h, v in zip(head, visits)):
        progress = False
        if taken < images:
            image = taken
            ready = first_write if image == 0 else int(input_end[image - 1]) + 1
            copies_free = (groups_done(input_readers, image - input_copies)
                           if image >= input_copies else 0)
            if copies_free is not None:
                input_end[image] = max(ready, copies_free) + input_size - 1
                taken += 1
                progress = True
        for engine, sequence in enumerate(visits):
            if head[engine] == len(sequence):
                continue
            index, image, skips = sequence[head[engine]]
            ready_in = [(int(input_end[image]) + 1 if input_end[image] >= 0 else None)
                        if src == 0 else ended(member(src - 1, image), image)
                        for src in sources[index]]
            copies = int(nodes[index].copies)
            ready_out = [groups_done(consumers[group_of[index]], image - copies)
                         if image >= copies else 0]
            if nodes[index].to_host and replicas[index] > 1 and image > 0:
                # a replicated to_host group gives the host its images in order
                ready_out.append(ended(member(group_of[index], image - 1), image - 1))
            if None in ready_in or None in ready_out:
                continue
            setup = free[engine] + skips + 2
            ready_in, ready_out = max(ready_in), max(ready_out)
            ready = max(setup, ready_in, ready_out)
            waited_in = max(0, min(ready, ready_in) - setup)
            wait_input[index] += waited_in
            wait_output[index] += ready - setup - waited_in
            start[index, image] = ready + 1
            end[index, image] = ready + 1 + timings[index].cycles
            free[engine] = int(end[index, image]) + 1
            head[engine] += 1
            progress = True
        if not progress:
            raise ValueError("the nodes' sources and copies make the engines wait on each "
                             "other forever (a record's src*_node, copies or stage)")
    host = [index for index, node in enumerate(nodes) if node.to_host]
    last = group_of[host[0]] if host else group_of[count - 1]
    host_ends = [int(end[member(last, image), image]) for image in range(images)]
    latency = host_ends[0] + 1
    interval = host_ends[-1] - host_ends[-2] if images > 1 else 0
    totals = tuple(NodeTiming(len(runs[i]) * t.cycles,
                              len(runs[i]) * t.input_stall + int(wait_input[i]),
                              len(runs[i]) * t.output_stall + int(wait_output[i]))
                   for i, t in enumerate(timings))
    return PipelineSchedule(cycles=int(end.max()) + 1, latency=latency,
                            interval=interval, n_images=images, nodes=totals, start=start,
                            end=end, input_end=input_end)
