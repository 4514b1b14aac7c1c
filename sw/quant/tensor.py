"""`QuantizedTensor`: integer sign-magnitude weights with per-channel scales.

Every weight scheme (int, pot, apot, adaptivfloat, ternary, binary, and BWQ's block-wise
widths) reduces to this one form (docs/contract.md, "Numbers"): ``values`` are signed
integers, ``w ~= values * scale``, and ``|values| = sum_k bit_k 2**k``. The bit planes are the
representation every mapper consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["QuantizedTensor", "BitPlanes"]


@dataclass(frozen=True)
class BitPlanes:
    """Bit planes of a signed integer tensor.

    ``planes[k]`` is the boolean plane of magnitude bit ``k`` (weight ``2**k``), shape
    ``(K, *values.shape)``; ``negative`` is the sign plane (True where the value is < 0).
    ``values == where(negative, -1, 1) * sum_k planes[k] << k`` exactly.
    """

    planes: np.ndarray
    negative: np.ndarray

    def compose(self) -> np.ndarray:
        """Rebuild the signed integer tensor from the planes."""
        weights = (np.int64(1) << np.arange(len(self.planes), dtype=np.int64))
        magnitude = np.tensordot(weights, self.planes.astype(np.int64), axes=(0, 0))
        return np.where(self.negative, -magnitude, magnitude)


@dataclass(frozen=True)
class QuantizedTensor:
    """Signed integer tensor with a broadcastable real scale.

    Attributes
    ----------
    values:
        int64 array, the weight's shape; sign-magnitude semantics.
    scale:
        float64 array broadcastable against ``values`` (per output channel: shape
        ``(O, 1, ...)``; per tensor: all ones).
    scheme:
        Scheme name, or an array of names per output channel for varied quantization.
    bits:
        Bit width (sign included), int or per-channel array.
    options:
        Scheme options used (e.g. ``exponent_bits`` for adaptivfloat).
    """

    values: np.ndarray
    scale: np.ndarray
    scheme: str | np.ndarray = "int"
    bits: int | np.ndarray = 8
    options: dict = field(default_factory=dict)

    def dequantize(self) -> np.ndarray:
        """Return ``values * scale`` (float64), exactly."""
        return self.values * self.scale

    @property
    def magnitude_bits(self) -> int:
        """Number of magnitude bit planes needed: bit length of ``max(|values|)``."""
        peak = int(np.abs(self.values).max(initial=0))
        return peak.bit_length()

    def bit_planes(self, count: int | None = None) -> BitPlanes:
        """Return the magnitude bit planes (``count`` planes, default :attr:`magnitude_bits`)."""
        count = self.magnitude_bits if count is None else count
        magnitude = np.abs(self.values).astype(np.int64)
        if count < int(magnitude.max(initial=0)).bit_length():
            raise ValueError(f"{count} bit planes cannot hold magnitude {magnitude.max()}")
        shifts = np.arange(count, dtype=np.int64).reshape((-1,) + (1,) * magnitude.ndim)
        planes = ((magnitude[None] >> shifts) & 1).astype(bool)
        return BitPlanes(planes=planes, negative=self.values < 0)
