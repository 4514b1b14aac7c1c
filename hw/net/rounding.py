"""The integer contract's rounding shift as Amaranth expressions (docs/contract.md 2-3).

``floor((p + rnd) / 2**s) + z`` with ``rnd = 1 << (s - 1)`` (0 when ``s == 0``) is computed
as ``(p + offset) >> s`` with ``offset = (z << s) | rnd``: ``rnd`` lies below bit ``s``, so
the OR is the sum, and one adder does both the rounding and the zero point. This is the
output unit's formulation (:mod:`bitline.hw.core.output_unit`, stages ``ou_total`` and
``ou_clamp``); the output unit and the residual add both use these helpers.
"""

from __future__ import annotations

from amaranth import Const, Mux
from amaranth.hdl import Value

__all__ = ["clamp", "rounding_offset"]


def rounding_offset(zero_point: Value, shift: Value) -> Value:
    """Return ``(zero_point << shift) | rnd``, ``rnd = (1 << shift) >> 1``."""
    return (zero_point << shift) | ((Const(1, 1) << shift) >> 1)


def clamp(value: Value, low: Value, high: Value) -> Value:
    """Return ``value`` limited to ``[low, high]`` (``low`` wins if ``low > high``)."""
    return Mux(value < low, low, Mux(value > high, high, value))
