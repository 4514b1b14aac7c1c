"""The built wheel works on its own: package data inside it, the CLI smoke test from it.

The wheel is built from a copy of the source tree (so stale files of an earlier build in
the checkout cannot leak into it), installed with ``pip install --target`` into a folder
outside the checkout, and run with ``PYTHONPATH`` set to that folder from a working
directory outside the checkout. Every package-data lookup (builtin models, examples, board
constraints) must resolve inside that folder, never in the checkout.

``pip wheel`` builds in an isolated environment with the build requirements of
``pyproject.toml``, fetched from the package index as ``pip install`` does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

#: Building and installing the wheel takes about 20 s.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

#: What the wheel is built from: the package folders of pyproject.toml and what it names.
SOURCES = ("pyproject.toml", "README.md")

#: Printed by a Python run from the installed wheel: where each lookup resolved.
PROBE = """
import importlib.resources, json
import bitline.hw, bitline.sw, bitline.sim
from bitline.hw.boards import get_board
from bitline.sim.analog_params import AnalogParams, examples_dir
from bitline.sw.models import BUILTIN_MODELS
AnalogParams.load("typical")
model = BUILTIN_MODELS["digits-cnn"].load()
print(json.dumps({
    "modules": [bitline.hw.__file__, bitline.sw.__file__, bitline.sim.__file__],
    "constraints": str(get_board("ulx3s-85f").constraints_file()),
    "analog": str(examples_dir()),
    "examples": str(importlib.resources.files("bitline.examples") / "quant" / "bwq3.toml"),
    "model": model.source,
}))
"""


def package_folders() -> list[str]:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return sorted(set(mapping["package-dir"].values()))


def copy_sources(destination: Path) -> Path:
    destination.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in (*SOURCES, *package_folders()):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def run(command, *, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (f"{' '.join(map(str, command))} exited "
                                    f"{result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Build the wheel and install it into a folder of its own; return that folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = copy_sources(root / "source")
    dist = root / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source),
         "-w", str(dist)], cwd=root)
    (wheel,) = dist.glob("bitline-*.whl")
    site = root / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
         str(site), str(wheel)], cwd=root)
    return site


def test_the_wheel_holds_the_package_data_and_no_tests(installed):
    (wheel,) = (installed.parent / "dist").glob("bitline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"bitline/sw/models/digits_cnn.onnx", "bitline/sw/models/digits_resnet.onnx",
                "bitline/sw/models/mnist_lenet5.onnx", "bitline/sw/models/mnist_resnet.onnx",
                "bitline/sw/models/data/mnist5k.npz",
                "bitline/constraints/ulx3s.lpf", "bitline/examples/analog/typical.toml",
                "bitline/examples/fpga/ulx3s-small.toml", "bitline/examples/quant/bwq3.toml",
                "bitline/examples/rtl/digits.toml"}
    assert expected <= names, sorted(expected - names)
    assert not [name for name in names if name.startswith(("tests/", "bitline/tests/"))]
    assert not [name for name in names if "/support/" in name]


def wheel_env(site: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    return env


def test_package_data_resolves_inside_the_installed_wheel(installed, tmp_path):
    result = run([sys.executable, "-c", PROBE], cwd=tmp_path, env=wheel_env(installed))
    found = json.loads(result.stdout.strip().splitlines()[-1])
    paths = [*found.pop("modules"), *found.values()]
    outside = [path for path in paths if not Path(path).resolve().is_relative_to(installed)]
    assert not outside, f"resolved outside the installed wheel {installed}: {outside}"


def test_cli_info_runs_from_the_wheel(installed, tmp_path):
    result = run([sys.executable, "-m", "bitline.sw.cli", "info", "digits-cnn", "--json"],
                 cwd=tmp_path, env=wheel_env(installed))
    summary = json.loads(result.stdout)
    assert summary["model"] == "digits-cnn"
    assert Path(summary["source"]).resolve().is_relative_to(installed)
    assert summary["output_shape"] == [10]
