"""Fault-aware re-encoding: choose each weight's digits so that stuck cells hold what they read.

The cells of one *weight term* -- one input ``i`` and one output channel ``dest`` -- are
every read cell (driven row mapped to ``i``, valid column whose descriptor sends its sum to
``dest``) of the layer's units; the term adds ``x[i] * sum (-1)**sign * level * 2**shift``
to ``dest`` (docs/contract.md section 4). Any choice of levels with the same signed sum
computes the same matrix on a healthy chip, and the differential encoding has many: a
weight ``w`` is ``p - n`` for its positive digits ``p`` and negative digits ``n``, so a
positive digit stuck at 1 above a weight's magnitude (a hollow bit plane of ``ivq-naive``)
is made right by setting the same digit of ``n`` as well (``w = (p + 2**d) - (n + 2**d)``).

:func:`reencode` takes, for every term with a read stuck cell carrying a wrong value, the
levels of its cells that minimise, in this order, the stuck cells' weighted error
``sum |stuck - level| * 2**shift`` (over the layer's copies), their count, and the number
of cells changed, subject to the term's signed sum staying exactly what it was. Per term
the two signs' digit combinations are enumerated (``levels ** cells`` per sign, numpy over
blocks of terms): the best negative combination for every value, then the best positive
combination whose value minus the term's is a reachable negative value. The original
levels are a candidate, so the error never rises; a term whose count of wrong cells would
rise (a lower weighted error on more low-shift cells) keeps its levels, so neither does
the count. Terms with more than :data:`MAX_COMBINATIONS` combinations on one sign (more
than 12 one-bit cells) are left as they are.

Only levels change: row maps, entries and everything the hardware counts per read stay
(the ADC stays exact because a mapper drives at most ``exact_rows_per_ou`` rows per OU,
whatever their levels); the statistic ``nonzero_cells`` is recounted by the caller.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import product

import numpy as np
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import LayerProgram, entry_columns

__all__ = ["MAX_COMBINATIONS", "reencode"]

#: Most level combinations enumerated for one sign of one term.
MAX_COMBINATIONS = 4096
#: Term x combination x cell elements enumerated at once (bounds memory).
_BLOCK_ELEMENTS = 1 << 21


def _read_cells(layer: LayerProgram, config: AcceleratorConfig) -> dict[str, np.ndarray]:
    """Every read cell of ``layer``: local unit, row, column, term id, sign, shift, level.

    A term is ``(input, dest, slice_lo, slice_hi)``: cells read with other slices add other
    multiples of the input, so they are kept apart.
    """
    entries, ou_rows, ou_cols = layer.entries, config.ou_rows, config.ou_cols
    desc = entry_columns(entries, ou_cols)
    owned = np.asarray(layer.xbars, dtype=np.int64)
    order = np.argsort(owned)
    local = order[np.searchsorted(owned[order], entries["xbar"].astype(np.int64))]
    e, j = np.nonzero(desc["valid"] != 0)
    col = entries["col_group"][e].astype(np.int64) * ou_cols + j
    row = entries["row_group"][e].astype(np.int64)[:, None] * ou_rows + np.arange(ou_rows)
    e, j, col = (np.repeat(a, ou_rows) for a in (e, j, col))
    row = row.reshape(-1)
    x = local[e]
    inside = (row < config.rows) & (col < config.cols)
    e, j, col, row, x = e[inside], j[inside], col[inside], row[inside], x[inside]
    inputs = np.asarray(layer.row_maps)[x, row].astype(np.int64)
    driven = inputs >= 0
    e, j, col, row, x, inputs = (a[driven] for a in (e, j, col, row, x, inputs))
    span = config.max_slices + 1
    key = ((inputs * max(layer.n_outputs, 1) + desc["dest"][e, j]) * span
           + entries["slice_lo"][e].astype(np.int64)) * span + entries["slice_hi"][e]
    _, term = np.unique(key, return_inverse=True)
    return {"x": x, "row": row, "col": col, "term": term.reshape(-1),
            "sign": desc["sign"][e, j] != 0, "shift": desc["shift"][e, j],
            "level": layer.cells[x, row, col].astype(np.int64)}


def _slots(term: np.ndarray, sign: np.ndarray, shift: np.ndarray):
    """Return ``(order, slot)``: cells sorted by (term, sign, shift) and each cell's index
    within its (term, sign) group in that order."""
    order = np.lexsort((shift, sign, term))
    group = term[order] * 2 + sign[order]
    start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    size = np.diff(np.r_[start, len(group)])
    slot = np.arange(len(group)) - np.repeat(start, size)
    return order, slot


def _side_tables(n_terms, width, term, slot, shift, level, stuck, levels):
    """Per sign: ``(weight, cost)``, ``weight`` int ``(T, width)`` ``2**shift`` (0 on padding)
    and ``cost`` int ``(T, width, levels, 3)`` (error, wrong count, changed) per level; a
    padding slot allows level 0 only."""
    weight = np.zeros((n_terms, width), dtype=np.int64)
    weight[term, slot] = 1 << shift
    cost = np.zeros((n_terms, width, levels, 3), dtype=np.int64)
    cost[:, :, 1:, 0] = np.iinfo(np.int32).max                  # padding: level 0 only
    candidate = np.arange(levels)
    faulty = stuck[:, :, None] >= 0                              # (K, n, 1)
    off = faulty & (stuck[:, :, None] != candidate)              # (K, n, levels)
    error = (np.abs(stuck[:, :, None] - candidate) * faulty).sum(0) * (1 << shift)[:, None]
    cost[term, slot] = np.stack([error, off.sum(0), level[:, None] != candidate], axis=-1)
    return weight, cost


def _combine(weight, cost, combos, scale):
    """Value ``(T, C)`` and lexicographic key ``(T, C)`` of every level combination."""
    value = np.einsum("tw,cw->tc", weight, combos)
    parts = cost[:, np.arange(combos.shape[1])[None, :], combos]  # (T, C, width, 3)
    parts = parts.sum(axis=2)
    return value, (parts[..., 0] * scale[0] + parts[..., 1]) * scale[1] + parts[..., 2]


def _best_levels(pos, neg, target, combos, scale):
    """Return ``(pos_choice, neg_choice)`` combination indices per term (``(T,)`` each):
    the least key with ``value_pos - value_neg == target``."""
    value_pos, key_pos = _combine(*pos, combos, scale)
    value_neg, key_neg = _combine(*neg, combos, scale)
    n_terms, n_combos = value_neg.shape
    top = int(value_neg.max()) + 1
    best = np.full((n_terms, top), np.iinfo(np.int64).max, dtype=np.int64)
    rows = np.broadcast_to(np.arange(n_terms)[:, None], value_neg.shape)
    # The least key per reachable negative value; the combination index rides in the low
    # digits (keys are non-negative and far below 2**63 / n_combos).
    np.minimum.at(best, (rows, value_neg), key_neg * n_combos + np.arange(n_combos))
    need = value_pos - target[:, None]
    reachable = (need >= 0) & (need < top)
    neg_best = np.take_along_axis(best, np.clip(need, 0, top - 1), axis=1)
    reachable &= neg_best != np.iinfo(np.int64).max
    total = np.where(reachable, key_pos + neg_best // n_combos, np.iinfo(np.int64).max)
    pos_choice = total.argmin(axis=1)
    neg_choice = np.take_along_axis(neg_best, pos_choice[:, None], axis=1)[:, 0] % n_combos
    return pos_choice, neg_choice


def reencode(layer: LayerProgram, config: AcceleratorConfig,
             stuck_units: np.ndarray) -> LayerProgram:
    """Return ``layer`` with the levels of every faulty weight term re-chosen (module
    docstring); ``stuck_units`` is int ``(copies, X, rows, cols)``, the stuck map of each
    copy's units. The layer computes exactly the same matrix on a healthy chip."""
    if not len(layer.entries) or not len(layer.xbars):
        return layer
    cells = _read_cells(layer, config)
    stuck = stuck_units[:, cells["x"], cells["row"], cells["col"]].astype(np.int64)  # (K, n)
    wrong = ((stuck >= 0) & (stuck != cells["level"])).any(axis=0)
    todo = np.zeros(int(cells["term"].max(initial=-1)) + 1, dtype=bool)
    todo[cells["term"][wrong]] = True
    levels = config.level_max + 1
    width = int(np.floor(np.log(MAX_COMBINATIONS) / np.log(levels) + 1e-9))
    picked = todo[cells["term"]]
    order, slot = _slots(cells["term"][picked], cells["sign"][picked], cells["shift"][picked])
    index = np.flatnonzero(picked)[order]                         # cells of faulty terms
    too_wide = np.unique(cells["term"][index][slot >= width])
    keep = ~np.isin(cells["term"][index], too_wide)
    index, slot = index[keep], slot[keep]
    if not len(index):
        return layer
    terms, term = np.unique(cells["term"][index], return_inverse=True)
    width = int(slot.max()) + 1
    combos = np.array(list(product(range(levels), repeat=width)), dtype=np.int64)
    copies = stuck.shape[0]
    # Key = (error * A + count) * B + changed, A and B above the largest count and change
    # over both signs, so the key orders lexicographically and sums over the signs.
    scale = (2 * width * copies + 1, 2 * width + 1)
    sign = cells["sign"][index]
    signed = (np.where(sign, -1, 1) * cells["level"][index]) << cells["shift"][index]
    target = np.bincount(term, weights=signed, minlength=len(terms)).astype(np.int64)
    new_level = cells["level"][index].copy()
    step = max(1, _BLOCK_ELEMENTS // (len(combos) * width))
    for start in range(0, len(terms), step):
        block = (term >= start) & (term < start + step)
        n_block = min(step, len(terms) - start)
        sides = []
        for negative in (False, True):
            mine = block & (sign == negative)
            at = index[mine]
            sides.append((mine, _side_tables(
                n_block, width, term[mine] - start, slot[mine], cells["shift"][at],
                cells["level"][at], stuck[:, at], levels)))
        choices = _best_levels(sides[0][1], sides[1][1], target[start:start + n_block],
                               combos, scale)
        for (mine, _), choice in zip(sides, choices):
            new_level[mine] = combos[choice[term[mine] - start], slot[mine]]
    new_level = _keep_where_count_rose(term, stuck[:, index], cells["level"][index],
                                       new_level, len(terms))
    placed = layer.cells.copy()
    placed[cells["x"][index], cells["row"][index], cells["col"][index]] = new_level
    return replace(layer, cells=placed)


def _keep_where_count_rose(term, stuck, old, new, n_terms):
    """``new`` levels, except the old ones for every term whose wrong-cell count rose."""
    def count(levels):
        wrong = ((stuck >= 0) & (stuck != levels)).sum(axis=0)
        return np.bincount(term, weights=wrong, minlength=n_terms)

    rose = count(new) > count(old)
    return np.where(rose[term], old, new)
