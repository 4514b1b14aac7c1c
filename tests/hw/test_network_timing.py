"""hw/spec/net_timing: its constants are the units' latencies, its errors name the problem;
the synthesis check's memory inventory counts the network memories; the pipeline's
schedule in closed form for one engine, its dependencies, its errors.

The formula itself is checked against the RTL counters in test_network_sequencer.py and
test_network_compiled.py; here: the constants restate what the units are built with (the
spec does not import hw/net), and bad calls fail clearly.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from bitline.hw.net import NetGeometry, PoolUnit
from bitline.hw.net.residual import RESIDUAL_STAGES
from bitline.hw.spec.net_timing import (
    NODE_SWITCH_CYCLES,
    READER_START_CYCLES,
    RESIDUAL_LATENCY,
    network_timing,
    node_timing,
    pipeline_schedule,
    pool_latency,
    run_cycles,
)
from bitline.hw.spec.network import NodeKind, NodeProgram, WindowParams
from bitline.hw.spec.program import Program

from support.configs import small_config
from support.network_bench import NETWORK_CONFIG, hand_network

CONFIG = small_config(**NETWORK_CONFIG)


def test_constants_are_the_units_latencies():
    assert RESIDUAL_LATENCY == len(RESIDUAL_STAGES)
    geometry = NetGeometry.from_config(CONFIG)
    pool = PoolUnit(geometry)
    pool._MustUse__silence = True           # built for its latency only, never elaborated
    assert pool_latency(CONFIG) == pool.latency
    # the reader's first element is valid 4 cycles after start (test_net_im2col): the
    # cycles after START without an element are 3
    assert READER_START_CYCLES == 3


def test_pool_and_add_nodes_count_their_elements():
    window = WindowParams(3, 5, 5, kernel=(2, 2), stride=(2, 2), pads=(0, 0, 1, 1))
    pool = NodeProgram(NodeKind.POOL_MAX, window, dst_base=0, dst_channels=3)
    assert node_timing(CONFIG, pool).cycles == 3 + 9 * 3 * 4 + CONFIG.max_act_bits + 1
    add = NodeProgram(NodeKind.ADD, WindowParams(3, 3, 3), dst_base=32, dst_channels=3,
                      src1_base=64)
    assert node_timing(CONFIG, add).cycles == 3 + 27 + 5
    assert node_timing(CONFIG, add).input_stall == 3


def test_run_adds_the_input_phase_and_the_node_switches():
    assert run_cycles(50, [10]) == 3 + 50 + 2 + 10
    assert run_cycles(50, [10, 20, 30]) == 3 + 50 + 2 + 60 + 2 * 4


def test_errors_name_the_problem():
    net = hand_network(CONFIG, np.random.default_rng(0))
    with pytest.raises(ValueError, match="COMPUTE node's timing needs its layer"):
        node_timing(CONFIG, net.nodes[0])
    with pytest.raises(ValueError, match="at least one node"):
        run_cycles(10, [])
    with pytest.raises(ValueError, match="no network nodes"):
        network_timing(CONFIG, Program(config=CONFIG, strategy="isaac", layers=net.layers))


def test_memory_inventory_counts_the_network_memories(tmp_path):
    """The synthesis check's inventory (config fields alone) lists the network design's
    memories: the buffer, the node records and the node counters."""
    from bitline.hw.toolchain.synth_check import memory_inventory
    from bitline.hw.toolchain.verilog import write_verilog

    design = write_verilog(CONFIG, tmp_path)
    # every memory declaration of the Verilog, as (depth, width) (test_synth_check.py)
    declared = sorted((int(depth) + 1, int(width or 0) + 1) for width, depth in re.findall(
        r"^\s*reg (?:\[(\d+):0\] )?\S+ ?\[(\d+):0\];$", design.verilog.read_text(), re.M))
    counted = sorted((kind.depth, kind.width) for kind in memory_inventory(CONFIG)
                     for _ in range(kind.count))
    assert declared == counted
    base = memory_inventory(small_config(rows=32, cols=32, n_xbars=4))
    assert len(memory_inventory(CONFIG)) == len(base) + 3


# ---------------------------------------------------------------- the pipeline's schedule
def _pipelined_program(engines: int, stages):
    from support.network_bench import PIPELINE_CONFIG, pipelined

    config = small_config(**dict(PIPELINE_CONFIG, pipeline_stages=engines))
    net = pipelined(hand_network(config, np.random.default_rng(0)), stages)
    return config, Program(config=config, strategy="isaac", layers=net.layers,
                           nodes=net.nodes)


def test_one_engine_schedule_is_the_sequential_run_in_closed_form():
    """A second count of the recurrence: with one engine the nodes run back to back. One
    image: the sequential run's phases but INIT (n + 1 cycles, then the engine's FETCH,
    LOAD, SETUP overlap the input) - CYCLES = run_cycles + n - 2; later images need no
    input wait (2 input copies), so INTERVAL = sum of node cycles + 4 per node."""
    config, program = _pipelined_program(1, [0] * 8)
    n = len(program.nodes)
    _, timings = network_timing(config, program)
    node_cycles = [t.cycles for t in timings]
    one = pipeline_schedule(config, program, 1)
    assert one.cycles == run_cycles(program.nodes[0].window.size, node_cycles) + n - 2
    assert one.latency == one.cycles and one.interval == 0
    # node 0 sets up 3 cycles after the writer's first code and waits for the last one
    waited = program.nodes[0].window.size - 3
    assert [t.input_stall for t in one.nodes] == \
        [READER_START_CYCLES + waited] + [READER_START_CYCLES] * (n - 1)
    four = pipeline_schedule(config, program, 4)
    assert four.interval == sum(node_cycles) + NODE_SWITCH_CYCLES * n
    assert four.cycles == one.cycles + 3 * four.interval
    assert [t.cycles for t in four.nodes] == [4 * c for c in node_cycles]
    assert all(t.output_stall == 0 for t in four.nodes)


def test_schedule_orders_every_dependency():
    """Per image: a node starts after its sources' ends and after its engine's previous
    node; a producer starts image k only after its readers ended image k - copies."""
    config, program = _pipelined_program(3, [0, 0, 1, 1, 1, 2, 2, 2])
    schedule = pipeline_schedule(config, program, 5)
    start, end, nodes = schedule.start, schedule.end, program.nodes
    assert (end - start == np.array([[t.cycles // 5] for t in schedule.nodes])).all()
    for index, node in enumerate(nodes):
        sources = [node.src0_node] + ([node.src1_node] if node.kind == NodeKind.ADD else [])
        for source in sources:
            ready = schedule.input_end if source == 0 else end[source - 1]
            assert (start[index] > ready + 1).all()
        for reader, other in enumerate(nodes):
            if index + 1 in (other.src0_node, other.src1_node):
                k = node.copies
                assert (start[index, k:] > end[reader, :-k] + 1).all()
    for stage in range(3):
        members = [i for i, node in enumerate(nodes) if node.stage == stage]
        order = sorted((start[i, k], end[i, k]) for i in members for k in range(5))
        assert all(b_start > a_end + 3 for (_, a_end), (b_start, _) in zip(order, order[1:]))
    assert schedule.cycles == end.max() + 1


def test_schedule_errors_name_the_problem():
    config, program = _pipelined_program(8, list(range(8)))
    with pytest.raises(ValueError, match="n_images must be >= 0"):
        pipeline_schedule(config, program, -1)
    broken = replace(program, nodes=[replace(program.nodes[0], input_copies=0)]
                     + program.nodes[1:])
    with pytest.raises(ValueError, match="node 0: field input_copies: 0"):
        pipeline_schedule(config, broken, 2)
    broken = replace(program, nodes=program.nodes[:2]
                     + [replace(program.nodes[2], src0_node=5)] + program.nodes[3:])
    with pytest.raises(ValueError, match="node 2: field src0_node: 5"):
        pipeline_schedule(config, broken, 2)
    with pytest.raises(ValueError, match="no network nodes"):
        pipeline_schedule(config, replace(program, nodes=None), 1)


def _replicated_program(stages, name="conv1"):
    from support.network_bench import REPLICA_CONFIG, pipelined, replicated
    config = small_config(**dict(REPLICA_CONFIG, pipeline_stages=max(stages) + 1))
    net = pipelined(replicated(hand_network(config, np.random.default_rng(2026)), name, 2),
                    stages)
    return config, Program(config=config, strategy="isaac", layers=net.layers,
                           nodes=net.nodes)


@pytest.mark.parametrize("name, stages, count", [
    ("conv1", list(range(9)), 5), ("conv2", [0, 1, 2, 3, 3, 3, 3, 3, 3], 3)])
def test_replica_schedule_orders_every_group_dependency(name, stages, count):
    """docs/network.md 7.2 checked on the schedule a second way: conv1 by 2 replicas on
    their own engines, 5 images; conv2 by 2 replicas, replica 1 sharing engine 3 with
    the add (its consumer) and the rest, 3 images: each replica runs exactly the images
    of its phase; every image starts after its source
    group's member for that image ended it, and after each consumer group's member for
    image n - copies ended that; the input writer takes image n after the readers ended
    n - input_copies; an engine's images never overlap; NODE_CYCLES = images run x node
    time."""
    config, program = _replicated_program(stages, name)
    nodes = program.nodes
    schedule = pipeline_schedule(config, program, count)
    start, end = schedule.start, schedule.end
    phase_of = [(node.phase, 1 << node.replicas_log2) for node in nodes]
    assert [node.name for node in nodes if node.replicas_log2] == [name, name + "_r1"]
    first = [i - node.phase for i, node in enumerate(nodes)]
    ran = end >= 0
    for index, (phase, replicas) in enumerate(phase_of):
        assert ran[index].tolist() == [n % replicas == phase for n in range(count)], index

    def member(group, n):
        return group + n % (1 << nodes[group].replicas_log2)

    _, timings = network_timing(config, replace(program, nodes=[
        replace(node, replicas_log2=0, phase=0) for node in nodes]))
    for index, node in enumerate(nodes):
        images = np.flatnonzero(ran[index])
        assert schedule.nodes[index].cycles == len(images) * timings[index].cycles
        sources = [node.src0_node] + ([node.src1_node] if node.kind == NodeKind.ADD else [])
        for n in images:
            for source in sources:
                ready = (schedule.input_end[n] if source == 0
                         else end[member(source - 1, n), n])
                assert start[index, n] > ready + 1
            k = node.copies
            for reader, other in enumerate(nodes):
                if first[index] + 1 in (other.src0_node, other.src1_node) and n >= k \
                        and other.phase == 0:
                    assert start[index, n] > end[member(reader, n - k), n - k] + 1
    k = nodes[0].input_copies
    readers = [i for i, node in enumerate(nodes) if node.src0_node == 0 and node.phase == 0]
    for n in range(k, count):
        taken = schedule.input_end[n] - nodes[0].window.size + 1
        assert all(taken > end[member(c, n - k), n - k] for c in readers)
    for stage in range(max(stages) + 1):
        spans = sorted((start[i, n], end[i, n]) for i, node in enumerate(nodes)
                       if node.stage == stage for n in np.flatnonzero(ran[i]))
        assert all(b > a_end + 3 for (_, a_end), (b, _) in zip(spans, spans[1:]))
    assert schedule.cycles == end.max() + 1


def test_replica_sharing_an_engine_with_its_consumer_deadlocks_in_long_runs():
    """Round-robin on a shared engine runs the replica's images 2j + 1 beside its
    consumer's j: with conv2's replica 1 before the add on engine 3, image 3 needs the
    add's image 1 (copies 2), which the engine runs after it. The schedule says so
    (the compiler gives every replica its own engine, docs/network.md 7.3)."""
    config, program = _replicated_program([0, 1, 2, 3, 3, 3, 3, 3, 3], "conv2")
    assert pipeline_schedule(config, program, 3).cycles > 0
    with pytest.raises(ValueError, match="wait on each other forever"):
        pipeline_schedule(config, program, 4)


def test_replica_schedule_errors_name_the_node():
    config, program = _replicated_program(list(range(9)))
    nodes = program.nodes
    broken = replace(program, nodes=[nodes[0], replace(nodes[1], phase=2)] + nodes[2:])
    with pytest.raises(ValueError, match="node 1: field phase: 2 is not below the group's 2"):
        pipeline_schedule(config, broken, 2)
    broken = replace(program, nodes=[nodes[0], replace(nodes[1], replicas_log2=0, phase=0)]
                     + nodes[2:])
    with pytest.raises(ValueError, match="node 0: field replicas_log2: the group of 2"):
        pipeline_schedule(config, broken, 2)
    broken = replace(program, nodes=[replace(nodes[0], replicas_log2=0)] + nodes[1:])
    with pytest.raises(ValueError, match="node 1: field phase: 1, but nodes 0 .. 0"):
        pipeline_schedule(config, broken, 2)
