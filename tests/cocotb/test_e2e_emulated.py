"""cocotb end to end through ``bitline run BUNDLE --backend rtl`` with digital emulators.

The design is the small end-to-end config (:data:`support.configs.E2E_SMALL_CONFIG`) with
digital crossbar emulators behind the crossbar ports (one Verilator build, cached by digest):
a random CNN under ``ivq-spatial``, and one under ``isaac`` with ISAAC's offset weight
encoding, whose every layer must equal the golden model -- so the Verilog's input sum and
correction (docs/contract.md section 4) are exact. Shared pieces: ``support.e2e``.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.configs import E2E_SMALL_CONFIG
from support.e2e import compile_bundle, run_cli

pytestmark = pytest.mark.cocotb


def assert_rtl_equals_golden(bundle_dir, x_path, tmp_path):
    """Run the bundle on the rtl and golden backends (all layers); outputs must be equal."""
    output = run_cli("run", bundle_dir, "-i", x_path, "-o", tmp_path / "rtl.npz",
                     "--backend", "rtl", "--all-layers")
    assert "simulated cycles/s" in output and "emulators" in output
    run_cli("run", bundle_dir, "-i", x_path, "-o", tmp_path / "golden.npz", "--backend",
            "golden", "--all-layers")
    with np.load(tmp_path / "rtl.npz") as rtl, np.load(tmp_path / "golden.npz") as reference:
        assert set(rtl.files) == set(reference.files)
        for key in reference.files:
            assert np.array_equal(rtl[key], reference[key]), key


def test_cli_run_rtl_backend_emulated(workloads, tmp_path):
    """`bitline run BUNDLE --backend rtl`: digital emulators; equals the golden backend."""
    bundle_dir, _, x_path = workloads.random("small", "ivq-spatial")
    assert_rtl_equals_golden(bundle_dir, x_path, tmp_path)


def test_offset_encoding_on_verilog_equals_golden(random_cnn, tmp_path):
    config = E2E_SMALL_CONFIG
    rng = np.random.default_rng(100)
    model = random_cnn(tmp_path / "random.onnx", rng)
    calib_x = rng.random((16, *model.input_shape)).astype(np.float32)
    x_path = tmp_path / "x.npy"
    np.save(x_path, rng.random((1, *model.input_shape)).astype(np.float32))
    bundle_dir, program = compile_bundle(model, "isaac", "int8", config, calib_x,
                                         tmp_path / "bundle", encoding="offset")
    assert all(layer.weight_offset > 0 for layer in program.layers)
    assert_rtl_equals_golden(bundle_dir, x_path, tmp_path)
