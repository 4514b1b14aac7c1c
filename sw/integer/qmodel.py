"""The quantized model: what the quantizer produces and the golden model, mappers and bundle consume.

A :class:`QuantizedModel` wraps an IR :class:`~bitline.sw.frontend.ir.Model` and adds, per layer, the
integer parameters of docs/contract.md: activation parameters of every tensor, integer
weights with per-channel scales, integer biases and output-unit multipliers, and for BWQ the
per-block weight widths and per-row-block activation widths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.quant.tensor import QuantizedTensor

__all__ = ["ActParams", "QuantLayer", "QuantizedModel", "fixed_point"]


@dataclass(frozen=True)
class ActParams:
    """Quantization of one activation tensor: ``real = scale * (q - zero_point)``.

    ``q`` is an unsigned integer in ``[0, 2**bits - 1]``; ``zero_point`` is 0 for tensors
    that are non-negative (after ReLU, the input image) and ``2**(bits-1)`` for signed ones.
    """

    bits: int
    scale: float
    zero_point: int = 0

    @property
    def qmax(self) -> int:
        """Largest code, ``2**bits - 1``."""
        return (1 << self.bits) - 1


def fixed_point(real: np.ndarray, mult_bits: int = 16, max_shift: int = 63):
    """Approximate positive reals as ``mult * 2**-shift`` with ``mult < 2**(mult_bits-1)``.

    The one definition of the output unit's multiplier encoding (docs/contract.md): ``mult``
    is normalized into ``[2**(mult_bits-2), 2**(mult_bits-1))`` (15 significant bits for 16)
    by ``shift = mult_bits - 2 - floor(log2(real))``, rounded half-even, and clipped to
    ``0 <= shift <= max_shift``. Zero maps to ``(0, 0)``.

    Returns ``(mult, shift)`` as int64 arrays of ``real``'s shape.
    """
    real = np.asarray(real, dtype=np.float64)
    if np.any(real < 0) or not np.all(np.isfinite(real)):
        raise ValueError("fixed_point needs finite, non-negative multipliers")
    safe = np.where(real > 0, real, 1.0)
    shift = (mult_bits - 2) - np.floor(np.log2(safe)).astype(np.int64)
    shift = np.clip(shift, 0, max_shift)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.rint(safe * np.exp2(shift))
    # at shift 0 a multiplier that does not fit cannot be halved (that would need a
    # negative shift): refuse it before the int64 cast, which overflows for huge reals
    if np.any((scaled >= 2.0 ** (mult_bits - 1)) & (shift == 0)):
        raise ValueError(f"multiplier too large for the output unit (shift would be "
                         f"negative): largest {float(real.max()):.6g}, the output unit "
                         f"holds below {2 ** (mult_bits - 1)}")
    mult = scaled.astype(np.int64)
    overflow = mult >= (1 << (mult_bits - 1))      # rounded up to 2**(mult_bits-1): halve
    mult = np.where(overflow, mult >> 1, mult)
    shift = np.where(overflow, shift - 1, shift)
    mult = np.where(real > 0, mult, 0)
    shift = np.where(real > 0, shift, 0)
    return mult.astype(np.int64), shift.astype(np.int64)


@dataclass
class QuantLayer:
    """Integer parameters of one IR layer.

    Attributes
    ----------
    layer:
        The IR layer.
    inputs:
        ActParams of each input tensor (two for ``add``).
    output:
        ActParams of the output tensor; ``None`` when ``mode == "raw"`` (the model's last
        compute layer emits its accumulator, dequantized by ``acc_scale``).
    weight:
        Quantized weights (compute layers), ``values`` in the IR weight's shape.
    bias:
        int64 ``(O,)`` bias in accumulator units, ``rint(b / (s_in * s_w[n]))``.
    mult, shift:
        int64 ``(O,)`` output-unit multiplier (compute layers) or ``(2,)`` for ``add``
        (one multiplier per operand, the same shift in both entries).
    mode:
        ``"requant"`` or ``"raw"``.
    clamp_lo, clamp_hi:
        Output clamp in codes (ReLU: ``clamp_lo = zero_point``; ReLU6 lowers ``clamp_hi``).
    block_bits:
        BWQ only: int ``(ceil(O/ou_cols), ceil(K/ou_rows))`` weight width of each OU-sized
        block of the ``(O, K)`` weight matrix (0 = pruned), else ``None``.
    act_block_bits:
        BWQ only: int ``(ceil(K/ou_rows),)`` activation width per row block (LSB slices
        beyond it are dropped), else ``None``.
    """

    layer: Layer
    inputs: list[ActParams]
    output: ActParams | None
    weight: QuantizedTensor | None = None
    bias: np.ndarray | None = None
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    mode: str = "requant"
    clamp_lo: int = 0
    clamp_hi: int = 255
    block_bits: np.ndarray | None = None
    act_block_bits: np.ndarray | None = None

    @property
    def acc_scale(self) -> np.ndarray:
        """Real value of one accumulator unit per output channel, ``s_in * s_w[n]``."""
        if self.weight is None:
            raise ValueError(f"layer {self.layer.name} has no weights")
        return self.inputs[0].scale * self.weight.scale.reshape(-1)


@dataclass
class QuantizedModel:
    """An IR model with integer parameters for every layer.

    ``input`` quantizes the model input (``q = clip(rint(x / scale) + zero_point, 0, qmax)``);
    ``layers`` maps layer names to :class:`QuantLayer`, in the model's layer order; ``spec``
    keeps the quantization spec that produced it (for the manifest).
    """

    model: Model
    input: ActParams
    layers: dict[str, QuantLayer]
    spec: dict = field(default_factory=dict)

    @property
    def compute_layers(self) -> list[QuantLayer]:
        """Quantized compute layers, in order."""
        return [self.layers[layer.name] for layer in self.model.compute_layers]
