"""Fixtures shared by the test folders (the helpers themselves are in ``tests/support``),
and the order in which the test files are handed to the workers."""

from __future__ import annotations

import pytest

from support.networks import random_cnn_onnx
from support.ordering import LONGEST_FIRST


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
