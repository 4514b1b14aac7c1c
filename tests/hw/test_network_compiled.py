"""A CNN compiled with ``--network`` runs whole-network on the Accelerator (Amaranth).

The seeded residual CNN of support/network_models.py (padded convs with ReLU, max pool,
residual add, average pool with padding counted, global average pool, flatten, raw gemm)
is compiled by ``api.compile(..., network=True)`` (node records, slot allocation, the five
sized config fields) and run from its memories' initial contents: the logits equal the golden model
(``sim.golden``) and the node interpreter (``run_nodes``) in producer order, and the run's
and every node's counters equal the performance model (``sw.perf.network``, built on
hw/spec/net_timing) - two images, back to back.

Runtime: compile < 1 s, one elaboration of a 7-unit design, ~3,300 simulated cycles per
image (~28 s CPU).
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.core.memories import program_memories
from bitline.hw.core.top import Accelerator
from bitline.sim.golden import run_golden
from bitline.sw import api
from bitline.sw.integer import arith
from bitline.sw.integer.network import producer_order, run_nodes
from bitline.sw.perf.network import network_report

from support.configs import small_config
from support.network_bench import run_network
from support.network_models import residual_cnn_onnx
from support.simulation import simulate

SEED = 7
#: The machine the CNN is compiled onto (n_xbars and the network fields sized by compile):
#: 4-bit DACs and 8-row OUs keep an image near 3,300 cycles.
CONFIG = small_config(rows=32, cols=32, max_act_bits=8, max_weight_bits=8, dac_bits=4,
                      ou_rows=8, adc_bits=7, max_in_features=64, max_out_channels=16,
                      max_layers=4, n_xbars=8)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    rng = np.random.default_rng(SEED)
    path = residual_cnn_onnx(tmp_path_factory.mktemp("net") / "residual.onnx", rng)
    shape = tuple(api.load(str(path)).input_shape)
    calib = rng.random((16, *shape)).astype(np.float32)
    result = api.compile(str(path), "isaac", spec="int8", config=CONFIG, calib=calib,
                         network=True)
    images = rng.random((2, *shape)).astype(np.float32)
    return result, images


@pytest.fixture(scope="module")
def runs(compiled):
    result, images = compiled
    program, config = result.program, result.config
    codes = arith.quantize_input(images, result.qmodel.input)
    dut = Accelerator(config, memories=program_memories(config, program.layers,
                                                        nodes=program.nodes))
    n_outputs = program.nodes[-1].dst_size
    runs = []

    async def testbench(ctx):
        for image in codes:
            runs.append(await run_network(ctx, dut, image, n_outputs,
                                          n_nodes=len(program.nodes)))

    simulate(dut, testbench)
    return codes, runs


def test_compiled_cnn_has_every_node_kind(compiled):
    result, _ = compiled
    kinds = {node.kind.name for node in result.program.nodes}
    assert kinds == {"COMPUTE", "POOL_MAX", "POOL_AVG", "ADD"}
    # an average pool with padding and a global one (its window is the whole map)
    averages = [node for node in result.program.nodes if node.kind.name == "POOL_AVG"]
    assert any(node.count_include_pad and node.window.pads != (0, 0, 0, 0)
               for node in averages)
    assert any(node.window.kernel == (node.window.height, node.window.width)
               and node.out_pixels == 1 for node in averages)
    assert result.config.network


def test_logits_equal_golden_and_run_nodes(compiled, runs):
    result, images = compiled
    codes, results = runs
    golden = run_golden(result.qmodel, images).output_int
    interpreted = run_nodes(result.program, result.qmodel, codes)
    np.testing.assert_array_equal(interpreted, golden)
    for index, (outputs, _, _, _) in enumerate(results):
        np.testing.assert_array_equal(outputs, producer_order(golden[index:index + 1])[0],
                                      err_msg=f"image {index}")
    assert not np.array_equal(golden[0], golden[1])


def test_counters_equal_the_performance_model(compiled, runs):
    result, _ = compiled
    report = network_report(result.program)
    _, results = runs
    for _, counters, nodes, _ in results:
        assert counters == report.run_counters()
        assert [n["node_cycles"] for n in nodes] == [n.cycles for n in report.nodes]
        assert [n["node_input_stall"] for n in nodes] == [n.input_stall for n in report.nodes]
        assert [n["node_output_stall"] for n in nodes] == [0] * len(nodes)


def test_bundle_hardware_starts_with_the_node_records(compiled, tmp_path):
    """``bitline verilog/fpga --bundle`` of a --network bundle: the memories hold the node
    records (the design starts programmed for RUN_NETWORK, as after loading the image)."""
    from bitline.hw.core.memories import node_words
    from bitline.sw.bundle import write_bundle
    from bitline.sw.flow.hardware import choose_hardware

    result, _ = compiled
    bundle = write_bundle(tmp_path / "bundle", result.program, result.qmodel)
    choice = choose_hardware(None, None, bundle)
    assert choice.memories.nodes == node_words(result.config, result.program.nodes)
    assert len(choice.memories.nodes) == len(result.program.nodes)
