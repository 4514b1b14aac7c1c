"""Whole-network runs on the Accelerator in the Amaranth simulator (tests/hw/test_network_*).

:func:`hand_network` builds a small seeded network by hand (layer programs from
:func:`support.accelerator.make_layer`, node records from
:class:`bitline.hw.spec.network.NodeProgram`): a padded 3x3 conv, a max pool, a 1x1 conv,
a residual add, an average pool with its padding counted, a global average pool and a raw
gemm on the flattened map to the host. :func:`reference_run` executes node records on a
flat numpy buffer with the host-side tensor operations (``sw.frontend.im2col``,
``sw.integer.tensor_ops``, the output unit of ``sw.integer.arith``) - an independent
statement of what the sequencer must compute. :func:`run_network` is the host side of one
run (CTRL.RUN_NETWORK, the input codes, the outputs, the counters).

The inter-layer pipeline (docs/network.md section 6): :func:`pipelined` gives the same
network the pipeline fields and the copy-aware layout of sections 6.2-6.3 for a stage per
node (what ``compile --network --pipeline`` does, restated here so the RTL tests stand
alone); :func:`run_network` with ``images`` > 1 codes streams them all after N_IMAGES.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bitline.hw.spec.network import NodeKind, NodeProgram, WindowParams
from bitline.hw.spec.registers import (
    COUNTERS,
    IMAGE_COUNTERS,
    NODE_COUNTERS,
    Ctrl,
    Register,
    Status,
)
from bitline.sim.amaranth import csr_read, csr_write
from bitline.sw.frontend.im2col import im2col
from bitline.sw.integer import tensor_ops
from bitline.sw.integer.qmodel import ActParams

from support.accelerator import expected_outputs, make_layer

__all__ = ["NETWORK_CONFIG", "PIPELINE_CONFIG", "REPLICA_CONFIG", "HandNetwork",
           "hand_network", "pipelined", "replicated", "node_sources", "reference_run",
           "run_network", "read_node_counters"]


@dataclass
class HandNetwork:
    """Layers (with their weight matrices), nodes and the input map's shape."""

    layers: list
    weights: list[np.ndarray]
    nodes: list[NodeProgram]
    input_shape: tuple[int, int, int]

    @property
    def n_outputs(self) -> int:
        return self.nodes[-1].dst_size


#: Overrides of :func:`support.configs.small_config` that hold :func:`hand_network`: one
#: 32 x 32 crossbar per layer, a 256-code buffer, maps up to 5 x 5 x 5.
NETWORK_CONFIG = dict(rows=32, cols=32, n_xbars=4, act_buffer_depth=256, max_nodes=8,
                      max_map_channels=5, max_map_height=5, max_map_width=5)


#: :data:`NETWORK_CONFIG` with the inter-layer pipeline: one engine per node of
#: :func:`hand_network` and the buffer its copies need (488 codes with a stage per node).
PIPELINE_CONFIG = dict(NETWORK_CONFIG, act_buffer_depth=512, pipeline_stages=8)

#: :data:`PIPELINE_CONFIG` for :func:`hand_network` with one layer replicated twice
#: (:func:`replicated`): a node, an engine, a layer record and a unit more, and the buffer
#: for the replicas' extra copies (613 codes with ``conv1`` replicated).
REPLICA_CONFIG = dict(PIPELINE_CONFIG, n_xbars=5, max_layers=8, max_nodes=9,
                      pipeline_stages=9, act_buffer_depth=1024)


def hand_network(config, rng, strategy="isaac") -> HandNetwork:
    """A seeded network over every node kind (module docstring) for :data:`NETWORK_CONFIG`.

    ``fc1`` (a requantizing gemm on a flattened 2x2 map) feeds nothing: the hardware runs
    it all the same; ``gap`` -> ``fc2`` is the chain to the host.
    """
    act_max = (1 << config.max_act_bits) - 1
    c0, h, w = 2, 5, 5
    layers, weights, nodes = [], [], []

    def layer(n_outputs, n_inputs, mode="requant"):
        offset = sum(len(program.xbars) for program in layers)   # consecutive units
        program, weight = make_layer(config, strategy, rng, n_outputs=n_outputs,
                                     n_inputs=n_inputs, act_bits=config.max_act_bits,
                                     mode=mode, xbar_offset=offset,
                                     name=f"layer{len(layers)}")
        if mode == "requant":
            # codes centred at the zero point with a spread of a few codes: a typical
            # accumulator (|w| ~ 4, x ~ 8 per input) maps to about +-4 codes
            spread = np.sqrt(n_inputs) * 4 * 8
            program.zero_point = 1 << (config.max_act_bits - 1)
            program.shift = np.full(n_outputs, 15 + int(np.ceil(np.log2(spread / 4))))
        layers.append(program)
        weights.append(weight)
        return len(layers) - 1

    # input 2x5x5 at 0 (50 codes); maps below are placed by hand, none overlapping a live
    # source
    conv1 = layer(3, c0 * 9)
    nodes.append(NodeProgram(NodeKind.COMPUTE, WindowParams(
        c0, h, w, kernel=(3, 3), pads=(1, 1, 1, 1), pad_value=int(rng.integers(0, act_max))),
        dst_base=64, dst_channels=3, layer=conv1, name="conv1"))          # 3x5x5 at 64
    nodes.append(NodeProgram(NodeKind.POOL_MAX, WindowParams(
        3, h, w, kernel=(2, 2), stride=(2, 2), pads=(0, 0, 1, 1), base=64),
        dst_base=0, dst_channels=3, name="maxpool"))                      # 3x3x3 at 0
    conv2 = layer(3, 3)
    nodes.append(NodeProgram(NodeKind.COMPUTE, WindowParams(3, 3, 3, base=0),
                             dst_base=32, dst_channels=3, layer=conv2, name="conv2"))
    middle = 1 << (config.max_act_bits - 1)
    zero_a, zero_b = (int(v) for v in rng.integers(middle - 2, middle + 3, 2))
    zero_y = middle
    nodes.append(NodeProgram(NodeKind.ADD, WindowParams(3, 3, 3, base=0), src1_base=32,
                             dst_base=64, dst_channels=3, zero_a=zero_a, zero_b=zero_b,
                             zero_point=zero_y, clamp_lo=1, clamp_hi=act_max - 1,
                             mult_a=int(rng.integers(1 << 14, 1 << 15)),
                             mult_b=-int(rng.integers(1 << 13, 1 << 15)), shift=14,
                             name="add"))                                 # 3x3x3 at 64
    nodes.append(NodeProgram(NodeKind.POOL_AVG, WindowParams(
        3, 3, 3, kernel=(2, 2), stride=(2, 2), pads=(1, 1, 0, 0), base=64,
        pad_value=zero_y), dst_base=0, dst_channels=3, count_include_pad=True,
        name="avgpool"))                                                  # 3x2x2 at 0
    nodes.append(NodeProgram(NodeKind.POOL_AVG, WindowParams.flatten(3, 2, 2, base=0),
                             dst_base=16, dst_channels=3, name="gap"))    # 3x1x1 at 16
    gemm1 = layer(4, 3 * 2 * 2)
    nodes.append(NodeProgram(NodeKind.COMPUTE, WindowParams.flatten(3, 2, 2, base=0),
                             dst_base=24, dst_channels=4, layer=gemm1, name="fc1"))
    gemm2 = layer(5, 3, mode="raw")
    nodes.append(NodeProgram(NodeKind.COMPUTE, WindowParams.flatten(3, 1, 1, base=16),
                             dst_base=0, dst_channels=5, layer=gemm2, to_host=True,
                             name="fc2"))
    return HandNetwork(layers, weights, nodes, (c0, h, w))


def reference_run(config, network: HandNetwork, codes: np.ndarray, depth: int) -> tuple:
    """Run the nodes on a flat buffer; return ``(host outputs, buffer)``.

    Outputs of the ``to_host`` node in producer order (pixel-major, channel innermost).
    """
    buffer = np.zeros(depth, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    buffer[:codes.size] = codes
    for node in network.nodes:
        window = node.window
        size = window.size
        source = buffer[window.base:window.base + size].reshape(
            1, window.channels, window.height, window.width)
        kind = NodeKind(node.kind)
        if kind == NodeKind.COMPUTE:
            vectors = im2col(source, window.kernel, window.stride, window.pads,
                             window.dilation, pad_value=window.pad_value)[0]
            out = expected_outputs(config, network.layers[node.layer],
                                   network.weights[node.layer], vectors)   # (P, O)
            produced = out.reshape(-1)
            mapped = out.T.reshape(-1)
        else:
            if kind == NodeKind.POOL_MAX:
                out = tensor_ops.maxpool(source, window.kernel, window.stride, window.pads)
            elif kind == NodeKind.POOL_AVG:
                out = tensor_ops.avgpool(source, window.kernel, window.stride, window.pads,
                                         count_include_pad=node.count_include_pad,
                                         zero_point=window.pad_value)
            else:
                other = buffer[node.src1_base:node.src1_base + size].reshape(source.shape)
                out = tensor_ops.add(
                    source, other, ActParams(config.max_act_bits, 1.0, node.zero_a),
                    ActParams(config.max_act_bits, 1.0, node.zero_b),
                    [node.mult_a, node.mult_b], [node.shift, node.shift], node.zero_point,
                    node.clamp_lo, node.clamp_hi)
            mapped = out.reshape(-1)
            produced = out.reshape(out.shape[1], -1).T.reshape(-1)
        if node.to_host:
            return produced, buffer
        buffer[node.dst_base:node.dst_base + mapped.size] = mapped
    raise AssertionError("no to_host node")


async def read_node_counters(ctx, csr, node: int) -> dict[str, int]:
    """Select ``node`` (NODE register) and return its counters by name."""
    await csr_write(ctx, csr, Register.NODE, node)
    values = {}
    for name, low in NODE_COUNTERS:
        values[name] = ((await csr_read(ctx, csr, low))
                        | (await csr_read(ctx, csr, low + 1)) << 32)
    return values


async def run_network(ctx, dut, codes, n_outputs: int, *, rng=None, input_pause=0.0,
                      output_pause=0.0, n_nodes: int = 0, max_cycles: int = 200_000,
                      n_images: int | None = None):
    """One whole-network run; return ``(outputs, counters, node counters, status)``.

    The host offers the next input code every cycle and takes every output, except with
    probability ``input_pause`` / ``output_pause`` per cycle (``rng``). ``n_nodes`` > 0
    reads that many nodes' counters after the run. ``n_images`` (pipeline hardware) is
    written to N_IMAGES first; ``codes`` then holds every image's codes and
    ``n_outputs`` every image's outputs. On pipeline hardware ``counters`` also has
    ``latency`` and ``interval``.
    """
    codes = [int(c) for c in np.asarray(codes).reshape(-1)]
    lanes = dut.config.max_copies
    if n_images is not None:
        await csr_write(ctx, dut.csr, Register.N_IMAGES, n_images)
    await csr_write(ctx, dut.csr, Register.CTRL, Ctrl.RUN_NETWORK)
    sent, outputs = 0, []
    for _ in range(max_cycles):
        offer = sent < len(codes) and not (input_pause and rng.random() < input_pause)
        take = not (output_pause and rng.random() < output_pause)
        ctx.set(dut.inputs.valid, int(offer))
        ctx.set(dut.inputs.payload, [codes[sent] if offer else 0] + [0] * (lanes - 1))
        ctx.set(dut.outputs.ready, int(take))
        taken_in = offer and ctx.get(dut.inputs.ready)
        taken_out = take and ctx.get(dut.outputs.valid)
        value = ctx.get(dut.outputs.payload)
        await ctx.tick()
        sent += bool(taken_in)
        if taken_out:
            outputs.append(int(value[0]))
            if len(outputs) == n_outputs:
                break
    else:
        raise TimeoutError(f"network run did not finish in {max_cycles} cycles ({sent} "
                           f"inputs sent, {len(outputs)} outputs)")
    ctx.set(dut.inputs.valid, 0)
    ctx.set(dut.outputs.ready, 0)
    await ctx.tick()
    status = await csr_read(ctx, dut.csr, Register.STATUS)
    for _ in range(max_cycles if dut.config.pipeline else 0):
        # pipeline: a node that feeds no one (the hand network's fc1) may end after the
        # last output
        if not status & Status.BUSY:
            break
        status = await csr_read(ctx, dut.csr, Register.STATUS)
    counters = {}
    for name, low in COUNTERS + (IMAGE_COUNTERS if dut.config.pipeline else ()):
        counters[name] = ((await csr_read(ctx, dut.csr, low))
                          | (await csr_read(ctx, dut.csr, low + 1)) << 32)
    nodes = [await read_node_counters(ctx, dut.csr, index) for index in range(n_nodes)]
    if status & Status.BUSY:
        raise AssertionError("accelerator still busy after the run's last output")
    return np.array(outputs, dtype=np.int64), counters, nodes, status


def node_sources(nodes) -> list[tuple[int, int]]:
    """``(src0_node, src1_node)`` of each node of a slot-reusing (sequential) layout.

    A source is the latest earlier node whose output map starts at the source's base
    (``j + 1``; a group of replicas is named by its first node, docs/network.md 7.1), or
    the network input (0); ``src1_node`` is 0 but for an ADD.
    """
    sources = []
    for index, node in enumerate(nodes):
        def producer(base):
            for j in range(index - 1, -1, -1):
                if not nodes[j].to_host and nodes[j].dst_base == base:
                    return j - nodes[j].phase + 1
            return 0
        second = producer(node.src1_base) if node.kind == NodeKind.ADD else 0
        sources.append((producer(node.window.base), second))
    return sources


def pipelined(network: HandNetwork, stages: list[int]) -> HandNetwork:
    """``network`` with the pipeline fields and layout of docs/network.md 6.2-6.3.

    ``stages`` gives each node's engine (non-decreasing). ``copies_i = max(1, max over
    consumers c of stage_c - stage_i + 1)``, ``input_copies = max over input readers c of
    stage_c + 2`` (on node 0); the regions are allocated in order without reuse: the
    input's copies from 0, then each node's copies (``window.base`` / ``src1_base`` are
    the producer's copy 0).
    """
    nodes = network.nodes
    sources = node_sources(nodes)

    def readers(value):
        return [c for c, (s0, s1) in enumerate(sources)
                if s0 == value or (nodes[c].kind == NodeKind.ADD and s1 == value)]

    # a group of replicas (docs/network.md 7.1-7.3): copies from its earliest stage, one
    # region for the group
    first = [i - node.phase for i, node in enumerate(nodes)]
    earliest = [min(stages[j] for j in range(len(nodes)) if first[j] == first[i])
                for i in range(len(nodes))]
    copies = [max([1] + [stages[c] - earliest[i] + 1 for c in readers(first[i] + 1)])
              for i in range(len(nodes))]
    input_copies = max(stages[c] + 2 for c in readers(0))
    input_size = int(np.prod(network.input_shape))
    bases, end = [0], input_copies * input_size
    for index, (node, count) in enumerate(zip(nodes, copies)):
        if node.phase:
            bases.append(bases[first[index] + 1])
            continue
        bases.append(0 if node.to_host else end)
        end += 0 if node.to_host else count * node.dst_size
    result = []
    for index, (node, (s0, s1)) in enumerate(zip(nodes, sources)):
        result.append(replace(
            node, window=replace(node.window, base=bases[s0]),
            src1_base=bases[s1] if node.kind == NodeKind.ADD else 0,
            dst_base=bases[index + 1], stage=stages[index],
            copies=1 if node.to_host else copies[index],
            input_copies=input_copies if index == 0 else 0, src0_node=s0, src1_node=s1))
    return HandNetwork(network.layers, network.weights, result, network.input_shape)


def buffer_codes(network: HandNetwork) -> int:
    """Codes a pipelined network's regions take (the input's copies and every map's; a
    group of replicas has one)."""
    first = network.nodes[0]
    used = first.input_copies * int(np.prod(network.input_shape))
    return used + sum(node.copies * node.dst_size for node in network.nodes
                      if not node.to_host and not node.phase)


def replicated(network: HandNetwork, name: str, replicas: int) -> HandNetwork:
    """``network`` with its COMPUTE node ``name`` run by a group of ``replicas`` nodes.

    docs/network.md 7.1: the node's record is repeated ``replicas`` times (phases 0 ..
    R-1, ``replicas_log2``); replica ``k > 0`` runs a further layer record appended to the
    layer table, the layer's entries on fresh units after the highest used one (as
    ``Program.with_copies`` places lanes). Apply before :func:`pipelined` (which gives
    the group one region and its consumers the group's first node as source).
    """
    log2 = int(replicas).bit_length() - 1
    if replicas < 1 or 1 << log2 != replicas:
        raise ValueError(f"replicas: {replicas} is not a power of two")
    (index,) = [i for i, node in enumerate(network.nodes) if node.name == name]
    node = network.nodes[index]
    if NodeKind(node.kind) != NodeKind.COMPUTE:
        raise ValueError(f"replicas: node {name!r} is not a COMPUTE node")
    layers, weights = list(network.layers), list(network.weights)
    original = layers[node.layer]
    next_unit = 1 + max(int(np.asarray(layer.all_xbars).max()) for layer in layers)
    units = np.asarray(original.xbars, dtype=np.int64).reshape(-1)
    group = [replace(node, replicas_log2=log2, phase=0)]
    for phase in range(1, replicas):
        fresh = np.arange(next_unit, next_unit + units.size, dtype=np.int64)
        next_unit += units.size
        entries = np.array(original.entries, copy=True)
        lookup = dict(zip(units.tolist(), fresh.tolist()))
        entries["xbar"] = [lookup[int(unit)] for unit in entries["xbar"]]
        layers.append(replace(original, xbars=fresh.reshape(np.shape(original.xbars)),
                              entries=entries, name=f"{original.name}_r{phase}"))
        weights.append(weights[node.layer])
        group.append(replace(node, layer=len(layers) - 1, replicas_log2=log2, phase=phase,
                             name=f"{name}_r{phase}"))
    nodes = list(network.nodes[:index]) + group + list(network.nodes[index + 1:])
    return HandNetwork(layers, weights, nodes, network.input_shape)
