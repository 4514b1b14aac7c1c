"""Whole-network mode on the Accelerator (Amaranth simulator): the sequencer end to end.

A hand-built network over every node kind (support/network_bench.py: padded conv, max
pool, 1x1 conv, residual add, average pool with padding counted, global average pool,
gemm on a flattened map, raw gemm to the host), loaded as an image (its NETWORK section
through the loader into the node memory), runs from one CTRL.RUN_NETWORK:

* outputs bit-exact to a numpy statement of the node semantics (im2col, tensor_ops, the
  output unit), the run's and every node's counters equal to hw/spec/net_timing, and the
  OU reads / ADC conversions / reduction operands equal to the per-layer model
  (sw/perf.analyze_layer, a second count);
* a second run with random host backpressure: the same outputs and work counters, only
  cycles and stalls change (and by no more than the stalls);
* a layer job after the runs still works (outputs and counters of the layer mode);
* the same nodes cut after the residual add, which sends its codes to the host: bit-exact,
  and under output pauses every held cycle is one stall and one cycle more;
* a reset in the middle of a run (dirty partial sums): the next run is exact;
* errors: RUN_NETWORK without node records, or on a design without the network hardware
  (NO_NETWORK); the network design passes Verilator lint.

Runtime: three elaborations of a 4-unit network design and about 20,000 simulated cycles
(~55 s CPU for the file with the lint).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import ResetInserter, Signal

from bitline.hw.core.memories import program_memories
from bitline.hw.core.top import Accelerator
from bitline.hw.spec.net_timing import (
    INPUT_SETUP_CYCLES,
    NODE_START_CYCLES,
    NODE_SWITCH_CYCLES,
    network_timing,
)
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.program import Program
from bitline.hw.spec.registers import Ctrl, ErrorCode, Register, Status
from bitline.hw.toolchain.tools import verilator_lint
from bitline.sim.amaranth import csr_read, csr_write, load_image, run_job
from bitline.sw.bundle.codec import encode_image
from bitline.sw.perf import analyze_layer

from support.accelerator import assert_counters_match_model, expected_outputs
from support.configs import small_config
from support.network_bench import (
    NETWORK_CONFIG,
    HandNetwork,
    hand_network,
    reference_run,
    run_network,
)
from support.simulation import simulate

SEED = 2026


@pytest.fixture(scope="module")
def network():
    config = small_config(**NETWORK_CONFIG)
    rng = np.random.default_rng(SEED)
    net = hand_network(config, rng)
    images = [rng.integers(0, 1 << config.max_act_bits, net.input_shape)]
    first, _ = reference_run(config, net, images[0], config.act_buffer_depth)
    for _ in range(100):       # a second image the network tells apart from the first
        image = rng.integers(0, 1 << config.max_act_bits, net.input_shape)
        if not np.array_equal(reference_run(config, net, image,
                                            config.act_buffer_depth)[0], first):
            images.append(image)
            return config, net, images
    raise AssertionError("the hand network maps 100 random images to one output")


@pytest.fixture(scope="module")
def runs(network):
    """Load the image (NETWORK section through the loader's node_write), run image 0
    cleanly, image 1 with backpressure, image 0 again, then a layer job."""
    config, net, images = network
    dut = Accelerator(config)
    image = encode_image(Program(config=config, strategy="isaac", layers=net.layers,
                                 nodes=net.nodes))
    rng = np.random.default_rng(SEED + 1)
    vectors = rng.integers(0, 1 << config.max_act_bits, (3, net.layers[0].n_inputs))
    results = {}

    async def testbench(ctx):
        results["loaded"] = await load_image(ctx, dut, image)
        results["n_nodes"] = await csr_read(ctx, dut.csr, Register.N_NODES)
        n = len(net.nodes)
        results["clean"] = await run_network(ctx, dut, images[0], net.n_outputs, n_nodes=n)
        results["pressed"] = await run_network(ctx, dut, images[1], net.n_outputs,
                                               rng=rng, input_pause=0.4, output_pause=0.5,
                                               n_nodes=n)
        results["again"] = await run_network(ctx, dut, images[0], net.n_outputs)
        results["job"] = await run_job(ctx, dut, 0, vectors, net.layers[0].n_outputs)

    simulate(dut, testbench)
    results["vectors"] = vectors
    return results


def _timing(config, net):
    return network_timing(config, Program(config=config, strategy="isaac",
                                          layers=net.layers, nodes=net.nodes))


def _work(config, net):
    """OU reads, conversions and reduction operands of a run, from the per-layer model."""
    totals = dict(ou_reads=0, adc_conversions=0, reduction_operands=0)
    for node in net.nodes:
        if node.kind == NodeKind.COMPUTE:
            perf = analyze_layer(net.layers[node.layer], config, node.out_pixels)
            totals["ou_reads"] += perf.ou_reads
            totals["adc_conversions"] += perf.adc_conversions
            totals["reduction_operands"] += perf.reduction_transfers
    return totals


def test_run_is_bit_exact_to_the_node_semantics(network, runs):
    config, net, images = network
    assert runs["loaded"] == Status.PROGRAMMED
    assert runs["n_nodes"] == len(net.nodes)
    depth = config.act_buffer_depth
    for name, image in (("clean", images[0]), ("pressed", images[1]), ("again", images[0])):
        outputs, _, _, status = runs[name]
        expected, _ = reference_run(config, net, image, depth)
        np.testing.assert_array_equal(outputs, expected, err_msg=name)
        assert status & Status.DONE and not status & (Status.BUSY | Status.ERROR), name
    # the two images give different logits (the check sees the data)
    assert not np.array_equal(runs["clean"][0], runs["pressed"][0])


def test_counters_equal_the_timing_formula(network, runs):
    config, net, _ = network
    _, counters, nodes, _ = runs["clean"]
    total, timings = _timing(config, net)
    assert counters["cycles"] == total
    assert counters["stall_cycles"] == 0
    assert [n["node_cycles"] for n in nodes] == [t.cycles for t in timings]
    assert [n["node_input_stall"] for n in nodes] == [t.input_stall for t in timings]
    assert [n["node_output_stall"] for n in nodes] == [0] * len(nodes)
    # the run is its phases: the input codes, the nodes and the fixed per-node overhead
    n_in = int(np.prod(net.input_shape))
    assert counters["cycles"] == (INPUT_SETUP_CYCLES + n_in + NODE_START_CYCLES
                                  + sum(n["node_cycles"] for n in nodes)
                                  + (len(nodes) - 1) * NODE_SWITCH_CYCLES)
    for name, value in _work(config, net).items():
        assert counters[name] == value, name
    assert runs["again"][1] == counters


def test_backpressure_changes_only_cycles_and_stalls(network, runs):
    config, net, _ = network
    _, clean, clean_nodes, _ = runs["clean"]
    _, pressed, pressed_nodes, _ = runs["pressed"]
    for name in ("ou_reads", "adc_conversions", "reduction_operands"):
        assert pressed[name] == clean[name], name
    assert pressed["stall_cycles"] > 0
    assert clean["cycles"] < pressed["cycles"] <= clean["cycles"] + pressed["stall_cycles"]
    # inner nodes do not see the host; the last node's outputs waited for it
    assert pressed_nodes[:-1] == clean_nodes[:-1]
    assert pressed_nodes[-1]["node_output_stall"] > 0
    assert pressed_nodes[-1]["node_cycles"] > clean_nodes[-1]["node_cycles"]


def test_layer_job_after_network_runs(network, runs):
    config, net, _ = network
    outputs, counters, status = runs["job"]
    layer, weight = net.layers[0], net.weights[0]
    np.testing.assert_array_equal(outputs,
                                  expected_outputs(config, layer, weight, runs["vectors"]))
    assert status & Status.DONE and not status & Status.ERROR
    assert_counters_match_model(config, layer, len(runs["vectors"]), counters)


def _run_and_status(dut):
    status = {}

    async def testbench(ctx):
        await csr_write(ctx, dut.csr, Register.CTRL, Ctrl.RUN_NETWORK)
        await ctx.tick()
        status["after"] = await csr_read(ctx, dut.csr, Register.STATUS)
        status["nodes"] = await csr_read(ctx, dut.csr, Register.N_NODES)

    simulate(dut, testbench)
    return status


def test_run_without_nodes_is_no_network(network):
    config, net, _ = network
    status = _run_and_status(Accelerator(config, memories=program_memories(config,
                                                                           net.layers)))
    assert status["nodes"] == 0
    assert status["after"] & Status.ERROR
    assert status["after"] >> 8 == ErrorCode.NO_NETWORK
    assert not status["after"] & Status.BUSY


def test_run_without_network_hardware_is_no_network():
    config = small_config(max_layers=2, max_out_channels=8)
    assert not config.network
    status = _run_and_status(Accelerator(config))
    assert status["after"] >> 8 == ErrorCode.NO_NETWORK
    assert status["nodes"] == 0                 # N_NODES reads as an unmapped register


def test_network_design_passes_verilator_lint(network, tmp_path):
    config, _, _ = network
    path = tmp_path / "network_top.v"
    path.write_text(verilog.convert(Accelerator(config), name="network_top"))
    result = verilator_lint([path], "network_top")
    assert result.ok, result.log[-3000:]
    assert result.warnings == {}


def test_add_node_to_the_host_under_backpressure(network):
    """A run ending at the residual add: codes (zero-extended) to the host, the add and
    both readers held by the host's ready; clean run = net_timing."""
    config, net, images = network
    nodes = list(net.nodes[:4])
    nodes[-1] = replace(nodes[-1], to_host=True, dst_base=0)
    short = HandNetwork(net.layers, net.weights, nodes, net.input_shape)
    dut = Accelerator(config, memories=program_memories(config, net.layers, nodes=nodes))
    rng = np.random.default_rng(SEED + 2)
    results = []

    async def testbench(ctx):
        results.append(await run_network(ctx, dut, images[0], short.n_outputs,
                                         n_nodes=len(nodes)))
        results.append(await run_network(ctx, dut, images[1], short.n_outputs, rng=rng,
                                         output_pause=0.6, n_nodes=len(nodes)))

    simulate(dut, testbench)
    total, timings = _timing(config, short)
    for (outputs, counters, node_counters, _), image in zip(results, images):
        expected, _ = reference_run(config, short, image, config.act_buffer_depth)
        np.testing.assert_array_equal(outputs, expected)
    clean, pressed = results[0][1], results[1][1]
    assert clean["cycles"] == total and clean["stall_cycles"] == 0
    assert [n["node_cycles"] for n in results[0][2]] == [t.cycles for t in timings]
    assert pressed["stall_cycles"] == results[1][2][-1]["node_output_stall"] > 0
    assert pressed["cycles"] == total + pressed["stall_cycles"]


def test_reset_mid_run_then_rerun_is_exact(network):
    """A reset in the middle of node 0's compute (partial sums dirty, docs/hardware.md
    "Reset and recovery"): the sweep runs, and the next run is bit-exact with the formula's
    counters."""
    config, net, images = network
    dut = Accelerator(config, memories=program_memories(config, net.layers, nodes=net.nodes))
    rst = Signal()
    top = ResetInserter({"sync": rst})(dut)
    codes = [int(c) for c in images[0].reshape(-1)]
    seen = {}

    async def testbench(ctx):
        await csr_write(ctx, dut.csr, Register.CTRL, Ctrl.RUN_NETWORK)
        sent = 0
        for _ in range(len(codes) + 300):               # the input phase, then into conv1
            ctx.set(dut.inputs.valid, int(sent < len(codes)))
            ctx.set(dut.inputs.payload, [codes[min(sent, len(codes) - 1)]])
            taken = sent < len(codes) and ctx.get(dut.inputs.ready)
            await ctx.tick()
            sent += bool(taken)
        ctx.set(dut.inputs.valid, 0)
        seen["reads"] = await csr_read(ctx, dut.csr, Register.OU_READS_LO)
        seen["busy"] = await csr_read(ctx, dut.csr, Register.STATUS)
        ctx.set(rst, 1)
        await ctx.tick().repeat(2)
        ctx.set(rst, 0)
        seen["after_reset"] = await csr_read(ctx, dut.csr, Register.STATUS)
        for _ in range(4 * config.max_out_channels):
            if await csr_read(ctx, dut.csr, Register.STATUS) & Status.PROGRAMMED:
                break
        seen["run"] = await run_network(ctx, dut, images[0], net.n_outputs)

    simulate(top, testbench)
    assert seen["busy"] & Status.BUSY and seen["reads"] > 0       # cut inside conv1
    assert not seen["after_reset"] & (Status.BUSY | Status.DONE | Status.ERROR)
    assert not seen["after_reset"] & Status.PROGRAMMED        # sweeping the partial sums
    outputs, counters, _, status = seen["run"]
    expected, _ = reference_run(config, net, images[0], config.act_buffer_depth)
    np.testing.assert_array_equal(outputs, expected)
    assert counters["cycles"] == _timing(config, net)[0]
    assert status & Status.DONE and not status & Status.ERROR
