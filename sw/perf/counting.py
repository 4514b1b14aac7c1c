"""Event counting of the performance model: what one layer job issues, per input vector.

:func:`count_layer` counts, for one :class:`~bitline.hw.spec.program.LayerProgram`, the events
of docs/contract.md section 5 (OU reads, ADC conversions, driven rows, activated cells,
reduction transfers) -- the same numbers the crossbar-level executor and the RTL performance
counters report -- plus the job's cycles from the one formula in :mod:`bitline.hw.spec.timing`
and the lower bound of a perfect packing. Counting is static: a read is a read even when
the issued input slice is all zero. Pricing is :mod:`bitline.sw.perf.costs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import LayerProgram, entry_columns
from bitline.hw.spec.timing import layer_cycles
from bitline.sw.frontend.ir import Layer

__all__ = ["LayerCounts", "count_layer", "layer_vectors"]


def layer_vectors(layer: Layer) -> int:
    """Return the input vectors one sample streams through a compute layer (``V``).

    A conv's output pixels ``H * W`` (one im2col column each), 1 for a gemm.
    """
    if layer.op == "gemm" or len(layer.output_shape) < 2:
        return 1
    return int(np.prod(layer.output_shape[1:]))


@dataclass(frozen=True)
class LayerCounts:
    """Events of one layer job; counts are *per input vector* unless named otherwise.

    Attributes
    ----------
    n_inputs, n_outputs, n_vectors, act_bits:
        ``K``, ``O``, ``V`` and the input activation width.
    crossbars, active_crossbars:
        Units the layer owns, and those with at least one OU entry.
    nonzero_cells, allocated_cells, entries:
        Nonzero cells and all cells of the owned units; OU entries of the layer.
    reads, conversions, dac_conversions:
        OU reads (issued slices), valid-column conversions, driven rows summed over reads.
    activated_cells, activated_nonzero_cells:
        Cells under the OU of every read (driven rows x valid columns), and the nonzero ones.
    reduction_transfers:
        Partial sums sent to the reduction: for each output channel, the units naming it.
    max_unit_reads:
        Reads of the busiest unit.
    cycles:
        Cycles of the whole job of ``V`` vectors (:func:`bitline.hw.spec.timing.layer_cycles`).
    bound_reads, bound_cycles:
        Lower bound (reads per vector; cycles of the whole job): every nonzero weight digit
        packed perfectly into full OUs, the reads spread evenly over the units.
    copies:
        Copies of the layer; ``crossbars``, ``active_crossbars`` and ``allocated_cells``
        count every copy, the per-vector events one (each vector is read by one copy), and
        ``cycles`` is :func:`~bitline.hw.spec.timing.layer_cycles` with ``copies``.
    correction_adds:
        Additions of the offset weight encoding's correction per vector (0 without a
        ``weight_offset``): ``K`` to sum the input codes as they are loaded, ``O`` to
        subtract ``B * sum(x)`` in the output path (``B`` a power of two: a shift, no
        multiply). No cycles: the sum runs during the load, the subtraction inside the
        output unit's first stage.
    """

    n_inputs: int
    n_outputs: int
    n_vectors: int
    act_bits: int
    crossbars: int
    active_crossbars: int
    nonzero_cells: int
    allocated_cells: int
    entries: int
    reads: int
    conversions: int
    dac_conversions: int
    activated_cells: int
    activated_nonzero_cells: int
    reduction_transfers: int
    max_unit_reads: int
    cycles: int
    bound_reads: int
    bound_cycles: int
    copies: int = 1
    correction_adds: int = 0


def _nonzero_digits_by_input(weight: np.ndarray, cell_bits: int) -> np.ndarray:
    """Return, per input ``i``, the nonzero base-``2**cell_bits`` digits of ``|W[:, i]|``."""
    magnitude = np.abs(np.asarray(weight, dtype=np.int64))
    counts = np.zeros(magnitude.shape[1], dtype=np.int64)
    mask = (1 << cell_bits) - 1
    while np.any(magnitude):
        counts += np.count_nonzero(magnitude & mask, axis=0)
        magnitude = magnitude >> cell_bits
    return counts


def _local_units(layer: LayerProgram) -> np.ndarray:
    """Return each entry's index into ``layer.xbars`` (entries name global unit ids).

    Raises
    ------
    ValueError
        If an entry names a crossbar the layer does not own.
    """
    entries = layer.entries
    xbars = np.asarray(layer.xbars, dtype=np.int64)
    n_units = len(xbars)
    order = np.argsort(xbars)
    entry_units = np.asarray(entries["xbar"], dtype=np.int64)
    position = np.searchsorted(xbars[order], entry_units)
    position = np.minimum(position, max(n_units - 1, 0))
    if len(entries) and (n_units == 0 or np.any(xbars[order][position] != entry_units)):
        bad = entry_units[(n_units == 0) | (xbars[order][position] != entry_units)][0]
        raise ValueError(f"layer {layer.name}: entry names crossbar {bad}, which the layer "
                         f"does not own (xbars {xbars.tolist()})")
    return order[position] if len(entries) else np.zeros(0, dtype=np.int64)


@dataclass
class _Cells:
    """The owned units' cells and row maps, tallied per row group for the entry counts."""

    row_maps: np.ndarray          # (X, rows) input of each row, -1 unused
    driven: np.ndarray            # (X, rows) bool
    nonzero: np.ndarray           # (X, rows, cols) bool
    per_row: np.ndarray           # (X, rows) nonzero cells of each row
    nonzero_by_group: np.ndarray  # (X, row groups, cols) nonzero cells on driven rows
    driven_by_group: np.ndarray   # (X, row groups) driven rows


def _tally_cells(layer: LayerProgram, config: AcceleratorConfig) -> _Cells:
    n_units = len(layer.xbars)
    rows, cols = config.rows, config.cols
    row_maps = np.asarray(layer.row_maps).reshape(n_units, rows)
    driven = row_maps >= 0
    cells = np.asarray(layer.cells).reshape(n_units, rows, cols) != 0
    group_starts = np.arange(0, rows, config.ou_rows)
    per_row = np.count_nonzero(cells, axis=2)
    live = cells & driven[:, :, None] if np.any(per_row[~driven]) else cells
    small = np.uint8 if config.ou_rows < 256 else np.uint16
    nonzero_by_group = (np.add.reduceat(live.view(np.uint8), group_starts, axis=1, dtype=small)
                        if n_units else np.zeros((0, len(group_starts), cols), small))
    driven_by_group = (np.add.reduceat(driven, group_starts, axis=1, dtype=np.int32)
                       if n_units else np.zeros((0, len(group_starts)), np.int32))
    return _Cells(row_maps, driven, cells, per_row, nonzero_by_group, driven_by_group)


def _entry_events(layer: LayerProgram, config: AcceleratorConfig, local: np.ndarray,
                  tally: _Cells) -> dict:
    """Count the per-vector events of the layer's entries (keys as in :class:`LayerCounts`)."""
    entries = layer.entries
    n_units, O = len(layer.xbars), int(layer.n_outputs)
    n_slices = (np.asarray(entries["slice_hi"], dtype=np.int64)
                - np.asarray(entries["slice_lo"], dtype=np.int64))
    if np.any(n_slices < 0):
        raise ValueError(f"layer {layer.name}: an entry has slice_hi < slice_lo")
    columns = entry_columns(entries, config.ou_cols)
    valid = columns["valid"] != 0                                # (E, ou_cols)
    dest = columns["dest"]
    row_group = np.asarray(entries["row_group"], dtype=np.int64)
    col_group = np.asarray(entries["col_group"], dtype=np.int64)
    column = col_group[:, None] * config.ou_cols + np.arange(config.ou_cols)[None, :]
    in_range = column < config.cols
    valid &= in_range
    safe_column = np.where(in_range, column, 0)
    n_valid = valid.sum(axis=1, dtype=np.int64)
    n_driven = (tally.driven_by_group[local, row_group].astype(np.int64) if len(entries)
                else np.zeros(0, np.int64))
    nonzero_hit = (np.where(valid, tally.nonzero_by_group[local[:, None], row_group[:, None],
                                                          safe_column], 0)
                   .sum(axis=1, dtype=np.int64)
                   if len(entries) else np.zeros(0, np.int64))
    unit_reads = np.bincount(local, weights=n_slices, minlength=n_units).astype(np.int64)
    # Reduction: one partial sum per (unit, channel) pair named by a valid column.
    named = np.zeros((max(n_units, 1), max(int(dest.max(initial=0)) + 1, O)), dtype=bool)
    named[np.broadcast_to(local[:, None], dest.shape)[valid], dest[valid]] = True
    return {
        "reads": int(n_slices.sum()),
        "conversions": int((n_slices * n_valid).sum()),
        "dac_conversions": int((n_slices * n_driven).sum()),
        "activated_cells": int((n_slices * n_driven * n_valid).sum()),
        "activated_nonzero_cells": int((n_slices * nonzero_hit).sum()),
        "reduction_transfers": int(np.count_nonzero(named)),
        "unit_reads": unit_reads,
        "active_crossbars": int(np.count_nonzero(np.bincount(local, minlength=n_units))),
    }


def _lower_bound(layer: LayerProgram, config: AcceleratorConfig, n_vectors: int,
                 tally: _Cells, weight: np.ndarray | None,
                 act_block_bits: np.ndarray | None) -> tuple[int, int]:
    """Return ``(bound reads per vector, bound cycles of the job)`` (see :func:`count_layer`)."""
    K, O = int(layer.n_inputs), int(layer.n_outputs)
    if weight is None:
        # Without the weights, every nonzero cell on a driven row is one digit of its input.
        digits = np.zeros(K, dtype=np.int64)
        np.add.at(digits, tally.row_maps[tally.driven], tally.per_row[tally.driven])
    else:
        weight = np.asarray(weight).reshape(O, -1)
        if weight.shape[1] != K:
            raise ValueError(f"layer {layer.name}: weight has {weight.shape[1]} inputs, "
                             f"the program {K}")
        digits = _nonzero_digits_by_input(weight, config.cell_bits)
    if act_block_bits is None:
        act_bits_per_input = np.full(K, layer.act_bits, dtype=np.int64)
    else:
        blocks = np.asarray(act_block_bits, dtype=np.int64).reshape(-1)
        act_bits_per_input = blocks[np.minimum(np.arange(K) // config.ou_rows, len(blocks) - 1)]
    slices_per_input = config.act_slices(act_bits_per_input)
    capacity = config.exact_rows_per_ou * config.ou_cols
    bound_reads = -(-int((digits * slices_per_input).sum()) // capacity)
    # A machine holds at least the units this layer occupies (a performance-only layerwise
    # program may give a layer more units than n_xbars).
    bound_unit_reads = -(-bound_reads // max(config.n_xbars, len(layer.xbars), 1))
    bound_cycles = int(layer_cycles(config, K, O, n_vectors, np.array([bound_unit_reads])))
    return bound_reads, bound_cycles


def count_layer(
    layer: LayerProgram,
    config: AcceleratorConfig,
    n_vectors: int,
    *,
    weight: np.ndarray | None = None,
    act_block_bits: np.ndarray | None = None,
) -> LayerCounts:
    """Count the events, cycles and lower bound of one layer job of ``n_vectors`` vectors.

    Parameters
    ----------
    layer:
        The mapped layer.
    config:
        The program's accelerator config.
    n_vectors:
        Input vectors ``V`` (output pixels).
    weight:
        Integer ``(O, K)`` weight matrix for the lower bound; default: rebuilt as the count
        of nonzero cells (so the bound assumes the mapping's own cells are the digits).
    act_block_bits:
        BWQ per-row-block activation widths (blocks of ``ou_rows`` inputs) for the bound;
        default: ``layer.act_bits`` for every input.

    Raises
    ------
    ValueError
        If an entry names a crossbar the layer does not own, an entry has
        ``slice_hi < slice_lo``, the weight does not have ``K`` inputs, or ``n_vectors < 1``.
    """
    if n_vectors < 1:
        raise ValueError(f"n_vectors must be at least 1, not {n_vectors}")
    K, O, V = int(layer.n_inputs), int(layer.n_outputs), int(n_vectors)
    n_units = len(layer.xbars)
    local = _local_units(layer)
    tally = _tally_cells(layer, config)
    events = _entry_events(layer, config, local, tally)
    unit_reads = events.pop("unit_reads")
    bound_reads, bound_cycles = _lower_bound(layer, config, V, tally, weight, act_block_bits)
    copies = layer.copies
    events["active_crossbars"] *= copies
    return LayerCounts(
        n_inputs=K,
        n_outputs=O,
        n_vectors=V,
        act_bits=int(layer.act_bits),
        crossbars=n_units * copies,
        nonzero_cells=int(np.count_nonzero(tally.nonzero)) * copies,
        allocated_cells=n_units * copies * config.rows * config.cols,
        entries=len(layer.entries),
        max_unit_reads=int(unit_reads.max(initial=0)),
        cycles=int(layer_cycles(config, K, O, V, unit_reads, copies=copies)),
        bound_reads=bound_reads,
        bound_cycles=bound_cycles,
        copies=copies,
        correction_adds=(K + O) if layer.weight_offset else 0,
        **events,
    )
