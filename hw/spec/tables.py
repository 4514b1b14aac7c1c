"""The record form of an OU program: the tables the image carries and the memories hold.

:func:`program_tables` is the one conversion of a :class:`~bitline.hw.spec.program.Program`
into records: the LAYERS records (:func:`~bitline.hw.spec.encoding.layer_layout`), the
row map of every crossbar unit, the CELLS records of the owned units, the OU entries of all
layers concatenated and the OUTPUT records (bias, mult, shift per output channel). The
bundle encodes these tables into ``image.bin`` (:mod:`bitline.sw.bundle`) and the
accelerator's initial memories are packed from them
(:func:`bitline.hw.core.memories.program_memories`), so both views hold the same records.

The conversion checks only what it must to build the records (types, shapes, unit
ownership, the mode name); :func:`bitline.hw.spec.validate.validate_program` checks the
rest. Both raise :class:`~bitline.hw.spec.program.ProgramError` through :class:`Place`,
which words every message the same way::

    <source>: section <SECTION> record <n> (<layer, unit, row ...>): field <field>: <what>
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import entry_layout, lane_bits, layer_layout, numpy_dtype
from bitline.hw.spec.image import SectionId, section_capacity
from bitline.hw.spec.network import NodeProgram
from bitline.hw.spec.program import OutputMode, Program, ProgramError

__all__ = ["ProgramTables", "Place", "program_tables", "layers_dtype", "lanes_bits",
           "lanes_from_bits", "check_lanes", "UNIT_FIELDS", "CAPACITY_NAMES", "RECORD_NAMES"]

#: Config field that bounds each section's record count (for error messages).
CAPACITY_NAMES = {
    SectionId.LAYERS: "max_layers",
    SectionId.ROWMAPS: "n_xbars * rows",
    SectionId.CELLS: "n_xbars",
    SectionId.ENTRIES: "max_entries",
    SectionId.OUTPUT: "max_layers * max_out_channels",
    SectionId.NETWORK: "max_nodes",
}
#: What one record of each section is (for error messages).
RECORD_NAMES = {
    SectionId.LAYERS: "layer jobs",
    SectionId.ROWMAPS: "row-map records",
    SectionId.CELLS: "crossbar units",
    SectionId.ENTRIES: "OU entries",
    SectionId.OUTPUT: "output channels",
    SectionId.NETWORK: "network nodes",
}


#: LAYERS fields kept as per-unit matrices rather than record columns (they may be wider
#: than an int64): ``xbar_mask`` (bool) and ``lanes`` (int64 lane of each unit).
UNIT_FIELDS = ("xbar_mask", "lanes")


def layers_dtype(config: AcceleratorConfig) -> np.dtype:
    """Return the dtype of the LAYERS records without :data:`UNIT_FIELDS`."""
    full = numpy_dtype(layer_layout(config))
    return np.dtype([(name, full[name]) for name in full.names if name not in UNIT_FIELDS])


def lanes_bits(config: AcceleratorConfig, lanes: np.ndarray) -> np.ndarray:
    """Return the ``lanes`` field of layer records as a uint8 bit matrix ``(L, width)``.

    ``lanes`` is int64 ``(L, n_xbars)``; unit ``u``'s lane occupies bits ``[u * b, (u + 1) *
    b)`` with ``b = lane_bits(config)``, LSB first (:func:`~bitline.hw.spec.encoding.layer_layout`).
    """
    width = lane_bits(config)
    lanes = np.asarray(lanes, dtype=np.int64).reshape(-1, config.n_xbars)
    bits = (lanes[:, :, None] >> np.arange(width, dtype=np.int64)) & 1
    return bits.reshape(len(lanes), -1).astype(np.uint8)


def lanes_from_bits(config: AcceleratorConfig, bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`lanes_bits`: int64 ``(L, n_xbars)`` from the field's bit matrix."""
    width = lane_bits(config)
    bits = np.asarray(bits, dtype=np.int64).reshape(len(bits), config.n_xbars, width)
    return bits @ (np.int64(1) << np.arange(width, dtype=np.int64))


@dataclass
class ProgramTables:
    """A program as records (what :func:`program_tables` builds and an image decodes to).

    Attributes
    ----------
    config:
        The accelerator configuration the records are for.
    layers:
        Structured array (:func:`layers_dtype`) of the LAYERS records, every field of
        :func:`~bitline.hw.spec.encoding.layer_layout` except ``xbar_mask``.
    xbar_masks:
        bool ``(L, n_xbars)``: the ``xbar_mask`` of each layer record (bit ``u`` = unit ``u``).
    lanes:
        int64 ``(L, n_xbars)``: the ``lanes`` field of each layer record, the copy each unit
        of the layer belongs to (0 for copy 0 and for units the layer does not own).
    rowmap_valid, rowmap_index:
        bool / int64 ``(n_xbars, rows)``: the ROWMAPS records, unit-major.
    cell_units:
        int64 ``(U,)``: the unit of each CELLS record, in record order.
    cells:
        uint8 ``(U, rows, cols)``: the levels of each CELLS record.
    entries:
        Structured OU entries (:func:`~bitline.hw.spec.program.empty_entries` dtype).
    bias, mult, shift:
        int64 ``(P,)``: the OUTPUT records (bias as a signed integer).
    copy_of:
        int64 ``(n_xbars,)`` or ``None``: for a unit that is a copy of another unit of its
        layer (:attr:`~bitline.hw.spec.program.LayerProgram.copy_xbars`), that unit; -1
        otherwise (an image carries it as the CELLS records' ``source``).
    nodes:
        The NETWORK records as :class:`~bitline.hw.spec.network.NodeProgram` values, in
        execution order (empty for a per-layer program on whole-network hardware), or
        ``None`` when the config has no whole-network hardware.
    """

    config: AcceleratorConfig
    layers: np.ndarray
    xbar_masks: np.ndarray
    lanes: np.ndarray
    rowmap_valid: np.ndarray
    rowmap_index: np.ndarray
    cell_units: np.ndarray
    cells: np.ndarray
    entries: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    copy_of: np.ndarray | None = None
    nodes: list | None = None

    @property
    def row_maps(self) -> np.ndarray:
        """int32 ``(n_xbars, rows)``: input index driving each row, -1 where unused."""
        return np.where(self.rowmap_valid, self.rowmap_index, -1).astype(np.int32)

    def layer_units(self, index: int) -> np.ndarray:
        """Return the (ascending) units owned by layer record ``index``."""
        return np.flatnonzero(self.xbar_masks[index]).astype(np.int64)

    def layer_entries(self, index: int) -> np.ndarray:
        """Return the OU entries of layer record ``index`` (a view)."""
        start = int(self.layers["entry_start"][index])
        return self.entries[start:start + int(self.layers["entry_count"][index])]


def check_lanes(tables: ProgramTables, place: Place) -> None:
    """Raise :class:`ProgramError` unless every layer's copies fit ``config.max_copies``.

    The hardware runs a layer's copies on lanes ``0 .. max_copies - 1`` (the layer record's
    ``lanes``); the executor and the performance model take any number of copies, so the
    check belongs to what builds hardware memories or an image.
    """
    limit = tables.config.max_copies
    over = np.flatnonzero(tables.lanes.max(axis=1, initial=0) >= limit)
    if len(over):
        index = int(over[0])
        copies = int(tables.lanes[index].max()) + 1
        raise place.error(SectionId.LAYERS, "lanes", f"{copies} copies, the hardware runs at "
                          f"most max_copies = {limit} (raise max_copies in the config)",
                          index, place.layer(index))


class Place:
    """Words the "where" part of program errors (source, section, record, layer label).

    Parameters
    ----------
    source:
        What is checked: ``"program"``, a file name (``.../image.bin``) ...
    names:
        Layer names by layer record index (labels ``layer 'conv1'``); without them layers
        are labelled ``layer record <n>``.
    """

    def __init__(self, source: str, names: list[str] | None = None):
        self.source = source
        self.names = names

    def layer(self, index: int) -> str:
        """Return the label of layer record ``index``."""
        if self.names is not None and 0 <= index < len(self.names):
            return f"layer {self.names[index]!r}"
        return f"layer record {index}"

    def error(self, section: SectionId | str, field_name: str, message: str,
              record: int | None = None, detail: str = "",
              error: type[ValueError] = ProgramError) -> ValueError:
        """Return ``error`` worded as in the module docstring."""
        where = f"section {section.name}" if isinstance(section, SectionId) else section
        if record is not None:
            where += f" record {record}"
        if detail:
            where += f" ({detail})"
        return error(f"{self.source}: {where}: field {field_name}: {message}")


def _as_int(value, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ProgramError(f"{what} must be an integer, not {value!r}") from None


def _integer_array(value, shape: tuple) -> np.ndarray | None:
    """Return ``value`` as an array when it is an integer array of ``shape``, else None."""
    array = np.asarray(value)
    if array.shape != shape or (array.size and not np.issubdtype(array.dtype, np.integer)):
        return None
    return array


def _check_names_and_totals(program: Program, config: AcceleratorConfig, place: Place) -> None:
    names = [layer.name for layer in program.layers]
    # layer replicas (docs/network.md section 7): the validator checks the groups
    nodes = getattr(program, "nodes", None) or []
    replicated = any(int(getattr(node, "replicas_log2", 0) or 0) for node in nodes)
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise place.error(SectionId.LAYERS, "name", f"layer name {name!r} must be a "
                              "non-empty string", index)
        if names.index(name) != index and not replicated:
            raise place.error(SectionId.LAYERS, "name", f"layer name {name!r} appears twice "
                              "(only a program with layer replicas repeats a name: the "
                              "validator checks their groups)", index)
    layers = program.layers
    totals = {
        SectionId.LAYERS: len(layers),
        SectionId.CELLS: sum(len(np.asarray(layer.xbars).reshape(-1)) * layer.copies
                             for layer in layers),
        SectionId.ENTRIES: sum(len(layer.entries) for layer in layers),
        SectionId.OUTPUT: sum(_as_int(layer.n_outputs, f"{place.source}: layer "
                                                       f"{layer.name!r} n_outputs")
                              for layer in layers),
    }
    for section, total in totals.items():
        capacity = section_capacity(config, section)
        if total > capacity:
            raise place.error(section, "record_count",
                              f"the program needs {total} {RECORD_NAMES[section]}, the config "
                              f"allows {CAPACITY_NAMES[section]} = {capacity}"
                              + (_beyond_units(layers, config) if section == SectionId.CELLS
                                 else ""))


def _beyond_units(layers, config: AcceleratorConfig) -> str:
    """Name the first layer that uses a unit past ``n_xbars`` ("" when none does)."""
    for layer in layers:
        xbars = np.asarray(layer.xbars).reshape(-1)
        if len(xbars) and np.issubdtype(xbars.dtype, np.integer) and xbars.max() >= config.n_xbars:
            unit = int(xbars.max())
            return (f" (layer {layer.name!r} needs crossbar unit {unit} ({unit + 1} units), the "
                    f"hardware has n_xbars = {config.n_xbars})")
    return ""


def _layer_record(record, layer, index: int, place: Place) -> None:
    """Fill one LAYERS record's scalar fields from ``layer`` (ranges are checked later)."""
    label = place.layer(index)
    for name in ("n_inputs", "n_outputs", "act_bits", "zero_point", "clamp_lo", "clamp_hi",
                 "weight_offset"):
        record[name] = _as_int(getattr(layer, name), f"{place.source}: {label} {name}")
    try:
        record["mode"] = OutputMode.parse(layer.mode)
    except ValueError as error:
        raise place.error(SectionId.LAYERS, "mode", str(error), index, label) from None


def _layer_units(units, index: int, config: AcceleratorConfig, owner: dict[int, int],
                 place: Place) -> np.ndarray:
    """Return the units of one copy of a layer (int64), claiming them in ``owner`` (unit ->
    layer index)."""
    label = place.layer(index)
    xbars = np.asarray(units)
    if xbars.ndim != 1 or (len(xbars) and not np.issubdtype(xbars.dtype, np.integer)):
        raise place.error(SectionId.LAYERS, "xbar_mask", f"xbars must be a 1-D integer "
                          f"array, got shape {xbars.shape} dtype {xbars.dtype}", index, label)
    xbars = xbars.astype(np.int64)
    for unit in xbars.tolist():
        if not 0 <= unit < config.n_xbars:
            raise place.error(SectionId.LAYERS, "xbar_mask", f"unit {unit} is not below "
                              f"n_xbars ({config.n_xbars}): the layer needs crossbar unit "
                              f"{unit} ({int(xbars.max()) + 1} units), the hardware has "
                              f"n_xbars = {config.n_xbars}", index, label)
        if unit in owner:
            whose = "this layer" if owner[unit] == index else place.layer(owner[unit])
            raise place.error(SectionId.LAYERS, "xbar_mask", f"unit {unit} is already "
                              f"owned by {whose}", index, label)
        owner[unit] = index
    return xbars


def _copy_units(layer, xbars: np.ndarray, index: int, config: AcceleratorConfig,
                owner: dict[int, int], place: Place) -> np.ndarray:
    """Return int64 ``(C - 1, X)``: the units of the layer's extra copies, claimed in ``owner``."""
    label = place.layer(index)
    if layer.copy_xbars is None:
        return np.zeros((0, len(xbars)), dtype=np.int64)
    extra = np.asarray(layer.copy_xbars)
    if extra.ndim != 2 or extra.shape[1] != len(xbars) or (
            extra.size and not np.issubdtype(extra.dtype, np.integer)):
        raise place.error(SectionId.LAYERS, "xbar_mask", f"copy_xbars must be an integer "
                          f"array of shape (copies - 1, {len(xbars)}), got shape "
                          f"{extra.shape} dtype {extra.dtype}", index, label)
    for copy, units in enumerate(extra, start=1):
        try:
            _layer_units(units, index, config, owner, place)
        except ProgramError as error:
            raise ProgramError(f"{error} (copy {copy})") from None
    return extra.astype(np.int64)


def _layer_rows(layer, xbars: np.ndarray, config: AcceleratorConfig, label: str,
                place: Place) -> np.ndarray:
    row_maps = _integer_array(layer.row_maps, (len(xbars), config.rows))
    if row_maps is None:
        given = np.asarray(layer.row_maps)
        raise place.error(SectionId.ROWMAPS, "index", f"row_maps must be an integer array of "
                          f"shape {(len(xbars), config.rows)}, got {given.shape} "
                          f"{given.dtype}", detail=label)
    bad = np.argwhere(row_maps < -1)
    if len(bad):
        position, row = bad[0]
        raise place.error(SectionId.ROWMAPS, "index", f"row map value "
                          f"{row_maps[position, row]} (use -1 for an unused row)",
                          int(xbars[position]) * config.rows + int(row),
                          f"{label} unit {xbars[position]} row {row}")
    return row_maps


def _layer_cells(layer, xbars: np.ndarray, config: AcceleratorConfig, label: str,
                 first_record: int, place: Place) -> np.ndarray:
    shape = (len(xbars), config.rows, config.cols)
    cells = _integer_array(layer.cells, shape)
    if cells is None:
        given = np.asarray(layer.cells)
        raise place.error(SectionId.CELLS, "rows", f"cells must be an integer array of "
                          f"shape {shape}, got {given.shape} {given.dtype}", detail=label)
    bad = np.argwhere((cells < 0) | (cells > config.level_max))
    if len(bad):
        position, row, col = bad[0]
        raise place.error(SectionId.CELLS, f"rows.{row}.levels.{col}", f"level "
                          f"{cells[position, row, col]} is not in 0 .. level_max "
                          f"({config.level_max})", first_record + int(position),
                          f"{label} unit {xbars[position]} row {row} col {col}")
    return cells.astype(np.uint8)


def _layer_entries(layer, entry_dtype: np.dtype, label: str, place: Place) -> np.ndarray:
    entries = np.asarray(layer.entries)
    missing = [name for name in entry_dtype.names
               if entries.dtype.names is None or name not in entries.dtype.names]
    if missing or entries.ndim != 1:
        raise place.error(SectionId.ENTRIES, missing[0] if missing else "xbar",
                          "entries must be a 1-D structured array with the fields of "
                          "empty_entries(config)", detail=label)
    converted = np.zeros(len(entries), dtype=entry_dtype)
    for name in entry_dtype.names:
        if not np.issubdtype(entries.dtype[name], np.integer):
            raise place.error(SectionId.ENTRIES, name, f"must be integer, not "
                              f"{entries.dtype[name]}", detail=label)
        converted[name] = entries[name]
    return converted


def _layer_params(layer, label: str, place: Place) -> list[np.ndarray]:
    params = []
    n_outputs = int(layer.n_outputs)
    for name in ("bias", "mult", "shift"):
        values = _integer_array(getattr(layer, name), (n_outputs,))
        if values is None:
            given = np.asarray(getattr(layer, name))
            raise place.error(SectionId.OUTPUT, name, f"must be an integer array of shape "
                              f"({n_outputs},), got {given.shape} {given.dtype}", detail=label)
        params.append(values.astype(np.int64))
    return params


def program_tables(program: Program, config: AcceleratorConfig | None = None, *,
                   place: Place | None = None) -> ProgramTables:
    """Return the records of ``program`` for ``config`` (default ``program.config``).

    Layers keep their order; each layer's entries, units (CELLS records) and output
    channels follow the previous layer's, and ``entry_start`` / ``param_start`` point at
    them. Only what building the records needs is checked (see the module docstring);
    validate the result with :func:`bitline.hw.spec.validate.validate_program`.

    Raises
    ------
    ProgramError
        On a malformed layer program (names, types, shapes, duplicate or out-of-range
        units, an unknown mode, a cell level or row-map value out of range) or more
        records than the config holds; the message names section, record, layer and field.
    """
    config = program.config if config is None else config
    if not isinstance(config, AcceleratorConfig):
        raise ProgramError(f"program: config must be an AcceleratorConfig, not {config!r}")
    place = place or Place("program", [layer.name for layer in program.layers])
    _check_names_and_totals(program, config, place)
    layers = program.layers
    entry_dtype = numpy_dtype(entry_layout(config))
    table = np.zeros(len(layers), dtype=layers_dtype(config))
    masks = np.zeros((len(layers), config.n_xbars), dtype=bool)
    lanes = np.zeros((len(layers), config.n_xbars), dtype=np.int64)
    valid = np.zeros((config.n_xbars, config.rows), dtype=bool)
    row_index = np.zeros((config.n_xbars, config.rows), dtype=np.int64)
    units_all, cells_all, entries_all, params_all = [], [], [], []
    copy_of = np.full(config.n_xbars, -1, dtype=np.int64)
    owner: dict[int, int] = {}
    entry_start = param_start = 0
    for index, layer in enumerate(layers):
        label = place.layer(index)
        record = table[index]
        _layer_record(record, layer, index, place)
        record["entry_start"], record["entry_count"] = entry_start, len(layer.entries)
        record["param_start"] = param_start
        entry_start += len(layer.entries)
        param_start += int(layer.n_outputs)
        xbars = _layer_units(layer.xbars, index, config, owner, place)
        extra = _copy_units(layer, xbars, index, config, owner, place)
        masks[index, xbars] = True
        masks[index, extra.reshape(-1)] = True
        lanes[index, extra] = np.arange(1, layer.copies, dtype=np.int64)[:, None]
        row_maps = _layer_rows(layer, xbars, config, label, place)
        cells = _layer_cells(layer, xbars, config, label, sum(map(len, units_all)), place)
        # Every copy is an identical image on its own units: same row maps, same cells.
        for units in (xbars, *extra):
            valid[units] = row_maps >= 0
            row_index[units] = np.maximum(row_maps, 0)
            cells_all.append(cells)
            units_all.append(units)
        copy_of[extra] = xbars[None, :]
        entries_all.append(_layer_entries(layer, entry_dtype, label, place))
        params_all.append(_layer_params(layer, label, place))

    def joined(parts, empty):
        return np.concatenate(parts) if parts else empty

    no_ints = np.zeros(0, np.int64)
    return ProgramTables(
        config=config,
        layers=table,
        xbar_masks=masks,
        lanes=lanes,
        rowmap_valid=valid,
        rowmap_index=row_index,
        cell_units=joined(units_all, no_ints),
        cells=joined(cells_all, np.zeros((0, config.rows, config.cols), np.uint8)),
        entries=joined(entries_all, np.zeros(0, entry_dtype)),
        bias=joined([p[0] for p in params_all], no_ints),
        mult=joined([p[1] for p in params_all], no_ints),
        shift=joined([p[2] for p in params_all], no_ints),
        copy_of=copy_of,
        nodes=_program_nodes(program, config, place),
    )


def _program_nodes(program: Program, config: AcceleratorConfig, place: Place) -> list | None:
    """Return the program's nodes for the NETWORK section (checked by the validator)."""
    nodes = getattr(program, "nodes", None)
    if nodes is None:
        return [] if config.network else None
    if not config.network:
        raise place.error(SectionId.NETWORK, "record_count",
                          f"the program has {len(nodes)} network nodes, the config has no "
                          "whole-network hardware (act_buffer_depth = 0)")
    if not isinstance(nodes, (list, tuple)) or not all(isinstance(node, NodeProgram)
                                                       for node in nodes):
        raise place.error(SectionId.NETWORK, "kind", "nodes must be a list of NodeProgram "
                          f"values, not {nodes!r:.80}")
    return list(nodes)
