"""What a mapper emits: crossbar images, row maps and OU entries per layer job.

A *layer job* is one compute layer seen as a matrix-vector product on the crossbars: the
host streams input vectors of length ``n_inputs`` (one im2col column per output pixel, in the
IR's im2col order, see :mod:`bitline.sw.frontend.ir`) and receives ``n_outputs`` values per vector.
Every strategy (isaac, ivq-naive, ivq-spatial, ivq-temporal, bwq) emits this same structure;
one periphery runs them all (docs/contract.md, "The OU program").

This module owns the program: its types (:class:`Program`, :class:`LayerProgram`), the
output mode (:class:`OutputMode`), the unflattening of an entry's per-column fields
(:func:`entry_columns`) and the error every check raises
(:class:`ProgramError`). Its record form is :mod:`bitline.hw.spec.tables`; its one
validator, :func:`bitline.hw.spec.validate.validate_program`, is what compile, the bundle,
hardware generation and the executor all call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import entry_layout, numpy_dtype

__all__ = [
    "LayerProgram", "Program", "ProgramError", "OutputMode", "STRATEGIES", "ENCODINGS",
    "COLUMN_FIELDS",
    "empty_entries", "entry_columns",
]

#: Mapping strategies, in the order reports list them.
STRATEGIES = ("isaac", "ivq-naive", "ivq-spatial", "ivq-temporal", "bwq")

#: Weight encodings (docs/contract.md section 4): ``differential`` (sign-magnitude, positive
#: and negative weights in separate columns) and ``offset`` (ISAAC's biased weights
#: ``w + weight_offset`` in one column set; the output path subtracts ``weight_offset *
#: sum(x)``). A layer program's :attr:`LayerProgram.weight_offset` is 0 with the first.
ENCODINGS = ("differential", "offset")

#: Per-column fields of an OU entry (``cols.{j}.<field>`` in the flattened entry dtype).
COLUMN_FIELDS = ("valid", "sign", "shift", "dest")


class ProgramError(ValueError):
    """An OU program the hardware cannot hold or run exactly.

    The message names the layer, the field and the value at fault (and, when the program
    is checked in its record form, the image section and record).
    """


class OutputMode(enum.IntEnum):
    """Output-unit mode of a layer: the layer record's ``mode`` code.

    ``REQUANT`` (0) requantizes ``acc + bias`` to an activation code; ``RAW`` (1) passes
    ``acc + bias`` out unchanged. Programs, manifests and quantized models name a mode by
    its :attr:`label` (``"requant"`` / ``"raw"``).
    """

    REQUANT = 0
    RAW = 1

    @property
    def label(self) -> str:
        """The mode's name in programs and manifests (``"requant"`` / ``"raw"``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value) -> "OutputMode":
        """Return the mode named ``value`` (a label such as ``"raw"``, or a mode).

        Raises
        ------
        ValueError
            When ``value`` names no mode; the message lists the known labels.
        """
        if isinstance(value, cls):
            return value
        for mode in cls:
            if value == mode.label:
                return mode
        raise ValueError(f"unknown mode {value!r} (known: "
                         f"{', '.join(mode.label for mode in cls)})")


def empty_entries(config: AcceleratorConfig, count: int = 0) -> np.ndarray:
    """Return a zeroed structured array of ``count`` OU entries for ``config``."""
    return np.zeros(count, dtype=numpy_dtype(entry_layout(config)))


def entry_columns(entries: np.ndarray, ou_cols: int) -> dict[str, np.ndarray]:
    """Return the per-column fields of OU entries as int64 ``(N, ou_cols)`` arrays.

    The entry dtype flattens column ``j``'s descriptor into fields ``cols.{j}.valid``,
    ``cols.{j}.sign``, ``cols.{j}.shift`` and ``cols.{j}.dest``; this is their one
    unflattening, keyed by :data:`COLUMN_FIELDS`.
    """
    count = len(entries)
    if not count:
        return {key: np.zeros((0, ou_cols), dtype=np.int64) for key in COLUMN_FIELDS}
    views = _column_views(entries, ou_cols)
    if views is not None:
        return views
    return {
        key: np.stack([np.asarray(entries[f"cols.{j}.{key}"], dtype=np.int64)
                       for j in range(ou_cols)], axis=1)
        for key in COLUMN_FIELDS
    }


def _column_views(entries: np.ndarray, ou_cols: int) -> dict[str, np.ndarray] | None:
    """Read-only strided ``(N, ou_cols)`` views of the column fields, or ``None``.

    When every ``cols.{j}.{key}`` field is int64 and column ``j + 1``'s field sits a fixed
    stride after column ``j``'s (the layout the mapper writes), each key is one strided
    view of the records: no copy (an OU-entry table of a ResNet-18 ``isaac`` program is
    2 M records; stacking its 4 x 8 fields took a third of the validator's time).
    """
    fields = entries.dtype.fields
    if fields is None or entries.ndim != 1:
        return None
    views = {}
    for key in COLUMN_FIELDS:
        names = [f"cols.{j}.{key}" for j in range(ou_cols)]
        if any(name not in fields or fields[name][0] != np.int64 for name in names):
            return None
        offsets = [fields[name][1] for name in names]
        stride = offsets[1] - offsets[0] if ou_cols > 1 else 8
        if any(b - a != stride for a, b in zip(offsets, offsets[1:])):
            return None
        view = np.lib.stride_tricks.as_strided(
            entries[names[0]], shape=(len(entries), ou_cols),
            strides=(entries.strides[0], stride), writeable=False)
        views[key] = view
    return views


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
        Input activation width; the widest entry issues slices
        ``[0, config.act_slices(act_bits))``.
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
        Output unit mode (an :class:`OutputMode` label, ``"requant"`` / ``"raw"``), output
        zero point and clamp.
    stats:
        Mapper statistics (nonzero cells, allocated cells, ...), copied into the manifest.
    copy_xbars:
        int ``(C - 1, X)`` or ``None``: the global units of the layer's extra copies; row
        ``k - 1`` holds copy ``k``, its column ``i`` a copy of ``xbars[i]`` (same cells and
        row map; entries name copy 0's units only). ``C`` identical copies split the layer
        job's ``V`` vectors into contiguous shares (:func:`bitline.hw.spec.timing.copy_shares`);
        ``None`` (or zero rows): one copy.
    weight_offset:
        ``B`` of the offset weight encoding (:data:`ENCODINGS`), 0 for differential: the
        cells hold ``w + B`` and the output path computes ``acc = raw - B * sum_i x[i]``
        over the vector's raw input codes (docs/contract.md section 4). A power of two.
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
    copy_xbars: np.ndarray | None = None
    weight_offset: int = 0

    @property
    def copies(self) -> int:
        """``C``: copies of the layer (1 without :attr:`copy_xbars`)."""
        extra = None if self.copy_xbars is None else np.asarray(self.copy_xbars)
        # A malformed copy_xbars (not 2-D) is rejected by the record builder
        # (bitline.hw.spec.tables.program_tables), which every consumer runs first.
        return 1 + (extra.shape[0] if extra is not None and extra.ndim == 2 else 0)

    def copy_units(self, copy: int) -> np.ndarray:
        """Return the global units of copy ``copy`` (0: :attr:`xbars`), in ``xbars`` order."""
        if not 0 <= copy < self.copies:
            raise IndexError(f"layer {self.name} has {self.copies} copies, not copy {copy}")
        if copy == 0:
            return np.asarray(self.xbars, dtype=np.int64).reshape(-1)
        return np.asarray(self.copy_xbars, dtype=np.int64).reshape(self.copies - 1, -1)[copy - 1]

    @property
    def all_xbars(self) -> np.ndarray:
        """Every unit of every copy: copy 0's units, then copy 1's, ..."""
        return np.concatenate([self.copy_units(copy) for copy in range(self.copies)])


@dataclass
class Program:
    """A whole network mapped onto one accelerator configuration.

    Attributes
    ----------
    config, strategy:
        The accelerator configuration and the mapping strategy (:data:`STRATEGIES`).
    layers:
        The layer jobs, in program order (the layer table).
    nodes:
        Whole-network mode (``compile --network``, docs/network.md section 2): the network's
        nodes in execution order (:class:`~bitline.hw.spec.network.NodeProgram`, the image's
        NETWORK section); ``None`` for a per-layer program (the host runs the graph).
    """

    config: AcceleratorConfig
    strategy: str
    layers: list[LayerProgram]
    nodes: list | None = None

    @property
    def encoding(self) -> str:
        """The weight encoding (:data:`ENCODINGS`): ``offset`` if a layer has a weight offset."""
        return "offset" if any(layer.weight_offset for layer in self.layers) else "differential"

    @property
    def xbars_used(self) -> int:
        """Number of crossbar units holding weights (every copy of every layer)."""
        return int(sum(len(layer.xbars) * layer.copies for layer in self.layers))

    def with_copies(self, copies: dict[str, int]) -> "Program":
        """Return the program with ``copies[name]`` copies of each named layer.

        Copy 0 keeps its units; the extra copies take fresh units after the highest unit of
        the program, layer by layer in program order; ``config.n_xbars`` is raised to hold
        them and ``config.max_copies`` to run them. Layers not named keep their copies. The
        arrays of copy 0 are shared.

        Raises
        ------
        ValueError
            If a name is not a layer of the program or a count is below 1.
        """
        names = {layer.name for layer in self.layers}
        for name, count in copies.items():
            if name not in names:
                raise ValueError(f"copies: program has no layer {name!r}")
            if int(count) < 1:
                raise ValueError(f"copies: layer {name!r} needs at least 1 copy, not {count}")
        used = [layer.all_xbars for layer in self.layers]
        next_unit = int(max((int(units.max()) for units in used if len(units)), default=-1)) + 1
        layers = []
        for layer in self.layers:
            count = int(copies.get(layer.name, layer.copies))
            width = len(np.asarray(layer.xbars).reshape(-1))
            if count == layer.copies:
                layers.append(layer)
                continue
            extra = np.arange(next_unit, next_unit + (count - 1) * width, dtype=np.int64)
            next_unit += len(extra)
            layers.append(replace(layer, copy_xbars=extra.reshape(count - 1, width)
                                  if count > 1 else None))
        config = self.config
        if next_unit > config.n_xbars:
            config = config.replace(n_xbars=next_unit)
        most = max((layer.copies for layer in layers), default=1)
        if most > config.max_copies:
            config = config.replace(max_copies=most)
        return Program(config=config, strategy=self.strategy, layers=layers, nodes=self.nodes)

    def with_replicas(self, replicas: dict[str, int]) -> tuple["Program", dict[str, list[int]]]:
        """Return the program with ``replicas[name] - 1`` replica records of each named layer.

        A replica (docs/network.md section 7) is a further layer-table record of the same
        layer (same name, cells, row maps, entries and output-unit parameters) on fresh
        units: each replica's units follow the highest unit of the program, the ``k``-th
        for the original's ``k``-th smallest unit, and its entries name them. The replicas
        of a layer follow it in the layer table, so later records move up.
        ``config.n_xbars`` is raised to hold them (the caller records that as a sizing or refuses a pinned value). Returns
        the program and, per named layer, the record indices of its replicas (original
        first). The program's nodes are dropped (their ``layer`` indices would be stale).

        Raises
        ------
        ValueError
            If a name is not a layer of the program, a count is below 1, or a named layer
            has copies (a replica runs one copy).
        """
        names = [layer.name for layer in self.layers]
        for name, count in replicas.items():
            if name not in names:
                raise ValueError(f"replicas: program has no layer {name!r}")
            if int(count) < 1:
                raise ValueError(f"replicas: layer {name!r} needs at least 1 replica, not "
                                 f"{count}")
            if self.layer(name).copies > 1:
                raise ValueError(f"replicas: layer {name!r} has {self.layer(name).copies} "
                                 "copies; a replica runs one copy of the layer")
        used = [layer.all_xbars for layer in self.layers]
        next_unit = int(max((int(units.max()) for units in used if len(units)), default=-1)) + 1
        layers: list[LayerProgram] = []
        indices: dict[str, list[int]] = {}
        for layer in self.layers:
            layers.append(layer)
            count = int(replicas.get(layer.name, 1))
            if layer.name in replicas:
                indices[layer.name] = [len(layers) - 1]
            units = np.asarray(layer.xbars, dtype=np.int64).reshape(-1)
            ranked = np.sort(units)
            for _ in range(count - 1):
                # the k-th smallest unit's copy is the k-th fresh unit (the validator pairs
                # the units of a group's records in ascending order)
                fresh = np.arange(next_unit, next_unit + len(units), dtype=np.int64)
                next_unit += len(units)
                entries = np.array(layer.entries, copy=True)
                if len(entries):
                    entries["xbar"] = fresh[np.searchsorted(ranked, entries["xbar"])]
                layers.append(replace(layer, xbars=fresh[np.searchsorted(ranked, units)],
                                      entries=entries, copy_xbars=None,
                                      stats=dict(layer.stats)))
                indices[layer.name].append(len(layers) - 1)
        config = self.config
        if next_unit > config.n_xbars:
            config = config.replace(n_xbars=next_unit)
        return Program(config=config, strategy=self.strategy, layers=layers), indices

    def layer(self, name: str) -> LayerProgram:
        """Return the layer program called ``name``."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"program has no layer {name!r}")
