"""Packaging: import names live under `bitline`; no generic top-level hw/sw/sim is installed."""

import subprocess
import sys
from pathlib import Path


def test_import_names():
    import bitline.hw
    import bitline.sim
    import bitline.sw

    for module in (bitline.hw, bitline.sw, bitline.sim):
        assert Path(module.__file__).parent.name in {"hw", "sw", "sim"}


def test_no_generic_top_level_modules():
    # Run outside the checkout so the working directory does not shadow anything.
    code = "import importlib.util as u; print([n for n in ('hw','sw','sim') if u.find_spec(n)])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/", check=True)
    assert result.stdout.strip() == "[]"


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "bitline.sw.cli", "--help"],
                            capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "bitline" in result.stdout


def test_module_entry_point_keeps_the_exit_code():
    # `python -m bitline.sw.cli` must report failures like the console script (exit 2 for a
    # usage or input error), not exit 0 after printing the error.
    result = subprocess.run([sys.executable, "-m", "bitline.sw.cli", "info", "/no/such.onnx"],
                            capture_output=True, text=True, cwd="/")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
