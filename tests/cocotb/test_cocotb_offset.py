"""cocotb end to end: the offset weight encoding on the generated Verilog.

A random CNN compiled with ``isaac`` and ``encoding="offset"`` onto the small end-to-end
config runs through ``bitline run BUNDLE --backend rtl`` (digital emulators behind the
crossbar ports; the design is the one tests/cocotb/test_cocotb_e2e.py builds, cached by
digest): every layer's output must equal the golden model's, so the Verilog's input sum and
correction (docs/contract.md section 4) are exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.sw.bundle import write_bundle
from bitline.sw.flow import compile_model

from support.configs import E2E_SMALL_CONFIG

pytestmark = pytest.mark.cocotb


def run_cli(*args):
    from bitline.sw.cli import cli

    outcome = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


def test_offset_encoding_on_verilog_equals_golden(random_cnn, tmp_path):
    config = E2E_SMALL_CONFIG
    rng = np.random.default_rng(100)
    model = random_cnn(tmp_path / "random.onnx", rng)
    calib_x = rng.random((16, *model.input_shape)).astype(np.float32)
    x_path = tmp_path / "x.npy"
    np.save(x_path, rng.random((1, *model.input_shape)).astype(np.float32))
    result = compile_model(model, "isaac", "int8", config, calib_x, xbars=config.n_xbars,
                           encoding="offset")
    assert all(layer.weight_offset > 0 for layer in result.program.layers)
    bundle_dir = write_bundle(tmp_path / "bundle", result.program, result.qmodel)
    output = run_cli("run", bundle_dir, "-i", x_path, "-o", tmp_path / "rtl.npz",
                     "--backend", "rtl", "--all-layers")
    assert "emulators" in output
    run_cli("run", bundle_dir, "-i", x_path, "-o", tmp_path / "golden.npz", "--backend",
            "golden", "--all-layers")
    with np.load(tmp_path / "rtl.npz") as rtl, np.load(tmp_path / "golden.npz") as reference:
        assert set(rtl.files) == set(reference.files)
        for key in reference.files:
            assert np.array_equal(rtl[key], reference[key]), key
