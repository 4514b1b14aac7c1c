"""Whole-network mode on the host: the node list of a quantized model and its interpreter.

:func:`network_nodes` turns a :class:`~bitline.sw.integer.qmodel.QuantizedModel`'s layer
graph into the nodes of the NETWORK image section (docs/network.md section 2): one node
per layer in execution order, ``flatten`` aliasing its input's slot (a C-order map is the
flat vector), slots allocated by liveness (first fit; the network input at 0; a residual
branch stays live until its add), pad values from the zero points, the add's
requantization from its layer, ``to_host`` on the last node. ``bitline compile --network``
puts them in the program (:attr:`bitline.hw.spec.program.Program.nodes`) and sizes the
config's whole-network fields from :attr:`NetworkPlan.sizes`.

:func:`run_nodes` executes those node records on a flat numpy buffer as the hardware does
(the input written at 0, the window reads with their pad values, producer-order writes at
``dst_base + c*P + p``, the ``to_host`` node's outputs returned), computing compute layers
with the golden arithmetic of :mod:`bitline.sw.integer.arith` and the other nodes with the
formulas of :mod:`bitline.sw.integer.tensor_ops` restated on window elements. It is a
second, independent reading of the node records: tests compare it, node by node, with the
golden model's graph walk.

The inter-layer pipeline (docs/network.md section 6, ``compile --network --pipeline``):
:func:`partition_stages` groups the nodes into the engines' contiguous runs,
:func:`pipeline_plan` lays the buffer out with copies instead of liveness (every map its
own ``copies`` regions, none reused) and fills the records' ``stage``, ``copies``,
``input_copies`` and ``src*_node``. ``run_nodes(..., image=n)`` reads and writes copy
``n mod k`` of every map, and :func:`run_pipelined` runs a batch through one shared buffer
in the pipeline's steady-state order (a wavefront over the stages), so a record with too
few copies gives a wrong image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bitline.hw.spec.network import NodeKind, NodeProgram, WindowParams
from bitline.sw.integer import arith
from bitline.sw.integer.graph import spec_ou_rows
from bitline.sw.integer.qmodel import QuantizedModel

__all__ = ["NETWORK_OPS", "NetworkPlan", "network_nodes", "run_nodes", "window_addresses",
           "producer_order", "partition_stages", "pipeline_copies", "pipeline_plan",
           "run_pipelined", "copy_offsets", "replicate_nodes", "group_first", "MAX_REPLICAS"]

#: The most replicas of one layer (``replicas_log2`` is 2 bits: 1, 2, 4 or 8).
MAX_REPLICAS = 8

#: The ops ``compile --network`` runs (fused ReLUs are clamps of their producer).
NETWORK_OPS = ("conv", "gemm", "maxpool", "avgpool", "gap", "add", "flatten")


@dataclass(frozen=True)
class NetworkPlan:
    """What :func:`network_nodes` returns.

    Attributes
    ----------
    nodes:
        The nodes in execution order (names are the IR layers').
    depth:
        Codes the buffer needs: the largest end address of any slot (input included).
    max_channels, max_height, max_width:
        The largest feature map any node reads or writes (a flat vector of ``F`` codes is
        an ``F x 1 x 1`` map).
    producers:
        Per node, the producers of its sources in record order (src0, and src1 for an
        ADD): 0 the network input, ``j + 1`` node ``j`` (the pipeline's ``src*_node``).
    stages:
        Number of pipeline engines (``pipeline_stages``) of a :func:`pipeline_plan`; 0
        for the sequential layout.
    """

    nodes: list[NodeProgram]
    depth: int
    max_channels: int
    max_height: int
    max_width: int
    producers: tuple[tuple[int, ...], ...] = ()
    stages: int = 0

    @property
    def sizes(self) -> dict[str, int]:
        """The config's whole-network fields this network needs, by field name."""
        sizes = {"act_buffer_depth": self.depth, "max_nodes": len(self.nodes),
                 "max_map_channels": self.max_channels, "max_map_height": self.max_height,
                 "max_map_width": self.max_width}
        if self.stages:
            sizes["pipeline_stages"] = self.stages
        return sizes


def _map_shape(shape, what: str) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image tensor, ``(F, 1, 1)`` of a vector."""
    shape = tuple(int(size) for size in shape)
    if len(shape) == 3:
        return shape
    if len(shape) == 1:
        return (shape[0], 1, 1)
    raise ValueError(f"{what}: a tensor of shape {shape} is neither an image (C, H, W) nor a "
                     "vector; --network stores only those")


def _first_fit(live: dict[str, tuple[int, int]], size: int) -> int:
    """Lowest base at which ``size`` codes overlap no live slot ``(base, size)``."""
    base = 0
    for start, length in sorted(live.values()):
        if base + size <= start:
            break
        base = max(base, start + length)
    return base


def network_nodes(qmodel: QuantizedModel, layer_names: list[str]) -> NetworkPlan:
    """Return the whole-network nodes of ``qmodel`` (module docstring).

    Parameters
    ----------
    qmodel:
        The quantized model; its layers in execution order.
    layer_names:
        The program's layer table (names in record order): a COMPUTE node's ``layer``.

    Raises
    ------
    ValueError
        Naming the layer and op ``--network`` cannot run (an op outside
        :data:`NETWORK_OPS`, a compute layer without a layer record, a tensor that is no
        image or vector), or a graph whose output is not its last node's.
    """
    model = qmodel.model
    for layer in model.layers:
        if layer.op not in NETWORK_OPS:
            raise ValueError(f"layer {layer.name!r} (op {layer.op}): --network runs "
                             f"{', '.join(NETWORK_OPS)} (a ReLU fused into its producer is a "
                             "clamp); this op needs the per-layer mode (compile without "
                             "--network)")
    root = {model.input_name: model.input_name}         # tensor -> the tensor owning its slot
    shape = {model.input_name: _map_shape(model.input_shape, "network input")}
    for layer in model.layers:
        if layer.op == "flatten":
            root[layer.output] = root[layer.inputs[0]]
        else:
            root[layer.output] = layer.output
            shape[layer.output] = _map_shape(layer.output_shape, f"layer {layer.name!r}")
    steps = [layer for layer in model.layers if layer.op != "flatten"]
    if not steps:
        raise ValueError(f"model {model.name}: --network needs at least one layer that is "
                         "not a flatten")
    if root[model.output_name] != steps[-1].output:
        raise ValueError(f"model {model.name}: the output {model.output_name!r} is not the "
                         f"last layer's ({steps[-1].name!r}); --network sends only the last "
                         "node's outputs to the host")
    producer = {model.input_name: 0}
    for index, layer in enumerate(steps):
        producer[layer.output] = index + 1
    last_use: dict[str, int] = {}
    for index, layer in enumerate(steps):
        for name in layer.inputs:
            last_use[root[name]] = index

    input_shape = shape[model.input_name]
    live = {model.input_name: (0, int(np.prod(input_shape)))}
    base_of = {model.input_name: 0}
    depth = live[model.input_name][1]
    biggest = list(input_shape)
    nodes = []
    producers = tuple(tuple(producer[root[name]] for name in layer.inputs) for layer in steps)
    for index, layer in enumerate(steps):
        qlayer = qmodel.layers[layer.name]
        sources = [root[name] for name in layer.inputs]
        node = _node(layer, qlayer, [(base_of[s], shape[s]) for s in sources], layer_names)
        out_shape = (node.dst_channels, *node.window.out_hw())
        if out_shape != shape[layer.output]:
            raise ValueError(f"layer {layer.name!r} ({layer.op}): the node writes a "
                             f"{out_shape} map, the IR's output is {shape[layer.output]}")
        for dims in [shape[s] for s in sources] + [out_shape]:
            biggest = [max(a, b) for a, b in zip(biggest, dims)]
        if index == len(steps) - 1:
            nodes.append(replace(node, to_host=True, dst_base=0))
            break
        size = int(np.prod(out_shape))
        base = _first_fit(live, size)
        nodes.append(replace(node, dst_base=base))
        depth = max(depth, base + size)
        live[layer.output] = (base, size)
        base_of[layer.output] = base
        for name in set(sources) | {layer.output}:
            if last_use.get(name, -1) <= index:
                live.pop(name, None)
    return NetworkPlan(nodes, depth, *biggest, producers=producers)


def _node(layer, qlayer, sources: list[tuple[int, tuple]], layer_names: list[str]
          ) -> NodeProgram:
    """The node of one layer (``dst_base`` and ``to_host`` are set by the allocator)."""
    (base, (channels, height, width)) = sources[0]
    attrs = layer.attrs
    zero_in = qlayer.inputs[0].zero_point
    if layer.op in ("conv", "gemm"):
        if layer.name not in layer_names:
            raise ValueError(f"layer {layer.name!r} ({layer.op}): no layer record in the "
                             "program")
        if layer.op == "conv":
            weight = qlayer.weight.values if qlayer.weight is not None else layer.weight
            window = WindowParams(
                channels, height, width, kernel=tuple(int(k) for k in weight.shape[2:]),
                stride=tuple(attrs.get("stride", (1, 1))),
                pads=tuple(attrs.get("pads", (0, 0, 0, 0))),
                dilation=tuple(attrs.get("dilation", (1, 1))), pad_value=zero_in, base=base)
        else:
            window = WindowParams.flatten(channels, height, width, base=base)
        return NodeProgram(NodeKind.COMPUTE, window.canonical(), dst_base=0,
                           dst_channels=int(layer.output_shape[0]),
                           layer=layer_names.index(layer.name), name=layer.name)
    if layer.op in ("maxpool", "avgpool"):
        include = layer.op == "avgpool" and bool(attrs.get("count_include_pad", False))
        window = WindowParams(channels, height, width, kernel=tuple(attrs["kernel"]),
                              stride=tuple(attrs.get("stride", (1, 1))),
                              pads=tuple(attrs.get("pads", (0, 0, 0, 0))),
                              pad_value=zero_in if include else 0, base=base)
        kind = NodeKind.POOL_MAX if layer.op == "maxpool" else NodeKind.POOL_AVG
        return NodeProgram(kind, window.canonical(), dst_base=0, dst_channels=channels,
                           count_include_pad=include, name=layer.name)
    if layer.op == "gap":
        return NodeProgram(NodeKind.POOL_AVG,
                           WindowParams.flatten(channels, height, width, base=base),
                           dst_base=0, dst_channels=channels, name=layer.name)
    # add: both operands stream through a 1x1 window, pixel-major, channel innermost
    (other, other_shape) = sources[1]
    if other_shape != (channels, height, width):
        raise ValueError(f"layer {layer.name!r} (add): operands of shapes "
                         f"{(channels, height, width)} and {other_shape}")
    mult = np.asarray(qlayer.mult, dtype=np.int64).reshape(-1)
    shift = np.asarray(qlayer.shift, dtype=np.int64).reshape(-1)
    if mult.shape != (2,) or shift.size != 2 or shift[0] != shift[1]:
        raise ValueError(f"layer {layer.name!r} (add): needs two multipliers and one common "
                         f"shift, not mult={mult.tolist()} shift={shift.tolist()}")
    return NodeProgram(
        NodeKind.ADD, WindowParams(channels, height, width, base=base), dst_base=0,
        dst_channels=channels, src1_base=other, zero_a=zero_in,
        zero_b=qlayer.inputs[1].zero_point, zero_point=qlayer.output.zero_point,
        clamp_lo=int(qlayer.clamp_lo), clamp_hi=int(qlayer.clamp_hi),
        mult_a=int(mult[0]), mult_b=int(mult[1]), shift=int(shift[0]), name=layer.name)


# ----------------------------------------------------------------- inter-layer pipeline
def partition_stages(times, engines: int) -> list[int]:
    """Return each node's engine: ``engines`` contiguous runs minimizing the largest run.

    ``times`` are the nodes' cycles in node order (:func:`bitline.hw.spec.net_timing.
    node_timing`); the result is non-decreasing, starts at 0, ends at ``engines - 1`` and
    uses every engine (docs/network.md section 6.3: the linear partition). With
    ``engines == len(times)`` every node has its own engine. Among partitions with the same
    largest run the one whose earlier runs are longest is taken (deterministic).

    Raises
    ------
    ValueError
        If ``engines`` is not in ``1 .. len(times)`` (every engine must run a node).
    """
    times = [int(t) for t in times]
    count = len(times)
    if not 1 <= int(engines) <= count:
        raise ValueError(f"pipeline_stages = {engines}: the pipeline needs 1 .. {count} "
                         f"engines for {count} nodes (every engine runs at least one node)")
    prefix = np.concatenate([[0], np.cumsum(times, dtype=np.int64)])
    # best[e][i]: the smallest largest run of nodes 0 .. i-1 on e + 1 engines
    best = np.full((engines, count + 1), np.iinfo(np.int64).max, dtype=np.int64)
    cut = np.zeros((engines, count + 1), dtype=np.int64)
    best[0, 1:] = prefix[1:]
    for engine in range(1, engines):
        for end in range(engine + 1, count + 1):
            starts = np.arange(engine, end)             # the last run is starts .. end-1
            cost = np.maximum(best[engine - 1, starts], prefix[end] - prefix[starts])
            pick = int(np.flatnonzero(cost == cost.min())[-1])
            best[engine, end], cut[engine, end] = cost[pick], starts[pick]
    stages = [0] * count
    end = count
    for engine in range(engines - 1, 0, -1):
        start = int(cut[engine, end])
        stages[start:end] = [engine] * (end - start)
        end = start
    return stages


def pipeline_copies(stages, producers, first=None) -> tuple[list[int], int]:
    """Return ``(copies per node, input_copies)`` of the copies rule (sections 6.3, 7.3).

    ``copies_i = max(1, max over consumers c of stage_c - stage_i + 1)``: a consumer ``d``
    stages later may still read image ``n - d`` while node ``i`` writes image ``n``;
    ``input_copies = max over the input's consumers c of stage_c + 2`` (the input writer
    is a stage before stage 0). ``producers`` as :attr:`NetworkPlan.producers` (a replica
    group is named by its first node). ``first`` (:func:`group_first`; default every node
    its own group) makes every member of a replica group take its first node's copies:
    the consumers' largest stage minus the group's first (smallest) stage, plus 1.
    """
    copies = [1] * len(stages)
    input_copies = 0
    for consumer, sources in enumerate(producers):
        for source in sources:
            if source == 0:
                input_copies = max(input_copies, stages[consumer] + 2)
            else:
                node = source - 1
                copies[node] = max(copies[node], stages[consumer] - stages[node] + 1)
    if first is not None:
        copies = [copies[first[index]] for index in range(len(stages))]
    return copies, input_copies


def group_first(nodes: list[NodeProgram]) -> list[int]:
    """Per node, the index of its replica group's first node (phase 0): ``i`` itself for
    a node without replicas, ``i - phase`` for a replica (groups are consecutive)."""
    return [index - int(node.phase) for index, node in enumerate(nodes)]


def replicate_nodes(plan: NetworkPlan, replicas: dict[int, list[int]]) -> NetworkPlan:
    """Return ``plan`` with replica groups (docs/network.md section 7.1).

    ``replicas`` maps a COMPUTE node's index to the layer records of its ``R`` replicas
    (the node's own first; ``R`` a power of two up to :data:`MAX_REPLICAS`,
    :meth:`~bitline.hw.spec.program.Program.with_replicas`). Node ``i``'s group is ``R``
    consecutive nodes, phases ``0 .. R-1``, each on its own layer record;
    ``producers`` name the groups' first nodes. Layout fields are set later
    (:func:`pipeline_plan`).

    Raises
    ------
    ValueError
        Naming the node and value: not a COMPUTE node, the ``to_host`` node, a count that
        is not a power of two in ``1 .. 8``.
    """
    nodes, producers = plan.nodes, plan.producers
    renumber = {0: 0}
    expanded: list[NodeProgram] = []
    sources: list[tuple[int, ...]] = []
    for index, node in enumerate(nodes):
        layers = replicas.get(index, [node.layer])
        count = len(layers)
        if count > 1 and node.kind != NodeKind.COMPUTE:
            raise ValueError(f"{node.label(index)} is a {NodeKind(node.kind).name} node: only "
                             "COMPUTE nodes (conv, gemm) are replicated")
        if count > 1 and node.to_host:
            raise ValueError(f"{node.label(index)} sends its outputs to the host: the "
                             "to_host node is not replicated (one node streams the results)")
        if count & (count - 1) or not 1 <= count <= MAX_REPLICAS:
            raise ValueError(f"{node.label(index)}: {count} replicas; a group has 1, 2, 4 or "
                             f"{MAX_REPLICAS} (a power of two up to {MAX_REPLICAS})")
        renumber[index + 1] = len(expanded) + 1
        refs = tuple(renumber[ref] for ref in producers[index])
        for phase, layer in enumerate(layers):
            expanded.append(replace(node, layer=int(layer), phase=phase,
                                    replicas_log2=count.bit_length() - 1))
            sources.append(refs)
    return replace(plan, nodes=expanded, producers=tuple(sources))


def pipeline_plan(plan: NetworkPlan, stages) -> NetworkPlan:
    """Return ``plan`` laid out for the inter-layer pipeline (docs/network.md 6.2-6.3).

    ``stages`` is each node's engine (:func:`partition_stages`). No region is reused: the
    network input's ``input_copies`` copies at 0, then each node's output map's
    ``copies`` copies in node order (the ``to_host`` node writes none); every record reads
    copy 0 of its producers' maps and carries ``stage``, ``copies``, ``input_copies``
    (node 0) and ``src0_node`` / ``src1_node``. The depth is the sum of the regions. A
    replica group (:func:`replicate_nodes`) shares its first node's region and copies
    (section 7.3's rule) and needs its replicas on increasing engines.

    Raises
    ------
    ValueError
        If ``stages`` is not one non-decreasing engine per node from 0 without a gap, two
        replicas of a group share an engine, or a map needs more copies than the record
        holds (``COPY_BITS``), naming the node.
    """
    from bitline.hw.spec.network import COPY_BITS

    nodes, producers = plan.nodes, plan.producers
    stages = [int(stage) for stage in stages]
    if len(stages) != len(nodes) or len(producers) != len(nodes):
        raise ValueError(f"pipeline_plan: {len(stages)} stages and {len(producers)} producer "
                         f"lists for {len(nodes)} nodes")
    if stages[0] != 0 or any(b - a not in (0, 1) for a, b in zip(stages, stages[1:])):
        raise ValueError(f"pipeline_plan: stages {stages} are not non-decreasing from 0 "
                         "without an unused engine")
    first = group_first(nodes)
    for index, lead in enumerate(first):
        if lead != index and stages[index] <= stages[index - 1]:
            raise ValueError(f"{nodes[index].label(index)}: replica {nodes[index].phase} of "
                             f"its group shares engine {stages[index]} with node "
                             f"{index - 1} of the group (replicas of a layer run on distinct "
                             "engines); pin more pipeline_stages in the config")
    copies, input_copies = pipeline_copies(stages, producers, first)
    limit = (1 << COPY_BITS) - 1
    for index, count in enumerate(copies):
        if count > limit:
            far = max((c for c, srcs in enumerate(producers) if index + 1 in srcs),
                      key=lambda c: stages[c])
            raise ValueError(f"{nodes[index].label(index)}: its consumer "
                             f"{nodes[far].label(far)} runs {stages[far] - stages[index]} "
                             f"stages later, so the map needs {count} copies, more than the "
                             f"record's {COPY_BITS}-bit copies field holds ({limit}); pin "
                             "fewer pipeline_stages in the config")
    if input_copies > limit:
        raise ValueError(f"the network input needs {input_copies} copies (a node of stage "
                         f"{input_copies - 2} reads it), more than input_copies holds "
                         f"({limit}); pin fewer pipeline_stages in the config")
    input_size = nodes[0].window.size
    bases = {0: 0}                                      # producer ref -> copy 0's base
    cursor = input_copies * input_size
    laid = []
    for index, node in enumerate(nodes):
        refs = producers[index]
        window = replace(node.window, base=bases[refs[0]])
        extra = dict(src1_base=bases[refs[1]], src1_node=refs[1]) \
            if node.kind == NodeKind.ADD else {}
        lead = first[index]
        dst_base = 0 if node.to_host else cursor if lead == index else bases[lead + 1]
        laid.append(replace(node, window=window, dst_base=dst_base, stage=stages[index],
                            copies=copies[index],
                            input_copies=input_copies if index == 0 else 0,
                            src0_node=refs[0], **extra))
        if not node.to_host and lead == index:       # a group shares its first's region
            bases[index + 1] = cursor
            cursor += copies[index] * node.dst_size
    return replace(plan, nodes=laid, depth=cursor, stages=max(stages) + 1)


def copy_offsets(nodes: list[NodeProgram], index: int, image: int) -> tuple[int, int, int]:
    """Return the offsets node ``index`` adds for image ``image`` (docs/network.md 6.2).

    ``(src0, src1, dst)``: ``(n mod k_src) * S_src`` for each source (``k_src`` the
    producer's ``copies``, or node 0's ``input_copies`` for the network input; ``S_src``
    the source map's size) and ``(n mod copies) * dst_size`` for the output. All 0 on a
    sequential program (its records' ``copies`` are 1 and ``input_copies`` 0).
    """
    node = nodes[index]
    size = node.window.size

    def offset(ref: int) -> int:
        count = int(nodes[0].input_copies) if ref == 0 else int(nodes[ref - 1].copies)
        return (image % count) * size if count > 1 else 0

    src1 = offset(int(node.src1_node)) if node.kind == NodeKind.ADD else 0
    dst = (image % int(node.copies)) * node.dst_size if int(node.copies) > 1 else 0
    return offset(int(node.src0_node)), src1, dst


# ------------------------------------------------------------------------- interpreter
def window_addresses(window: WindowParams) -> tuple[np.ndarray, np.ndarray]:
    """Return the buffer address of every window element and whether it is padding.

    int64 ``(P, C*KH*KW)`` addresses (``-1`` at padding) and bool padding flags, rows the
    output pixels (row-major), columns ``(c*KH + ky)*KW + kx`` - the reader's loop nest
    ``oy, ox, c, ky, kx``, with ``iy = oy*sh + ky*dh - top``, ``ix = ox*sw + kx*dw - left``
    and the map ``(c, y, x)`` at ``base + (c*H + y)*W + x``.
    """
    out_h, out_w = window.out_hw()
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.stride, window.dilation
    top, left = window.pads[0], window.pads[1]
    oy, ox, c, ky, kx = np.meshgrid(np.arange(out_h), np.arange(out_w),
                                    np.arange(window.channels), np.arange(kh), np.arange(kw),
                                    indexing="ij")
    iy = oy * sh + ky * dh - top
    ix = ox * sw + kx * dw - left
    pad = (iy < 0) | (iy >= window.height) | (ix < 0) | (ix >= window.width)
    addr = window.base + (c * window.height + iy) * window.width + ix
    addr = np.where(pad, -1, addr)
    count = out_h * out_w
    return addr.reshape(count, -1).astype(np.int64), pad.reshape(count, -1)


def _read(buffer: np.ndarray, window: WindowParams) -> tuple[np.ndarray, np.ndarray]:
    """The window's elements ``(N, P, C*KH*KW)`` (pad value at padding) and the pad flags."""
    addr, pad = window_addresses(window)
    values = buffer[:, np.maximum(addr, 0)]
    return np.where(pad, np.int64(window.pad_value), values), pad


def producer_order(tensor: np.ndarray) -> np.ndarray:
    """Return a node's output ``(N, C, OH, OW)`` (or ``(N, F)``) as the stream the hardware
    emits: ``(N, P*C)``, output ``k = p*C + c`` (pixel-major, channel innermost)."""
    tensor = np.asarray(tensor)
    if tensor.ndim == 2:
        return tensor.copy()
    n, channels = tensor.shape[:2]
    return tensor.reshape(n, channels, -1).transpose(0, 2, 1).reshape(n, -1)


def run_nodes(program, qmodel: QuantizedModel, codes: np.ndarray, *,
              trace: list | None = None, image: int = 0) -> np.ndarray:
    """Run a whole-network program's nodes on input codes, as the hardware does.

    Parameters
    ----------
    program:
        A :class:`~bitline.hw.spec.program.Program` with :attr:`nodes` (``compile
        --network``); its config's ``act_buffer_depth`` is the buffer.
    qmodel:
        The quantized model (a COMPUTE node's layer record names its layer).
    codes:
        int64 ``(N, *input_shape)`` network input codes
        (:func:`~bitline.sw.integer.arith.quantize_input`).
    trace:
        If given, a list that receives every node's output ``(N, C, OH, OW)`` in node order.
    image:
        The image number ``n`` the samples run as in a pipelined program (section 6.2):
        the input is written to, and every node reads and writes, copy ``n mod k`` of
        each map (:func:`copy_offsets`). No effect on a sequential program.

    Returns
    -------
    np.ndarray
        int64 ``(N, *model.output_shape)``: the ``to_host`` node's outputs in C order (a raw
        final layer's ``acc + bias``, else codes), the golden model's output tensor.
        :func:`producer_order` gives the order they stream to the host.

    Raises
    ------
    ValueError
        If the program has no nodes or the input does not fill node 0's map.
    """
    nodes = getattr(program, "nodes", None)
    if not nodes:
        raise ValueError("run_nodes: the program has no network nodes (compile with "
                         "--network)")
    codes = np.asarray(codes, dtype=np.int64)
    batch = codes.shape[0]
    flat = codes.reshape(batch, -1)
    first = nodes[0].window
    if flat.shape[1] != first.size:
        raise ValueError(f"run_nodes: {flat.shape[1]} input codes per sample, node 0 reads a "
                         f"{first.channels}x{first.height}x{first.width} map")
    buffer = np.zeros((batch, _depth(program)), dtype=np.int64)
    _write_input(buffer, nodes, flat, image)
    ou_rows = spec_ou_rows(qmodel)
    output = None
    for index, node in enumerate(nodes):
        if not _runs(node, image):
            continue
        tensor = _step(buffer, program, qmodel, ou_rows, index, image)
        if trace is not None:
            trace.append(tensor)
        if node.to_host:
            output = tensor
            break
    if output is None:
        raise ValueError("run_nodes: no node sends its outputs to the host (to_host)")
    return output.reshape(batch, *qmodel.model.output_shape)


def run_pipelined(program, qmodel: QuantizedModel, codes: np.ndarray) -> np.ndarray:
    """Run ``N`` images through one shared buffer as the pipelined hardware does.

    The order is the pipeline's steady state (docs/network.md section 6.4 when no engine
    waits for a free copy): step ``t`` first writes image ``t + 1``'s input (the input
    writer, a stage before stage 0), then runs stage ``e = 0, 1, ...`` on image ``t - e``,
    the nodes of a stage in node order. Every image reads and writes copy ``n mod k`` of
    each map (:func:`copy_offsets`). With the copies rule (:func:`pipeline_copies`) no
    copy is overwritten before its last reader ran; a record with fewer copies lets a
    producer overwrite a copy a later stage has not read yet, and that image comes out
    wrong (the tests show it).

    Parameters
    ----------
    program:
        A pipelined :class:`~bitline.hw.spec.program.Program` (``compile --network
        --pipeline``; a sequential one runs as one stage, image after image).
    qmodel:
        The quantized model.
    codes:
        int64 ``(N, *input_shape)``: image ``n`` is row ``n``.

    Returns
    -------
    np.ndarray
        int64 ``(N, *model.output_shape)``: the ``to_host`` node's outputs of each image
        (as :func:`run_nodes`).
    """
    nodes = getattr(program, "nodes", None)
    if not nodes:
        raise ValueError("run_pipelined: the program has no network nodes (compile with "
                         "--network --pipeline)")
    codes = np.asarray(codes, dtype=np.int64)
    count = codes.shape[0]
    flat = codes.reshape(count, -1)
    if flat.shape[1] != nodes[0].window.size:
        raise ValueError(f"run_pipelined: {flat.shape[1]} input codes per image, node 0 "
                         f"reads {nodes[0].window.size}")
    last = next((i for i, node in enumerate(nodes) if node.to_host), None)
    if last is None:
        raise ValueError("run_pipelined: no node sends its outputs to the host (to_host)")
    stages = [int(node.stage) for node in nodes[:last + 1]]
    engines = max(stages) + 1
    buffer = np.zeros((1, _depth(program)), dtype=np.int64)
    ou_rows = spec_ou_rows(qmodel)
    outputs: list = [None] * count
    for step in range(-1, count + engines - 1):
        if step + 1 < count:
            _write_input(buffer, nodes, flat[step + 1:step + 2], step + 1)
        for engine in range(engines):
            image = step - engine
            if not 0 <= image < count:
                continue
            for index in range(last + 1):
                if stages[index] == engine and _runs(nodes[index], image):
                    tensor = _step(buffer, program, qmodel, ou_rows, index, image)
                    if index == last:
                        outputs[image] = tensor[0]
    return np.stack(outputs).reshape(count, *qmodel.model.output_shape)


def _runs(node: NodeProgram, image: int) -> bool:
    """Whether ``node`` runs image ``image``: replica ``phase`` of a group of ``R`` runs
    the images ``n`` with ``n mod R == phase`` (docs/network.md 7.2); every other node
    runs every image."""
    return image % (1 << int(node.replicas_log2)) == int(node.phase)


def _depth(program) -> int:
    """Codes of the interpreter's buffer: the config's depth (at least the input's copies)."""
    first = program.nodes[0]
    return max(program.config.act_buffer_depth,
               first.window.size * max(1, int(first.input_copies)))


def _write_input(buffer: np.ndarray, nodes: list[NodeProgram], flat: np.ndarray,
                 image: int) -> None:
    """The input phase: image ``image``'s codes at its copy of the network input."""
    size = nodes[0].window.size
    copies = int(nodes[0].input_copies)
    base = (image % copies) * size if copies > 1 else 0
    buffer[:, base:base + size] = flat


def _step(buffer: np.ndarray, program, qmodel: QuantizedModel, ou_rows: int | None,
          index: int, image: int) -> np.ndarray:
    """Run node ``index`` on image ``image``'s copies; write its map (unless ``to_host``)
    and return its output ``(N, C, OH, OW)``."""
    node = program.nodes[index]
    src0, src1, dst = copy_offsets(program.nodes, index, image)
    moved = replace(node, window=replace(node.window, base=node.window.base + src0),
                    src1_base=node.src1_base + src1)
    out = _run_node(moved, buffer, program, qmodel, ou_rows)        # (N, P, C)
    out_h, out_w = node.window.out_hw()
    batch, channels = out.shape[0], out.shape[2]
    tensor = out.transpose(0, 2, 1).reshape(batch, channels, out_h, out_w)
    if not node.to_host:
        start = node.dst_base + dst
        buffer[:, start:start + channels * out_h * out_w] = tensor.reshape(batch, -1)
    return tensor


def _run_node(node: NodeProgram, buffer: np.ndarray, program, qmodel: QuantizedModel,
              ou_rows: int | None) -> np.ndarray:
    """One node's outputs ``(N, P, C)`` in producer order."""
    batch = buffer.shape[0]
    window = node.window
    values, pad = _read(buffer, window)                 # (N, P, C*KH*KW)
    pixels = values.shape[1]
    if node.kind == NodeKind.COMPUTE:
        # the weights are the quantized layer's; the output unit is the node's own layer
        # record's (a replica's record, docs/network.md section 7, is really the one used)
        record = program.layers[node.layer]
        qlayer = qmodel.layers[record.name]
        cols = values.reshape(batch * pixels, -1)
        acc = arith.compute_acc(qlayer, cols, ou_rows=ou_rows)
        y = arith.output_unit(acc, np.asarray(record.bias, dtype=np.int64),
                              np.asarray(record.mult, dtype=np.int64),
                              np.asarray(record.shift, dtype=np.int64),
                              int(record.zero_point), int(record.clamp_lo),
                              int(record.clamp_hi), str(record.mode))
        return y.reshape(batch, pixels, -1)
    if node.kind == NodeKind.ADD:
        other = WindowParams(window.channels, window.height, window.width,
                             base=node.src1_base)
        second, _ = _read(buffer, other)
        total = (node.mult_a * (values - node.zero_a) + node.mult_b * (second - node.zero_b))
        y = node.zero_point + arith.rounding_shift(total, node.shift)
        return np.clip(y, node.clamp_lo, node.clamp_hi)
    windows = values.reshape(batch, pixels, window.channels, -1)
    if node.kind == NodeKind.POOL_MAX:
        return windows.max(axis=-1)
    # average: floor((2*sum + count) / (2*count)), count the read (or all) elements
    size = windows.shape[-1]
    count = (np.int64(size) if node.count_include_pad
             else (~pad).reshape(pixels, window.channels, -1).sum(axis=-1))
    return (2 * windows.sum(axis=-1) + count) // (2 * count)
