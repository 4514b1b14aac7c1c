"""The behavioral analog crossbar model: ReRAM non-idealities behind the executor's device port.

:class:`~bitline.sim.analog_params.AnalogParams` (a frozen dataclass read from a TOML file,
see ``examples/analog/``; its own module) describes the device and :class:`AnalogDevice`
implements the crossbar device interface of :mod:`bitline.sim.executor` with it, so ::

    run_executor(program, qmodel, x, device=AnalogDevice(program.config, params, seed=0))

runs a network on a non-ideal chip. The equations are in docs/analog.md; in short, in units
of one *LSB current* (the current of one conductance step under the unit input slice):

* cell ``(r, c)`` at level ``l`` has the nominal conductance
  ``G_l = g_off + l * (g_on - g_off) / level_max`` (levels evenly spaced), i.e.
  ``g_l = g0 + l`` with ``g0 = level_max / (on_off_ratio - 1)``;
* *programming variation*, fixed per programmed chip: ``g = g_l * exp(sigma_l * z[r, c])``
  with ``z ~ N(0, 1)`` (lognormal, median at the nominal level);
* *stuck-at faults*, fixed per chip: a stuck-at-0 cell reads as level 0 (high-resistance
  state), a stuck-at-1 cell as ``level_max`` (low-resistance state), whatever was
  programmed;
* the *reference column* of each crossbar holds one ``g_off`` cell per row (with the same
  variation, never stuck); its current is subtracted from every bitline (the dummy-column
  scheme of real ReRAM macros), which removes the ``g_off`` baseline of each driven row:
  ``I_c = sum_r v_r * (g[r, c] - g_ref[r])``, ``v_r`` the row's DAC slice ``0 .. dac_max``;
* *IR drop*, first order: ``I_c *= max(0, 1 - ir_drop * n_active)``, ``n_active`` the rows
  driven with a nonzero slice in this read;
* *read noise*, per read and column: ``I_c += read_noise * sqrt(sum_r v_r^2 (g[r, c]^2 +
  g_ref[r]^2)) * n``, ``n ~ N(0, 1)`` -- each driven cell's conductance fluctuates by
  ``read_noise`` (relative) in each read, and the sum of those independent Gaussians is drawn
  as one;
* the *ADC* (``adc_bits`` from the :class:`~bitline.hw.spec.config.AcceleratorConfig`) maps one
  LSB current to one code, so its full scale ``adc_max`` LSB currents covers the largest
  ideal sum the mappers produce (``exact_rows_per_ou``): ``code = clip(floor((1 +
  adc_gain_error) * I_c + adc_offset + 1/2), 0, adc_max)`` (round half up).

With :meth:`~bitline.sim.analog_params.AnalogParams.ideal` values every term above vanishes and
the codes equal the exact integer sums clipped at ``adc_max``, i.e.
:class:`~bitline.sim.executor.IdealDevice`.

Random numbers and the ordering contract
----------------------------------------
* Per-chip draws: crossbar unit ``u``'s tables come from
  ``np.random.default_rng([seed, u])`` -- first ``z`` (``rows x cols`` standard normals),
  then ``z_ref`` (``rows``), then ``u_fault`` (``rows x cols`` uniforms; a cell is stuck at
  0 if ``u_fault < stuck_at_0``, stuck at 1 if ``stuck_at_0 <= u_fault < stuck_at_0 +
  stuck_at_1``). The draws do not depend on the parameter values, so two devices with the
  same seed and different rates are the *same chip* at different severities (faults nest,
  variations scale): sweeps use common random numbers.
* Read noise is counter-based (like Random123's Philox): the normal variate of column ``c``
  of crossbar ``u`` in that crossbar's OU read number ``n`` is a fixed hash of
  ``(seed, u, c, n)``, so it does not depend on the order in which a simulator asks.
  ``n`` counts the OU reads a crossbar unit issues from the start of a batch, in hardware
  order: vector ``v`` (``v = image * P + pixel``, the im2col row) major, then the unit's
  entries in program order, then the entry's slices ``t = slice_lo .. slice_hi - 1``:
  ``n = v * R_u + sum_{e' < e} (slice_hi[e'] - slice_lo[e']) + (t - slice_lo[e])`` with
  ``R_u`` the unit's reads per vector. A cocotb bench that counts the OU reads on a unit's
  crossbar port (one per ``read.strobe`` with ``phase == 0``) while running the batch's images
  in order gets the same ``n``, hence the same codes, as the executor. The executor passes
  ``n`` as ``read_index`` (see :meth:`AnalogDevice.read`); a caller that does not falls back
  to a per-device call counter (reproducible run to run, but not matched by a bench).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sim.analog_params import AnalogParams

__all__ = ["AnalogDevice", "ChipTables", "hashed_normal", "NOISE_TAIL", "chip_stuck_map",
           "parse_chip_spec"]


# ---------------------------------------------------------------------------- random numbers
_NOISE_STREAM = 0x5EED_0F_2EAD  # salt of the read-noise hash, distinct from the chip draws


def _mix64(value: np.ndarray) -> np.ndarray:
    """Return the splitmix64 finalizer of uint64 ``value`` (a bijective avalanche hash)."""
    value = np.asarray(value, dtype=np.uint64)
    with np.errstate(over="ignore"):
        value = value ^ (value >> np.uint64(30))
        value = value * np.uint64(0xBF58476D1CE4E5B9)
        value = value ^ (value >> np.uint64(27))
        value = value * np.uint64(0x94D049BB133111EB)
        value = value ^ (value >> np.uint64(31))
    return value


def hashed_normal(seed: int, xbar, col, read_index) -> np.ndarray:
    """Return standard normal variates that are a fixed function of their key.

    The key of an element is ``(seed, xbar, col, read_index)`` (the three arrays broadcast
    against each other): one splitmix64 hash of it gives two 32-bit uniforms ``u1 = (hi +
    1) / 2**32`` and ``u2 = lo / 2**32``, and the variate is the Box-Muller
    ``sqrt(-2 ln u1) * cos(2 pi u2)`` in float32, so ``|variate| <= NOISE_TAIL``.

    Parameters
    ----------
    seed:
        Chip seed (non-negative integer).
    xbar, col:
        int crossbar unit and physical column of each element.
    read_index:
        int OU read number of each element.

    Returns
    -------
    np.ndarray
        float32 of the broadcast shape.
    """
    with np.errstate(over="ignore"):
        base = _mix64(np.uint64(seed) ^ np.uint64(_NOISE_STREAM))
        column_key = _mix64(base + np.asarray(xbar, dtype=np.int64).astype(np.uint64))
        column_key = _mix64(column_key ^ np.asarray(col, dtype=np.int64).astype(np.uint64))
        read_key = np.asarray(read_index, dtype=np.int64).astype(np.uint64)
        key = _mix64(column_key + read_key * np.uint64(0x9E3779B97F4A7C15))
    high = (key >> np.uint64(32)).astype(np.uint32)
    low = key.astype(np.uint32)  # keeps the low 32 bits
    scale = np.float32(1.0 / 4294967296.0)
    # uint32 -> float32 may round up to 2**32, so u1 lies in (0, 1] and log(u1) is finite
    u1 = np.minimum((high.astype(np.float32) + np.float32(1.0)) * scale, np.float32(1.0))
    u2 = low.astype(np.float32) * scale
    return np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(2.0 * np.pi) * u2)


#: Largest ``|hashed_normal|``: ``sqrt(-2 ln 2**-32)`` = 6.6604 (rounded up for float32).
NOISE_TAIL = 6.661


# ---------------------------------------------------------------------------- the device
@dataclass(frozen=True)
class ChipTables:
    """The per-chip draws of one crossbar unit (see the module docstring).

    Attributes
    ----------
    z:
        float64 ``(rows, cols)`` standard normals of the programming variation.
    z_ref:
        float64 ``(rows,)`` standard normals of the reference column's cells.
    u_fault:
        float64 ``(rows, cols)`` uniforms deciding the stuck-at faults.
    """

    z: np.ndarray
    z_ref: np.ndarray
    u_fault: np.ndarray


class AnalogDevice:
    """A crossbar device with ReRAM non-idealities for :mod:`bitline.sim.executor`.

    One instance is one programmed chip: its variation and faults are drawn (lazily, per
    crossbar unit) from ``seed``; read noise is a hash of ``(seed, unit, column, read
    number)`` (module docstring). Two instances with the same config, params and seed give
    identical codes for the same reads.

    Parameters
    ----------
    config:
        The accelerator (geometry, ``cell_bits``, ``dac_bits``, ``adc_bits``).
    params:
        The non-idealities (:class:`AnalogParams`; default ideal).
    seed:
        Non-negative integer naming the chip.
    stuck:
        Optional stuck map, int ``(n_units, rows, cols)`` (``-1`` healthy, else the stuck
        level; the format of :class:`bitline.sw.mapping.faults.StuckMap`, whose ``stuck``
        array may be passed): a chip whose faults come from a file instead of the
        ``stuck_at_*`` draw (then both rates must be 0). Units past the map are healthy.

    Raises
    ------
    ValueError
        If ``seed`` is not a non-negative integer, ``params.variation`` lists a wrong
        number of levels, or a stuck map is given with nonzero ``stuck_at_*`` rates or
        the wrong shape.
    """

    #: The executor passes per-code OU read numbers to :meth:`read` when this is true.
    uses_read_index = True

    def __init__(self, config: AcceleratorConfig, params: AnalogParams | None = None,
                 seed: int = 0, *, stuck: np.ndarray | None = None):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
        self.config = config
        self.params = params if params is not None else AnalogParams.ideal()
        self.seed = int(seed)
        self.adc_max = config.adc_max
        self.n_levels = config.level_max + 1
        self.sigmas = self.params.level_sigmas(self.n_levels)
        # Conductances in LSB units: level l is g0 + l (g0 = the g_off baseline).
        ratio = self.params.on_off_ratio
        self.g0 = 0.0 if math.isinf(ratio) else config.level_max / (ratio - 1.0)
        self._tables: dict[int, ChipTables] = {}
        self._cells: dict[int, np.ndarray] = {}
        self._fallback_reads = 0
        self._stuck = None
        if stuck is not None:
            stuck = np.asarray(getattr(stuck, "stuck", stuck))
            if stuck.ndim != 3 or stuck.shape[1:] != (config.rows, config.cols):
                raise ValueError(f"stuck map must be (n_units, {config.rows}, {config.cols}), "
                                 f"not {stuck.shape}")
            if self.params.stuck_at_0 or self.params.stuck_at_1:
                raise ValueError("give a stuck map or stuck_at_0 / stuck_at_1 rates, not both")
            self._stuck = stuck.astype(np.int64)

    # ------------------------------------------------------------------ per-chip state
    def tables(self, xbar: int) -> ChipTables:
        """Return (drawing on first use) the per-chip random tables of crossbar unit ``xbar``."""
        xbar = int(xbar)
        if xbar < 0:
            raise ValueError(f"crossbar unit must be non-negative, not {xbar}")
        tables = self._tables.get(xbar)
        if tables is None:
            rng = np.random.default_rng([self.seed, xbar])
            shape = (self.config.rows, self.config.cols)
            z = rng.standard_normal(shape)
            z_ref = rng.standard_normal(self.config.rows)
            u_fault = rng.random(shape)
            tables = ChipTables(z=z, z_ref=z_ref, u_fault=u_fault)
            self._tables[xbar] = tables
        return tables

    def stuck_levels(self, xbar: int) -> np.ndarray:
        """Return int8 ``(rows, cols)``: the level each cell of unit ``xbar`` is stuck at, -1
        healthy (the :class:`~bitline.sw.mapping.faults.StuckMap` format)."""
        if self._stuck is not None:
            if int(xbar) < len(self._stuck):
                return self._stuck[int(xbar)].astype(np.int8)
            return np.full((self.config.rows, self.config.cols), -1, dtype=np.int8)
        codes = self.faults(xbar)
        return np.where(codes == 1, 0, np.where(codes == 2, self.n_levels - 1, -1)).astype(
            np.int8)

    def faults(self, xbar: int) -> np.ndarray:
        """Return int8 ``(rows, cols)`` fault map of unit ``xbar``: 0 none, 1 stuck at 0, 2 at 1
        (with a stuck map: 2 for any level above 0)."""
        if self._stuck is not None:
            levels = self.stuck_levels(xbar)
            return np.where(levels == 0, 1, np.where(levels > 0, 2, 0)).astype(np.int8)
        u_fault = self.tables(xbar).u_fault
        sa0, sa1 = self.params.stuck_at_0, self.params.stuck_at_1
        return np.where(u_fault < sa0, 1, np.where(u_fault < sa0 + sa1, 2, 0)).astype(np.int8)

    def _gather(self, xbar: np.ndarray, rows: np.ndarray, cols: np.ndarray):
        """Return ``z``, ``z_ref`` and ``u_fault`` of cells ``(rows[r, c], cols[c])``."""
        n_rows, n_cols = rows.shape
        z = np.empty((n_rows, n_cols))
        z_ref = np.empty((n_rows, n_cols))
        u_fault = np.empty((n_rows, n_cols))
        for unit in np.unique(xbar).tolist():
            members = np.flatnonzero(xbar == unit)
            tables = self.tables(unit)
            unit_rows = rows[:, members]
            z[:, members] = tables.z[unit_rows, cols[members][None, :]]
            u_fault[:, members] = tables.u_fault[unit_rows, cols[members][None, :]]
            z_ref[:, members] = tables.z_ref[unit_rows]
        return z, z_ref, u_fault

    def conductances(self, xbar, rows, cols, levels) -> tuple[np.ndarray, np.ndarray]:
        """Return the read conductances of cells and of their reference cells, in LSB units.

        Parameters
        ----------
        xbar, rows, cols, levels:
            As for :meth:`read`.

        Returns
        -------
        g, g_ref:
            float64 ``(n_rows, n_cols)``: ``(g0 + level') * exp(sigma_level' * z)`` with
            ``level'`` the programmed level or the stuck value, and ``g0 * exp(sigma_0 *
            z_ref)`` of the row's reference cell.
        """
        xbar = np.asarray(xbar, dtype=np.int64)
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        levels = np.asarray(levels, dtype=np.int64)
        z, z_ref, u_fault = self._gather(xbar, rows, cols)
        sa0, sa1 = self.params.stuck_at_0, self.params.stuck_at_1
        level = np.where(u_fault < sa0, 0,
                         np.where(u_fault < sa0 + sa1, self.n_levels - 1, levels))
        if self._stuck is not None:
            stuck = self._stuck_at(xbar, rows, cols)
            level = np.where(stuck >= 0, stuck, level)
        g = (self.g0 + level) * np.exp(self.sigmas[level] * z)
        g_ref = self.g0 * np.exp(self.sigmas[0] * z_ref)
        return g, g_ref

    def _stuck_at(self, xbar, rows, cols) -> np.ndarray:
        """Stuck levels of cells ``(rows[r, c], cols[c])`` of units ``xbar[c]`` (-1 healthy)."""
        inside = xbar < len(self._stuck)
        unit = np.where(inside, xbar, 0)
        stuck = self._stuck[unit[None, :], rows, cols[None, :]]
        return np.where(inside[None, :], stuck, -1)

    # ------------------------------------------------------------------ reads
    def _mean_current(self, xbar, rows, cols, slice_inputs, levels):
        """Return the noiseless currents and what the read noise needs.

        Returns ``(current, drive, power)``: float32 ``(M, n_cols)`` reference-subtracted
        currents in LSB units after IR drop, the float32 ``(M, n_rows)`` drive and float32
        ``(n_rows, n_cols)`` ``g**2 + g_ref**2``.
        """
        drive = np.asarray(slice_inputs, dtype=np.float32)
        g, g_ref = self.conductances(xbar, rows, cols, levels)
        # (g0 + l) - g0 is l to within 1e-15, so an ideal cell's float32 difference is
        # exactly its level and the product is the exact sum (below 2**24).
        current = drive @ (g - g_ref).astype(np.float32)
        if self.params.ir_drop:
            active = np.count_nonzero(drive, axis=1).astype(np.float32)
            factor = np.maximum(np.float32(0.0), 1 - np.float32(self.params.ir_drop) * active)
            current *= factor[:, None]
        power = (np.square(g) + np.square(g_ref)).astype(np.float32)
        return current, drive, power

    def _noise(self, xbar, cols, drive, power, read_index, reads, columns) -> np.ndarray:
        """Return the read noise (LSB units, float32) of elements ``(reads[k], columns[k])``."""
        spread = np.sqrt(np.einsum("kr,rk->k", np.square(drive[reads]), power[:, columns]))
        variate = hashed_normal(self.seed, xbar[columns], cols[columns],
                                read_index[reads, columns])
        return np.float32(self.params.read_noise) * spread * variate

    def _read_index(self, read_index, shape) -> np.ndarray:
        if read_index is None:
            read_index = self._fallback_index(shape[0])
        return np.broadcast_to(np.asarray(read_index, dtype=np.int64), shape)

    def analog_sums(self, xbar, rows, cols, slice_inputs, levels, *,
                    read_index=None) -> np.ndarray:
        """Return the reference-subtracted bitline currents in LSB units, before the ADC.

        Arguments as for :meth:`read`, whose codes are ``adc(analog_sums(...))``. With ideal
        params this is the exact integer sum ``slice_inputs @ levels``.

        Returns
        -------
        np.ndarray
            float32 ``(M, n_cols)``.
        """
        xbar, cols = np.asarray(xbar, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        current, drive, power = self._mean_current(xbar, rows, cols, slice_inputs, levels)
        if self.params.read_noise:
            read_index = self._read_index(read_index, current.shape)
            reads, columns = np.nonzero(np.broadcast_to(drive.any(axis=1)[:, None],
                                                        current.shape))
            current[reads, columns] += self._noise(xbar, cols, drive, power, read_index,
                                                   reads, columns)
        return current

    def _fallback_index(self, n_reads: int) -> np.ndarray:
        """Number reads by a per-device call counter (callers that give no read index)."""
        start = self._fallback_reads
        self._fallback_reads += n_reads
        return np.arange(start, start + n_reads, dtype=np.int64)[:, None]

    def _adc_in_place(self, current: np.ndarray) -> np.ndarray:
        """:meth:`adc` of a float32 array this device owns, overwriting it (no copies)."""
        params = self.params
        if params.adc_gain_error:
            current *= np.float32(1.0 + params.adc_gain_error)
        current += np.float32(params.adc_offset + 0.5)
        np.floor(current, out=current)
        return np.clip(current, np.float32(0), np.float32(self.adc_max), out=current)

    def adc(self, current: np.ndarray) -> np.ndarray:
        """Convert LSB-unit currents to codes: gain, offset, round half up, clip to ``adc_max``.

        Returns float32 integers ``0 .. adc_max`` (the executor accepts any numeric dtype
        holding integers; float32 saves a conversion on the hot path).
        """
        params = self.params
        codes = np.array(current, dtype=np.float32)   # a copy, converted in place below
        if params.adc_gain_error:
            codes *= np.float32(1.0 + params.adc_gain_error)
        codes += np.float32(params.adc_offset + 0.5)
        np.floor(codes, out=codes)
        return np.clip(codes, np.float32(0), np.float32(self.adc_max), out=codes)

    def read(self, xbar, rows, cols, slice_inputs, levels, *, read_index=None) -> np.ndarray:
        """Answer a batch of OU reads (the executor's device interface).

        The codes are ``adc(analog_sums(...))``. Read noise is only evaluated where it can
        change a code: the noise of a read is at most ``NOISE_TAIL * read_noise *
        spread``, so a code whose noiseless ADC input lies farther than that from a
        rounding threshold is final without it (the same integers, much faster).

        Parameters
        ----------
        xbar:
            int ``(n_cols,)`` crossbar unit of each column.
        rows:
            int ``(n_rows, n_cols)`` physical row of cell ``(r, c)``.
        cols:
            int ``(n_cols,)`` physical column of each column.
        slice_inputs:
            int ``(M, n_rows)`` DAC input of each driven row, ``0 .. dac_max``.
        levels:
            int ``(n_rows, n_cols)`` programmed level of each cell.
        read_index:
            Optional int ``(M, n_cols)`` (or broadcastable) OU read number of each code
            within its crossbar unit (module docstring); keys the read noise. Without it a
            per-device counter numbers the reads of successive calls.

        Returns
        -------
        np.ndarray
            Integer codes ``0 .. adc_max``, float32 ``(M, n_cols)`` (see :meth:`adc`).
        """
        xbar, cols = np.asarray(xbar, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        current, drive, power = self._mean_current(xbar, rows, cols, slice_inputs, levels)
        if not self.params.read_noise:
            return self._adc_in_place(current)
        read_index = self._read_index(read_index, current.shape)
        gain = 1.0 + self.params.adc_gain_error
        value = current * np.float32(gain) + np.float32(self.params.adc_offset + 0.5)
        distance = np.abs(value - np.rint(value))           # to the nearest threshold
        reach = np.sqrt(np.square(drive) @ power.max(axis=1))
        reach *= np.float32(NOISE_TAIL * self.params.read_noise * abs(gain))
        reads, columns = np.nonzero(distance <= reach[:, None] + np.float32(1e-3))
        current[reads, columns] += self._noise(xbar, cols, drive, power, read_index,
                                               reads, columns)
        return self._adc_in_place(current)

    # ------------------------------------------------------------------ cycle-level use
    def program(self, xbar: int, cells: np.ndarray) -> None:
        """Store the programmed levels of crossbar unit ``xbar`` (``(rows, cols)``) for reads."""
        cells = np.asarray(cells)
        if cells.shape != (self.config.rows, self.config.cols):
            raise ValueError(
                f"cells of unit {xbar} must be ({self.config.rows}, {self.config.cols}), "
                f"not {cells.shape}"
            )
        if cells.size and (cells.min() < 0 or cells.max() > self.config.level_max):
            raise ValueError(
                f"cells of unit {xbar} must hold levels 0 .. {self.config.level_max}"
            )
        self._cells[int(xbar)] = cells.astype(np.int64)

    def program_row(self, xbar: int, row: int, levels: np.ndarray) -> None:
        """Program one row of unit ``xbar`` (what the crossbar port's ``write`` does)."""
        xbar = int(xbar)
        if xbar not in self._cells:
            self._cells[xbar] = np.zeros((self.config.rows, self.config.cols), np.int64)
        self._cells[xbar][int(row)] = np.asarray(levels, dtype=np.int64)

    def program_all(self, program) -> None:
        """Program every crossbar unit of a mapped :class:`~bitline.sw.mapping.Program`."""
        for layer in program.layers:
            for local, unit in enumerate(np.asarray(layer.xbars).tolist()):
                self.program(unit, layer.cells[local])

    def read_ou(self, xbar: int, rows, slices, cols, read_index: int) -> np.ndarray:
        """Answer one OU read of a programmed unit (what a cocotb bench's crossbar does).

        Parameters
        ----------
        xbar:
            Crossbar unit (programmed with :meth:`program` / :meth:`program_row`).
        rows:
            int ``(n,)`` physical rows driven (wordline enabled).
        slices:
            int ``(n,)`` their DAC slices ``0 .. dac_max``.
        cols:
            int ``(k,)`` physical columns converted; columns past the crossbar's edge give 0.
        read_index:
            The unit's OU read number (module docstring).

        Returns
        -------
        np.ndarray
            int64 ``(k,)`` codes, equal to :meth:`read`'s codes of the same reads.
        """
        xbar = int(xbar)
        if xbar not in self._cells:
            raise ValueError(f"crossbar unit {xbar} was never programmed")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        slices = np.asarray(slices, dtype=np.int64).reshape(-1)
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        codes = np.zeros(len(cols), dtype=np.int64)
        inside = np.flatnonzero(cols < self.config.cols)
        if len(inside) == 0 or len(rows) == 0:
            return codes
        col_in = cols[inside]
        cell_rows = np.broadcast_to(rows[:, None], (len(rows), len(col_in)))
        levels = self._cells[xbar][cell_rows, col_in[None, :]]
        codes[inside] = self.read(np.full(len(col_in), xbar), cell_rows, col_in,
                                  slices[None, :], levels,
                                  read_index=np.full((1, len(col_in)), int(read_index)))[0]
        return codes

    def port_read(self, xbar: int, row_group: int, col_group: int, phase: int, dac,
                  wordline_en, adc_en, read_index: int) -> np.ndarray:
        """Answer one conversion cycle of the crossbar port (:mod:`bitline.hw.unit.xbar_port`).

        The analog counterpart of :func:`bitline.hw.unit.emulator.ou_read_model`: rows
        ``row_group * ou_rows + k`` with ``wordline_en[k]`` are driven with ``dac[k]``; ADC
        ``a`` converts OU column ``phase * adcs_per_xbar + a`` of column group
        ``col_group``; a gated ADC (``adc_en[a] == 0``) returns 0.

        Returns
        -------
        np.ndarray
            int64 ``(adcs_per_xbar,)`` codes.
        """
        config = self.config
        enabled = np.flatnonzero(np.asarray(wordline_en) != 0)
        rows = row_group * config.ou_rows + enabled
        keep = rows < config.rows
        rows = rows[keep]
        slices = np.asarray(dac, dtype=np.int64)[enabled][keep]
        ou_column = phase * config.adcs_per_xbar + np.arange(config.adcs_per_xbar)
        cols = np.where(ou_column < config.ou_cols, col_group * config.ou_cols + ou_column,
                        config.cols)
        codes = self.read_ou(xbar, rows, slices, cols, read_index)
        return np.where(np.asarray(adc_en) != 0, codes, 0)


# ---------------------------------------------------------------------------- stuck maps
def parse_chip_spec(spec: str) -> tuple[int, float, float]:
    """Parse ``chip:SEED:RATE`` (half the stuck cells at 0, half at 1, as ``bitline sweep``'s
    default ``--sa1-fraction 0.5``) or ``chip:SEED:SA0:SA1`` into ``(seed, sa0, sa1)``.

    Raises
    ------
    ValueError
        Naming the spec and the part that is wrong.
    """
    parts = str(spec).split(":")
    if parts[0] != "chip" or len(parts) not in (3, 4):
        raise ValueError(f"--faults {spec!r}: expected chip:SEED:RATE or chip:SEED:SA0:SA1 "
                         f"(or a stuck-map .npz file)")
    try:
        seed = int(parts[1])
        rates = [float(part) for part in parts[2:]]
    except ValueError:
        raise ValueError(f"--faults {spec!r}: SEED must be an integer and rates numbers") from None
    if seed < 0 or not all(math.isfinite(rate) and 0 <= rate <= 1 for rate in rates):
        raise ValueError(f"--faults {spec!r}: SEED must be >= 0 and rates in [0, 1]")
    sa0, sa1 = (rates[0] / 2, rates[0] / 2) if len(rates) == 1 else rates
    AnalogParams(stuck_at_0=sa0, stuck_at_1=sa1)          # validates the sum
    return seed, sa0, sa1


def chip_stuck_map(config: AcceleratorConfig, spec: str, n_units: int):
    """Return the :class:`~bitline.sw.mapping.faults.StuckMap` of the seeded chip ``spec``
    (:func:`parse_chip_spec`) over units ``0 .. n_units - 1``.

    The faults are :meth:`AnalogDevice.stuck_levels` of ``AnalogDevice(config,
    AnalogParams(stuck_at_0=sa0, stuck_at_1=sa1), seed)``: the same draw (and the same
    chip) as the analog model with those rates and seed, whatever its other parameters.
    """
    from bitline.sw.mapping.faults import StuckMap

    seed, sa0, sa1 = parse_chip_spec(spec)
    device = AnalogDevice(config, AnalogParams(stuck_at_0=sa0, stuck_at_1=sa1), seed)
    stuck = np.stack([device.stuck_levels(unit) for unit in range(int(n_units))]) if n_units \
        else np.zeros((0, config.rows, config.cols), dtype=np.int8)
    return StuckMap(stuck, f"chip:{seed}:{sa0}:{sa1}" if len(spec.split(":")) == 4
                    else str(spec))
