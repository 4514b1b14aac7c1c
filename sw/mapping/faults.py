"""Fault-aware mapping: place a mapped program so that a chip's stuck cells do the least harm.

A chip's *stuck map* (:class:`StuckMap`) gives, per physical crossbar unit, the level every
cell is stuck at (``-1``: healthy). It comes from a file (:meth:`StuckMap.load`, the format
below) or from the analog model's seeded chip (:func:`bitline.sim.analog.chip_stuck_map`,
the same draw :class:`~bitline.sim.analog.AnalogDevice` uses, so the executor and the analog
model see the same chip).

:func:`fault_aware` rearranges every layer's cells *without changing what the program
computes on a healthy chip*; only freedoms the contract already gives are used
(docs/contract.md section 4):

* **rows within a row group** -- a row group's physical rows may drive any of its inputs in
  any order: the row map says which input each row drives, so a permutation of a strip's
  rows is just another row map. Unused rows (row map -1: past a short chunk) are never
  driven, so a stuck cell there is harmless; the permutation moves unused rows onto the
  worst physical rows.
* **columns of a strip** -- each OU entry's column descriptors ``(valid, sign, shift,
  dest)`` say where each OU column's partial sum goes, and all entries of a strip read the
  same rows with the same slices, so a strip's columns may move, descriptors with them:
  valid columns among the valid positions of all the strip's entries (every entry keeps its
  number of valid columns, hence its ADC conversions and energy), and any column within its
  OU, where invalid (spare) columns, never converted, absorb stuck cells.
* **the digits of a weight** -- a weight term (one input, one output channel) is the
  signed sum of its read cells' ``level * 2**shift``, and the differential encoding has
  many ways to make the same sum (``w = p - n``): :func:`~bitline.sw.mapping.reencode.reencode`
  chooses the levels so that stuck cells hold what they read (a stuck-at-1 in a hollow bit
  plane of ``ivq-naive`` is cancelled by the same digit of the other sign).
* **cells that are never read** -- hollow OUs exempted by ``ivq-spatial`` / ``-temporal``,
  BWQ's pruned blocks, unused row groups and columns: no entry reads them, so their faults
  cost nothing and are not counted; a cell stuck at the level it must hold costs nothing.

The cost of a cell is ``|stuck - level| * 2**shift`` (the error it adds to its channel per
unit input), summed over the layer's copies (a copy holds the same cells on another unit).
Per strip ``(unit, row group)`` the row permutation is a linear assignment (SciPy's
``linear_sum_assignment``) on the cost "logical row ``i`` on physical row ``j``" over all
the strip's read columns; then the strip's valid columns are assigned to its valid
positions the same way ("column ``p`` on position ``q``"), then every OU's columns within
the OU; two alternating rounds. Each step is
optimal given the other, so the cost never rises; a strip whose count of wrong cells would
rise (the cost weights cells by their shift) keeps its original arrangement, so the count
never rises either. Which physical units a layer gets is not changed (the units stay those
of the mapping; see docs/analog.md "Fault-aware mapping").

Then every term with a wrong cell is re-encoded (:mod:`.reencode`: the least weighted
error, then count, with the same signed sum). Re-encoding is tried on the layer as mapped
and after the placement, and the better result (weighted error, then count) is kept:
placement does not know which stuck cells re-encoding can right, and may move a stuck-at-1
onto a low digit where no representation fits.

Stuck-map file format (``.npz``, :meth:`StuckMap.save`)
-----------------------------------------------------
* ``stuck``: integer ``(n_units, rows, cols)``; ``-1`` a healthy cell, ``0 .. level_max`` the
  level the cell reads whatever is programmed (1-bit cells: 0 stuck-at-0 / HRS, 1
  stuck-at-1 / LRS). ``rows`` and ``cols`` must equal the config's, and ``n_units`` must
  cover every unit the program uses.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import COLUMN_FIELDS, LayerProgram, Program, entry_columns
from bitline.sw.mapping.reencode import reencode

__all__ = ["LayerFaults", "StuckMap", "count_faults", "fault_aware", "faults_table"]

#: Cost that keeps padding (rows / columns past the crossbar's edge) on padding.
_FORBIDDEN = 1e15
#: Alternating row / column rounds (a third changed nothing on the digits CNN).
_ROUNDS = 2
#: Units whose cost tensors are built at once (bounds memory on large layers).
_UNIT_BLOCK = 32


@dataclass(frozen=True)
class StuckMap:
    """Stuck cells of a chip: int8 ``stuck[unit, row, col]``, ``-1`` healthy, else the level.

    Attributes
    ----------
    stuck:
        int8 ``(n_units, rows, cols)``.
    source:
        Where it came from (a file name or ``chip:SEED:RATE``), for messages and reports.
    """

    stuck: np.ndarray
    source: str = "stuck map"

    @property
    def n_units(self) -> int:
        return int(self.stuck.shape[0])

    def check(self, config: AcceleratorConfig, n_units: int | None = None) -> StuckMap:
        """Return ``self`` if it fits ``config`` (and covers ``n_units`` units).

        Raises
        ------
        ValueError
            Naming :attr:`source`, the field ``stuck`` and what is wrong.
        """
        stuck = self.stuck
        where = f"{self.source}: field 'stuck'"
        if stuck.ndim != 3 or stuck.shape[1:] != (config.rows, config.cols):
            raise ValueError(f"{where} must have shape (n_units, {config.rows}, "
                             f"{config.cols}) for this config, not {stuck.shape}")
        if stuck.size and (stuck.min() < -1 or stuck.max() > config.level_max):
            bad = np.argwhere((stuck < -1) | (stuck > config.level_max))[0]
            raise ValueError(f"{where}[{', '.join(map(str, bad))}] = {stuck[tuple(bad)]} "
                             f"is not -1 (healthy) or a level 0..{config.level_max}")
        if n_units is not None and stuck.shape[0] < n_units:
            raise ValueError(f"{where} describes {stuck.shape[0]} units, the program uses "
                             f"{n_units}")
        return self

    @classmethod
    def load(cls, path: str | Path) -> StuckMap:
        """Read a stuck-map ``.npz`` (module docstring).

        Raises
        ------
        ValueError
            If the file is missing, not an ``.npz``, lacks ``stuck`` or holds a
            non-integer or non-3-D array; the message names the file and field.
        """
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
            if not hasattr(data, "files"):
                raise ValueError("one array, not an .npz archive")
            with data:
                names = list(data.files)
                stuck = data["stuck"] if "stuck" in names else None
        except FileNotFoundError:
            raise ValueError(f"{path}: stuck-map file not found") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"{path}: not a readable stuck-map .npz ({error})") from None
        if stuck is None:
            raise ValueError(f"{path}: field 'stuck' is missing (found "
                             f"{', '.join(names) or 'nothing'})")
        if stuck.dtype.kind not in "iu":
            raise ValueError(f"{path}: field 'stuck' must be an integer array, not {stuck.dtype}")
        if stuck.ndim != 3:
            raise ValueError(f"{path}: field 'stuck' must be 3-D (n_units, rows, cols), not "
                             f"shape {stuck.shape}")
        if stuck.size and (stuck.min() < -1 or stuck.max() > 127):
            raise ValueError(f"{path}: field 'stuck' holds {stuck.min()}..{stuck.max()}; "
                             f"cells are -1 (healthy) or a level")
        return cls(stuck.astype(np.int8), str(path))

    def save(self, path: str | Path) -> None:
        """Write the ``.npz`` :meth:`load` reads."""
        np.savez_compressed(path, stuck=self.stuck.astype(np.int8))


@dataclass(frozen=True)
class LayerFaults:
    """Fault counts of one layer (over all its copies).

    Attributes
    ----------
    stuck_cells:
        Stuck cells on the layer's units.
    read_stuck:
        Stuck cells that some OU read converts (driven row, valid column).
    wrong_before, wrong_after:
        Read stuck cells whose stuck level differs from the level they must hold, as mapped
        and after fault-aware placement.
    error_before, error_after:
        The same cells weighted by ``|stuck - level| * 2**shift`` (the placement's cost).
    """

    layer: str
    stuck_cells: int
    read_stuck: int
    wrong_before: int
    wrong_after: int
    error_before: int
    error_after: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------- geometry
def _layer_units(layer: LayerProgram) -> np.ndarray:
    """Global units of every copy: int ``(copies, X)`` (row 0 is :attr:`xbars`)."""
    return np.stack([layer.copy_units(k) for k in range(layer.copies)]) if len(
        layer.xbars) else np.zeros((layer.copies, 0), dtype=np.int64)


def _padded(config: AcceleratorConfig):
    return config.row_groups * config.ou_rows, config.col_groups * config.ou_cols


def _column_weights(layer: LayerProgram, config: AcceleratorConfig):
    """Return ``(weight, entry_index)``: float ``(X, G, CG, oc)`` ``valid * 2**shift`` of
    every OU column, and int ``(X, G, CG)`` the entry reading each OU (-1 none)."""
    n_x, groups, col_groups, oc = len(layer.xbars), config.row_groups, config.col_groups, \
        config.ou_cols
    weight = np.zeros((n_x, groups, col_groups, oc))
    entry_index = np.full((n_x, groups, col_groups), -1, dtype=np.int64)
    entries = layer.entries
    if len(entries) == 0 or n_x == 0:
        return weight, entry_index
    owned = np.asarray(layer.xbars, dtype=np.int64)
    order = np.argsort(owned)
    local = order[np.searchsorted(owned[order], entries["xbar"].astype(np.int64))]
    rg = entries["row_group"].astype(np.int64)
    cg = entries["col_group"].astype(np.int64)
    desc = entry_columns(entries, oc)
    weight[local, rg, cg] = (desc["valid"] != 0) * np.exp2(desc["shift"])
    entry_index[local, rg, cg] = np.arange(len(entries))
    return weight, entry_index


def _tensors(layer, config, stuck_units):
    """Padded ``(L, D, W, S)`` of a layer in strip / OU shape.

    ``L`` int16 ``(X, G, or, CG, oc)`` levels, ``D`` bool ``(X, G, or)`` driven rows,
    ``W`` float ``(X, G, CG, oc)`` column weights, ``S`` int16 ``(K, X, G, or, CG, oc)``
    stuck levels (-1 healthy, -2 past the crossbar's edge).
    """
    n_x = len(layer.xbars)
    pr, pc = _padded(config)
    groups, col_groups, ou_rows, ou_cols = (config.row_groups, config.col_groups,
                                            config.ou_rows, config.ou_cols)
    cells = np.zeros((n_x, pr, pc), dtype=np.int16)
    cells[:, :config.rows, :config.cols] = layer.cells
    driven = np.zeros((n_x, pr), dtype=bool)
    driven[:, :config.rows] = np.asarray(layer.row_maps) >= 0
    stuck = np.full((len(stuck_units), n_x, pr, pc), -2, dtype=np.int16)
    stuck[:, :, :config.rows, :config.cols] = stuck_units
    weight, _ = _column_weights(layer, config)
    return (cells.reshape(n_x, groups, ou_rows, col_groups, ou_cols),
            driven.reshape(n_x, groups, ou_rows), weight,
            stuck.reshape(len(stuck_units), n_x, groups, ou_rows, col_groups, ou_cols))


def _cell_cost(levels: np.ndarray, stuck: np.ndarray) -> np.ndarray:
    """``|stuck - level|`` where a cell is stuck (>= 0), summed over the copy axis 0 of
    ``stuck``; float."""
    error = np.abs(stuck - levels[None]) * (stuck >= 0)
    return error.sum(axis=0, dtype=np.float64)


# ---------------------------------------------------------------------------- counting
def count_faults(layer: LayerProgram, config: AcceleratorConfig,
                 stuck_units: np.ndarray) -> tuple[int, int, int, int]:
    """Return ``(stuck, read_stuck, wrong, error)`` of ``layer`` on ``stuck_units``.

    ``stuck_units`` is int ``(copies, X, rows, cols)``: the stuck map of each copy's units.
    Counts as in :class:`LayerFaults`.
    """
    levels, driven, weight, stuck = _tensors(layer, config, stuck_units)
    read = driven[:, :, :, None, None] & (weight > 0)[:, :, None, :, :]
    faulty = stuck >= 0
    wrong = faulty & (stuck != levels[None]) & read[None]
    error = np.abs(stuck - levels[None]) * wrong * weight[None, :, :, None, :, :]
    return (int(np.count_nonzero(faulty)), int(np.count_nonzero(faulty & read[None])),
            int(np.count_nonzero(wrong)), int(error.sum()))


# ---------------------------------------------------------------------------- placement
def _assign(costs: np.ndarray, todo: np.ndarray) -> np.ndarray:
    """Optimal assignment ``perm[..., i] = j`` of every square cost matrix; identity where
    ``todo`` is false (no fault to avoid). One small ``linear_sum_assignment`` per matrix
    with a fault: the matrices are at most ``ou_rows x ou_rows``, so the loop is over OUs,
    not cells."""
    from scipy.optimize import linear_sum_assignment

    n = costs.shape[-1]
    perm = np.broadcast_to(np.arange(n), costs.shape[:-1]).copy()
    flat_costs = costs.reshape(-1, n, n)
    flat_perm = perm.reshape(-1, n)
    for index in np.flatnonzero(todo.reshape(-1)).tolist():
        _, cols = linear_sum_assignment(flat_costs[index])
        flat_perm[index] = cols
    return perm


def _row_costs(L, D, W, S, real_row):
    """``cost[x, g, i, j]``: logical row ``i`` of strip ``(x, g)`` on physical row ``j``."""
    # err[k, x, g, i, j, cg, a] summed over k: levels of row i against stuck cells of row j.
    err = _cell_cost(L[:, :, :, None], S[:, :, :, None, :])     # (X, G, i, j, CG, oc)
    cost = np.einsum("xgijca,xgca->xgij", err, W) * D[:, :, :, None]
    mismatch = real_row[:, :, None] != real_row[:, None, :]      # (G, i, j)
    return cost + _FORBIDDEN * mismatch


def _col_costs(L, D, W, S, real_col):
    """``cost[x, g, cg, a, b]``: logical column ``a`` of OU ``(x, g, cg)`` on column ``b``."""
    err = _cell_cost(L[..., :, None], S[..., None, :])          # (X, G, or, CG, a, b)
    cost = np.einsum("xgrcab,xgr->xgcab", err, D.astype(np.float64)) * W[..., None]
    mismatch = real_col[:, :, None] != real_col[:, None, :]      # (CG, a, b)
    return cost + _FORBIDDEN * mismatch


def _strip_col_costs(L, D, W, S):
    """``cost[x, g, p, q]``: the column now at physical ``p`` of strip ``(x, g)`` moved to
    ``q`` (all in physical order, ``W`` of the column now at ``p``); only used among valid
    positions."""
    n_x, groups, ou_rows = D.shape
    flat_l = L.reshape(n_x, groups, ou_rows, -1)
    flat_s = S.reshape(S.shape[0], n_x, groups, ou_rows, -1)
    err = _cell_cost(flat_l[..., :, None], flat_s[..., None, :])  # (X, G, or, p, q)
    return np.einsum("xgrpq,xgr->xgpq", err, D.astype(np.float64)) * W.reshape(
        n_x, groups, -1)[..., None]


def _strip_moves(L, D, W, S) -> np.ndarray:
    """``move[x, g, p] = q``: a linear assignment per strip among its *valid* positions
    (valid columns of every OU entry of the strip), so each entry keeps its count of valid
    columns (the same ADC conversions) while a column may change OU. Identity elsewhere."""
    from scipy.optimize import linear_sum_assignment

    n_x, groups, _ = D.shape
    valid = W.reshape(n_x, groups, -1) > 0
    move = np.broadcast_to(np.arange(valid.shape[-1]), valid.shape).copy()
    for x in range(n_x):
        costs = _strip_col_costs(L[x:x + 1], D[x:x + 1], W[x:x + 1], S[:, x:x + 1])[0]
        for g in range(groups):
            where = np.flatnonzero(valid[x, g])
            if len(where) < 2:
                continue
            cost = costs[g][np.ix_(where, where)]
            if not np.trace(cost) > 0:
                continue
            _, target = linear_sum_assignment(cost)
            move[x, g, where] = where[target]
    return move


def _place_block(L, D, W, S, config):
    """Row permutations ``(X, G, or)`` and column placements ``(X, G, CG * oc)`` (logical ->
    physical) of a block of units, by alternating linear assignments: rows per strip,
    valid columns across the strip's OUs, then every column within its OU."""
    ou_rows, ou_cols = config.ou_rows, config.ou_cols
    n_x, groups, _, col_groups, _ = L.shape
    pc = col_groups * ou_cols
    real_row = (np.arange(ou_rows)[None, :] + ou_rows * np.arange(groups)[:, None]
                ) < config.rows                                 # (G, or)
    real_col = (np.arange(ou_cols)[None, :] + ou_cols * np.arange(col_groups)[:, None]
                ) < config.cols                                 # (CG, oc)
    rows = np.broadcast_to(np.arange(ou_rows), (n_x, groups, ou_rows)).copy()
    cols = np.broadcast_to(np.arange(pc), (n_x, groups, pc)).copy()
    xi, gi = np.ogrid[:n_x, :groups]
    flat = lambda a: a.reshape(*a.shape[:-2], pc)
    shaped = lambda a: a.reshape(*a.shape[:-1], col_groups, ou_cols)

    def physical_columns():
        inv = np.argsort(cols, axis=-1)                         # physical p holds logical
        return (shaped(np.take_along_axis(flat(L), inv[:, :, None, :], axis=-1)),
                shaped(np.take_along_axis(flat(W), inv, axis=-1)))

    for _ in range(_ROUNDS):
        Lc, Wc = physical_columns()
        costs = _row_costs(Lc, D, Wc, S, real_row)
        rows = _assign(costs, np.einsum("xgii->xg", costs) > 0)
        inv_rows = np.argsort(rows, axis=-1)
        Dr = np.take_along_axis(D, inv_rows, axis=-1)
        # Valid columns across the strip's OUs (cells in physical row and column order).
        Lc, Wc = physical_columns()
        move = _strip_moves(Lc[xi[..., None], gi[..., None], inv_rows], Dr, Wc, S)
        cols = np.take_along_axis(move, cols, axis=-1)
        # Every column within its OU (spare columns absorb faults).
        Lc, Wc = physical_columns()
        Lc = Lc[xi[..., None], gi[..., None], inv_rows]
        costs = _col_costs(Lc, Dr, Wc, S, real_col)
        within = _assign(costs, np.einsum("xgcaa->xgc", costs) > 0)   # (X, G, CG, oc)
        within = flat(within + ou_cols * np.arange(col_groups)[:, None])
        cols = np.take_along_axis(within, cols, axis=-1)
    return rows, cols


def _apply(layer: LayerProgram, config: AcceleratorConfig, rows, cols) -> LayerProgram:
    """Return ``layer`` with strip rows and columns moved (logical -> physical).

    ``rows`` is ``(X, G, ou_rows)``, ``cols`` ``(X, G, CG * ou_cols)``; a column's descriptor
    moves with it to the entry of its new OU (which exists: columns only move among the
    positions of a strip's entries)."""
    n_x = len(layer.xbars)
    pr, pc = _padded(config)
    groups, ou_rows, ou_cols = config.row_groups, config.ou_rows, config.ou_cols
    row_target = (rows + ou_rows * np.arange(groups)[None, :, None]).reshape(n_x, pr)
    col_target = np.repeat(cols, ou_rows, axis=1)                 # (X, pr, pc) by logical row
    cells = np.zeros((n_x, pr, pc), dtype=layer.cells.dtype)
    cells[:, :config.rows, :config.cols] = layer.cells
    row_maps = np.full((n_x, pr), -1, dtype=np.asarray(layer.row_maps).dtype)
    row_maps[:, :config.rows] = layer.row_maps
    x = np.arange(n_x)[:, None, None]
    moved = np.zeros_like(cells)
    # Rows stay in their row group, so a cell's column target is its strip's.
    moved[x, row_target[:, :, None], col_target] = cells
    new_maps = np.full_like(row_maps, -1)
    new_maps[np.arange(n_x)[:, None], row_target] = row_maps
    entries = layer.entries.copy()
    if len(entries):
        _, entry_index = _column_weights(layer, config)
        owned = np.asarray(layer.xbars, dtype=np.int64)
        order = np.argsort(owned)
        local = order[np.searchsorted(owned[order], entries["xbar"].astype(np.int64))]
        rg = entries["row_group"].astype(np.int64)
        logical = entries["col_group"].astype(np.int64)[:, None] * ou_cols + np.arange(ou_cols)
        target = cols[local[:, None], rg[:, None], logical]          # (E, oc) physical
        target_entry = entry_index[local[:, None], rg[:, None], target // ou_cols]
        if np.any(target_entry < 0):
            raise AssertionError("fault-aware placement moved a column out of the entries")
        old = entry_columns(layer.entries, ou_cols)
        for key in COLUMN_FIELDS:
            new = np.zeros_like(old[key])
            new[target_entry, target % ou_cols] = old[key]
            for j in range(ou_cols):
                entries[f"cols.{j}.{key}"] = new[:, j]
    placed = replace(layer, cells=np.ascontiguousarray(moved[:, :config.rows, :config.cols]),
                     row_maps=new_maps[:, :config.rows], entries=entries)
    if "hollow_entries" in layer.stats:
        # A column may change OU, so an entry can become (or stop being) hollow; the other
        # statistics count per entry valid columns and driven rows, which do not change.
        placed.stats = {**layer.stats, "hollow_entries": _hollow_entries(placed, config)}
    return placed


def _recount(layer: LayerProgram, config: AcceleratorConfig) -> LayerProgram:
    """``layer`` with the statistics that count cells' levels recounted (re-encoding
    changes levels, not rows, columns or entries)."""
    stats = dict(layer.stats)
    if "nonzero_cells" in stats:
        stats["nonzero_cells"] = int(np.count_nonzero(layer.cells))
    if "hollow_entries" in stats:
        stats["hollow_entries"] = _hollow_entries(layer, config)
    return replace(layer, stats=stats)


def _hollow_entries(layer: LayerProgram, config: AcceleratorConfig) -> int:
    """Entries whose read cells (driven rows, valid columns) are all zero."""
    levels, driven, weight, _ = _tensors(layer, config, np.zeros((0,) + layer.cells.shape))
    nonzero = ((levels != 0) & driven[..., None, None]).any(axis=2)   # (X, G, CG, oc)
    _, entry_index = _column_weights(layer, config)
    has_entry = entry_index >= 0
    return int(np.count_nonzero(has_entry & ~(nonzero & (weight > 0)).any(axis=-1)))


def _place_layer(layer, config, stuck_units):
    """Row and column permutations of a whole layer, a block of units at a time."""
    levels, driven, weight, stuck = _tensors(layer, config, stuck_units)
    rows, cols = [], []
    for start in range(0, len(layer.xbars), _UNIT_BLOCK):
        part = slice(start, start + _UNIT_BLOCK)
        r, c = _place_block(levels[part], driven[part], weight[part], stuck[:, part], config)
        rows.append(r)
        cols.append(c)
    return np.concatenate(rows), np.concatenate(cols)


def fault_aware(program: Program, stuck_map: StuckMap) -> tuple[Program, list[LayerFaults]]:
    """Return ``program`` rearranged for the chip ``stuck_map`` and per-layer fault counts.

    The returned program computes exactly what ``program`` computes on a healthy chip (the
    same matrix, other row maps, cell images and column descriptors; module docstring).

    Raises
    ------
    ValueError
        If the stuck map does not fit the program's config or units.
    """
    config = program.config
    used = [int(_layer_units(layer).max()) + 1 for layer in program.layers if len(layer.xbars)]
    stuck_map.check(config, max(used, default=0))
    layers, report = [], []
    for layer in program.layers:
        units = _layer_units(layer)
        stuck_units = stuck_map.stuck[units]                       # (K, X, rows, cols)
        before = count_faults(layer, config, stuck_units)
        if before[2] == 0:
            layers.append(layer)
            report.append(LayerFaults(layer.name, *before[:2], before[2], before[2],
                                      before[3], before[3]))
            continue
        placed, after = _place_and_reencode(layer, config, stuck_units, before)
        layers.append(placed)
        report.append(LayerFaults(layer.name, before[0], before[1], before[2], after[2],
                                  before[3], after[3]))
    return replace(program, layers=layers), report


def _place_and_reencode(layer, config, stuck_units, before):
    """The better (weighted error, then count) of two arrangements of a faulty layer: its
    cells re-encoded as mapped, and re-encoded after the row / column placement. Placement
    alone does not know that re-encoding rights a stuck-at-1 cell above a small weight for
    free, so it can move such a cell onto a low digit where no representation fits; trying
    both keeps the better."""
    reencoded = reencode(layer, config, stuck_units)
    after = count_faults(reencoded, config, stuck_units)
    candidates = [(after[3], after[2], 0, reencoded, after)]
    if after[2]:
        rows, cols = _place_layer(layer, config, stuck_units)
        placed = _apply(layer, config, rows, cols)
        moved = count_faults(placed, config, stuck_units)
        if moved[2] > before[2] or moved[3] > before[3]:
            placed = _keep_better_strips(layer, placed, config, stuck_units, rows, cols)
        placed = reencode(placed, config, stuck_units)
        moved = count_faults(placed, config, stuck_units)
        candidates.append((moved[3], moved[2], 1, placed, moved))
    *_, best, counts = min(candidates, key=lambda candidate: candidate[:3])
    return _recount(best, config), counts


def _one_unit(layer: LayerProgram, x: int) -> LayerProgram:
    """Local unit ``x`` of ``layer`` as a one-unit layer (its entries only, no copies)."""
    return replace(layer, xbars=layer.xbars[x:x + 1], cells=layer.cells[x:x + 1],
                   row_maps=layer.row_maps[x:x + 1],
                   entries=layer.entries[layer.entries["xbar"] == layer.xbars[x]],
                   copy_xbars=None)


def _keep_better_strips(layer, placed, config, stuck_units, rows, cols):
    """Undo the permutation of every unit whose wrong-cell count rose (the weighted cost
    never rises, the count can when a cheaper arrangement has more low-shift errors)."""
    keep = np.ones(len(layer.xbars), dtype=bool)
    for x in range(len(layer.xbars)):
        before = count_faults(_one_unit(layer, x), config, stuck_units[:, x:x + 1])
        after = count_faults(_one_unit(placed, x), config, stuck_units[:, x:x + 1])
        keep[x] = after[2] <= before[2] and after[3] <= before[3]
    rows = np.where(keep[:, None, None], rows, np.arange(config.ou_rows))
    cols = np.where(keep[:, None, None], cols, np.arange(cols.shape[-1]))
    return _apply(layer, config, rows, cols)


def faults_table(report: list[LayerFaults]) -> list[dict]:
    """Rows for printing / JSON: one per layer plus a ``total`` row."""
    rows = [entry.to_dict() for entry in report]
    if rows:
        total = {key: sum(row[key] for row in rows) for key in rows[0] if key != "layer"}
        rows.append({"layer": "total", **total})
    return rows
