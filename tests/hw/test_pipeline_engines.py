"""The inter-layer pipeline (docs/network.md section 6) on the Accelerator, Amaranth simulator.

The hand-built network of support/network_bench.py (every node kind) with the pipeline
fields and the copy-aware layout of section 6.3 (``pipelined``), loaded as an image (the
NETWORK section through the loader), one engine per node:

* 3 images in one run: every image's outputs bit-exact to the numpy node semantics the
  sequential test uses; CYCLES, LATENCY, INTERVAL and every node's NODE_* counters equal
  ``net_timing.pipeline_schedule``; the OU reads / conversions / operands are 3 times the
  per-layer model's; INTERVAL is below the sequential design's CYCLES per image;
* 2 images with random host pauses on inputs and outputs: the same outputs and work, only
  stalls and cycles change; N_IMAGES = 0 runs one image; a layer job after the runs;
* the network without its first conv (a max pool first, so a producer outruns its
  consumer and waits for a free output copy), on 2 engines (nodes grouped), once with the
  rule's copies and once with a map's copies forced to 1: exact, counters equal the
  schedule, the forced run slower;
* a reset in the middle of a run: the next run is exact;
* a slot-reusing (sequential) layout run pipelined corrupts the outputs: the bit-exact
  check fails on it (the check sees a wrong buffer layout);
* N_IMAGES / LATENCY / INTERVAL read 0 on the sequential design; Verilator lint of a
  pipelined design;
* layer replicas (section 7): conv1 by 2 replicas on their own engines and units, 4 and
  3 images: exact, counters equal the schedule, INTERVAL and CYCLES below the
  unreplicated run's, and a one-image run (replica 1 runs nothing); a replica sharing an engine refused.

Runtime: ~90 s CPU on the loaded 2-core machine (the 8-engine runs ~25 s, the 9-engine
replica runs ~30 s, six 2/3-engine designs ~25 s, the lint ~8 s).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import ResetInserter, Signal

from bitline.hw.spec.validate import validate_program
from bitline.hw.core.memories import program_memories
from bitline.hw.core.top import Accelerator
from bitline.hw.spec.net_timing import network_timing, pipeline_schedule
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.program import Program
from bitline.hw.spec.registers import Ctrl, Register, Status
from bitline.hw.toolchain.tools import verilator_lint
from bitline.sim.amaranth import csr_read, csr_write, load_image, run_job
from bitline.sw.bundle.codec import encode_image
from bitline.sw.perf import analyze_layer

from support.accelerator import expected_outputs
from support.configs import small_config
from support.network_bench import (
    NETWORK_CONFIG,
    PIPELINE_CONFIG,
    REPLICA_CONFIG,
    HandNetwork,
    buffer_codes,
    hand_network,
    node_sources,
    pipelined,
    reference_run,
    replicated,
    run_network,
)
from support.simulation import simulate

SEED = 2026
N_IMAGES = 3
#: The crossbar strategy of the layers (ivq-temporal: the shortest conv1 of the
#: strategies, so the 8-engine runs simulate fastest).
STRATEGY = "ivq-temporal"


def _program(config, net):
    return Program(config=config, strategy=STRATEGY, layers=net.layers, nodes=net.nodes)


def _expected(config, net, images):
    """Per image the ``to_host`` outputs of the numpy node semantics (sequential)."""
    return [reference_run(config, net, image, config.act_buffer_depth)[0] for image in images]


def _counters_of(nodes):
    return [(n["node_cycles"], n["node_input_stall"], n["node_output_stall"]) for n in nodes]


def _schedule_counters(schedule):
    return [(t.cycles, t.input_stall, t.output_stall) for t in schedule.nodes]


@pytest.fixture(scope="module")
def network():
    config = small_config(**PIPELINE_CONFIG)
    rng = np.random.default_rng(SEED)
    net = hand_network(config, rng, strategy=STRATEGY)
    piped = pipelined(net, list(range(len(net.nodes))))
    assert buffer_codes(piped) <= config.act_buffer_depth
    images, seen = [], set()
    for _ in range(100):        # images the network tells apart (the check sees the data)
        image = rng.integers(0, 1 << config.max_act_bits, net.input_shape)
        output = tuple(_expected(config, net, [image])[0])
        if output not in seen:
            seen.add(output)
            images.append(image)
            if len(images) == N_IMAGES:
                return config, net, piped, images
    raise AssertionError("the hand network maps 100 random images to too few outputs")


def _codes(images):
    return np.concatenate([np.asarray(image).reshape(-1) for image in images])


@pytest.fixture(scope="module")
def runs(network):
    """Load the image, run 3 images cleanly, 2 with host pauses, then a layer job."""
    config, net, piped, images = network
    dut = Accelerator(config)
    image = encode_image(_program(config, piped))
    rng = np.random.default_rng(SEED + 1)
    vectors = rng.integers(0, 1 << config.max_act_bits, (2, net.layers[0].n_inputs))
    n, per_image = len(piped.nodes), piped.n_outputs
    results = {}

    async def testbench(ctx):
        results["loaded"] = await load_image(ctx, dut, image)
        results["clean"] = await run_network(ctx, dut, _codes(images), N_IMAGES * per_image,
                                             n_nodes=n, n_images=N_IMAGES)
        results["pressed"] = await run_network(ctx, dut, _codes(images[1:]), 2 * per_image,
                                               rng=rng, input_pause=0.5, output_pause=0.7,
                                               n_nodes=n, n_images=2)
        results["n_images"] = await csr_read(ctx, dut.csr, Register.N_IMAGES)
        results["job"] = await run_job(ctx, dut, 0, vectors, net.layers[0].n_outputs)

    simulate(dut, testbench)
    results["vectors"] = vectors
    return results


def test_images_are_bit_exact_to_the_node_semantics(network, runs):
    config, net, _, images = network
    assert runs["loaded"] == Status.PROGRAMMED
    expected = _expected(config, net, images)
    for name, first in (("clean", 0), ("pressed", 1)):
        outputs, _, _, status = runs[name]
        got = outputs.reshape(-1, net.n_outputs)
        for index, row in enumerate(got):
            np.testing.assert_array_equal(row, expected[first + index],
                                          err_msg=f"{name} image {index}")
        assert status & Status.DONE and not status & (Status.BUSY | Status.ERROR), name
    assert runs["n_images"] == 2


def test_counters_equal_the_pipeline_schedule(network, runs):
    config, net, piped, _ = network
    _, counters, nodes, _ = runs["clean"]
    schedule = pipeline_schedule(config, _program(config, piped), N_IMAGES)
    assert counters["cycles"] == schedule.cycles
    assert counters["latency"] == schedule.latency
    assert counters["interval"] == schedule.interval
    assert counters["stall_cycles"] == 0
    assert _counters_of(nodes) == _schedule_counters(schedule)
    # a second count: every node runs its sequential node time once per image, and the
    # last output of image n is the to_host node's end
    _, timings = network_timing(small_config(**NETWORK_CONFIG),
                                _program(small_config(**NETWORK_CONFIG), net))
    assert [n["node_cycles"] for n in nodes] == [N_IMAGES * t.cycles for t in timings]
    assert schedule.latency == schedule.end[-1, 0] + 1
    assert schedule.interval == schedule.end[-1, -1] - schedule.end[-1, -2]
    # the work is N images of the per-layer model
    for name, field in (("ou_reads", "ou_reads"), ("adc_conversions", "adc_conversions"),
                        ("reduction_operands", "reduction_transfers")):
        per_image = sum(getattr(analyze_layer(net.layers[node.layer], config,
                                              node.out_pixels), field)
                        for node in net.nodes if node.kind == NodeKind.COMPUTE)
        assert counters[name] == N_IMAGES * per_image, name


def test_interval_beats_the_sequential_design(network, runs):
    """The point of the pipeline: an image every INTERVAL cycles, fewer than the
    sequential design's cycles per image (same layers, network_timing); here the
    bottleneck is conv1's node time plus the 4 cycles between its images."""
    config, net, _, _ = network
    _, counters, nodes, _ = runs["clean"]
    sequential, _ = network_timing(small_config(**NETWORK_CONFIG),
                                   _program(small_config(**NETWORK_CONFIG), net))
    assert counters["interval"] < sequential
    assert counters["cycles"] < N_IMAGES * sequential
    assert counters["interval"] == nodes[0]["node_cycles"] // N_IMAGES + 4


def test_host_pauses_change_only_stalls_and_cycles(network, runs):
    config, _, piped, _ = network
    _, clean, clean_nodes, _ = runs["clean"]
    _, pressed, pressed_nodes, _ = runs["pressed"]
    for name in ("ou_reads", "adc_conversions", "reduction_operands"):
        assert 3 * pressed[name] == 2 * clean[name], name
    two = pipeline_schedule(config, _program(config, piped), 2)
    assert pressed["stall_cycles"] > 0
    assert two.cycles < pressed["cycles"] <= two.cycles + pressed["stall_cycles"]
    # every node but the last runs its node time; the last one's held outputs add to it
    per_image = [n["node_cycles"] // N_IMAGES for n in clean_nodes]
    assert [n["node_cycles"] for n in pressed_nodes[:-1]] == [2 * c for c in per_image[:-1]]
    last = pressed_nodes[-1]
    assert last["node_output_stall"] > 0
    assert last["node_cycles"] == 2 * per_image[-1] + last["node_output_stall"]


def test_layer_job_after_pipelined_runs(network, runs):
    config, net, _, _ = network
    outputs, _, status = runs["job"]
    np.testing.assert_array_equal(outputs, expected_outputs(config, net.layers[0],
                                                            net.weights[0], runs["vectors"]))
    assert status & Status.DONE and not status & Status.ERROR


def _headless(net: HandNetwork) -> HandNetwork:
    """The network without conv1: its input is conv1's 3x5x5 map, read by the max pool."""
    pool = net.nodes[1]
    nodes = [replace(pool, window=replace(pool.window, base=0))] + list(net.nodes[2:])
    return HandNetwork(net.layers, net.weights, nodes, (3, 5, 5))


def _run_memories(config, net, images, *, then_one: bool = False):
    """Run ``images`` on a design whose memories hold ``net``; with ``then_one`` also a
    run with N_IMAGES = 0 on the first image. Returns the runs' results."""
    dut = Accelerator(config, memories=program_memories(config, net.layers, nodes=net.nodes))
    results = []

    async def testbench(ctx):
        results.append(await run_network(ctx, dut, _codes(images),
                                         len(images) * net.n_outputs,
                                         n_nodes=len(net.nodes), n_images=len(images)))
        if then_one:
            results.append(await run_network(ctx, dut, _codes(images[:1]), net.n_outputs,
                                             n_nodes=len(net.nodes), n_images=0))

    simulate(dut, testbench)
    return results


def _check_exact_and_scheduled(config, net, images, expected, result, name):
    outputs, counters, nodes, status = result
    for index, row in enumerate(outputs.reshape(len(images), -1)):
        np.testing.assert_array_equal(row, expected[index], err_msg=f"{name} {index}")
    assert status & Status.DONE and not status & (Status.BUSY | Status.ERROR), name
    schedule = pipeline_schedule(config, _program(config, net), len(images))
    assert (counters["cycles"], counters["latency"], counters["interval"]) == \
        (schedule.cycles, schedule.latency, schedule.interval), name
    assert _counters_of(nodes) == _schedule_counters(schedule), name
    return schedule


def test_grouped_engines_forced_copies_and_one_image(network):
    """Two engines (the max pool | the rest), the max pool first so it outruns its readers
    and waits for a free output copy (b): exact, counters = schedule; with the pool's
    copies forced from 2 to 1 still exact (the sync rule waits longer); N_IMAGES = 0
    runs one image (INTERVAL 0, LATENCY = CYCLES)."""
    config, net, _, _ = network
    config = replace(config, pipeline_stages=2)
    headless = _headless(net)
    rng = np.random.default_rng(SEED + 3)
    images = [rng.integers(0, 1 << config.max_act_bits, headless.input_shape)
              for _ in range(3)]
    expected = _expected(config, headless, images)
    grouped = pipelined(headless, [0, 1, 1, 1, 1, 1, 1])
    assert grouped.nodes[0].copies == 2
    forced = HandNetwork(grouped.layers, grouped.weights,
                         [replace(grouped.nodes[0], copies=1)] + grouped.nodes[1:],
                         grouped.input_shape)
    free_run, one_run = _run_memories(config, grouped, images, then_one=True)
    (forced_run,) = _run_memories(config, forced, images)
    free = _check_exact_and_scheduled(config, grouped, images, expected, free_run, "grouped")
    slow = _check_exact_and_scheduled(config, forced, images, expected, forced_run, "forced")
    one = _check_exact_and_scheduled(config, grouped, images[:1], expected, one_run, "one")
    assert free.nodes[0].output_stall > 0                  # the pool waited for (b)
    assert slow.nodes[0].output_stall > free.nodes[0].output_stall
    assert slow.cycles >= free.cycles       # engine 1 is the bottleneck either way
    assert one.interval == 0 and one.latency == one.cycles
    assert one.nodes == pipeline_schedule(config, _program(config, grouped), 0).nodes


def test_reset_mid_run_then_rerun_is_exact(network):
    """A reset in the middle of a 2-engine run (docs/hardware.md "Reset and recovery"):
    the sweep drains every unit, and the next 2-image run is exact with the schedule's
    counters."""
    config, net, _, _ = network
    config = replace(config, pipeline_stages=2)
    headless = _headless(net)
    grouped = pipelined(headless, [0, 1, 1, 1, 1, 1, 1])
    rng = np.random.default_rng(SEED + 4)
    images = [rng.integers(0, 1 << config.max_act_bits, grouped.input_shape)
              for _ in range(2)]
    dut = Accelerator(config, memories=program_memories(config, grouped.layers,
                                                        nodes=grouped.nodes))
    rst = Signal()
    top = ResetInserter({"sync": rst})(dut)
    codes = [int(c) for c in _codes(images)]
    # cut in the middle of conv2's (node 1's) job on image 0
    schedule = pipeline_schedule(config, _program(config, grouped), 2)
    cut = int(schedule.start[1, 0] + schedule.end[1, 0]) // 2
    seen = {}

    async def testbench(ctx):
        await csr_write(ctx, dut.csr, Register.N_IMAGES, 2)
        await csr_write(ctx, dut.csr, Register.CTRL, Ctrl.RUN_NETWORK)
        sent = 0
        for _ in range(cut):
            ctx.set(dut.inputs.valid, int(sent < len(codes)))
            ctx.set(dut.inputs.payload, [codes[min(sent, len(codes) - 1)]])
            ctx.set(dut.outputs.ready, 1)
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
        seen["run"] = await run_network(ctx, dut, _codes(images), 2 * grouped.n_outputs,
                                        n_nodes=len(grouped.nodes), n_images=2)

    simulate(top, testbench)
    assert seen["busy"] & Status.BUSY and seen["reads"] > 0
    assert not seen["after_reset"] & Status.PROGRAMMED        # sweeping the partial sums
    _check_exact_and_scheduled(config, grouped, images, _expected(config, headless, images),
                               seen["run"], "after reset")


def test_slot_reusing_layout_fails_the_exact_check(network):
    """The sequential layout (slots reused, one copy each) run pipelined on 2 engines: the
    input writer and the nodes overwrite live maps, and the bit-exact check sees it."""
    config, net, _, images = network
    config = replace(config, pipeline_stages=2)
    sources = node_sources(net.nodes)
    reused = HandNetwork(net.layers, net.weights, [
        replace(node, stage=int(index >= 4), src0_node=s0, src1_node=s1,
                input_copies=1 if index == 0 else 0)
        for index, (node, (s0, s1)) in enumerate(zip(net.nodes, sources))], net.input_shape)
    ((outputs, _, _, _),) = _run_memories(config, reused, images[:2])
    expected = _expected(config, net, images[:2])
    with pytest.raises(AssertionError):
        for row, want in zip(outputs.reshape(2, -1), expected):
            np.testing.assert_array_equal(row, want)


def test_pipeline_registers_read_zero_without_the_pipeline():
    """N_IMAGES, LATENCY and INTERVAL on the sequential network design: a write to
    N_IMAGES does nothing, all read 0."""
    dut = Accelerator(small_config(**NETWORK_CONFIG))
    seen = {}

    async def testbench(ctx):
        await csr_write(ctx, dut.csr, Register.N_IMAGES, 5)
        for register in (Register.N_IMAGES, Register.LATENCY_LO, Register.INTERVAL_LO):
            seen[register] = await csr_read(ctx, dut.csr, register)

    simulate(dut, testbench)
    assert seen == {Register.N_IMAGES: 0, Register.LATENCY_LO: 0, Register.INTERVAL_LO: 0}


def test_pipelined_design_passes_verilator_lint(tmp_path):
    config = small_config(**dict(PIPELINE_CONFIG, pipeline_stages=2))
    path = tmp_path / "pipeline_top.v"
    path.write_text(verilog.convert(Accelerator(config), name="pipeline_top"))
    result = verilator_lint([path], "pipeline_top")
    assert result.ok, result.log[-3000:]
    assert result.warnings == {}


@pytest.fixture(scope="module")
def replica_runs(network):
    """The hand network with conv1 (the bottleneck) run by 2 replicas on their own engines
    and units (docs/network.md section 7): runs of 4, 3 and 1 images on one design (in
    the one-image run replica 1 runs nothing: its engine finishes at once)."""
    _, net, _, images = network
    config = small_config(**REPLICA_CONFIG)
    rng = np.random.default_rng(SEED + 5)
    seen = {tuple(out) for out in _expected(config, net, images)}
    while len(images) < 4:      # a fourth image the network tells apart
        image = rng.integers(0, 1 << config.max_act_bits, net.input_shape)
        if tuple(_expected(config, net, [image])[0]) not in seen:
            images = images + [image]
    group = pipelined(replicated(net, "conv1", 2), list(range(len(net.nodes) + 1)))
    assert buffer_codes(group) <= config.act_buffer_depth
    dut = Accelerator(config, memories=program_memories(config, group.layers,
                                                        nodes=group.nodes))
    n = len(group.nodes)
    results = {}

    async def testbench(ctx):
        for count in (4, 3, 1):
            results[count] = await run_network(ctx, dut, _codes(images[:count]),
                                               count * group.n_outputs, n_nodes=n,
                                               n_images=count)

    simulate(dut, testbench)
    return config, net, group, images, results


def test_replicated_conv_is_exact_and_equals_the_schedule(replica_runs):
    """conv1 by 2 replicas (phases 0 and 1: images 0, 2 and 1, 3): 4 and 3 images
    bit-exact; every counter equal to ``pipeline_schedule``; a second count: each
    replica's NODE_CYCLES is its own images (``ceil((N - phase) / 2)``) times conv1's
    node time, the work N images of the per-layer model."""
    config, net, group, images, results = replica_runs
    assert [(node.replicas_log2, node.phase) for node in group.nodes[:3]] == \
        [(1, 0), (1, 1), (0, 0)]
    assert group.nodes[2].src0_node == 1          # the max pool reads the group
    expected = _expected(config, net, images)
    node_time = network_timing(small_config(**NETWORK_CONFIG),
                               _program(small_config(**NETWORK_CONFIG), net))[1][0].cycles
    for count, result in results.items():
        schedule = _check_exact_and_scheduled(config, group, images[:count],
                                              expected, result, f"{count} images")
        _, counters, nodes, _ = result
        assert counters["stall_cycles"] == 0
        assert [nodes[k]["node_cycles"] for k in (0, 1)] == \
            [-(-(count - phase) // 2) * node_time for phase in (0, 1)]
        assert (schedule.end[:2] >= 0).tolist() == [[n % 2 == k for n in range(count)]
                                                    for k in (0, 1)]
        per_image = sum(analyze_layer(net.layers[node.layer], config,
                                      node.out_pixels).ou_reads
                        for node in net.nodes if node.kind == NodeKind.COMPUTE)
        assert counters["ou_reads"] == count * per_image


def test_replicas_shorten_the_interval_of_the_bottleneck(network, replica_runs):
    """conv1 is the unreplicated pipeline's bottleneck (INTERVAL = its node time + 4);
    with 2 replicas the images leave faster: INTERVAL and CYCLES of 4 and 3 images below
    the unreplicated schedule's, the mean interval over 4 images below half of it plus
    the other nodes' share; LATENCY one INIT cycle more (a ninth record)."""
    config, net, piped, _ = network
    _, _, _, _, results = replica_runs
    for count in (4, 3):
        plain = pipeline_schedule(config, _program(config, piped), count)
        counters = results[count][1]
        assert plain.interval == plain.end[0, 0] - plain.start[0, 0] + 4
        assert counters["interval"] < plain.interval
        assert counters["cycles"] < plain.cycles
        assert counters["latency"] == plain.latency + 1
    four = results[4][1]
    assert (four["cycles"] - four["latency"]) / 3 < 0.6 * plain.interval


def test_replica_sharing_an_engine_is_refused(network):
    """conv2 by 2 replicas with replica 1 first of the add's engine: the engine runs the
    replica (every other image) before its consumer, so from 4 images the replica waits
    for a copy the consumer behind it would free (the schedule calls it a deadlock,
    tests/hw/test_network_timing.py). The validator refuses the placement by node and
    field before it reaches the hardware (the compiler never makes it)."""
    config, net, _, _ = network
    config = replace(small_config(**REPLICA_CONFIG), pipeline_stages=3, max_nodes=8,
                     act_buffer_depth=512)
    group = pipelined(replicated(_headless(net), "conv2", 2), [0, 1, 2, 2, 2, 2, 2, 2])
    assert [node.name for node in group.nodes[1:4]] == ["conv2", "conv2_r1", "add"]
    validate_program(_program(config, pipelined(replicated(_headless(net), "conv2", 2),
                                                 [0, 1, 2, 3, 3, 3, 3, 3])),
                     replace(config, pipeline_stages=4))      # its own engine: accepted
    with pytest.raises(ValueError, match=r"record 2 \(node 'conv2_r1'\): field stage: 2: "
                                         r"a replica shares engine 2 with node 3"):
        validate_program(_program(config, group), config)