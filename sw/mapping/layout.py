"""The machinery every mapping strategy shares: row chunks, digit planes, assembly.

A strategy (:mod:`.isaac`, :mod:`.ivq`, :mod:`.bwq`) only decides *where* column segments
go; this module turns a layer's integer matrix into segments and a :class:`Placement` into
the :class:`~bitline.hw.spec.program.LayerProgram` the periphery runs (cells, row maps,
OU entries, statistics); :mod:`.inverse` inverts that (:func:`~.inverse.reconstruct_matrix`).

Vocabulary (docs/mapping.md has the pictures):

* **chunk** — at most ``config.exact_rows_per_ou`` inputs of the ``(O, K)`` matrix:
  ``[c*E, (c+1)*E)`` in im2col order, unless BWQ activation widths regroup them (inputs of
  one width, in im2col order, cut every ``E``). A chunk occupies the first ``length`` rows of
  one row group of a crossbar (the *strip* ``(xbar, row_group)``); the rows beyond it stay
  unused (row map -1), so no column of any OU can have more than ``exact_rows_per_ou``
  nonzero cells and the ideal ADC is exact. A chunk never mixes inputs of different BWQ
  activation widths (one slice range per read); inputs of width 0 are not mapped.
* **digit** ``d`` — the ``cell_bits``-wide slice ``(|w| >> d*cell_bits) & level_max`` of a
  weight's magnitude; with 1-bit cells a digit is a magnitude bit. Its shift is
  ``d * cell_bits``.
* **column id** ``q = (d * S + sign) * O + n`` — digit ``d`` of the weights of sign
  ``sign`` (0 = positive, 1 = negative) of output channel ``n``; ``S = 2`` signs with the
  differential encoding. With the **offset** encoding (``isaac`` only, docs/contract.md
  section 4) the stored value is the unsigned ``w + B``, ``B = 2**magnitude_bits``, in one
  column set (``S = 1``, ``sign = 0``); the periphery subtracts ``B * sum(x)``.
* **segment** ``(q, chunk)`` — the ``length`` levels of column id ``q`` over a chunk's
  inputs: what one OU column holds in one row group. Strategies place segments at
  ``(xbar, row_group, column)``; every placed segment becomes one *valid* column of the OU
  entry ``(xbar, row_group, column // ou_cols)`` with descriptor ``(dest=n, sign,
  shift=d*cell_bits)``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import (
    COLUMN_FIELDS,
    ENCODINGS,
    LayerProgram,
    empty_entries,
)

__all__ = [
    "LayerBits",
    "Placement",
    "Spread",
    "DENSE",
    "SPREAD_FACTORS",
    "layer_bits",
    "usable_row_groups",
    "PlacementCounts",
    "placement_counts",
    "placement_busiest_reads",
    "balance",
    "regular_placement",
    "packed_placement",
    "assemble",
]


@dataclass
class LayerBits:
    """A layer's integer matrix cut into row chunks and digit planes.

    Attributes
    ----------
    n_outputs, n_inputs:
        ``O`` and ``K``.
    act_bits, n_slices:
        Input activation width and ``ceil(act_bits / dac_bits)``.
    chunk_inputs:
        int64 ``(n_chunks, E)``: the inputs of each chunk, in row order, -1 past its end.
    chunk_len:
        int64 ``(n_chunks,)``: input count of each chunk.
    slice_lo, slice_hi:
        int64 ``(n_chunks,)``: input slices the chunk's reads issue (the top slices of a BWQ
        row block's activation width; ``[0, n_slices)`` otherwise).
    digits:
        uint8 ``(n_q, n_chunks, E)``: levels of every segment, column id ``q`` major
        (``E = exact_rows_per_ou``; rows past ``chunk_len`` are 0).
    nonzero:
        bool ``(n_q, n_chunks)``: segment has a nonzero level.
    n_digits:
        Digits per weight: ``ceil(magnitude_bits / cell_bits)`` (differential) or
        ``ceil((magnitude_bits + 1) / cell_bits)`` (offset: ``w + B`` has one bit more).
    n_signs:
        Column sets per digit: 2 (differential: positive, negative) or 1 (offset).
    weight_offset:
        ``B`` of the offset encoding (``2**magnitude_bits``), 0 for differential.
    """

    n_outputs: int
    n_inputs: int
    act_bits: int
    n_slices: int
    chunk_inputs: np.ndarray
    chunk_len: np.ndarray
    slice_lo: np.ndarray
    slice_hi: np.ndarray
    digits: np.ndarray
    nonzero: np.ndarray
    n_digits: int
    n_signs: int = 2
    weight_offset: int = 0

    @property
    def n_chunks(self) -> int:
        """Number of row chunks."""
        return len(self.chunk_inputs)

    @property
    def n_q(self) -> int:
        """Number of column ids, ``n_digits * n_signs * O``."""
        return self.digits.shape[0]

    def split_q(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(digit, sign, channel)`` of column ids ``q``."""
        q = np.asarray(q, dtype=np.int64)
        channel = q % self.n_outputs
        digit_sign = q // self.n_outputs
        return digit_sign // self.n_signs, digit_sign % self.n_signs, channel


@dataclass
class Placement:
    """Where a strategy puts a layer's segments.

    Attributes
    ----------
    n_xbars:
        Crossbars the layer owns (local indices ``0 .. n_xbars-1``).
    strip_chunk:
        int64 ``(n_xbars, row_groups)``: chunk held by each row group of each crossbar, -1
        for an unused row group. All segments placed in a strip come from its chunk.
    xbar, row_group, col, q:
        int64 ``(P,)``: placed segments (local crossbar, row group, physical column, column
        id). Each becomes a valid OU column; a strategy places zero segments only where it
        means to read them (``isaac``, ``ivq-naive``). Entries are exactly the OUs that hold a
        placed segment: row groups without a chunk and column groups without a segment are
        never read.
    """

    n_xbars: int
    strip_chunk: np.ndarray
    xbar: np.ndarray
    row_group: np.ndarray
    col: np.ndarray
    q: np.ndarray


def usable_row_groups(config: AcceleratorConfig) -> int:
    """Return the row groups per crossbar that can hold a full chunk (the first ones).

    Row group ``g`` has ``min(ou_rows, rows - g*ou_rows)`` rows; only the last one can be
    shorter than ``exact_rows_per_ou`` and is then left unused.
    """
    exact = config.exact_rows_per_ou
    groups = config.row_groups
    last_rows = config.rows - (groups - 1) * config.ou_rows
    return groups if last_rows >= exact else groups - 1


#: Spread factors a layer may be mapped with besides the dense placement (docs/mapping.md,
#: "Spread placements"); the pipeline allocator chooses among them per layer.
SPREAD_FACTORS = (2, 4)


@dataclass(frozen=True)
class Spread:
    """How much of each crossbar a placement may fill (docs/mapping.md, "Spread placements").

    The dense placement (``factor = 1``) fills what the strategy fills. A spread placement
    with factor ``s`` caps one axis of every unit: ``axis="rows"`` -- at most
    ``ceil(usable_row_groups / s)`` row groups per unit; ``axis="cols"`` -- at most
    ``ceil(column groups / s)`` column groups per unit (per strip, for the packing
    strategies). A copy of the layer then takes more units, each with fewer OU entries, so
    the busiest unit's reads per vector (``C_comp``) shrink.

    Attributes
    ----------
    factor:
        ``s >= 1``.
    axis:
        ``"rows"`` or ``"cols"``.
    """

    factor: int = 1
    axis: str = "rows"

    def __post_init__(self):
        if int(self.factor) < 1 or self.axis not in ("rows", "cols"):
            raise ValueError(f"spread needs a factor >= 1 and axis 'rows' or 'cols', not "
                             f"{self.factor!r} / {self.axis!r}")

    @property
    def label(self) -> str:
        """``"dense"`` or ``"spread-<s>"`` (the placement's name in reports)."""
        return "dense" if self.factor == 1 else f"spread-{self.factor}"

    def row_groups(self, config: AcceleratorConfig) -> int:
        """Row groups per unit that may hold a chunk."""
        usable = usable_row_groups(config)
        return -(-usable // self.factor) if self.axis == "rows" else usable

    def columns(self, config: AcceleratorConfig) -> int:
        """Physical columns per unit a grid strategy (``isaac``, ``ivq-naive``,
        ``ivq-spatial``) fills: whole column groups, the last one possibly narrower."""
        if self.axis == "rows" or self.factor == 1:
            return config.cols
        return min(config.cols, -(-config.col_groups // self.factor) * config.ou_cols)

    def strip_col_groups(self, config: AcceleratorConfig) -> int:
        """Full-width column groups per strip a packing strategy (``ivq-temporal``,
        ``bwq``) fills."""
        full = config.cols // config.ou_cols
        return -(-full // self.factor) if self.axis == "cols" else full


#: The dense placement: every strategy's own layout.
DENSE = Spread()


def _chunks(widths: np.ndarray, exact: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(inputs (n_chunks, exact), length (n_chunks,))``: inputs grouped into chunks.

    ``widths`` is the activation width of every input. Inputs of one width, in im2col
    order, are cut every ``exact``; a chunk never mixes two widths (its reads issue one
    slice range) and inputs of width 0 are not mapped. Without BWQ widths (all equal) the
    chunks are the consecutive runs ``[c*exact, (c+1)*exact)``.
    """
    order = np.argsort(-widths, kind="stable")
    order = order[widths[order] > 0]
    if len(order) == 0:
        return np.zeros((0, exact), dtype=np.int64), np.zeros(0, dtype=np.int64)
    edges = np.flatnonzero(np.diff(widths[order])) + 1
    run_start = np.concatenate([[0], edges]).astype(np.int64)
    run_end = np.concatenate([edges, [len(order)]]).astype(np.int64)
    counts = -(-(run_end - run_start) // exact)
    run = np.repeat(np.arange(len(run_start)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    starts = run_start[run] + (np.arange(len(run)) - first[run]) * exact
    length = np.minimum(starts + exact, run_end[run]) - starts
    position = starts[:, None] + np.arange(exact)[None, :]
    inside = np.arange(exact)[None, :] < length[:, None]
    inputs = np.where(inside, order[np.where(inside, position, 0)], -1)
    return inputs.astype(np.int64), length.astype(np.int64)


def layer_bits(
    matrix: np.ndarray,
    config: AcceleratorConfig,
    *,
    act_bits: int,
    act_block_bits: np.ndarray | None = None,
    block_rows: int | None = None,
    name: str = "layer",
    encoding: str = "differential",
) -> LayerBits:
    """Cut an ``(O, K)`` integer matrix into chunks and digit planes.

    Parameters
    ----------
    matrix:
        int ``(O, K)`` sign-magnitude weights in im2col order.
    config:
        The accelerator.
    act_bits:
        Input activation width.
    act_block_bits:
        Optional BWQ activation width ``a_r`` per row block of ``block_rows`` inputs. Chunks
        never mix inputs of different widths; a chunk issues only the top
        ``ceil(a_r / dac_bits)`` slices, and inputs of width 0 are not mapped at all (they
        contribute nothing, docs/contract.md section 2).
    block_rows:
        Row-block size of ``act_block_bits`` (default ``config.ou_rows``).
    name:
        Layer name for error messages.
    encoding:
        ``"differential"`` (digits of ``|w|``, positive and negative column sets) or
        ``"offset"`` (digits of ``w + B``, one column set; see :class:`LayerBits`). The
        offset encoding needs every input at the full ``act_bits`` (the periphery sums the
        raw input codes), so it refuses BWQ activation widths below ``act_bits``.

    Raises
    ------
    ValueError
        On bad activation widths, an unknown encoding, weights wider than
        ``config.max_weight_bits``, or activation widths with the offset encoding.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.ndim != 2:
        raise ValueError(f"layer {name}: weight matrix must be 2-D, not shape {matrix.shape}")
    n_out, n_in = matrix.shape
    if not 1 <= act_bits <= config.max_act_bits:
        raise ValueError(
            f"layer {name}: act_bits must be between 1 and max_act_bits "
            f"({config.max_act_bits}), not {act_bits}"
        )
    magnitude_bits = int(np.abs(matrix).max(initial=0)).bit_length()
    if magnitude_bits + 1 > config.max_weight_bits:
        raise ValueError(
            f"layer {name}: weights need {magnitude_bits + 1} bits (sign-magnitude), the "
            f"configuration supports max_weight_bits={config.max_weight_bits}"
        )
    exact = config.exact_rows_per_ou
    dac_bits = config.dac_bits
    n_slices = config.act_slices(act_bits)
    block_rows = config.ou_rows if block_rows is None else int(block_rows)
    if block_rows < 1:
        raise ValueError(f"layer {name}: block_rows must be >= 1, not {block_rows}")
    widths = np.full(n_in, act_bits, dtype=np.int64)
    if act_block_bits is not None:
        block_widths = np.asarray(act_block_bits, dtype=np.int64).reshape(-1)
        n_blocks = -(-n_in // block_rows)
        if block_widths.shape != (n_blocks,):
            raise ValueError(
                f"layer {name}: act_block_bits has {block_widths.size} entries, expected "
                f"ceil({n_in}/{block_rows}) = {n_blocks}"
            )
        bad = np.flatnonzero((block_widths < 0) | (block_widths > act_bits))
        if bad.size:
            raise ValueError(
                f"layer {name}: act_block_bits[{bad[0]}] = {block_widths[bad[0]]} is outside "
                f"0..act_bits ({act_bits})"
            )
        dropped = act_bits - block_widths
        bad = np.flatnonzero((block_widths > 0) & (dropped % dac_bits != 0))
        if bad.size:
            raise ValueError(
                f"layer {name}: act_block_bits[{bad[0]}] = {block_widths[bad[0]]} drops "
                f"{dropped[bad[0]]} bits, not a whole number of {dac_bits}-bit DAC slices"
            )
        widths = np.repeat(block_widths, block_rows)[:n_in]
    if encoding not in ENCODINGS:
        raise ValueError(f"layer {name}: unknown weight encoding {encoding!r}; known "
                         f"encodings are {', '.join(ENCODINGS)}")
    if encoding == "offset" and np.any(widths != act_bits):
        raise ValueError(f"layer {name}: the offset encoding needs every input at act_bits "
                         f"({act_bits}); the layer has block-wise activation widths")
    inputs, length = _chunks(widths, exact)
    slice_lo = (act_bits - widths[inputs[:, 0]]) // dac_bits if len(inputs) else length
    slice_hi = np.full(len(inputs), n_slices, dtype=np.int64)
    digits, n_digits, offset = _digit_planes(matrix, inputs, config, magnitude_bits, encoding)
    return LayerBits(
        n_outputs=n_out, n_inputs=n_in, act_bits=int(act_bits), n_slices=n_slices,
        chunk_inputs=inputs, chunk_len=length, slice_lo=slice_lo.astype(np.int64),
        slice_hi=slice_hi, digits=digits, nonzero=_any_row(digits), n_digits=n_digits,
        n_signs=1 if encoding == "offset" else 2, weight_offset=offset,
    )


def _any_row(digits: np.ndarray) -> np.ndarray:
    """``digits.any(axis=2)``: one vector pass per row of the chunk (``E`` <= ``ou_rows``
    passes); numpy's reduction over a short last axis is about 2x slower on this shape."""
    nonzero = digits[:, :, 0] != 0
    for row in range(1, digits.shape[2]):
        nonzero |= digits[:, :, row] != 0
    return nonzero


def _digit_planes(matrix: np.ndarray, inputs: np.ndarray, config: AcceleratorConfig,
                  magnitude_bits: int, encoding: str) -> tuple[np.ndarray, int, int]:
    """Return ``(digits (n_q, n_chunks, E), n_digits, weight_offset)`` of :class:`LayerBits`.

    Differential: digit ``d`` of ``|w|`` in the column set of ``w``'s sign. Offset: digit
    ``d`` of ``w + B`` (``B = 2**magnitude_bits``, so ``1 <= w + B < 2**(magnitude_bits +
    1)``) in the one column set. Rows past a chunk's end hold 0 in both.
    """
    n_out, n_in = matrix.shape
    exact = config.exact_rows_per_ou
    offset = 1 << magnitude_bits if encoding == "offset" else 0
    value_bits = magnitude_bits + (1 if offset else 0)
    n_digits = -(-value_bits // config.cell_bits)
    n_signs = 1 if offset else 2
    index = np.where(inputs >= 0, inputs, n_in)
    # stored values fit 16 bits (max_weight_bits <= 16): narrow dtypes keep this pass cheap
    padded = np.zeros((n_out, n_in + 1), dtype=np.int16 if value_bits < 16 else np.int32)
    padded[:, :n_in] = matrix + offset                    # column n_in: rows past a chunk
    gathered = padded[:, index]                                   # (O, n_chunks, E)
    magnitude = np.abs(gathered).astype(np.uint16)
    planes = ([(gathered > 0).view(np.uint8), (gathered < 0).view(np.uint8)] if n_signs == 2
              else [np.ones_like(magnitude, dtype=np.uint8)])
    digits = np.empty((n_digits, n_signs, n_out, len(inputs), exact), dtype=np.uint8)
    for digit in range(n_digits):
        level = ((magnitude >> (digit * config.cell_bits)) & config.level_max).astype(np.uint8)
        for sign, plane in enumerate(planes):
            np.multiply(level, plane, out=digits[digit, sign])
    return digits.reshape(n_digits * n_signs * n_out, len(inputs), exact), n_digits, offset


def balance(loads: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Assign strips to the fewest crossbars, busiest crossbar as light as possible.

    Longest-processing-time-first with a capacity: strips sorted by load (reads) go, one
    by one, to the least loaded crossbar that still has a free row group. The crossbar
    count is the minimum, ``ceil(len(loads) / capacity)``.

    Returns
    -------
    (xbar, slot, n_xbars)
        int64 ``(S,)`` crossbar and row group of each strip, and the crossbar count.
    """
    loads = np.asarray(loads, dtype=np.int64)
    count = len(loads)
    n_xbars = -(-count // capacity)
    xbar = np.zeros(count, dtype=np.int64)
    slot = np.zeros(count, dtype=np.int64)
    if count == 0:
        return xbar, slot, 0
    order = np.argsort(-loads, kind="stable")
    if n_xbars == 1 or np.all(loads == loads[0]):
        # Equal loads: round robin is already optimal (and avoids the heap).
        rank = np.arange(count)
        xbar[order] = rank % n_xbars
        slot[order] = rank // n_xbars
        return xbar, slot, n_xbars
    heap = [(0, unit) for unit in range(n_xbars)]
    used = [0] * n_xbars
    order_list = order.tolist()
    load_list = loads.tolist()
    for strip in order_list:
        load, unit = heapq.heappop(heap)
        xbar[strip] = unit
        slot[strip] = used[unit]
        used[unit] += 1
        if used[unit] < capacity:
            heapq.heappush(heap, (load + load_list[strip], unit))
    return xbar, slot, n_xbars


def bounded_unique(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(unique, inverse)`` of non-negative int keys below ``bound``, without sorting.

    Same result as ``np.unique(keys, return_inverse=True)``; linear in ``len(keys) + bound``.
    """
    present = np.zeros(bound, dtype=bool)
    present[keys] = True
    rank = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present), rank[keys]


def regular_placement(bits: LayerBits, config: AcceleratorConfig,
                      position: np.ndarray, spread: Spread = DENSE) -> Placement:
    """Place every segment on a regular grid of crossbars (``isaac``, ``ivq-naive``).

    Column id ``q`` goes to logical column ``position[q]``; chunk ``c`` to row tile
    ``c // G`` and row group ``c % G`` (``G`` = :func:`usable_row_groups`). Crossbar
    ``(row_tile, col_tile)`` is local index ``row_tile * n_col_tiles + col_tile``; every
    segment is placed, zero or not, so every OU that holds a chunk's segments is read
    (hollow or not); row groups past the last chunk and columns past the last column id are
    not. ``spread`` caps the row groups (``G``) or the columns of a crossbar.
    """
    capacity = spread.row_groups(config)
    width = spread.columns(config)
    n_chunks, n_q = bits.n_chunks, bits.n_q
    if n_chunks == 0 or n_q == 0:
        return _empty_placement(config)
    n_row_tiles = -(-n_chunks // capacity)
    n_col_tiles = -(-n_q // width)
    n_xbars = n_row_tiles * n_col_tiles
    strip_chunk = np.full((n_xbars, config.row_groups), -1, dtype=np.int64)
    tile_chunks = np.arange(n_row_tiles * capacity).reshape(n_row_tiles, capacity)
    tile_chunks = np.where(tile_chunks < n_chunks, tile_chunks, -1)
    strip_chunk[:, :capacity] = np.repeat(tile_chunks, n_col_tiles, axis=0)
    q, chunk = np.meshgrid(np.arange(n_q), np.arange(n_chunks), indexing="ij")
    q, chunk = q.reshape(-1), chunk.reshape(-1)
    logical = np.asarray(position, dtype=np.int64)[q]
    xbar = (chunk // capacity) * n_col_tiles + logical // width
    return Placement(n_xbars=n_xbars, strip_chunk=strip_chunk, xbar=xbar,
                     row_group=chunk % capacity, col=logical % width, q=q)


def packed_placement(bits: LayerBits, config: AcceleratorConfig, chunk: np.ndarray,
                     q: np.ndarray, strip: np.ndarray, col: np.ndarray,
                     spread: Spread = DENSE) -> Placement:
    """Place segments that a packing strategy already put into per-chunk strips.

    ``strip[i]`` is the segment's strip number *within its chunk* and ``col[i]`` its
    physical column. Strips (one row group each) then go to crossbars with
    :func:`balance`: the fewest crossbars, the busiest one as light as possible, where a
    strip's load is its OU count times its chunk's slice count; a unit holds at most
    ``spread.row_groups(config)`` strips.
    """
    capacity = spread.row_groups(config)
    chunk = np.asarray(chunk, dtype=np.int64)
    strip = np.asarray(strip, dtype=np.int64)
    if len(chunk) == 0:
        return _empty_placement(config)
    strips_per_chunk = np.zeros(bits.n_chunks, dtype=np.int64)
    np.maximum.at(strips_per_chunk, chunk, strip + 1)
    first_strip = np.concatenate([[0], np.cumsum(strips_per_chunk)[:-1]])
    global_strip = first_strip[chunk] + strip
    n_strips = int(strips_per_chunk.sum())
    strip_of_chunk = np.repeat(np.arange(bits.n_chunks), strips_per_chunk)
    ou_keys, _ = bounded_unique(global_strip * config.col_groups + col // config.ou_cols,
                                n_strips * config.col_groups)
    ous = np.bincount(ou_keys // config.col_groups, minlength=n_strips)
    slices = (bits.slice_hi - bits.slice_lo)[strip_of_chunk]
    unit, slot, n_xbars = balance(ous * slices, capacity)
    strip_chunk = np.full((n_xbars, config.row_groups), -1, dtype=np.int64)
    strip_chunk[unit, slot] = strip_of_chunk
    return Placement(n_xbars=n_xbars, strip_chunk=strip_chunk, xbar=unit[global_strip],
                     row_group=slot[global_strip], col=np.asarray(col, dtype=np.int64),
                     q=np.asarray(q, dtype=np.int64))


@dataclass(frozen=True)
class PlacementCounts:
    """Per-vector counts of a placement that depend on where segments go, before assembly.

    What :func:`assemble` and :func:`bitline.sw.perf.count_layer` would give for the
    program, without building cells (tests/unit/test_spread.py checks the equality):

    Attributes
    ----------
    units:
        Crossbars of one copy.
    unit_reads:
        int64 ``(units,)``: OU reads per vector of each crossbar (entries x slices).
    entries:
        OU entries (OUs holding a placed segment).
    dac_conversions:
        Driven rows summed over the reads (a strip drives its chunk's rows).
    reduction_transfers:
        ``(unit, output channel)`` pairs named by a placed segment.
    """

    units: int
    unit_reads: np.ndarray
    entries: int
    dac_conversions: int
    reduction_transfers: int


def placement_counts(bits: LayerBits, placement: Placement,
                     config: AcceleratorConfig) -> PlacementCounts:
    """Count a placement's entries, reads per unit, DAC conversions and partial sums.

    One entry per OU holding a placed segment, read with its chunk's slices (used to
    choose a spread axis, and to price spread placements, without building the cells).
    """
    e_x, chunk, slices = _placed_entries(bits, placement, config)
    channel = bits.split_q(np.arange(bits.n_q))[2][placement.q]     # one gather per segment
    pairs = np.zeros(max(placement.n_xbars * bits.n_outputs, 1), dtype=bool)
    pairs[placement.xbar * bits.n_outputs + channel] = True
    return PlacementCounts(
        units=int(placement.n_xbars),
        unit_reads=np.bincount(e_x, weights=slices,
                               minlength=placement.n_xbars).astype(np.int64),
        entries=len(e_x), dac_conversions=int((slices * bits.chunk_len[chunk]).sum()),
        reduction_transfers=int(np.count_nonzero(pairs)))


def placement_busiest_reads(bits: LayerBits, placement: Placement,
                            config: AcceleratorConfig) -> int:
    """Return the busiest crossbar's OU reads per vector (:class:`PlacementCounts`'s
    ``unit_reads.max()``, without the other counts)."""
    e_x, _, slices = _placed_entries(bits, placement, config)
    return int(np.bincount(e_x, weights=slices, minlength=max(placement.n_xbars, 1)).max())


def _placed_entries(bits: LayerBits, placement: Placement, config: AcceleratorConfig):
    """``(crossbar, chunk, slices)`` of every OU holding a placed segment."""
    groups, col_groups = config.row_groups, config.col_groups
    keys = (placement.xbar * groups + placement.row_group) * col_groups + (
        placement.col // config.ou_cols)
    unique, _ = bounded_unique(keys, max(placement.n_xbars * groups * col_groups, 1))
    e_x = unique // (col_groups * groups)
    chunk = placement.strip_chunk[e_x, (unique // col_groups) % groups]
    return e_x, chunk, bits.slice_hi[chunk] - bits.slice_lo[chunk]


def _empty_placement(config: AcceleratorConfig) -> Placement:
    nothing = np.zeros(0, dtype=np.int64)
    return Placement(n_xbars=0, strip_chunk=np.zeros((0, config.row_groups), dtype=np.int64),
                     xbar=nothing, row_group=nothing, col=nothing, q=nothing)


def assemble(
    bits: LayerBits,
    placement: Placement,
    config: AcceleratorConfig,
    *,
    name: str,
    xbar_offset: int = 0,
) -> LayerProgram:
    """Build cells, row maps, entries and statistics from a placement.

    Entries are sorted by ``(xbar, row_group, col_group)`` (execution order per crossbar);
    an OU column is valid iff a segment is placed there. The output-unit fields of the
    returned program are zero placeholders; :func:`bitline.sw.mapping.map_layer` fills them.
    """
    rows, cols, ou_rows, ou_cols = config.rows, config.cols, config.ou_rows, config.ou_cols
    n_xbars = placement.n_xbars
    groups, col_groups = config.row_groups, config.col_groups
    exact = config.exact_rows_per_ou
    strip_chunk = placement.strip_chunk
    x, rg, col, q = placement.xbar, placement.row_group, placement.col, placement.q

    # Row maps: strip (x, g) with chunk c drives rows g*ou_rows + i from inputs start_c + i.
    row_maps = np.full((n_xbars, rows), -1, dtype=np.int32)
    sx, sg = np.nonzero(strip_chunk >= 0)
    sc = strip_chunk[sx, sg]
    offsets = np.arange(exact, dtype=np.int64)
    strip_inputs = bits.chunk_inputs[sc]
    in_chunk = strip_inputs >= 0
    row_index = sg[:, None] * ou_rows + offsets[None, :]
    row_maps[np.broadcast_to(sx[:, None], in_chunk.shape)[in_chunk], row_index[in_chunk]] = (
        strip_inputs[in_chunk])

    # Cells: segment (q, c) at (x, g, col) occupies rows g*ou_rows + [0, E). Written
    # column-major (one contiguous run of E levels per segment), then transposed once.
    chunk = strip_chunk[x, rg] if len(x) else np.zeros(0, dtype=np.int64)
    if np.any(chunk < 0):
        raise AssertionError("placement put a segment into a strip without a chunk")
    by_column = np.zeros((n_xbars * cols * groups, ou_rows), dtype=np.uint8)
    if len(x):
        segments = bits.digits.reshape(-1, exact)[q * bits.n_chunks + chunk]
        by_column[(x * cols + col) * groups + rg, :exact] = segments
    cells = np.ascontiguousarray(
        by_column.reshape(n_xbars, cols, groups * ou_rows)[:, :, :rows].transpose(0, 2, 1))
    del by_column

    # Entries: one per OU holding a placed segment.
    keys = (x * groups + rg) * col_groups + col // ou_cols
    unique_keys, entry_of = bounded_unique(keys, n_xbars * groups * col_groups)
    n_entries = len(unique_keys)
    e_cg = unique_keys % col_groups
    e_rg = (unique_keys // col_groups) % groups
    e_x = unique_keys // (col_groups * groups)
    # Every entry holds a placed segment, so its strip has a chunk (checked above).
    e_chunk = strip_chunk[e_x, e_rg] if n_entries else np.zeros(0, dtype=np.int64)
    lo = bits.slice_lo[e_chunk] if n_entries else np.zeros(0, dtype=np.int64)
    hi = bits.slice_hi[e_chunk] if n_entries else np.zeros(0, dtype=np.int64)
    digit, sign, channel = bits.split_q(q)
    head = {"xbar": e_x + xbar_offset, "row_group": e_rg, "col_group": e_cg,
            "slice_lo": lo, "slice_hi": hi}
    records = np.zeros((n_entries, len(head) + 4 * ou_cols), dtype=np.int64)
    for index, value in enumerate(head.values()):
        records[:, index] = value
    table = records[:, len(head):].reshape(n_entries, ou_cols, 4)    # a view
    # (valid, sign, shift, dest) of each segment's column, written field by field through
    # one flat index: no (P, 4) stack (P is 8 M segments in ResNet-18's largest layer).
    flat = entry_of * records.shape[1] + len(head) + (col % ou_cols) * 4
    fields = records.reshape(-1)                                     # a view
    for index, value in enumerate((1, sign, digit * config.cell_bits, channel)):
        fields[flat + index] = value
    del flat
    entries = _as_entries(config, records, head)
    descriptors = {key: table[:, :, index] for index, key in enumerate(COLUMN_FIELDS)}

    nonzero_segment = bits.nonzero[q, chunk] if len(q) else np.zeros(0, dtype=bool)
    entry_nonzero = np.zeros(n_entries, dtype=bool)
    entry_nonzero[entry_of[nonzero_segment]] = True
    stats = _stats(config, n_xbars, e_x, e_rg, hi - lo, descriptors["valid"], row_maps,
                   cells, entry_nonzero)
    empty = np.zeros(bits.n_outputs, dtype=np.int64)
    return LayerProgram(
        name=name, n_inputs=bits.n_inputs, n_outputs=bits.n_outputs, act_bits=bits.act_bits,
        xbars=np.arange(n_xbars, dtype=np.int64) + xbar_offset, row_maps=row_maps,
        cells=cells, entries=entries, bias=empty, mult=empty.copy(), shift=empty.copy(),
        stats=stats, weight_offset=bits.weight_offset,
    )


def _as_entries(config: AcceleratorConfig, records: np.ndarray, head: dict) -> np.ndarray:
    """Turn ``(n, 5 + 4*ou_cols)`` int64 rows into structured OU entries.

    Row layout: the head fields, then ``(valid, sign, shift, dest)`` per OU column. When
    the entry dtype of :func:`~bitline.hw.spec.program.empty_entries` has exactly this
    field order (the layout of :mod:`bitline.hw.spec.encoding`), the rows are reinterpreted in
    place; otherwise fields are copied one by one.
    """
    n_entries = len(records)
    entries = empty_entries(config, n_entries)
    names = tuple(head) + tuple(f"cols.{j}.{key}" for j in range(config.ou_cols)
                                for key in COLUMN_FIELDS)
    dtype = entries.dtype
    if n_entries and dtype.names == names and dtype.itemsize == 8 * len(names) and all(
            dtype.fields[name][0] == np.int64 and dtype.fields[name][1] == 8 * index
            for index, name in enumerate(names)):
        return np.ascontiguousarray(records).view(dtype).reshape(n_entries)
    for index, name in enumerate(names):
        entries[name] = records[:, index]
    return entries


def _stats(config, n_xbars, e_x, e_rg, n_slices, valid, row_maps, cells, entry_nonzero):
    """Per-vector event counts of docs/contract.md section 5 plus occupancy figures."""
    n_slices = np.asarray(n_slices, dtype=np.int64)
    n_valid = valid.sum(axis=1)
    groups = config.row_groups
    padded = np.full((n_xbars, groups * config.ou_rows), -1, dtype=np.int64)
    padded[:, :config.rows] = row_maps
    driven = (padded.reshape(n_xbars, groups, config.ou_rows) >= 0).sum(axis=2)
    e_driven = driven[e_x, e_rg] if len(e_x) else np.zeros(0, dtype=np.int64)
    unit_reads = np.bincount(e_x, weights=n_slices, minlength=n_xbars)
    return {
        "xbars": int(n_xbars),
        "entries": int(len(e_x)),
        "nonzero_cells": int(np.count_nonzero(cells)),
        "allocated_cells": int(n_xbars * config.rows * config.cols),
        "activated_cells": int(np.sum(n_slices * n_valid * e_driven)),
        "ou_reads_per_vector": int(n_slices.sum()),
        "adc_conversions_per_vector": int(np.sum(n_slices * n_valid)),
        "busiest_unit_reads": int(unit_reads.max(initial=0)),
        "hollow_entries": int(np.count_nonzero(~entry_nonzero)),
    }
