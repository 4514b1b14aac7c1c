"""cocotb end to end: compiled networks on the generated Verilog with the analog crossbar model.

The bench (``bitline.sim.cocotb.tb_accelerator``) programs the accelerator through its host
interface with each bundle's ``image.bin`` and runs the network with the host driver; the
crossbar ports are answered by the Python crossbar model (ideal, or an ``AnalogDevice``).
Every layer's output must equal the golden model (ideal) or the executor with the same chip
seed (analog), every job's counters the performance model.

Two accelerators, each built once per design and cached by digest (``build/cocotb``):

* :data:`bitline.sim.rtl.DIGITS_CONFIG` (external crossbars) -- the digits CNN and one random
  network per strategy;
* :data:`SMALL` -- three 36 x 128 crossbars whose four ADCs are shared by the OU's eight
  columns (two conversions per read) behind a two-cycle ADC: read noise per strategy, the
  corrupted images, the checker self-test and the CLI (external and emulated; the emulated
  design is a third build).

With ``BITLINE_SIM=icarus`` the ``SMALL`` tests run on Icarus Verilog 11 too; the three on the
digits design skip there, naming the reason (docs/verification.md, "Icarus").
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.hw.spec.program import STRATEGIES
from bitline.sim.cocotb.runner import BenchFailure
from bitline.sim.rtl import DIGITS_CONFIG, bench_design, job_capacity, run_spec
from bitline.sw.bundle import write_bundle
from bitline.sw.flow import DEFAULT_SPECS, calibration_inputs, compile_model

from support.configs import E2E_SMALL_CONFIG

VERILATOR = (os.environ.get("BITLINE_SIM", "").strip().lower() or "verilator") == "verilator"

pytestmark = pytest.mark.cocotb

#: The tests on the digits design (DIGITS_CONFIG) run on Verilator only: too slow on Icarus.
verilator_only = pytest.mark.skipif(not VERILATOR, reason=(
    "digits design: Icarus 11 simulates it at ~1.5k cycles/s idle (Verilator ~46k), so the "
    "digits CNN's 335k cycles alone take minutes; Verilator only (docs/verification.md)"))

SMALL = E2E_SMALL_CONFIG

#: Typical non-idealities (examples/analog/typical.toml) without read noise, for the digits
#: CNN: chip-level effects only, so the bench memoizes the crossbar's answers.
CHIP_ONLY = {"variation": 0.05, "stuck_at_0": 0.001, "stuck_at_1": 0.001, "ir_drop": 0.003,
             "adc_offset": 0.1, "adc_gain_error": 0.005, "g_on_us": 100.0, "g_off_us": 5.0}


def compile_bundle(model, strategy, spec, config, calib, out_dir):
    """Quantize, map onto exactly ``config`` and write the bundle; return (dir, program)."""
    result = compile_model(model, strategy, spec, config, calib, xbars=config.n_xbars)
    assert result.program.config == config
    return write_bundle(out_dir, result.program, result.qmodel), result.program


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, random_cnn):
    """The digits CNN for DIGITS_CONFIG; one random network per strategy for each config.

    Returns ``{"digits": item, (config name, strategy): item}`` with ``item = (bundle dir,
    program, input .npy)``.
    """
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model

    root = tmp_path_factory.mktemp("e2e")
    digits = resolve_model("digits-cnn")
    calib, _ = calibration_inputs(digits, "digits")
    x_test, _ = load_dataset("digits", "test")
    np.save(root / "digits_x.npy", np.asarray(x_test[:3], dtype=np.float32))
    bundle_dir, program = compile_bundle(digits, "bwq", "bwq3", DIGITS_CONFIG, calib,
                                         root / "digits-bwq")
    items = {"digits": (bundle_dir, program, root / "digits_x.npy")}
    for name, config in (("digits", DIGITS_CONFIG), ("small", SMALL)):
        for index, strategy in enumerate(STRATEGIES):
            rng = np.random.default_rng(100 + index)
            model = random_cnn(root / f"{strategy}.onnx", rng)
            calib_x = rng.random((16, *model.input_shape)).astype(np.float32)
            x_path = root / f"{strategy}_x.npy"
            np.save(x_path, rng.random((1, *model.input_shape)).astype(np.float32))
            bundle_dir, program = compile_bundle(model, strategy, DEFAULT_SPECS[strategy],
                                                 config, calib_x,
                                                 root / f"{name}-config-{strategy}")
            items[name, strategy] = (bundle_dir, program, x_path)
    return items


@pytest.fixture(scope="session")
def designs():
    """Bench designs (generated once, cached on disk) by ``(config name, crossbar)``."""
    cache = {}

    def get(name, crossbar="external"):
        if (name, crossbar) not in cache:
            config = {"digits": DIGITS_CONFIG, "small": SMALL}[name]
            cache[name, crossbar] = bench_design(config, crossbar)
        return cache[name, crossbar]

    return get


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


@pytest.mark.slow
@verilator_only
def test_digits_cnn_ideal_bit_exact_to_golden(bundles, designs, tmp_path):
    """3 test images: all 8 layers equal the golden model, 5 jobs' counters the model."""
    design = designs("digits")
    result = run_spec(design, spec_for(design, [bundles["digits"]], "golden"),
                      work_dir=tmp_path)
    report("digits-cnn ideal", result)


@pytest.mark.slow
@verilator_only
def test_digits_cnn_analog_equals_executor(bundles, designs, tmp_path):
    """Variation, stuck cells, IR drop and ADC errors: equal to the executor, same seed."""
    design = designs("digits")
    bundle_dir, program, x_path = bundles["digits"]
    np.save(tmp_path / "x1.npy", np.load(x_path)[:1])
    spec = spec_for(design, [(bundle_dir, program, tmp_path / "x1.npy")], "executor",
                    analog=CHIP_ONLY, seed=7)
    report("digits-cnn analog", run_spec(design, spec, work_dir=tmp_path))


@pytest.mark.slow
@verilator_only
def test_every_strategy_random_shapes_golden_and_counters(bundles, designs, tmp_path):
    """Five strategies, random conv+pool+gemm shapes: layers == golden, counters == model."""
    design = designs("digits")
    items = [bundles["digits", strategy] for strategy in STRATEGIES]
    report("strategies ideal", run_spec(design, spec_for(design, items, "golden"),
                                        work_dir=tmp_path))


@pytest.mark.slow
def test_every_strategy_read_noise_equals_executor(bundles, designs, tmp_path):
    """Typical chip with read noise, shared ADCs: read numbers match the executor's."""
    from bitline.sim.analog_params import AnalogParams

    design = designs("small")
    items = [bundles["small", strategy] for strategy in STRATEGIES]
    typical = AnalogParams.load("typical").to_dict()
    spec = spec_for(design, items, "executor", analog=typical, seed=11)
    report("strategies analog", run_spec(design, spec, work_dir=tmp_path))


def test_corrupted_image_is_reported_by_the_hardware(bundles, designs, tmp_path):
    """Magic, header, table, cells, last section, unit, config: STATUS error codes."""
    design = designs("small")
    item = bundles["small", "bwq"]
    spec = spec_for(design, [item], "none", corrupt=str(item[0]))
    report("corrupted image", run_spec(design, spec, test="corrupted_image",
                                       work_dir=tmp_path))


def test_checker_fails_on_a_broken_expected_value(bundles, designs, tmp_path):
    """One expected value off by one: the bench must fail (the checker can fail)."""
    design = designs("small")
    spec = spec_for(design, [bundles["small", "ivq-temporal"]], "golden",
                    break_expected=True)
    with pytest.raises(BenchFailure, match="1 of 1 cocotb tests failed") as failure:
        run_spec(design, spec, work_dir=tmp_path)
    assert failure.value.result.failed == 1


def run_cli(*args):
    from bitline.sw.cli import cli

    outcome = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


def test_cli_run_rtl_backend_emulated(bundles, tmp_path):
    """`bitline run BUNDLE --backend rtl`: digital emulators; equals the golden backend."""
    bundle_dir, _, x_path = bundles["small", "ivq-spatial"]
    output = run_cli("run", bundle_dir, "-i", x_path, "-o", tmp_path / "rtl.npz",
                     "--backend", "rtl", "--all-layers")
    assert "simulated cycles/s" in output and "emulators" in output
    run_cli("run", bundle_dir, "-i", x_path, "-o", tmp_path / "golden.npz", "--backend",
            "golden", "--all-layers")
    with np.load(tmp_path / "rtl.npz") as rtl, np.load(tmp_path / "golden.npz") as reference:
        assert set(rtl.files) == set(reference.files)
        for key in reference.files:
            assert np.array_equal(rtl[key], reference[key]), key


def test_cli_run_rtl_backend_analog(bundles, tmp_path):
    """`--analog typical --seed 5`: the RTL's output equals the executor's on that chip."""
    from bitline.sim.analog import AnalogDevice
    from bitline.sim.analog_params import AnalogParams
    from bitline.sim.executor import run_executor
    from bitline.sw.bundle import read_bundle

    bundle_dir, _, x_path = bundles["small", "bwq"]
    output = run_cli("run", bundle_dir, "-i", x_path, "-o", tmp_path / "y.npz", "--backend",
                     "rtl", "--analog", "typical", "--seed", "5")
    assert "analog model" in output
    bundle = read_bundle(bundle_dir)
    device = AnalogDevice(bundle.program.config, AnalogParams.load("typical"), seed=5)
    expected = run_executor(bundle.program, bundle.qmodel, np.load(x_path), device=device)
    with np.load(tmp_path / "y.npz") as y:
        assert np.array_equal(y["output_int"], expected.output_int)
