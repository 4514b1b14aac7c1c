"""cocotb end to end, the inter-layer pipeline: a batch of images through both digits
networks from one start command each (docs/network.md section 6), and the digits CNN with
its bottleneck conv replicated twice (layer replicas, section 7).

Three programs are compiled ``--network --pipeline`` (bwq, 3-bit blocks) onto one
accelerator (:func:`pipelined_bundles`): the digits CNN, the digits ResNet and the CNN
compiled ``--replicate BOTTLENECK=2`` (the compute node with the longest job, its second
conv, on two engines and two sets of units, taking the even and the odd images). The
config is ``examples/rtl/digits.toml`` with ``pipeline_stages`` pinned to :data:`ENGINES`
(the CNN's node count: one engine per CNN node; the ResNet's ten nodes and the replicated
CNN's eight grouped onto the seven engines by the compiler's linear partition, the two
replicas on distinct engines -- "every engine used" is a validator rule, so the design's
engine count cannot exceed the smallest program's node count) and every sized field the
largest of the three needs (the replica's units, the eighth node record), so the file
pays one Verilator build. The host driver writes N_IMAGES, streams every image's codes
and takes every image's logits in one run. Checked:

* in the bench: every image's output equal to the golden model; the run's counters
  (CYCLES, LATENCY, INTERVAL, STALL_CYCLES = 0, OU_READS, ADC_CONVERSIONS,
  REDUCTION_OPERANDS = :data:`IMAGES` times one image's) and every node's NODE_* counters
  equal ``net_timing.pipeline_schedule``
  (:class:`~bitline.sim.cocotb.tb_network.PipelineExpectation`); here again from the saved
  counters;
* the replicated CNN: the same, its events equal to the unreplicated CNN's (each image
  runs on one replica), each replica's NODE_CYCLES half the unreplicated conv's, and its
  INTERVAL and CYCLES below the unreplicated CNN's on the same design;
* a run with random pauses on the inputs and the outputs: the same outputs and events;
  only the stall counters and the cycles change (every node before the last keeps its
  NODE_CYCLES; the last node's grow by its extra output stall);
* ``bitline run BUNDLE --backend rtl`` on the replicated bundle prints the replicated
  layer and the RTL's latency, interval and images/s beside the model's; output equal to
  ``--backend golden``;
* the counter checker fails on an expected LATENCY one off.

Cost: one Verilator build of the pipelined design (cached by digest), then three short
simulations (the first carries four runs); Verilator only like the other digits-design
benches; slow marker.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from bitline.sim.rtl import DIGITS_CONFIG

from support.e2e import report, run_cli, verilator_only

pytestmark = [pytest.mark.cocotb, pytest.mark.slow, verilator_only]

NETWORKS = ("digits-cnn", "digits-resnet")
#: The replicated program's key in :func:`pipelined_bundles` (the digits CNN with its
#: bottleneck conv x :data:`REPLICAS`).
REPLICATED = "digits-cnn-replicated"
REPLICAS = 2
#: Images per run (the held run takes the first :data:`HELD_IMAGES`).
IMAGES = 4
HELD_IMAGES = 2
#: Stage engines of the design: the CNN's node count (see the module docstring).
ENGINES = 7
#: Pauses of the held run (as tests/cocotb/test_e2e_network.py): a pause starts in ~1
#: cycle of 4 (inputs) and 3 (outputs) and lasts 1 .. 16 and 1 .. 4 cycles.
THROTTLE = {"seed": 2026, "rate": {"program": 0, "inputs": 64, "outputs": 85},
            "mask": {"program": 0, "inputs": 15, "outputs": 3}}
#: What a run that pauses may change.
STALL_COUNTERS = ("cycles", "stall_cycles", "latency", "interval")


def pinned_base():
    """``DIGITS_CONFIG`` with ``pipeline_stages`` pinned (what a config file setting
    ``pipeline_stages = 7`` gives); the whole-network fields at 1 are sized by the
    compiler."""
    return DIGITS_CONFIG.replace(act_buffer_depth=1, max_nodes=ENGINES, max_map_channels=1,
                                 max_map_height=1, max_map_width=1,
                                 pipeline_stages=ENGINES, pinned={"pipeline_stages"})


@pytest.fixture(scope="module")
def pipelined_bundles(tmp_path_factory):
    """Both networks and the replicated CNN compiled --network --pipeline onto one config;
    {name: (bundle, program)}, the batch."""
    from bitline.sim.cocotb.tb_network import bottleneck_layer, shared_config
    from bitline.sw.bundle import write_bundle
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import calibration_inputs, compile_model
    from bitline.sw.models import resolve_model

    root = tmp_path_factory.mktemp("pipeline")
    models = {name: resolve_model(name) for name in NETWORKS}
    calib = {name: calibration_inputs(models[name], "digits")[0] for name in NETWORKS}
    base = pinned_base()
    plain = {name: compile_model(models[name], "bwq", "bwq3", base, calib[name], xbars="auto",
                                 network=True, pipeline=True).program for name in NETWORKS}
    bottleneck = bottleneck_layer(plain["digits-cnn"])
    # what the docs call the CNN's bottleneck: its second conv
    assert bottleneck == plain["digits-cnn"].layers[1].name, bottleneck
    sources = {name: (name, {}) for name in NETWORKS}
    sources[REPLICATED] = ("digits-cnn", {bottleneck: REPLICAS})
    sized = [program.config for program in plain.values()]
    sized.append(compile_model(models["digits-cnn"], "bwq", "bwq3", base, calib["digits-cnn"],
                               xbars="auto", network=True, pipeline=True,
                               replicate=sources[REPLICATED][1]).program.config)
    config = shared_config(sized)
    assert config.pipeline_stages == ENGINES
    bundles = {}
    for key, (name, replicate) in sources.items():
        result = compile_model(models[name], "bwq", "bwq3", config, calib[name],
                               xbars=config.n_xbars, network=True, pipeline=True,
                               replicate=replicate)
        program = result.program
        assert program.config == config and program.nodes
        assert sorted({node.stage for node in program.nodes}) == list(range(ENGINES))
        bundles[key] = (write_bundle(root / key, program, result.qmodel), program)
    # the ResNet and the replicated CNN share engines (grouped nodes), the CNN has one node
    # per engine; the replicas: consecutive nodes, phases 0 .. R-1, distinct engines
    assert len(bundles["digits-cnn"][1].nodes) == ENGINES
    assert len(bundles["digits-resnet"][1].nodes) > ENGINES
    replicas = [node for node in bundles[REPLICATED][1].nodes if node.replicas_log2]
    assert len(bundles[REPLICATED][1].nodes) == ENGINES + REPLICAS - 1
    assert [(node.replicas_log2, node.phase) for node in replicas] == [(1, 0), (1, 1)]
    assert len({node.stage for node in replicas}) == REPLICAS
    assert len({node.layer for node in replicas}) == REPLICAS
    x_test, _ = load_dataset("digits", "test")
    x_path = root / "x.npy"
    np.save(x_path, np.asarray(x_test[:IMAGES], dtype=np.float32))
    np.save(root / "x-held.npy", np.asarray(x_test[:HELD_IMAGES], dtype=np.float32))
    return config, bundles, x_path, root


def test_pipelined_digits_networks_bit_exact_counters_and_pauses(pipelined_bundles):
    from bitline.sim.cocotb.tb_network import (
        PipelineExpectation, bottleneck_layer, run_network_bench,
    )
    from bitline.sim.golden import run_golden
    from bitline.sw.bundle import read_bundle
    from bitline.sw.perf.network import network_report

    config, bundles, x_path, root = pipelined_bundles
    runs = [{"name": f"{name}-free", "bundle": bundle, "input": x_path, "counters": True}
            for name, (bundle, _) in bundles.items()]
    held_name = "digits-resnet"
    runs.append({"name": f"{held_name}-held", "bundle": bundles[held_name][0],
                 "input": root / "x-held.npy", "throttle": THROTTLE})
    bench, results = run_network_bench(config, runs, root / "bench",
                                       programs=[p for _, p in bundles.values()])
    report("digits networks pipelined, free and held", bench)
    assert bench.tests == 1 and bench.failed == 0

    x = np.load(x_path)
    measured = {}
    for name, (bundle, program) in bundles.items():
        free = results[f"{name}-free"]
        # one run carries the batch
        assert len(free.runs) == 1 and free.runs[0]["n_images"] == IMAGES, name
        golden = run_golden(read_bundle(bundle).qmodel, x)
        assert np.array_equal(free.output_int, golden.output_int), name
        model = PipelineExpectation(program, IMAGES)
        counters = dict(free.runs[0])
        assert counters.pop("n_images") == IMAGES
        assert counters == model.run_counters(), name
        assert free.nodes[0] == [node.counters() for node in model.nodes], name
        measured[name] = counters
        # the events a second way: every image runs every layer once (the sequential
        # model of the unreplicated network: each image on one replica)
        unreplicated = bundles["digits-cnn" if name == REPLICATED else name][1]
        one = network_report(unreplicated).run_counters()
        for counter in ("ou_reads", "adc_conversions", "reduction_operands"):
            assert counters[counter] == IMAGES * one[counter], (name, counter)
        # the pipeline overlaps images: the batch takes less than IMAGES latencies, and
        # the last image comes one interval after the one before
        assert 0 < counters["interval"] < counters["latency"] < counters["cycles"], name
        assert counters["cycles"] < IMAGES * counters["latency"], name
        print(f"{name}: {IMAGES} images in {counters['cycles']:,} cycles, latency "
              f"{counters['latency']:,}, interval {counters['interval']:,} (sequential "
              f"design: {one['cycles']:,} per image)")

    # the replicas: each ran half the images, so its NODE_CYCLES is half the unreplicated
    # conv's (one job's cycles are the same on fresh units), and the replicated CNN is
    # faster on the same design
    plain_nodes = results["digits-cnn-free"].nodes[0]
    conv = [program.layers[node.layer].name for node in bundles["digits-cnn"][1].nodes
            ].index(bottleneck_layer(bundles["digits-cnn"][1]))
    replicated_nodes = results[f"{REPLICATED}-free"].nodes[0]
    for phase in range(REPLICAS):
        assert (REPLICAS * replicated_nodes[conv + phase]["node_cycles"]
                == plain_nodes[conv]["node_cycles"]), phase
    faster, plain = measured[REPLICATED], measured["digits-cnn"]
    assert faster["interval"] < plain["interval"], (faster, plain)
    assert faster["cycles"] < plain["cycles"], (faster, plain)
    print(f"{REPLICATED}: interval {faster['interval']:,} (unreplicated {plain['interval']:,}), "
          f"{IMAGES} images in {faster['cycles']:,} cycles ({plain['cycles']:,})")

    # pauses: the held run against the model of a free run of as many images (the free
    # runs above equal the model)
    free, held = results[f"{held_name}-free"], results[f"{held_name}-held"]
    assert np.array_equal(held.output_int, free.output_int[:HELD_IMAGES])
    model = PipelineExpectation(bundles[held_name][1], HELD_IMAGES)
    got, want = held.runs[0], dict(model.run_counters(), n_images=HELD_IMAGES)
    for counter in set(want) - set(STALL_COUNTERS):
        assert got[counter] == want[counter], counter
    assert got["stall_cycles"] > 0 and got["cycles"] > want["cycles"]
    expected_nodes = [node.counters() for node in model.nodes]
    for index, (h, f) in enumerate(zip(held.nodes[0][:-1], expected_nodes[:-1])):
        assert h["node_cycles"] == f["node_cycles"], index
    last_held, last_free = held.nodes[0][-1], expected_nodes[-1]
    assert last_held["node_output_stall"] > last_free["node_output_stall"]
    assert (last_held["node_cycles"] - last_free["node_cycles"]
            == last_held["node_output_stall"] - last_free["node_output_stall"])
    print(f"{held_name} held: {got['cycles']:,} cycles with {got['stall_cycles']:,} stall "
          f"cycles (free {want['cycles']:,})")


def test_cli_run_rtl_pipelined_prints_latency_interval_and_equals_golden(pipelined_bundles,
                                                                         tmp_path):
    """`bitline run BUNDLE --backend rtl` on a --pipeline bundle with replicas: one run of
    the batch; the line names the replicated layer."""
    from bitline.sim.cocotb.tb_network import PipelineExpectation, bottleneck_layer

    _, bundles, x_path, _ = pipelined_bundles
    bundle, program = bundles[REPLICATED]
    output = run_cli("run", bundle, "-i", x_path, "-o", tmp_path / "rtl.npz", "--backend",
                     "rtl", "--clock-mhz", "25")
    model = PipelineExpectation(program, IMAGES).run_counters()
    replicated = bottleneck_layer(bundles["digits-cnn"][1])
    assert (f"pipelined ({ENGINES} stage engines; replicas: {replicated} x{REPLICAS}): "
            f"{IMAGES} image(s) in 1 run(s)") in output, output
    # the RTL's figures and the model's, equal on a bench that never waits
    for label in ("latency", "interval"):
        found = re.search(rf"{label} ([\d,]+)(?: cycles)? \(model ([\d,]+)\)", output)
        assert found, (label, output)
        assert found[1] == found[2] == f"{model[label]:,}", (label, output)
    assert f"at 25 MHz {model['latency'] / 25:,.2f} us latency" in output, output
    assert f"{25e6 / model['interval']:,.0f} images/s" in output, output
    run_cli("run", bundle, "-i", x_path, "-o", tmp_path / "golden.npz", "--backend",
            "golden")
    with np.load(tmp_path / "rtl.npz") as rtl, np.load(tmp_path / "golden.npz") as golden:
        assert set(rtl.files) == set(golden.files) == {"output", "output_int"}
        for key in golden.files:
            assert np.array_equal(rtl[key], golden[key]), key


def test_pipeline_counter_checker_fails_on_a_broken_latency(pipelined_bundles):
    from bitline.sim.cocotb.runner import BenchFailure
    from bitline.sim.cocotb.tb_network import run_network_bench

    config, bundles, _, root = pipelined_bundles
    bundle, _ = bundles["digits-cnn"]
    with pytest.raises(BenchFailure, match="counter latency = [0-9]+, the model says"):
        run_network_bench(config, [{"name": "broken", "bundle": bundle,
                                    "input": root / "x-held.npy", "counters": True}],
                          root / "broken", programs=[p for _, p in bundles.values()],
                          break_counters=True)
