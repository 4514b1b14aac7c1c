"""cocotb end to end: compiled networks on the generated Verilog with the analog crossbar model.

The bench (``bitline.sim.cocotb.tb_accelerator``) programs the accelerator through its host
interface with each bundle's ``image.bin`` and runs the network with the host driver; the
crossbar ports are answered by the Python crossbar model (ideal, or an ``AnalogDevice``).
Every layer's output must equal the golden model (ideal) or the executor with the same chip
seed (analog), every job's counters the performance model.

Designs are built once per session and cached by digest (``build/cocotb``): the digits-CNN
hardware (:data:`bitline.sim.rtl.DIGITS_CONFIG`, external crossbars) for everything but the
CLI's default path, which builds a small emulated design.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.hw.testing import small_config
from bitline.sim.cocotb.runner import BenchFailure
from bitline.sim.rtl import DIGITS_CONFIG, bench_design, job_capacity, run_spec
from bitline.sw.bundle import write_bundle
from bitline.sw.cli_compile import DEFAULT_SPECS, calibration_inputs, compile_model
from bitline.sw.mapping.program import STRATEGIES

pytestmark = pytest.mark.cocotb

#: Typical non-idealities (examples/analog/typical.toml) without read noise, for the digits
#: CNN: chip-level effects only, so the bench memoizes the crossbar's answers.
CHIP_ONLY = {"variation": 0.05, "stuck_at_0": 0.001, "stuck_at_1": 0.001, "ir_drop": 0.003,
             "adc_offset": 0.1, "adc_gain_error": 0.005, "g_on_us": 100.0, "g_off_us": 5.0}


def compile_bundle(model, strategy, spec, config, calib, out_dir):
    result = compile_model(model, strategy, spec, config, calib, xbars=config.n_xbars)
    assert result.program.config == config
    return write_bundle(out_dir, result.program, result.qmodel), result.program


@pytest.fixture(scope="session")
def e2e(tmp_path_factory, random_cnn):
    """Bundles for DIGITS_CONFIG: the digits CNN and one random model per strategy."""
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model

    root = tmp_path_factory.mktemp("e2e")
    digits = resolve_model("digits-cnn")
    calib, _ = calibration_inputs(digits, "digits")
    x_test, _ = load_dataset("digits", "test")
    np.save(root / "digits_x.npy", np.asarray(x_test[:3], dtype=np.float32))
    digits_dir, digits_program = compile_bundle(digits, "bwq", "bwq3", DIGITS_CONFIG, calib,
                                                root / "digits-bwq")
    strategies = {}
    for index, strategy in enumerate(STRATEGIES):
        rng = np.random.default_rng(100 + index)
        model = random_cnn(root / f"{strategy}.onnx", rng)
        calib_x = rng.random((16, *model.input_shape)).astype(np.float32)
        bundle_dir, program = compile_bundle(model, strategy, DEFAULT_SPECS[strategy],
                                             DIGITS_CONFIG, calib_x, root / strategy)
        np.save(root / f"{strategy}_x.npy",
                rng.random((2, *model.input_shape)).astype(np.float32))
        strategies[strategy] = (bundle_dir, program, root / f"{strategy}_x.npy")
    return {"root": root, "digits": (digits_dir, digits_program, root / "digits_x.npy"),
            "strategies": strategies}


@pytest.fixture(scope="session")
def external_design():
    return bench_design(DIGITS_CONFIG, "external")


def spec_for(design, items, check, analog=None, seed=0, **extra):
    """The bench's run description: every (bundle, program, input) of ``items`` in turn."""
    spec = {
        "runs": [{"bundle": str(bundle_dir), "input": str(x_path), "check": check,
                  "counters": True} for bundle_dir, _, x_path in items],
        "analog": analog, "seed": seed,
        "max_vectors": min(job_capacity(design, program) for _, program, _ in items),
    }
    spec.update(extra)
    return spec


def report(name, result):
    print(f"\n{name}: {result.simulator}, build {result.build_seconds:.1f} s "
          f"({'cached' if result.cached else 'fresh'}), run {result.test_seconds:.1f} s")


def test_digits_cnn_ideal_bit_exact_to_golden(e2e, external_design, tmp_path):
    """3 test images: all 8 layers equal the golden model, 5 jobs' counters the model."""
    result = run_spec(external_design, spec_for(external_design, [e2e["digits"]], "golden"),
                      work_dir=tmp_path)
    assert result.tests == 1 and result.failed == 0
    report("digits-cnn ideal", result)


def test_digits_cnn_analog_equals_executor(e2e, external_design, tmp_path):
    """Variation, stuck cells, IR drop and ADC errors: equal to the executor, same seed."""
    spec = spec_for(external_design, [e2e["digits"]], "executor", analog=CHIP_ONLY, seed=7)
    spec["runs"][0]["input"] = str(tmp_path / "x2.npy")
    np.save(tmp_path / "x2.npy", np.load(e2e["digits"][2])[:2])
    result = run_spec(external_design, spec, work_dir=tmp_path)
    report("digits-cnn analog", result)


def test_every_strategy_random_shapes_golden_and_counters(e2e, external_design, tmp_path):
    """Five strategies, random conv+pool+gemm shapes: layers == golden, counters == model."""
    items = list(e2e["strategies"].values())
    result = run_spec(external_design, spec_for(external_design, items, "golden"),
                      work_dir=tmp_path)
    report("strategies ideal", result)


def test_every_strategy_read_noise_equals_executor(e2e, external_design, tmp_path):
    """Typical chip with read noise: the read numbers at the ports match the executor's."""
    from bitline.sim.analog import AnalogParams

    items = list(e2e["strategies"].values())
    typical = AnalogParams.load("typical").to_dict()
    result = run_spec(external_design, spec_for(external_design, items, "executor",
                                                analog=typical, seed=11), work_dir=tmp_path)
    report("strategies analog", result)


def test_corrupted_image_is_reported_by_the_hardware(e2e, external_design, tmp_path):
    """Magic, header, table, CELLS and last-section bytes, another config: STATUS errors."""
    bundle_dir, program, x_path = e2e["strategies"]["bwq"]
    spec = spec_for(external_design, [e2e["strategies"]["bwq"]], "none",
                    corrupt=str(bundle_dir))
    result = run_spec(external_design, spec, test="corrupted_image", work_dir=tmp_path)
    report("corrupted image", result)


def test_checker_fails_on_a_broken_expected_value(e2e, external_design, tmp_path):
    """One expected value off by one: the bench must fail (the checker can fail)."""
    spec = spec_for(external_design, [e2e["strategies"]["ivq-temporal"]], "golden",
                    break_expected=True)
    with pytest.raises(BenchFailure, match="1 of 1 cocotb tests failed") as failure:
        run_spec(external_design, spec, work_dir=tmp_path)
    assert failure.value.result.failed == 1


def test_cli_run_rtl_backend_emulated(tmp_path, random_cnn):
    """`bitline run BUNDLE --backend rtl` on a small config: equals the golden backend."""
    from bitline.sw.cli import main

    config = small_config(rows=32, cols=64, n_xbars=3, max_act_bits=8, max_weight_bits=8,
                          max_out_channels=16, max_in_features=96)
    rng = np.random.default_rng(5)
    model = random_cnn(tmp_path / "m.onnx", rng)
    bundle_dir, _ = compile_bundle(model, "ivq-temporal", "varied4", config,
                                   rng.random((16, *model.input_shape)).astype(np.float32),
                                   tmp_path / "bundle")
    np.save(tmp_path / "x.npy", rng.random((2, *model.input_shape)).astype(np.float32))
    runner = CliRunner()
    outcome = runner.invoke(main, ["run", str(bundle_dir), "-i", str(tmp_path / "x.npy"),
                                   "-o", str(tmp_path / "rtl.npz"), "--backend", "rtl",
                                   "--all-layers"], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    assert "simulated cycles/s" in outcome.output and "emulators" in outcome.output
    golden = runner.invoke(main, ["run", str(bundle_dir), "-i", str(tmp_path / "x.npy"),
                                  "-o", str(tmp_path / "golden.npz"), "--backend", "golden",
                                  "--all-layers"], catch_exceptions=False)
    assert golden.exit_code == 0, golden.output
    with np.load(tmp_path / "rtl.npz") as rtl, np.load(tmp_path / "golden.npz") as reference:
        assert set(rtl.files) == set(reference.files)
        for key in reference.files:
            assert np.array_equal(rtl[key], reference[key]), key


def test_cli_run_rtl_backend_analog(e2e, external_design, tmp_path):
    """`--analog typical --seed 5`: the RTL's output equals the executor's on that chip."""
    from bitline.sim.analog import AnalogDevice, AnalogParams
    from bitline.sim.executor import run_executor
    from bitline.sw.bundle import read_bundle
    from bitline.sw.cli import main

    bundle_dir, _, x_path = e2e["strategies"]["isaac"]
    outcome = CliRunner().invoke(main, ["run", str(bundle_dir), "-i", str(x_path), "-o",
                                        str(tmp_path / "y.npz"), "--backend", "rtl",
                                        "--analog", "typical", "--seed", "5"],
                                 catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    assert "analog model" in outcome.output
    bundle = read_bundle(bundle_dir)
    device = AnalogDevice(bundle.program.config, AnalogParams.load("typical"), seed=5)
    expected = run_executor(bundle.program, bundle.qmodel, np.load(x_path), device=device)
    with np.load(tmp_path / "y.npz") as y:
        assert np.array_equal(y["output_int"], expected.output_int)
