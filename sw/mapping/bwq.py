"""The ``bwq`` strategy: BWQ's precision-aware packing of OU-sized blocks (docs/mapping.md).

Rows: chunks never mix BWQ row blocks of different activation widths, so each row group
of a crossbar issues only the top ``ceil(a_r / dac_bits)`` input slices of its block's width
``a_r``; a row block of width 0 is not mapped. On hardware whose OU is the BWQ block (the
``bwq`` preset, ``exact_rows_per_ou == ou_rows``) the chunks are exactly the row blocks.
Zero-bit (pruned) weight blocks hold no nonzero segment and take no cell and no read.
Columns: within a chunk, segments are grouped by significance: the OUs of one digit ``d``
hold only digit-``d`` columns, of any channel and sign, so same-significance bits of
different weights share an OU (one shift per OU, as in BWQ-H) and an OU never mixes
significances. Only full-width column groups are used (``cols // ou_cols`` per strip);
strips are balanced over the crossbars like ``ivq-temporal``.
"""

from __future__ import annotations

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sw.mapping.layout import DENSE, LayerBits, Placement, Spread, packed_placement

__all__ = ["place_bwq", "check_block_bits"]


def check_block_bits(matrix: np.ndarray, block_bits: np.ndarray, block_rows: int,
                     block_cols: int, name: str) -> None:
    """Check BWQ weight widths against the matrix: shape, and pruned blocks all zero.

    Raises
    ------
    ValueError
        Naming the layer and the offending block.
    """
    n_out, n_in = matrix.shape
    shape = (-(-n_out // block_cols), -(-n_in // block_rows))
    block_bits = np.asarray(block_bits)
    if block_bits.shape != shape:
        raise ValueError(
            f"layer {name}: block_bits has shape {block_bits.shape}, expected {shape} for "
            f"{block_cols}x{block_rows} blocks of a ({n_out}, {n_in}) matrix"
        )
    pruned = np.repeat(np.repeat(block_bits == 0, block_cols, axis=0), block_rows, axis=1)
    bad = np.argwhere(pruned[:n_out, :n_in] & (matrix != 0))
    if bad.size:
        n, i = bad[0]
        raise ValueError(
            f"layer {name}: block ({n // block_cols}, {i // block_rows}) has block_bits 0 "
            f"but weight [{n}, {i}] is {matrix[n, i]}"
        )


def place_bwq(bits: LayerBits, config: AcceleratorConfig, spread: Spread = DENSE) -> Placement:
    """Return the BWQ placement: per chunk, OUs of one significance each, packed."""
    chunk, q = np.nonzero(bits.nonzero.T)                 # sorted by chunk, digit, sign, n
    digit = bits.split_q(q)[0]
    width = config.ou_cols
    per_strip = spread.strip_col_groups(config)
    n_digits = max(bits.n_digits, 1)
    group = chunk * n_digits + digit
    counts = np.bincount(group, minlength=bits.n_chunks * n_digits)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(group)) - first[group]
    ous = (-(-counts // width)).reshape(bits.n_chunks, n_digits)
    ou_first = (np.cumsum(ous, axis=1) - ous).reshape(-1)
    ou = ou_first[group] + rank // width
    col = (ou % per_strip) * width + rank % width
    return packed_placement(bits, config, chunk, q, ou // per_strip, col, spread)
