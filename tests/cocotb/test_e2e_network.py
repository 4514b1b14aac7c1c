"""cocotb end to end, whole network: the digits CNN and the digits ResNet from one start command.

Both networks are compiled ``--network`` (bwq, 3-bit blocks) onto one accelerator: the
config of ``examples/rtl/digits.toml`` with the units, entries and whole-network capacities
the larger of the two needs (:func:`shared_bundles`), so the file pays one Verilator build
(emulated crossbars, the pause generators of the regression bench idle unless asked;
:mod:`bitline.sim.cocotb.tb_network`). The host driver sends only each test image's codes
and reads only the logits. Checked:

* in the bench: each image's output equal to the golden model; on the runs without pauses
  the run's counters (CYCLES, OU_READS, ADC_CONVERSIONS, REDUCTION_OPERANDS, STALL_CYCLES =
  0) and every node's (NODE_CYCLES, NODE_INPUT_STALL, NODE_OUTPUT_STALL) equal
  ``sw/perf/network.py``; here again, from the saved counters;
* random pauses on the input image and on the outputs: the same outputs, every node before
  the last with exactly the free run's counters, the same event counts; only the stall
  counters change, and the cycles by exactly the stall cycles (the run's and the last
  node's);
* ``bitline run BUNDLE --backend rtl`` on the same design: whole-network, prints the
  cycles per image and images/s, output equal to ``--backend golden``;
* the checker fails on one wrong expected value.

Cost: one Verilator build of the 13-unit network design (cached by digest), then three
short simulations; Verilator only like the other digits-design benches; slow marker.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.sim.rtl import DIGITS_CONFIG

from support.e2e import report, run_cli, verilator_only

pytestmark = [pytest.mark.cocotb, pytest.mark.slow, verilator_only]

NETWORKS = ("digits-cnn", "digits-resnet")
#: Test images per network in the free runs (the held runs take the first).
IMAGES = 2
#: Pauses of the held runs: a pause starts in ~1 cycle of 4 (inputs) and 3 (outputs) and
#: lasts 1 .. 16 and 1 .. 4 cycles.
THROTTLE = {"seed": 2026, "rate": {"program": 0, "inputs": 64, "outputs": 85},
            "mask": {"program": 0, "inputs": 15, "outputs": 3}}


@pytest.fixture(scope="module")
def shared_bundles(tmp_path_factory):
    """Both networks compiled --network onto one config; {name: (bundle, program)}, x."""
    from bitline.sim.cocotb.tb_network import shared_config
    from bitline.sw.bundle import write_bundle
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import calibration_inputs, compile_model
    from bitline.sw.models import resolve_model

    root = tmp_path_factory.mktemp("network")
    models = {name: resolve_model(name) for name in NETWORKS}
    calib = {name: calibration_inputs(models[name], "digits")[0] for name in NETWORKS}
    sized = [compile_model(models[name], "bwq", "bwq3", DIGITS_CONFIG, calib[name],
                           xbars="auto", network=True).program.config for name in NETWORKS]
    config = shared_config(sized)
    bundles = {}
    for name in NETWORKS:
        result = compile_model(models[name], "bwq", "bwq3", config, calib[name],
                               xbars=config.n_xbars, network=True)
        assert result.program.config == config and result.program.nodes
        bundles[name] = (write_bundle(root / name, result.program, result.qmodel),
                         result.program)
    x_test, _ = load_dataset("digits", "test")
    x_path = root / "x.npy"
    np.save(x_path, np.asarray(x_test[:IMAGES], dtype=np.float32))
    np.save(root / "x1.npy", np.asarray(x_test[:1], dtype=np.float32))
    return config, bundles, x_path, root / "x1.npy", root


def test_digits_networks_whole_network_bit_exact_counters_and_pauses(shared_bundles):
    from bitline.sim.cocotb.tb_network import run_network_bench
    from bitline.sw.perf.network import network_report

    config, bundles, x_path, x1_path, root = shared_bundles
    runs = []
    for name, (bundle, _) in bundles.items():
        runs.append({"name": f"{name}-free", "bundle": bundle, "input": x_path,
                     "counters": True})
        runs.append({"name": f"{name}-held", "bundle": bundle, "input": x1_path,
                     "throttle": THROTTLE})
    bench, results = run_network_bench(config, runs, root / "bench",
                                       programs=[p for _, p in bundles.values()])
    report("digits networks whole-network, free and held", bench)
    assert bench.tests == 1 and bench.failed == 0

    for name, (_, program) in bundles.items():
        model = network_report(program)
        free, held = results[f"{name}-free"], results[f"{name}-held"]
        assert len(free.runs) == IMAGES and len(held.runs) == 1
        # counters of every image == the model (the bench checked too; here from the file)
        for counters, nodes in zip(free.runs, free.nodes):
            assert counters == model.run_counters(), name
            assert nodes == [node.counters() for node in model.nodes], name
        # pauses: same output; nodes before the last unchanged; only stalls differ
        assert np.array_equal(held.output_int[0], free.output_int[0]), name
        got, want = held.runs[0], free.runs[0]
        for counter in ("ou_reads", "adc_conversions", "reduction_operands"):
            assert got[counter] == want[counter], (name, counter)
        # every held cycle is one stall cycle (input phase or the last node's output)
        assert got["stall_cycles"] > 0, name
        assert got["cycles"] == want["cycles"] + got["stall_cycles"], name
        assert held.nodes[0][:-1] == free.nodes[0][:-1], name
        last_held, last_free = held.nodes[0][-1], free.nodes[0][-1]
        assert last_held["node_output_stall"] > 0, name
        assert (last_held["node_cycles"]
                == last_free["node_cycles"] + last_held["node_output_stall"]), name
        assert last_held["node_input_stall"] == last_free["node_input_stall"], name
        print(f"{name}: {want['cycles']:,} cycles per image (model {model.cycles:,}); "
              f"held: {got['cycles']:,} with {got['stall_cycles']:,} stall cycles")


def test_cli_run_rtl_whole_network_equals_golden(shared_bundles, tmp_path):
    """`bitline run BUNDLE --backend rtl` on a --network bundle: one run per image."""
    _, bundles, x_path, _, _ = shared_bundles
    bundle, _ = bundles["digits-cnn"]
    output = run_cli("run", bundle, "-i", x_path, "-o", tmp_path / "rtl.npz", "--backend",
                     "rtl", "--clock-mhz", "25")
    assert "whole network: 2 image(s), cycles per image" in output, output
    assert "at 25 MHz" in output and "images/s" in output, output
    run_cli("run", bundle, "-i", x_path, "-o", tmp_path / "golden.npz", "--backend",
            "golden")
    with np.load(tmp_path / "rtl.npz") as rtl, np.load(tmp_path / "golden.npz") as golden:
        assert set(rtl.files) == set(golden.files) == {"output", "output_int"}
        for key in golden.files:
            assert np.array_equal(rtl[key], golden[key]), key


def test_network_checker_fails_on_a_broken_expected_value(shared_bundles):
    from bitline.sim.cocotb.runner import BenchFailure
    from bitline.sim.cocotb.tb_network import run_network_bench

    config, bundles, _, x1_path, root = shared_bundles
    bundle, program = bundles["digits-cnn"]
    with pytest.raises(BenchFailure):
        run_network_bench(config, [{"name": "broken", "bundle": bundle, "input": x1_path}],
                          root / "broken", programs=[p for _, p in bundles.values()],
                          break_expected=True)
