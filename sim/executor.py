"""The crossbar-level executor: runs a mapped :class:`~bitline.sw.mapping.Program`.

Step 3 of the verification ladder (DESIGN.md). The graph walk, im2col, output unit, pooling
and adds are the golden model's (:func:`bitline.sim.golden.run_golden`); only the
accumulation of each compute layer is replaced by the execution of the layer's OU program
on its programmed cells (docs/contract.md section 4): for every entry and every issued
slice ``t``, each valid column ``j`` of the OU gives

    code_j = device read of sum_{r in row group} slice_t(x[row_map[r]]) * level[r, col_j]

and ``acc[dest_j] += (-1)**sign_j * code_j << (shift_j + t * dac_bits)``; a layer with the
offset weight encoding (``weight_offset = B > 0``) then gets ``acc -= B * sum_i x[i]``,
the output path's correction (docs/contract.md section 4). With the
:class:`IdealDevice` (the ADC saturates at ``adc_max`` and mappers never let a column reach
it) the result equals :func:`bitline.sw.integer.arith.compute_acc` bit-exactly, for every strategy.

The device interface
--------------------
A device is any object with one method::

    read(xbar, rows, cols, slice_inputs, levels) -> codes

=================  ====================  ==================================================
argument           shape                 meaning
=================  ====================  ==================================================
``xbar``           int ``(n_cols,)``     global crossbar unit of each column
``rows``           int ``(n_rows, n_cols)``  physical row of cell ``(r, c)`` in its crossbar
``cols``           int ``(n_cols,)``     physical column (bitline) of each column
``slice_inputs``   int ``(M, n_rows)``   DAC input of each driven row, ``0 .. dac_max``
``levels``         int ``(n_rows, n_cols)``  programmed level of cell ``(r, c)``
return             ``(M, n_cols)``       integer ADC codes ``0 .. adc_max`` (any numeric
                                         dtype holding integers)
=================  ====================  ==================================================

One call is a batch of OU reads that drive the same inputs: all valid columns of every
row group (of one or several crossbars) whose row map selects the same input vector, for
all issued slices and all ``M / n_slices`` vectors stacked along ``M``. Row ``r`` of
column ``c`` is cell ``(rows[r, c], cols[c])`` of crossbar ``xbar[c]``; rows a row group
leaves unused (row map -1) are not passed (they contribute 0). Columns are independent
bitlines, so a device may treat each column on its own; ``cols // ou_cols`` recovers a
column's column group if it models per-OU effects.

Read numbers (optional): a device with a true ``uses_read_index`` attribute is called as
``read(..., read_index=n)`` with ``n`` int64 ``(M, n_cols)``: the number of the OU read
that produced each code among all reads of its crossbar unit in hardware order -- vector
``v`` (the row of ``cols``) major, then the unit's entries in program order, then slices:
``n = v * R_u + sum_{e' < e} (slice_hi[e'] - slice_lo[e']) + (t - slice_lo[e])`` over
entries ``e'`` of the same unit, ``R_u`` its reads per vector. A cocotb bench that counts
reads at a crossbar port gets the same numbers, so a noisy device keyed by them
(:class:`bitline.sim.analog.AnalogDevice`) answers both identically.

A non-ideal device (the analog model) keeps its per-cell state fixed for one programmed
chip, e.g. a conductance perturbation table ``delta[xbar, row, col]`` drawn once from
``np.random.default_rng(seed)`` and looked up as ``delta[xbar[None, :], rows, cols[None,
:]]``; it computes the analog bitline sums from the perturbed levels, adds read noise per
``(m, c)`` from its own generator, and converts with its ADC model (offset, gain,
nonlinearity, saturation at ``adc_max``). :class:`IdealDevice` is the exact reference.

Counting
--------
:class:`Counters` records, per layer and per crossbar unit, the events of docs/contract.md
section 5 as the program runs: OU reads (entries x issued slices x vectors), ADC
conversions (valid columns of each read) and busy cycles (reads x
``conversions_per_read``).

Copies
------
A layer with ``C`` copies (:attr:`~bitline.hw.spec.program.LayerProgram.copy_xbars`) splits
its input vectors into contiguous shares (:func:`bitline.hw.spec.timing.copy_shares`); copy
``k`` reads its share on its own units (the device is called with copy ``k``'s unit of each
column, and read numbers count the share's vectors from 0, as each unit numbers its own
reads). The cells are identical, so an ideal device gives the outputs of one copy; the
counters give each unit its share, so the busiest unit's busy cycles are ``ceil(V / C) *
C_comp``, the compute part of :func:`bitline.hw.spec.timing.layer_cycles` with ``copies``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import LayerProgram, Program, entry_columns
from bitline.hw.spec.timing import copy_shares
from bitline.hw.spec.validate import validate_program
from bitline.sw.mapping.layout import bounded_unique

__all__ = ["IdealDevice", "Counters", "LayerExecutor", "execute_layer", "run_executor"]

#: Upper bound on ``slices * vectors * columns`` elements of one device call (memory).
_BATCH_ELEMENTS = 1 << 22


class IdealDevice:
    """The exact crossbar: ``codes = min(adc_max, slice_inputs @ levels)``.

    Parameters
    ----------
    config:
        The accelerator (``adc_max`` is taken from it).
    shortcut:
        Let the executor skip per-slice reads where no column can saturate (the attribute
        ``exact``; see :meth:`LayerExecutor.run`). ``False`` forces every read through
        :meth:`read`, as a non-ideal device would see them.
    """

    def __init__(self, config: AcceleratorConfig, *, shortcut: bool = True):
        self.adc_max = config.adc_max
        self.exact = bool(shortcut)

    def read(self, xbar, rows, cols, slice_inputs, levels) -> np.ndarray:
        """Return the saturated exact bitline sums (see the module docstring)."""
        # float32 is exact here: a sum is at most rows * dac_max * level_max < 2**24.
        sums = np.asarray(slice_inputs, dtype=np.float32) @ np.asarray(levels, dtype=np.float32)
        return np.minimum(sums, np.float32(self.adc_max), out=sums)


@dataclass
class Counters:
    """Events counted while executing, per layer (by name) and per crossbar unit.

    Attributes
    ----------
    vectors:
        Input vectors run through each layer.
    ou_reads, adc_conversions, busy_cycles:
        Per layer: OU reads (entry x issued slice x vector), ADC conversions (valid columns
        of each read) and busy cycles (reads x ``conversions_per_read``), summed over the
        layer's units.
    unit_reads, unit_conversions, unit_busy_cycles:
        The same per global crossbar unit.
    unit_layer:
        Layer that owns each unit that issued a read.
    unit_vectors:
        Input vectors each unit read (its copy's share).
    """

    vectors: dict[str, int] = field(default_factory=dict)
    ou_reads: dict[str, int] = field(default_factory=dict)
    adc_conversions: dict[str, int] = field(default_factory=dict)
    busy_cycles: dict[str, int] = field(default_factory=dict)
    unit_reads: dict[int, int] = field(default_factory=dict)
    unit_conversions: dict[int, int] = field(default_factory=dict)
    unit_busy_cycles: dict[int, int] = field(default_factory=dict)
    unit_layer: dict[int, str] = field(default_factory=dict)
    unit_vectors: dict[int, int] = field(default_factory=dict)

    def job_vectors(self, layer: str) -> int:
        """Return the most vectors any unit of ``layer`` read (the largest copy share)."""
        return max((count for unit, count in self.unit_vectors.items()
                    if self.unit_layer.get(unit) == layer), default=0)

    def job_compute_cycles(self, layer: str) -> int:
        """Return ``max`` over the layer's units of their busy cycles (``V * C_comp``).

        ``C_comp`` is the per-vector figure of
        :func:`bitline.hw.spec.timing.vector_compute_cycles`; this is its total over all ``V``
        vectors recorded for ``layer``.
        """
        cycles = [busy for unit, busy in self.unit_busy_cycles.items()
                  if self.unit_layer.get(unit) == layer]
        return max(cycles, default=0)

    @property
    def total_reads(self) -> int:
        """OU reads of all layers."""
        return sum(self.ou_reads.values())

    @property
    def total_conversions(self) -> int:
        """ADC conversions of all layers."""
        return sum(self.adc_conversions.values())

    def record(self, runner: "LayerExecutor", vectors: int) -> None:
        """Add the events of running ``runner``'s layer on ``vectors`` input vectors."""
        name = runner.layer.name
        cycles = runner.config.conversions_per_read

        def bump(table, key, value):
            table[key] = table.get(key, 0) + int(value)

        bump(self.vectors, name, vectors)
        bump(self.ou_reads, name, vectors * runner.reads_per_vector)
        bump(self.adc_conversions, name, vectors * runner.conversions_per_vector)
        bump(self.busy_cycles, name, vectors * runner.reads_per_vector * cycles)
        shares = ([stop - start for start, stop in copy_shares(vectors, runner.copies)]
                  if vectors else [0] * runner.copies)
        for copy, share in enumerate(shares):
            for unit, reads, conversions in zip(runner.copy_units(copy).tolist(),
                                                runner.unit_reads.tolist(),
                                                runner.unit_conversions.tolist()):
                bump(self.unit_reads, unit, share * reads)
                bump(self.unit_conversions, unit, share * conversions)
                bump(self.unit_busy_cycles, unit, share * reads * cycles)
                bump(self.unit_vectors, unit, share)
                self.unit_layer[unit] = name


@dataclass
class _Batch:
    """OU columns that read the same input vector with the same slices (one device call)."""

    inputs: np.ndarray      # (n_rows,) input index of each driven row
    xbar: np.ndarray        # (n_cols,) global unit
    rows: np.ndarray        # (n_rows, n_cols) physical rows
    cols: np.ndarray        # (n_cols,) physical columns
    levels: np.ndarray      # (n_rows, n_cols) int64
    slice_lo: int
    slice_hi: int
    can_saturate: bool      # some column could reach adc_max with all inputs at dac_max
    scale: np.ndarray       # (n_cols,) (-1)**sign * 2**shift, float64
    dest: np.ndarray        # (n_cols,) destination channel
    to_dest: np.ndarray | None   # (n_cols, O) float64: scale at [c, dest[c]], built lazily
    order: np.ndarray       # columns sorted by destination (reduceat path)
    starts: np.ndarray      # reduceat starts of each destination in ``order``
    dests: np.ndarray       # destination of each reduceat segment
    exact_float: bool       # float64 reduction provably exact
    read_base: np.ndarray | None = None    # (n_cols,) unit read number of slice_lo, vector 0
    read_period: np.ndarray | None = None  # (n_cols,) reads of the column's unit per vector


#: Largest one-hot reduction matrix (elements) built per batch; bigger ones use reduceat.
_ONE_HOT_ELEMENTS = 1 << 21

#: float64 represents every integer below this exactly (with margin for one addition).
_FLOAT_EXACT = 2.0 ** 52


class LayerExecutor:
    """One layer program, prepared for execution: valid OU columns grouped into batches.

    A batch holds every valid column (over all entries of the layer) whose row group drives
    the same input vector and whose entry issues the same slices; one device call reads
    them all for a block of vectors and all slices.

    Parameters
    ----------
    layer:
        The layer program.
    config:
        The accelerator it was mapped for.
    check:
        Validate the layer as a one-layer program first
        (:func:`~bitline.hw.spec.validate.validate_program`) on ``config`` with at least the
        units the layer names (one layer may be mapped onto more units than a whole machine
        has: the executor models the crossbar arithmetic, :func:`run_executor` checks a
        whole program against its config); ``False`` when the caller has validated already.

    Raises
    ------
    ProgramError
        From the validator: a layer the hardware could not hold or run exactly (e.g. an
        entry naming a crossbar unit the layer does not own).
    """

    def __init__(self, layer: LayerProgram, config: AcceleratorConfig, *, check: bool = True):
        if check:
            units = int(np.max(layer.all_xbars, initial=-1)) + 1
            machine = config if units <= config.n_xbars else config.replace(n_xbars=units)
            validate_program(Program(config=machine, strategy="", layers=[layer]), machine)
        self.layer = layer
        self.config = config
        entries = layer.entries
        n_slices = (entries["slice_hi"] - entries["slice_lo"]).astype(np.int64)
        desc = entry_columns(entries, config.ou_cols)
        n_valid = desc["valid"].sum(axis=1)
        self.reads_per_vector = int(n_slices.sum())
        self.conversions_per_vector = int(np.sum(n_slices * n_valid))
        units, unit_index = np.unique(entries["xbar"], return_inverse=True)
        self.units = units.astype(np.int64)
        self.unit_reads = np.bincount(unit_index, weights=n_slices,
                                      minlength=len(units)).astype(np.int64)
        self.unit_conversions = np.bincount(unit_index, weights=n_slices * n_valid,
                                            minlength=len(units)).astype(np.int64)
        # Read number of each entry's first slice within its unit (hardware order).
        before = np.zeros(len(entries), dtype=np.int64)
        by_unit = np.argsort(unit_index, kind="stable")
        running = np.cumsum(n_slices[by_unit]) - n_slices[by_unit]
        group_start = np.searchsorted(unit_index[by_unit], unit_index[by_unit])
        before[by_unit] = running - running[group_start]
        self._entry_read_base = before
        self._entry_read_period = self.unit_reads[unit_index] if len(entries) else before
        self.copies = layer.copies
        # Copy k's unit of each owned unit, by position in layer.xbars.
        self._copy_xbars = np.stack([layer.copy_units(copy) for copy in range(self.copies)])
        self.batches = self._prepare(entries, desc)
        self._linear = None

    def copy_units(self, copy: int) -> np.ndarray:
        """Return copy ``copy``'s unit of each unit in :attr:`units` (copy 0: the units)."""
        return self._copy_xbars[copy][self._local(self.units)]

    def _local(self, xbar: np.ndarray) -> np.ndarray:
        """Return the position in ``layer.xbars`` of each (validated, owned) unit."""
        owned = np.asarray(self.layer.xbars, dtype=np.int64)
        order = np.argsort(owned)
        return order[np.searchsorted(owned[order], xbar)]

    def _prepare(self, entries: np.ndarray, desc: dict) -> list[_Batch]:
        config = self.config
        ou_rows = config.ou_rows
        e, j = np.nonzero(desc["valid"])
        if len(e) == 0:
            return []
        xbar = entries["xbar"][e].astype(np.int64)
        local = self._local(xbar)
        row_group = entries["row_group"][e].astype(np.int64)
        col = entries["col_group"][e].astype(np.int64) * config.ou_cols + j
        lo = entries["slice_lo"][e].astype(np.int64)
        hi = entries["slice_hi"][e].astype(np.int64)
        # Group columns by (crossbar, row group, slices), then those groups by the input
        # vector their row group drives (-1: row unused or past the crossbar).
        span = config.max_slices + 1
        group_key = ((local * config.row_groups + row_group) * span + lo) * span + hi
        group_keys, group_of = bounded_unique(
            group_key, max(1, len(self.layer.xbars)) * config.row_groups * span * span)
        g_hi = group_keys % span
        g_lo = group_keys // span % span
        g_rg = group_keys // (span * span) % config.row_groups
        g_local = group_keys // (span * span * config.row_groups)
        group_rows = g_rg[:, None] * ou_rows + np.arange(ou_rows)[None, :]
        inside = group_rows < config.rows
        g_vectors = np.where(inside, self.layer.row_maps[g_local[:, None],
                                                         np.minimum(group_rows, config.rows - 1)],
                             -1)
        keys = np.concatenate([g_vectors, g_lo[:, None], g_hi[:, None]], axis=1)
        _, batch_of_group = np.unique(keys, axis=0, return_inverse=True)
        batch_of = batch_of_group.reshape(-1)[group_of]
        scale = np.where(desc["sign"][e, j] == 1, -1.0, 1.0) * np.exp2(desc["shift"][e, j])
        dest = desc["dest"][e, j]
        order = np.argsort(batch_of, kind="stable")
        bounds = np.flatnonzero(np.diff(batch_of[order])) + 1
        batches = []
        for members in np.split(order, bounds):
            vector = g_vectors[group_of[members[0]]]
            offsets = np.flatnonzero(vector >= 0)
            rows = offsets[:, None] + row_group[members][None, :] * ou_rows  # (n_rows, n_cols)
            levels = self.layer.cells[local[members][None, :], rows,
                                      col[members][None, :]].astype(np.int64)
            batch = self._batch(
                vector[offsets], xbar[members], rows, col[members], levels,
                int(lo[members[0]]), int(hi[members[0]]), scale[members], dest[members])
            batch.read_base = self._entry_read_base[e[members]]
            batch.read_period = self._entry_read_period[e[members]]
            batches.append(batch)
        return batches

    def _batch(self, inputs, xbar, rows, cols, levels, lo, hi, scale, dest) -> _Batch:
        config = self.config
        by_dest = np.argsort(dest, kind="stable")
        sorted_dest = dest[by_dest]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_dest)) + 1])
        # A column adds at most adc_max << (shift + t*dac_bits) per slice t < hi.
        bound = config.adc_max * 2.0 ** (hi * config.dac_bits) * np.abs(scale).sum()
        column_peak = levels.sum(axis=0).max(initial=0) * config.dac_max
        return _Batch(
            inputs=inputs.astype(np.int64), xbar=xbar, rows=rows, cols=cols, levels=levels,
            slice_lo=lo, slice_hi=hi, can_saturate=bool(column_peak > config.adc_max),
            scale=scale, dest=dest, to_dest=None, order=by_dest, starts=starts,
            dests=sorted_dest[starts], exact_float=bool(bound < _FLOAT_EXACT),
        )

    def _linear_part(self):
        """Fold the batches that cannot saturate into one ``(R, O)`` matrix (ideal shortcut).

        Returns ``(inputs (R,), keep_lo (R,), keep_hi (R,), folded (R, O), rest)``: row ``r``
        of ``folded`` is what input ``inputs[r]``, truncated to the bits
        ``[keep_lo, keep_hi)`` of its slices, adds to each output through its batch's cells
        and column descriptors; ``rest`` are the batches left to per-slice reads.
        """
        if self._linear is not None:
            return self._linear
        dac_bits = self.config.dac_bits
        n_out = self.layer.n_outputs
        parts, rest = [], []
        for batch in self.batches:
            if batch.can_saturate or not batch.exact_float:
                rest.append(batch)
                continue
            folded = np.zeros((len(batch.inputs), n_out), dtype=np.float64)
            signed = batch.levels[:, batch.order] * batch.scale[batch.order][None, :]
            folded[:, batch.dests] = np.add.reduceat(signed, batch.starts, axis=1)
            parts.append((batch.inputs, np.full(len(batch.inputs), batch.slice_lo * dac_bits),
                          np.full(len(batch.inputs), batch.slice_hi * dac_bits), folded))
        if parts:
            inputs, keep_lo, keep_hi, folded = (np.concatenate(v) for v in zip(*parts))
        else:
            inputs = keep_lo = keep_hi = np.zeros(0, dtype=np.int64)
            folded = np.zeros((0, n_out), dtype=np.float64)
        peak = (2.0 ** keep_hi - 1)[:, None] * np.abs(folded)
        if peak.sum(axis=0).max(initial=0) >= _FLOAT_EXACT:
            inputs = keep_lo = keep_hi = np.zeros(0, dtype=np.int64)
            folded = np.zeros((0, n_out), dtype=np.float64)
            rest = list(self.batches)
        self._linear = (inputs, keep_lo, keep_hi, folded, rest)
        return self._linear

    def run(self, cols: np.ndarray, device) -> np.ndarray:
        """Execute the layer's OU program on input vectors.

        Parameters
        ----------
        cols:
            int64 ``(M, K)`` raw input codes (im2col rows).
        device:
            The crossbar device (see the module docstring). When its ``exact`` attribute
            is true (an :class:`IdealDevice` with ``shortcut=True``), batches in which no
            column can reach ``adc_max`` even with every input slice at ``dac_max`` are
            not read slice by slice: their inputs, truncated to the issued slices (bits
            below ``slice_lo`` and from ``slice_hi`` on cleared), are multiplied once by
            their cell levels folded through the column descriptors (sign, shift,
            destination). The same integers, since the shift-and-add of unsaturated codes
            is linear; the per-slice path is what every other device gets. With copies,
            each copy reads its share of the vectors on its own units (module docstring).

        Returns
        -------
        np.ndarray
            int64 ``(M, O)`` accumulators (bias not included); with the offset weight
            encoding the crossbars' sums less ``weight_offset * sum(cols)`` per vector, the
            correction the output path applies (docs/contract.md section 4).
        """
        cols = np.asarray(cols, dtype=np.int64)
        if cols.ndim != 2 or cols.shape[1] != self.layer.n_inputs:
            raise ValueError(
                f"layer {self.layer.name}: input vectors must be (M, {self.layer.n_inputs}), "
                f"not shape {cols.shape}"
            )
        n_vectors, n_out = cols.shape[0], self.layer.n_outputs
        acc = np.zeros((n_vectors, n_out), dtype=np.int64)
        batches = self.batches
        if getattr(device, "exact", False):
            inputs, keep_lo, keep_hi, folded, batches = self._linear_part()
            if len(inputs):
                step = max(1, _BATCH_ELEMENTS // (len(inputs) + n_out))
                mask = (np.int64(1) << keep_hi) - 1
                for start in range(0, n_vectors, step):
                    kept = (cols[start:start + step, inputs] >> keep_lo << keep_lo) & mask
                    acc[start:start + step] += np.rint(kept.astype(np.float64) @ folded
                                                       ).astype(np.int64)
        if batches and n_vectors:
            for copy, (start, stop) in enumerate(copy_shares(n_vectors, self.copies)):
                for batch in batches:
                    units = (batch.xbar if copy == 0
                             else self._copy_xbars[copy][self._local(batch.xbar)])
                    self._read_batch(batch, cols[start:stop], acc[start:stop], device, units)
        if self.layer.weight_offset:
            # offset encoding: the cells hold w + B; the output path subtracts B * sum(x)
            acc -= int(self.layer.weight_offset) * cols.sum(axis=1, keepdims=True)
        return acc

    def _read_batch(self, batch: _Batch, cols: np.ndarray, acc: np.ndarray, device,
                    units: np.ndarray) -> None:
        """Read one batch slice by slice through ``device`` on ``units`` (the batch's columns'
        units in the reading copy); shift-and-add into ``acc`` (a view of the copy's share)."""
        dac_bits, dac_max = self.config.dac_bits, self.config.dac_max
        n_slices = batch.slice_hi - batch.slice_lo
        n_cols = len(batch.cols)
        n_vectors = len(cols)
        step = max(1, _BATCH_ELEMENTS // max(1, n_slices * (n_cols + len(batch.inputs))))
        shifts = (np.arange(batch.slice_lo, batch.slice_hi) * dac_bits)[None, :, None]
        # Codes below 2**adc_bits shifted by up to (slice_hi - 1) * dac_bits and summed stay
        # below 2**(adc_bits + slice_hi * dac_bits): float32 is exact up to 2**24 (8-bit
        # activations always); wider activations (up to 16 bits) may need float64.
        exact32 = self.config.adc_bits + batch.slice_hi * dac_bits <= 24
        code_type = np.float32 if exact32 else np.float64
        weights = np.exp2(np.arange(batch.slice_lo, batch.slice_hi) * dac_bits,
                          dtype=code_type)
        numbered = getattr(device, "uses_read_index", False)
        if batch.to_dest is None and n_cols * self.layer.n_outputs <= _ONE_HOT_ELEMENTS:
            batch.to_dest = np.zeros((n_cols, self.layer.n_outputs), dtype=np.float64)
            batch.to_dest[np.arange(n_cols), batch.dest] = batch.scale
        for start in range(0, n_vectors, step):
            block = cols[start:start + step, batch.inputs]              # (m, n_rows)
            count = len(block)
            slices = (block[:, None, :] >> shifts) & dac_max            # (m, T, n_rows)
            extra = {}
            if numbered:   # the read numbers of the module docstring, (m, T, n_cols)
                extra["read_index"] = (
                    np.arange(start, start + count, dtype=np.int64)[:, None, None]
                    * batch.read_period[None, None, :] + batch.read_base[None, None, :]
                    + np.arange(n_slices, dtype=np.int64)[None, :, None]
                ).reshape(count * n_slices, n_cols)
            codes = device.read(units, batch.rows, batch.cols,
                                slices.reshape(count * n_slices, -1), batch.levels, **extra)
            codes = np.asarray(codes, dtype=code_type).reshape(count, n_slices, n_cols)
            value = np.einsum("mtc,t->mc", codes, weights).astype(np.float64)
            if batch.exact_float and batch.to_dest is not None:
                acc[start:start + count] += np.rint(value @ batch.to_dest).astype(np.int64)
            elif batch.exact_float:
                signed = value * batch.scale
                summed = np.add.reduceat(signed[:, batch.order], batch.starts, axis=1)
                acc[start:start + count, batch.dests] += np.rint(summed).astype(np.int64)
            else:
                signed = np.rint(value).astype(np.int64) * np.rint(batch.scale).astype(np.int64)
                acc[start:start + count, batch.dests] += np.add.reduceat(
                    signed[:, batch.order], batch.starts, axis=1)


def execute_layer(
    layer: LayerProgram,
    config: AcceleratorConfig,
    cols: np.ndarray,
    *,
    device=None,
    counters: Counters | None = None,
) -> np.ndarray:
    """Run one layer program on ``(M, K)`` input codes; return ``(M, O)`` accumulators.

    ``device`` defaults to :class:`IdealDevice`; events go to ``counters`` when given.
    """
    runner = LayerExecutor(layer, config)
    acc = runner.run(cols, device if device is not None else IdealDevice(config))
    if counters is not None:
        counters.record(runner, len(acc))
    return acc


def run_executor(
    program: Program,
    qmodel,
    x: np.ndarray,
    *,
    device=None,
    return_all: bool = False,
    counters: Counters | None = None,
):
    """Run a quantized model with its compute layers executed on the mapped crossbars.

    Parameters
    ----------
    program:
        The mapped model (:func:`bitline.sw.mapping.map_model`).
    qmodel:
        The :class:`~bitline.sw.integer.qmodel.QuantizedModel` it was mapped from.
    x:
        Float batch ``(N, *input_shape)``.
    device:
        Crossbar device (default :class:`IdealDevice` of ``program.config``).
    return_all:
        Keep every layer's output (see :func:`bitline.sim.golden.run_golden`).
    counters:
        A :class:`Counters` to add this run's events to.

    Returns
    -------
    bitline.sim.golden.GoldenResult

    Raises
    ------
    ProgramError
        From :func:`~bitline.hw.spec.validate.validate_program` (checked once, up front).
    ValueError
        If the program lacks a compute layer of the model or its sizes differ.
    """
    from bitline.sim.golden import run_golden

    config = program.config
    validate_program(program, config)
    device = device if device is not None else IdealDevice(config)
    by_name = {layer.name: layer for layer in program.layers}
    for qlayer in qmodel.compute_layers:
        name = qlayer.layer.name
        layer = by_name.get(name)
        if layer is None:
            raise ValueError(f"program has no layer {name!r} of model {qmodel.model.name}")
        n_outputs = qlayer.layer.output_shape[0]
        if layer.act_bits != qlayer.inputs[0].bits or layer.n_outputs != n_outputs:
            raise ValueError(
                f"layer {name}: program (act_bits={layer.act_bits}, n_outputs="
                f"{layer.n_outputs}) does not match the quantized model (act_bits="
                f"{qlayer.inputs[0].bits}, n_outputs={n_outputs})"
            )
    runners: dict[str, LayerExecutor] = {}

    def compute(qlayer, cols):
        name = qlayer.layer.name
        if name not in runners:
            runners[name] = LayerExecutor(by_name[name], config, check=False)
        runner = runners[name]
        acc = runner.run(cols, device)
        if counters is not None:
            counters.record(runner, len(cols))
        return acc

    return run_golden(qmodel, x, compute=compute, return_all=return_all)
