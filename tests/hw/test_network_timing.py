"""hw/spec/net_timing: its constants are the units' latencies, its errors name the problem;
the synthesis check's memory inventory counts the network memories.

The formula itself is checked against the RTL counters in test_network_sequencer.py and
test_network_compiled.py; here: the constants restate what the units are built with (the
spec does not import hw/net), and bad calls fail clearly.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from bitline.hw.net import NetGeometry, PoolUnit
from bitline.hw.net.residual import RESIDUAL_STAGES
from bitline.hw.spec.net_timing import (
    READER_START_CYCLES,
    RESIDUAL_LATENCY,
    network_timing,
    node_timing,
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
