"""The inverse of every mapper: the integer weight matrix a layer program computes with.

:func:`reconstruct_matrix` reads only the program (cells, row maps, entries and the weight
offset), so ``reconstruct_matrix(map_matrix(W, ...)) == W`` checks a mapper without trusting
its intermediate data (tests/unit/test_mapping.py, tests/unit/test_offset_encoding.py).
"""

from __future__ import annotations

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import LayerProgram, entry_columns

__all__ = ["reconstruct_matrix"]


def reconstruct_matrix(layer: LayerProgram, config: AcceleratorConfig) -> np.ndarray:
    """Rebuild the integer ``(O, K)`` weight matrix a layer program computes with.

    The inverse of every mapper: for each entry and each valid column ``j``, every driven
    row ``r`` of the entry's row group adds ``(-1)**sign * level[r, col] << shift`` to
    ``W[dest, row_map[r]]``; with the offset encoding, ``layer.weight_offset`` is then
    subtracted from every weight of a mapped input. Slices are ignored (a BWQ row block of
    activation width 0 is not mapped, so its columns come back as zeros).

    Raises
    ------
    ValueError
        If an entry names a crossbar the layer does not own.
    """
    n_out, n_in = layer.n_outputs, layer.n_inputs
    matrix = np.zeros((n_out, n_in), dtype=np.int64)
    entries = layer.entries
    if len(entries) == 0:
        return matrix
    order = np.argsort(layer.xbars)
    position = np.searchsorted(layer.xbars[order], entries["xbar"])
    position = np.minimum(position, len(order) - 1)
    if np.any(layer.xbars[order][position] != entries["xbar"]):
        raise ValueError(f"layer {layer.name}: an entry names a crossbar the layer does not own")
    local = order[position]
    desc = entry_columns(entries, config.ou_cols)
    e, j = np.nonzero(desc["valid"])
    col = entries["col_group"][e] * config.ou_cols + j
    row = entries["row_group"][e][:, None] * config.ou_rows + np.arange(config.ou_rows)[None, :]
    inside = row < config.rows
    row = np.minimum(row, config.rows - 1)
    x = local[e][:, None]
    source = np.where(inside, layer.row_maps[x, row], -1)
    level = layer.cells[x, row, col[:, None]].astype(np.int64)
    value = np.where(desc["sign"][e, j] == 1, -1, 1)[:, None] * (
        level << desc["shift"][e, j][:, None])
    driven = (source >= 0) & (level != 0)
    dest = np.broadcast_to(desc["dest"][e, j][:, None], source.shape)
    np.add.at(matrix, (dest[driven], source[driven]), value[driven])
    if layer.weight_offset:
        mapped = np.unique(layer.row_maps[layer.row_maps >= 0])
        matrix[:, mapped] -= int(layer.weight_offset)
    return matrix
