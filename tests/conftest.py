"""Fixtures shared by the test folders (the helpers themselves are in ``tests/support``)."""

from __future__ import annotations

import pytest

from support.networks import random_cnn_onnx


@pytest.fixture(scope="session")
def random_cnn():
    """``random_cnn(path, rng) -> Model``: a seeded random conv/pool/gemm network (ONNX)."""
    return random_cnn_onnx
