"""Shared pieces of the cocotb end-to-end tests (tests/cocotb/test_e2e_*.py).

The bench (``bitline.sim.cocotb.tb_accelerator``) programs the accelerator through its host
interface with each bundle's ``image.bin`` and runs the network with the host driver; the
crossbar ports are answered by the Python crossbar model (ideal, or an ``AnalogDevice``).
The tests are split into files by accelerator design (digits, small, the CLI's emulated
design), so that pytest-xdist's ``--dist loadfile`` can build and run the designs on
different workers; each design is built once and cached by digest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.sim.rtl import DIGITS_CONFIG, bench_design, job_capacity
from bitline.sw.bundle import write_bundle
from bitline.sw.flow import DEFAULT_SPECS, calibration_inputs, compile_model

from support.configs import E2E_SMALL_CONFIG
from support.networks import random_cnn_onnx

__all__ = ["CHIP_ONLY", "CONFIGS", "VERILATOR", "Workloads", "compile_bundle", "report",
           "run_cli", "spec_for", "verilator_only"]

VERILATOR = (os.environ.get("BITLINE_SIM", "").strip().lower() or "verilator") == "verilator"

#: The tests on the digits design (DIGITS_CONFIG) run on Verilator only: too slow on Icarus.
verilator_only = pytest.mark.skipif(not VERILATOR, reason=(
    "digits design: Icarus 11 simulates it at ~1.5k cycles/s idle (Verilator ~46k), so the "
    "digits CNN's 335k cycles alone take minutes; Verilator only (docs/verification.md)"))

#: The two bench accelerators by name.
CONFIGS = {"digits": DIGITS_CONFIG, "small": E2E_SMALL_CONFIG}

#: Typical non-idealities (examples/analog/typical.toml) without read noise, for the digits
#: CNN: chip-level effects only, so the bench memoizes the crossbar's answers.
CHIP_ONLY = {"variation": 0.05, "stuck_at_0": 0.001, "stuck_at_1": 0.001, "ir_drop": 0.003,
             "adc_offset": 0.1, "adc_gain_error": 0.005, "g_on_us": 100.0, "g_off_us": 5.0}


def compile_bundle(model, strategy, spec, config, calib, out_dir, **options):
    """Quantize, map onto exactly ``config`` and write the bundle; return (dir, program)."""
    result = compile_model(model, strategy, spec, config, calib, xbars=config.n_xbars,
                           **options)
    assert result.program.config == config
    return write_bundle(out_dir, result.program, result.qmodel), result.program


class Workloads:
    """Bundles compiled on first use: ``digits()`` and ``random(config name, strategy)``.

    Each returns ``(bundle dir, program, input .npy)``; the digits CNN (bwq, 3-bit blocks)
    for DIGITS_CONFIG with 3 test images, and one seeded random CNN per strategy (its
    default spec, seed ``100 + index in STRATEGIES``) for either config with one input.
    """

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict = {}

    def digits(self):
        if "digits" not in self._cache:
            from bitline.sw.datasets import load_dataset
            from bitline.sw.models import resolve_model

            digits = resolve_model("digits-cnn")
            calib, _ = calibration_inputs(digits, "digits")
            x_test, _ = load_dataset("digits", "test")
            x_path = self.root / "digits_x.npy"
            np.save(x_path, np.asarray(x_test[:3], dtype=np.float32))
            bundle_dir, program = compile_bundle(digits, "bwq", "bwq3", DIGITS_CONFIG, calib,
                                                 self.root / "digits-bwq")
            self._cache["digits"] = (bundle_dir, program, x_path)
        return self._cache["digits"]

    def random(self, name: str, strategy: str):
        from bitline.hw.spec.program import STRATEGIES

        key = (name, strategy)
        if key not in self._cache:
            rng = np.random.default_rng(100 + STRATEGIES.index(strategy))
            model = random_cnn_onnx(self.root / f"{name}-{strategy}.onnx", rng)
            calib_x = rng.random((16, *model.input_shape)).astype(np.float32)
            x_path = self.root / f"{name}-{strategy}_x.npy"
            np.save(x_path, rng.random((1, *model.input_shape)).astype(np.float32))
            bundle_dir, program = compile_bundle(model, strategy, DEFAULT_SPECS[strategy],
                                                 CONFIGS[name], calib_x,
                                                 self.root / f"{name}-config-{strategy}")
            self._cache[key] = (bundle_dir, program, x_path)
        return self._cache[key]


def design_cache():
    """``get(name, crossbar="external")``: bench designs, generated once per session."""
    cache = {}

    def get(name, crossbar="external"):
        if (name, crossbar) not in cache:
            cache[name, crossbar] = bench_design(CONFIGS[name], crossbar)
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
    """Print the build and run times of a bench run (shown with ``pytest -s``)."""
    print(f"\n{name}: {result.simulator}, build {result.build_seconds:.1f} s "
          f"({'cached' if result.cached else 'fresh'}), run {result.test_seconds:.1f} s")


def run_cli(*args):
    """Invoke ``bitline ARGS`` in-process; assert exit 0; return its output."""
    from bitline.sw.cli import cli

    outcome = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    return outcome.output
