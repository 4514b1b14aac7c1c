"""The IVQ strategies: ``ivq-naive``, ``ivq-spatial`` and ``ivq-temporal`` (docs/mapping.md).

All three keep IVQ's magnitude alignment of the bits: a column segment holds digit ``d``
(magnitude bit ``d`` with 1-bit cells; ``cell_bits`` adjacent magnitude bits of the same
weight with wider cells) of the weights of one sign of one output channel over one chunk
of inputs. They differ in where the segments go:

* ``ivq-naive`` — magnitude-major columns ``(digit, sign, channel)``: bit plane ``d`` of all
  channels is one contiguous block of columns (its own crossbars once ``2*O >= cols``, as
  in Bit-Transformer); every segment is placed, so all-zero ("hollow") OUs are read too.
* ``ivq-spatial`` — per row tile (the chunks sharing a crossbar's row groups), columns whose
  segments are all zero are dropped and the rest sorted by their nonzero pattern over the
  row groups, so hollow segments gather into OUs and crossbars that get no entry (hollow
  OUs are not read, hollow crossbars not allocated). A physical column still carries one
  ``(digit, sign, channel)`` in all row groups of its crossbar.
* ``ivq-temporal`` — the shift belongs to the entry, not the column: each chunk's nonzero
  segments are packed densely, in ``(digit, sign, channel)`` order, into the full-width
  OUs of its own strips (row groups; a narrower last column group, when ``cols`` is not a
  multiple of ``ou_cols``, stays unused), so one physical column carries different
  channels and bits in different row groups. Each chunk then needs
  ``ceil(nonzero segments / ou_cols)`` OUs, the minimum for its row set; strips are
  balanced over the crossbars.
"""

from __future__ import annotations

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.mapping.layout import (
    DENSE,
    LayerBits,
    Placement,
    Spread,
    packed_placement,
    regular_placement,
)

__all__ = ["place_naive", "place_spatial", "place_temporal"]


def place_naive(bits: LayerBits, config: AcceleratorConfig, spread: Spread = DENSE) -> Placement:
    """Return the naive magnitude-aligned placement: ``(digit, sign, channel)`` columns."""
    return regular_placement(bits, config, np.arange(bits.n_q), spread)


def _pattern_order(pattern: np.ndarray) -> np.ndarray:
    """Order columns so equal and similar nonzero patterns over row groups are adjacent.

    Lexicographic sort of the patterns, row group 0 most significant, nonzero first:
    columns that are nonzero in the same leading row groups sit side by side, so an OU
    (``ou_cols`` adjacent columns) tends to be either full or empty in each row group.
    (Sorting by popcount first, or by row-group density, was within 1-7% on ResNet-18
    ``pot4`` layers and no better.)
    """
    return np.lexsort([~pattern[:, g] for g in range(pattern.shape[1] - 1, -1, -1)])


def place_spatial(bits: LayerBits, config: AcceleratorConfig,
                  spread: Spread = DENSE) -> Placement:
    """Return the spatial placement: hollow columns dropped, the rest sorted by pattern."""
    capacity = spread.row_groups(config)
    cols = spread.columns(config)
    n_row_tiles = -(-bits.n_chunks // capacity)
    parts: list[tuple[np.ndarray, ...]] = []
    strip_rows: list[np.ndarray] = []
    n_xbars = 0
    for tile in range(n_row_tiles):
        chunks = np.arange(tile * capacity, min((tile + 1) * capacity, bits.n_chunks))
        pattern = bits.nonzero[:, chunks]
        kept = np.flatnonzero(pattern.any(axis=1))
        if kept.size == 0:
            continue
        kept = kept[_pattern_order(pattern[kept])]
        n_col_tiles = -(-kept.size // cols)
        position, group = np.nonzero(pattern[kept])
        parts.append((n_xbars + position // cols, group, position % cols, kept[position]))
        strip = np.full(config.row_groups, -1, dtype=np.int64)
        strip[:len(chunks)] = chunks
        strip_rows.extend([strip] * n_col_tiles)
        n_xbars += n_col_tiles
    if not parts:
        strip_chunk = np.zeros((0, config.row_groups), dtype=np.int64)
        nothing = np.zeros(0, dtype=np.int64)
        return Placement(0, strip_chunk, nothing, nothing, nothing, nothing)
    xbar, group, col, q = (np.concatenate(values) for values in zip(*parts))
    return Placement(n_xbars=n_xbars, strip_chunk=np.stack(strip_rows), xbar=xbar,
                     row_group=group, col=col, q=q)


def place_temporal(bits: LayerBits, config: AcceleratorConfig,
                   spread: Spread = DENSE) -> Placement:
    """Return the temporal placement: each chunk's nonzero segments packed column-dense."""
    chunk, q = np.nonzero(bits.nonzero.T)                 # sorted by chunk, then column id
    first = np.concatenate([[0], np.cumsum(np.bincount(chunk, minlength=bits.n_chunks))])
    rank = np.arange(len(chunk)) - first[chunk]
    width = config.ou_cols
    per_strip = spread.strip_col_groups(config)
    ou = rank // width
    col = (ou % per_strip) * width + rank % width
    return packed_placement(bits, config, chunk, q, ou // per_strip, col, spread)
