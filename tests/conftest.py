"""Fixtures shared by the test folders (the helpers themselves are in ``tests/support``),
and the order in which the test files are handed to the workers."""

from __future__ import annotations

import pytest

from support.networks import random_cnn_onnx

#: The longest test files (Verilator builds, the bitstream, the wheel), longest first. They
#: are collected before all others, so that pytest-xdist's ``--dist loadfile`` hands them out
#: first and the short files fill the gaps (longest processing time first): with the files in
#: alphabetical order a long file starting late kept one worker busy alone at the end.
LONGEST_FIRST = (
    "cocotb/test_e2e_digits.py",
    "fpga/test_bitstream.py",
    "cocotb/test_e2e_small.py",
    "cocotb/test_board_uart.py",
    "cocotb/test_e2e_emulated.py",
    "hw/test_verilog.py",
    "cocotb/test_cocotb_smoke.py",
    "e2e/test_wheel.py",
    "hw/test_model.py",
    "fpga/test_fpga.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Move the files of :data:`LONGEST_FIRST` to the front, in that order (stable sort)."""
    tests_dir = config.rootpath / "tests"
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}

    def key(item):
        try:
            name = item.path.relative_to(tests_dir).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(name, len(rank))

    items.sort(key=key)


@pytest.fixture(scope="session")
def random_cnn():
    """``random_cnn(path, rng) -> Model``: a seeded random conv/pool/gemm network (ONNX)."""
    return random_cnn_onnx
