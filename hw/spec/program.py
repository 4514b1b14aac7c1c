"""What a mapper emits: crossbar images, row maps and OU entries per layer job.

A *layer job* is one compute layer seen as a matrix-vector product on the crossbars: the
host streams input vectors of length ``n_inputs`` (one im2col column per output pixel, in the
IR's im2col order, see :mod:`bitline.sw.frontend.ir`) and receives ``n_outputs`` values per vector.
Every strategy (isaac, ivq-naive, ivq-spatial, ivq-temporal, bwq) emits this same structure;
one periphery runs them all (docs/contract.md, "The OU program").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import entry_layout, numpy_dtype

__all__ = ["LayerProgram", "Program", "empty_entries", "STRATEGIES"]

#: Mapping strategies, in the order reports list them.
STRATEGIES = ("isaac", "ivq-naive", "ivq-spatial", "ivq-temporal", "bwq")


def empty_entries(config: AcceleratorConfig, count: int = 0) -> np.ndarray:
    """Return a zeroed structured array of ``count`` OU entries for ``config``."""
    return np.zeros(count, dtype=numpy_dtype(entry_layout(config)))


@dataclass
class LayerProgram:
    """The mapped form of one compute layer.

    Attributes
    ----------
    name:
        IR layer name.
    n_inputs, n_outputs:
        Input vector length (im2col rows ``K``) and output channels ``O``.
    act_bits:
        Input activation width; the widest entry issues slices ``[0, ceil(act_bits/dac_bits))``.
    xbars:
        int ``(X,)`` global crossbar-unit indices this layer owns (a unit holds one layer).
    row_maps:
        int32 ``(X, rows)``: input index driving each row of each owned crossbar, -1 unused.
    cells:
        uint8 ``(X, rows, cols)``: programmed level of every cell of each owned crossbar.
    entries:
        Structured OU entries (dtype of :func:`empty_entries`); ``xbar`` holds the *global*
        unit index. Order is execution order per crossbar; units run in parallel.
    bias, mult, shift:
        int64 ``(O,)`` output-unit parameters (see :class:`bitline.sw.integer.qmodel.QuantLayer`).
    mode, zero_point, clamp_lo, clamp_hi:
        Output unit mode (``"requant"`` / ``"raw"``), output zero point and clamp.
    stats:
        Mapper statistics (nonzero cells, allocated cells, ...), copied into the manifest.
    """

    name: str
    n_inputs: int
    n_outputs: int
    act_bits: int
    xbars: np.ndarray
    row_maps: np.ndarray
    cells: np.ndarray
    entries: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    mode: str = "requant"
    zero_point: int = 0
    clamp_lo: int = 0
    clamp_hi: int = 255
    stats: dict = field(default_factory=dict)


@dataclass
class Program:
    """A whole network mapped onto one accelerator configuration."""

    config: AcceleratorConfig
    strategy: str
    layers: list[LayerProgram]

    @property
    def xbars_used(self) -> int:
        """Number of crossbar units holding weights."""
        return int(sum(len(layer.xbars) for layer in self.layers))

    def layer(self, name: str) -> LayerProgram:
        """Return the layer program called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"program has no layer {name!r}")
