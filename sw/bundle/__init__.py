"""The program bundle: ``image.bin``, ``manifest.json`` and ``reference.npz``.

A bundle is a directory with three files:

``image.bin``
    The byte stream the host sends to program the accelerator: header, section table and
    the LAYERS, ROWMAPS, CELLS, ENTRIES and OUTPUT sections, laid out as
    :mod:`bitline.hw.spec.image` defines (docs/bundle.md has the byte tables).
``manifest.json``
    Everything a host needs besides the image: the accelerator config, the strategy, the
    model's integer graph (every layer, its shapes, attributes and activation parameters, so
    the host runs the non-compute layers and the golden model rebuilds the
    :class:`~bitline.sw.integer.qmodel.QuantizedModel`), per-layer regions and mapper statistics, and
    a summary of the image's sections.
``reference.npz``
    The integer weights, scales and output-unit parameters of every compute layer (never
    sent to the hardware; the golden backend and :func:`read_bundle` use them).

:func:`write_bundle` range-checks every field against the config before writing;
:func:`read_bundle` and :func:`parse_image` validate everything and raise
:class:`BundleError` (a ``ValueError``) naming the file, section, record and field.
"""

from __future__ import annotations

import hashlib
import json
import operator
import struct
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import (
    MULT_BITS,
    SHIFT_BITS,
    FieldOverflow,
    entry_layout,
    flatten_fields,
    layer_layout,
    numpy_dtype,
    pack,
    pack_columns,
    record_bytes,
    unpack,
    value_bits,
)
from bitline.hw.spec.image import (
    DIGEST_BYTES,
    FORMAT_VERSION,
    HEADER_BYTES,
    HEADER_LAYOUT,
    MAGIC,
    MAGIC_WORD,
    OUTPUT_MODES,
    SECTION_ENTRY_BYTES,
    SECTION_ENTRY_LAYOUT,
    SectionId,
    align,
    cells_layout,
    config_digest_bytes,
    crc32,
    section_capacity,
    section_layout,
    struct_format,
)
from bitline.hw.spec.program import LayerProgram, Program
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.integer.qmodel import ActParams, QuantizedModel, QuantLayer
from bitline.sw.quant.tensor import QuantizedTensor

__all__ = [
    "BundleError", "Bundle", "ParsedImage", "SectionInfo",
    "IMAGE_FILE", "MANIFEST_FILE", "REFERENCE_FILE",
    "write_bundle", "read_bundle", "encode_image", "parse_image",
    "image_tables", "encode_sections", "assemble_image", "build_manifest",
]

IMAGE_FILE = "image.bin"
MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.npz"

#: Config field that bounds each section's record count (for error messages).
_CAPACITY_NAMES = {
    SectionId.LAYERS: "max_layers",
    SectionId.ROWMAPS: "n_xbars * rows",
    SectionId.CELLS: "n_xbars",
    SectionId.ENTRIES: "max_entries",
    SectionId.OUTPUT: "max_layers * max_out_channels",
}
_KNOWN_IDS = frozenset(int(section) for section in SectionId)
_WHAT = {
    SectionId.LAYERS: "layer jobs",
    SectionId.ROWMAPS: "row-map records",
    SectionId.CELLS: "crossbar units",
    SectionId.ENTRIES: "OU entries",
    SectionId.OUTPUT: "output channels",
}


class BundleError(ValueError):
    """A bundle that cannot be written or read; the message names file, section and field."""


# ------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class SectionInfo:
    """One section-table entry of a parsed image (offsets and lengths in bytes)."""

    section: SectionId
    offset: int
    length: int
    record_bytes: int
    record_count: int
    crc: int

    @property
    def name(self) -> str:
        """Section name (``"ENTRIES"`` ...)."""
        return self.section.name

    def to_dict(self) -> dict:
        """Return the manifest's summary of this section."""
        return {
            "name": self.name, "id": int(self.section), "offset": self.offset,
            "length": self.length, "record_bytes": self.record_bytes,
            "record_count": self.record_count, "crc32": f"0x{self.crc:08x}",
        }


@dataclass
class ParsedImage:
    """The decoded, validated content of an image (or what the writer is about to encode).

    Attributes
    ----------
    config:
        The accelerator configuration the image is for.
    layers:
        Structured array of the LAYERS records, every field of
        :func:`~bitline.hw.spec.encoding.layer_layout` except ``xbar_mask``.
    xbar_masks:
        bool ``(L, n_xbars)``: the ``xbar_mask`` of each layer record (bit ``u`` = unit ``u``).
    rowmap_valid, rowmap_index:
        bool / int64 ``(n_xbars, rows)``: the ROWMAPS records, unit-major.
    cell_units:
        int64 ``(U,)``: the unit of each CELLS record, in record order.
    cells:
        uint8 ``(U, rows, cols)``: the levels of each CELLS record.
    entries:
        Structured OU entries (:func:`~bitline.hw.spec.program.empty_entries` dtype).
    bias, mult, shift:
        int64 ``(P,)``: the OUTPUT records (bias sign-extended from ``acc_bits``).
    sections:
        The section table (empty until the image is assembled or parsed).
    """

    config: AcceleratorConfig
    layers: np.ndarray
    xbar_masks: np.ndarray
    rowmap_valid: np.ndarray
    rowmap_index: np.ndarray
    cell_units: np.ndarray
    cells: np.ndarray
    entries: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    sections: dict[SectionId, SectionInfo] = field(default_factory=dict)

    @property
    def row_maps(self) -> np.ndarray:
        """int32 ``(n_xbars, rows)``: input index driving each row, -1 where unused."""
        return np.where(self.rowmap_valid, self.rowmap_index, -1).astype(np.int32)

    def layer_units(self, index: int) -> np.ndarray:
        """Return the (ascending) units owned by layer record ``index``."""
        return np.flatnonzero(self.xbar_masks[index]).astype(np.int64)


@dataclass
class Bundle:
    """A bundle read back by :func:`read_bundle`.

    ``program`` is rebuilt from ``image`` and ``manifest``; ``qmodel`` from ``manifest`` and
    ``reference.npz`` (IR layer weights are ``values * scale``, float64); ``parsed`` is the
    decoded image.
    """

    program: Program
    qmodel: QuantizedModel
    manifest: dict
    image: bytes
    parsed: ParsedImage | None = None
    path: Path | None = None


# ------------------------------------------------------------------------- helpers
def _layers_dtype(config: AcceleratorConfig) -> np.dtype:
    full = numpy_dtype(layer_layout(config))
    return np.dtype([(name, full[name]) for name in full.names if name != "xbar_mask"])


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(np.asarray(mask).reshape(-1))
    return int(hits[0]) if len(hits) else None


class _Place:
    """Builds the "where" part of error messages (file, section, record, layer label)."""

    def __init__(self, source: str, names: list[str] | None = None):
        self.source = source
        self.names = names

    def layer(self, index: int) -> str:
        if self.names is not None and 0 <= index < len(self.names):
            return f"layer {self.names[index]!r}"
        return f"layer record {index}"

    def error(self, section: SectionId | str, field_name: str, message: str,
              record: int | None = None, detail: str = "") -> BundleError:
        where = f"section {section.name}" if isinstance(section, SectionId) else section
        if record is not None:
            where += f" record {record}"
        if detail:
            where += f" ({detail})"
        return BundleError(f"{self.source}: {where}: field {field_name}: {message}")


def _pack_records(place: _Place, section: SectionId, layout: data.Layout, count: int,
                  columns: dict[str, np.ndarray], detail=lambda index: "") -> bytes:
    """:func:`bitline.hw.spec.encoding.pack_columns`, with the error naming the bundle's place."""
    try:
        return pack_columns(layout, count, columns)
    except FieldOverflow as error:
        raise place.error(section, error.name,
                          f"value {error.value} does not fit {error.width} bits",
                          error.index, detail(error.index)) from None


def _record_bits(layout: data.Layout, blob: bytes) -> np.ndarray:
    raw = np.frombuffer(blob, dtype=np.uint8).reshape(-1, record_bytes(layout))
    return np.unpackbits(raw, axis=1, bitorder="little")


def _field_value(bits: np.ndarray, offset: int, width: int, signed: bool = False) -> np.ndarray:
    sub = bits[:, offset:offset + width].astype(np.int64)
    low = width - 1 if signed else width
    weights = np.int64(1) << np.arange(low, dtype=np.int64)
    value = sub[:, :low] @ weights
    if signed:
        value = value + sub[:, low] * np.int64(-(1 << (width - 1)))
    return value


def _as_int(value, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise BundleError(f"{what} must be an integer, not {value!r}") from None


# ------------------------------------------------------------------------- cells fast path
def _cells_geometry(config: AcceleratorConfig):
    layout = cells_layout(config)
    head_bits = layout["rows"].offset
    row_bits = Shape.cast(layout["rows"].shape.elem_shape).width
    unit_bits = Shape.cast(layout["unit"].shape).width
    return layout, head_bits // 8, row_bits, unit_bits


def _pack_cells(config: AcceleratorConfig, units: np.ndarray, cells: np.ndarray) -> bytes:
    """Pack CELLS records (:func:`~bitline.hw.spec.image.cells_layout`) with numpy.

    The same bytes as the generic packer (tests pin this), without one Python step per cell.
    """
    _, head_bytes, row_bits, _ = _cells_geometry(config)
    count = len(units)
    level_bits = config.cols * config.cell_bits
    bits = np.zeros((count, config.rows, row_bits), dtype=np.uint8)
    shifts = np.arange(config.cell_bits, dtype=np.uint8)
    planes = (cells.astype(np.uint8)[..., None] >> shifts) & 1
    bits[..., :level_bits] = planes.reshape(count, config.rows, level_bits)
    body = np.packbits(bits, axis=2, bitorder="little").reshape(count, -1)
    byte_shifts = 8 * np.arange(head_bytes, dtype=np.int64)
    head = ((np.asarray(units, dtype=np.int64)[:, None] >> byte_shifts) & 0xFF).astype(np.uint8)
    return np.concatenate([head, body], axis=1).tobytes()


def _unpack_cells(config: AcceleratorConfig, blob: bytes, place: _Place):
    layout, head_bytes, row_bits, unit_bits = _cells_geometry(config)
    raw = np.frombuffer(blob, dtype=np.uint8).reshape(-1, record_bytes(layout))
    count = len(raw)
    byte_shifts = 8 * np.arange(head_bytes, dtype=np.int64)
    word = (raw[:, :head_bytes].astype(np.int64) << byte_shifts).sum(axis=1)
    units = word & ((1 << unit_bits) - 1)
    reserved = word >> unit_bits
    index = _first(reserved != 0)
    if index is not None:
        raise place.error(SectionId.CELLS, "reserved", f"reserved bits are {reserved[index]:#x}, "
                          "must be 0", index)
    body = raw[:, head_bytes:].reshape(count, config.rows, row_bits // 8)
    bits = np.unpackbits(body, axis=2, bitorder="little")
    level_bits = config.cols * config.cell_bits
    pad = bits[..., level_bits:].reshape(count, -1)
    index = _first(pad.any(axis=1))
    if index is not None:
        row = _first(bits[index, :, level_bits:].any(axis=1))
        raise place.error(SectionId.CELLS, f"rows.{row}.pad", "row padding bits must be 0",
                          index, f"unit {units[index]}")
    planes = bits[..., :level_bits].reshape(count, config.rows, config.cols, config.cell_bits)
    weights = (1 << np.arange(config.cell_bits)).astype(np.int64)
    levels = (planes.astype(np.int64) @ weights).astype(np.uint8)
    return units.astype(np.int64), levels


# ------------------------------------------------------------------------- validation
def _validate(tables: ParsedImage, place: _Place) -> None:
    """Check every record against the config and against each other (writer and reader)."""
    config = tables.config
    layers, entries = tables.layers, tables.entries
    n_layers, n_entries, n_params = len(layers), len(entries), len(tables.bias)
    for section, count in ((SectionId.LAYERS, n_layers), (SectionId.CELLS, len(tables.cell_units)),
                           (SectionId.ENTRIES, n_entries), (SectionId.OUTPUT, n_params)):
        capacity = section_capacity(config, section)
        if count > capacity:
            raise place.error(section, "record_count",
                              f"{count} {_WHAT[section]} exceed the config's capacity "
                              f"{_CAPACITY_NAMES[section]} = {capacity}")

    # LAYERS -----------------------------------------------------------------------
    def check_layer(field_name, bad, message):
        index = _first(bad)
        if index is not None:
            raise place.error(SectionId.LAYERS, field_name, message(index), index,
                              place.layer(index))

    n_inputs, n_outputs = layers["n_inputs"], layers["n_outputs"]
    act_bits, mode = layers["act_bits"], layers["mode"]
    for name, values, high, bound in (
        ("n_inputs", n_inputs, config.max_in_features, "max_in_features"),
        ("n_outputs", n_outputs, config.max_out_channels, "max_out_channels"),
        ("act_bits", act_bits, config.max_act_bits, "max_act_bits"),
    ):
        check_layer(name, (values < 1) | (values > high),
                    lambda i, values=values, high=high, bound=bound:
                    f"{values[i]} is not between 1 and {bound} ({high})")
    check_layer("mode", (mode < 0) | (mode >= len(OUTPUT_MODES)),
                lambda i: f"unknown output mode {mode[i]} (known: "
                          f"{', '.join(f'{k} = {m}' for k, m in enumerate(OUTPUT_MODES))})")
    code_max = (1 << config.max_act_bits) - 1
    for name in ("zero_point", "clamp_lo", "clamp_hi"):
        values = layers[name]
        check_layer(name, (values < 0) | (values > code_max),
                    lambda i, values=values: f"{values[i]} is not a code of max_act_bits "
                                             f"({config.max_act_bits}) bits: 0 .. {code_max}")
    requant = mode == OUTPUT_MODES.index("requant")
    check_layer("clamp_lo", requant & (layers["clamp_lo"] > layers["clamp_hi"]),
                lambda i: f"clamp_lo {layers['clamp_lo'][i]} > clamp_hi {layers['clamp_hi'][i]}")
    starts, counts = layers["entry_start"], layers["entry_count"]
    check_layer("entry_count", (counts < 0) | (starts < 0) | (starts + counts > n_entries),
                lambda i: f"entry range [{starts[i]}, {starts[i] + counts[i]}) runs past the "
                          f"ENTRIES section ({n_entries} records)")
    expected = np.cumsum(counts) - counts
    check_layer("entry_start", starts != expected,
                lambda i: f"{starts[i]}, expected {expected[i]} (the layers' entry ranges "
                          "follow each other in layer order)")
    param_starts = layers["param_start"]
    check_layer("param_start", (param_starts < 0) | (param_starts + n_outputs > n_params),
                lambda i: f"parameter range [{param_starts[i]}, "
                          f"{param_starts[i] + n_outputs[i]}) runs past the OUTPUT section "
                          f"({n_params} records)")
    expected = np.cumsum(n_outputs) - n_outputs
    check_layer("param_start", param_starts != expected,
                lambda i: f"{param_starts[i]}, expected {expected[i]} (the layers' parameter "
                          "ranges follow each other in layer order)")
    if int(counts.sum()) != n_entries:
        raise place.error(SectionId.ENTRIES, "record_count", f"{n_entries} records, but the "
                          f"layers' entry ranges cover {int(counts.sum())}")
    if int(n_outputs.sum()) != n_params:
        raise place.error(SectionId.OUTPUT, "record_count", f"{n_params} records, but the "
                          f"layers have {int(n_outputs.sum())} output channels")
    owner = np.full(config.n_xbars, -1, dtype=np.int64)
    for index in range(n_layers):
        units = np.flatnonzero(tables.xbar_masks[index])
        taken = units[owner[units] >= 0]
        if len(taken):
            raise place.error(SectionId.LAYERS, "xbar_mask", f"unit {taken[0]} is already owned "
                              f"by {place.layer(owner[taken[0]])}", index, place.layer(index))
        owner[units] = index

    # ROWMAPS ----------------------------------------------------------------------
    valid, row_index = tables.rowmap_valid, tables.rowmap_index
    rows = config.rows

    def check_row(field_name, bad, message):
        flat = _first(bad)
        if flat is not None:
            unit, row = divmod(flat, rows)
            raise place.error(SectionId.ROWMAPS, field_name, message(unit, row), flat,
                              f"unit {unit} row {row}")

    check_row("index", ~valid & (row_index != 0),
              lambda u, r: f"{row_index[u, r]} on an unused row (valid = 0), must be 0")
    check_row("valid", valid & (owner[:, None] < 0),
              lambda u, r: f"row is driven but no layer owns unit {u}")
    unit_inputs = np.where(owner >= 0, n_inputs[np.maximum(owner, 0)] if n_layers else 0, 0)
    check_row("index", valid & ((row_index < 0) | (row_index >= unit_inputs[:, None])),
              lambda u, r: f"input index {row_index[u, r]} is not below n_inputs "
                           f"({unit_inputs[u]}) of {place.layer(owner[u])}")

    # CELLS ------------------------------------------------------------------------
    cell_units = tables.cell_units
    seen: dict[int, int] = {}
    for record, unit in enumerate(cell_units.tolist()):
        detail = f"unit {unit}"
        if not 0 <= unit < config.n_xbars:
            raise place.error(SectionId.CELLS, "unit", f"unit {unit} is not below n_xbars "
                              f"({config.n_xbars})", record, detail)
        if unit in seen:
            raise place.error(SectionId.CELLS, "unit", f"unit {unit} appears twice (first in "
                              f"record {seen[unit]})", record, detail)
        if owner[unit] < 0:
            raise place.error(SectionId.CELLS, "unit", f"unit {unit} holds cells but no layer "
                              "owns it", record, detail)
        seen[unit] = record
    for unit in np.flatnonzero(owner >= 0).tolist():
        if unit not in seen:
            raise place.error(SectionId.CELLS, "unit", f"unit {unit}, owned by "
                              f"{place.layer(owner[unit])}, has no CELLS record")
    if len(cell_units):
        bad = tables.cells > config.level_max
        flat = _first(bad)
        if flat is not None:
            record, row, col = np.unravel_index(flat, bad.shape)
            raise place.error(SectionId.CELLS, f"rows.{row}.levels.{col}", f"level "
                              f"{tables.cells[record, row, col]} exceeds level_max "
                              f"({config.level_max})", int(record), f"unit {cell_units[record]}")

    # ENTRIES ----------------------------------------------------------------------
    entry_layer = np.repeat(np.arange(n_layers), counts)
    local = np.arange(n_entries) - starts[entry_layer] if n_entries else entry_layer

    def check_entry(field_name, bad, message):
        flat = _first(bad)
        if flat is not None:
            index = flat // (bad.shape[1] if bad.ndim == 2 else 1)
            raise place.error(SectionId.ENTRIES, field_name(flat) if callable(field_name)
                              else field_name, message(flat), index,
                              f"{place.layer(entry_layer[index])} entry {local[index]}")

    for name, _, width in flatten_fields(entry_layout(config)):
        values = entries[name]
        check_entry(name, (values < 0) | (values >= (1 << width)),
                    lambda i, values=values, width=width: f"{values[i]} does not fit {width} bits")
    xbar = entries["xbar"]
    check_entry("xbar", xbar >= config.n_xbars,
                lambda i: f"unit {xbar[i]} is not below n_xbars ({config.n_xbars})")
    check_entry("xbar", owner[np.minimum(xbar, config.n_xbars - 1)] != entry_layer,
                lambda i: f"unit {xbar[i]} is not owned by this layer (owner: "
                          f"{'none' if owner[xbar[i]] < 0 else place.layer(owner[xbar[i]])})")
    for name, high, bound in (("row_group", config.row_groups, "row_groups"),
                              ("col_group", config.col_groups, "col_groups")):
        values = entries[name]
        check_entry(name, values >= high,
                    lambda i, values=values, high=high, bound=bound:
                    f"{values[i]} is not below {bound} ({high})")
    slice_lo, slice_hi = entries["slice_lo"], entries["slice_hi"]
    check_entry("slice_hi", slice_hi > config.max_slices,
                lambda i: f"{slice_hi[i]} exceeds max_slices ({config.max_slices})")
    check_entry("slice_lo", slice_lo > slice_hi,
                lambda i: f"slice_lo {slice_lo[i]} > slice_hi {slice_hi[i]}")
    layer_slices = -(-act_bits // config.dac_bits)
    entry_slices = layer_slices[entry_layer] if n_entries else entry_layer
    check_entry("slice_hi", slice_hi > entry_slices,
                lambda i: f"{slice_hi[i]} is past the {entry_slices[i]} slices of the layer's "
                          f"act_bits ({act_bits[entry_layer[i]]}) at dac_bits "
                          f"({config.dac_bits})")
    ou_cols = config.ou_cols
    col_valid = np.stack([entries[f"cols.{j}.valid"] for j in range(ou_cols)], axis=1) != 0
    if n_entries:
        dest = np.stack([entries[f"cols.{j}.dest"] for j in range(ou_cols)], axis=1)
        shift = np.stack([entries[f"cols.{j}.shift"] for j in range(ou_cols)], axis=1)
        column = entries["col_group"][:, None] * ou_cols + np.arange(ou_cols)
        outputs = n_outputs[entry_layer][:, None]
        check_entry(lambda f: f"cols.{f % ou_cols}.valid", col_valid & (column >= config.cols),
                    lambda f: f"column {column.flat[f]} is past the crossbar's {config.cols} "
                              "columns")
        check_entry(lambda f: f"cols.{f % ou_cols}.dest", col_valid & (dest >= outputs),
                    lambda f: f"output channel {dest.flat[f]} is not below n_outputs "
                              f"({outputs.flat[f]}) of the layer")
        check_entry(lambda f: f"cols.{f % ou_cols}.shift",
                    col_valid & (shift >= config.max_weight_bits),
                    lambda f: f"{shift.flat[f]} is not below max_weight_bits "
                              f"({config.max_weight_bits})")

    # OUTPUT -----------------------------------------------------------------------
    param_layer = np.repeat(np.arange(n_layers), n_outputs)
    channel = np.arange(n_params) - param_starts[param_layer] if n_params else param_layer

    def check_param(field_name, bad, message):
        index = _first(bad)
        if index is not None:
            raise place.error(SectionId.OUTPUT, field_name, message(index), index,
                              f"{place.layer(param_layer[index])} channel {channel[index]}")

    low, high = -(1 << (config.acc_bits - 1)), (1 << (config.acc_bits - 1)) - 1
    bias, mult, shift = tables.bias, tables.mult, tables.shift
    check_param("bias", (bias < low) | (bias > high),
                lambda i: f"value {bias[i]} does not fit acc_bits ({config.acc_bits}) two's "
                          f"complement [{low}, {high}]")
    check_param("mult", (mult < 0) | (mult >= (1 << MULT_BITS)),
                lambda i: f"value {mult[i]} does not fit {MULT_BITS} bits unsigned")
    check_param("shift", (shift < 0) | (shift >= (1 << SHIFT_BITS)),
                lambda i: f"value {shift[i]} does not fit {SHIFT_BITS} bits unsigned")


# ------------------------------------------------------------------------- program -> tables
def image_tables(program: Program) -> ParsedImage:
    """Flatten a :class:`Program` into image tables and validate them against its config.

    Raises
    ------
    BundleError
        On a malformed layer program (shapes, dtypes, duplicate or out-of-range units) or a
        field out of range for the config; the message names the section, field, layer and
        record.
    """
    config = program.config
    if not isinstance(config, AcceleratorConfig):
        raise BundleError(f"program: config must be an AcceleratorConfig, not {config!r}")
    place = _Place("program", [layer.name for layer in program.layers])
    layers = program.layers
    names = [layer.name for layer in layers]
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise place.error(SectionId.LAYERS, "name", f"layer name {name!r} must be a "
                              "non-empty string", index)
        if names.index(name) != index:
            raise place.error(SectionId.LAYERS, "name", f"layer name {name!r} appears twice",
                              index)
    totals = {
        SectionId.LAYERS: len(layers),
        SectionId.CELLS: sum(len(np.asarray(layer.xbars).reshape(-1)) for layer in layers),
        SectionId.ENTRIES: sum(len(layer.entries) for layer in layers),
    }
    totals[SectionId.OUTPUT] = 0
    for index, layer in enumerate(layers):
        totals[SectionId.OUTPUT] += _as_int(layer.n_outputs, f"program: layer {layer.name!r} "
                                            "n_outputs")
    for section, total in totals.items():
        capacity = section_capacity(config, section)
        if total > capacity:
            raise place.error(section, "record_count",
                              f"the program needs {total} {_WHAT[section]}, the config allows "
                              f"{_CAPACITY_NAMES[section]} = {capacity}")

    entry_dtype = numpy_dtype(entry_layout(config))
    table = np.zeros(len(layers), dtype=_layers_dtype(config))
    masks = np.zeros((len(layers), config.n_xbars), dtype=bool)
    valid = np.zeros((config.n_xbars, config.rows), dtype=bool)
    row_index = np.zeros((config.n_xbars, config.rows), dtype=np.int64)
    units_all, cells_all, entries_all = [], [], []
    bias_all, mult_all, shift_all = [], [], []
    owner: dict[int, int] = {}
    entry_start = param_start = 0
    for index, layer in enumerate(layers):
        label = place.layer(index)
        record = table[index]
        for name in ("n_inputs", "n_outputs", "act_bits", "zero_point", "clamp_lo", "clamp_hi"):
            record[name] = _as_int(getattr(layer, name), f"program: {label} {name}")
        if layer.mode not in OUTPUT_MODES:
            raise place.error(SectionId.LAYERS, "mode", f"unknown mode {layer.mode!r} (known: "
                              f"{', '.join(OUTPUT_MODES)})", index, label)
        record["mode"] = OUTPUT_MODES.index(layer.mode)
        record["entry_start"], record["entry_count"] = entry_start, len(layer.entries)
        record["param_start"] = param_start
        entry_start += len(layer.entries)
        param_start += int(layer.n_outputs)

        xbars = np.asarray(layer.xbars)
        if xbars.ndim != 1 or (len(xbars) and not np.issubdtype(xbars.dtype, np.integer)):
            raise place.error(SectionId.LAYERS, "xbar_mask", f"xbars must be a 1-D integer "
                              f"array, got shape {xbars.shape} dtype {xbars.dtype}", index, label)
        xbars = xbars.astype(np.int64)
        for unit in xbars.tolist():
            if not 0 <= unit < config.n_xbars:
                raise place.error(SectionId.LAYERS, "xbar_mask", f"unit {unit} is not below "
                                  f"n_xbars ({config.n_xbars})", index, label)
            if unit in owner:
                whose = "this layer" if owner[unit] == index else place.layer(owner[unit])
                raise place.error(SectionId.LAYERS, "xbar_mask", f"unit {unit} is already "
                                  f"owned by {whose}", index, label)
            owner[unit] = index
        masks[index, xbars] = True

        count = len(xbars)
        row_maps = np.asarray(layer.row_maps)
        if row_maps.shape != (count, config.rows) or (
                row_maps.size and not np.issubdtype(row_maps.dtype, np.integer)):
            raise place.error(SectionId.ROWMAPS, "index", f"row_maps must be an integer array of "
                              f"shape {(count, config.rows)}, got {row_maps.shape} "
                              f"{row_maps.dtype}", detail=label)
        bad = np.argwhere(row_maps < -1)
        if len(bad):
            position, row = bad[0]
            raise place.error(SectionId.ROWMAPS, "index", f"row map value "
                              f"{row_maps[position, row]} (use -1 for an unused row)",
                              int(xbars[position]) * config.rows + int(row),
                              f"{label} unit {xbars[position]} row {row}")
        valid[xbars] = row_maps >= 0
        row_index[xbars] = np.maximum(row_maps, 0)

        cells = np.asarray(layer.cells)
        if cells.shape != (count, config.rows, config.cols) or (
                cells.size and not np.issubdtype(cells.dtype, np.integer)):
            raise place.error(SectionId.CELLS, "rows", f"cells must be an integer array of "
                              f"shape {(count, config.rows, config.cols)}, got {cells.shape} "
                              f"{cells.dtype}", detail=label)
        bad = np.argwhere((cells < 0) | (cells > config.level_max))
        if len(bad):
            position, row, col = bad[0]
            raise place.error(SectionId.CELLS, f"rows.{row}.levels.{col}", f"level "
                              f"{cells[position, row, col]} is not in 0 .. level_max "
                              f"({config.level_max})",
                              sum(map(len, units_all)) + int(position),
                              f"{label} unit {xbars[position]} row {row} col {col}")
        units_all.append(xbars)
        cells_all.append(cells.astype(np.uint8))

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
        entries_all.append(converted)

        for name, store in (("bias", bias_all), ("mult", mult_all), ("shift", shift_all)):
            values = np.asarray(getattr(layer, name))
            if values.shape != (int(layer.n_outputs),) or (
                    values.size and not np.issubdtype(values.dtype, np.integer)):
                raise place.error(SectionId.OUTPUT, name, f"must be an integer array of shape "
                                  f"({layer.n_outputs},), got {values.shape} {values.dtype}",
                                  detail=label)
            store.append(values.astype(np.int64))

    def joined(parts, empty):
        return np.concatenate(parts) if parts else empty

    tables = ParsedImage(
        config=config,
        layers=table,
        xbar_masks=masks,
        rowmap_valid=valid,
        rowmap_index=row_index,
        cell_units=joined(units_all, np.zeros(0, np.int64)),
        cells=joined(cells_all, np.zeros((0, config.rows, config.cols), np.uint8)),
        entries=joined(entries_all, np.zeros(0, entry_dtype)),
        bias=joined(bias_all, np.zeros(0, np.int64)),
        mult=joined(mult_all, np.zeros(0, np.int64)),
        shift=joined(shift_all, np.zeros(0, np.int64)),
    )
    _validate(tables, place)
    return tables


# ------------------------------------------------------------------------- encoding
def encode_sections(tables: ParsedImage) -> list[tuple[SectionId, bytes, int, int]]:
    """Pack the tables into ``(section, payload, record_bytes, record_count)`` in image order.

    Only checks that values fit their fields (no semantic validation, so tests can build
    well-formed but invalid images); :func:`encode_image` validates first.
    """
    config = tables.config
    place = _Place("image tables")
    sections = []

    layout = layer_layout(config)
    columns = {name: tables.layers[name] for name in tables.layers.dtype.names}
    columns["xbar_mask"] = tables.xbar_masks.astype(np.uint8)
    sections.append((SectionId.LAYERS, _pack_records(place, SectionId.LAYERS, layout,
                                                     len(tables.layers), columns)))

    layout = section_layout(config, SectionId.ROWMAPS)
    records = np.zeros(config.n_xbars * config.rows, dtype=numpy_dtype(layout))
    records["valid"] = tables.rowmap_valid.reshape(-1)
    records["index"] = tables.rowmap_index.reshape(-1)
    sections.append((SectionId.ROWMAPS, _pack_records(
        place, SectionId.ROWMAPS, layout, len(records),
        {name: records[name] for name in records.dtype.names})))

    sections.append((SectionId.CELLS, _pack_cells(config, tables.cell_units, tables.cells)))

    layout = entry_layout(config)
    try:
        payload = pack(layout, tables.entries)
    except ValueError as error:
        raise BundleError(f"image tables: section ENTRIES: {error}") from None
    sections.append((SectionId.ENTRIES, payload))

    layout = section_layout(config, SectionId.OUTPUT)
    bias_bits = value_bits(tables.bias, config.acc_bits)
    sections.append((SectionId.OUTPUT, _pack_records(
        place, SectionId.OUTPUT, layout, len(tables.bias),
        {"bias": bias_bits, "mult": tables.mult, "shift": tables.shift})))

    out = []
    for section, payload in sections:
        size = record_bytes(section_layout(config, section))
        out.append((section, payload, size, len(payload) // size))
    return out


def _header_codec():
    return struct_format(HEADER_LAYOUT)


def _table_codec():
    return struct_format(SECTION_ENTRY_LAYOUT)


def assemble_image(config: AcceleratorConfig,
                   sections: list[tuple[SectionId, bytes, int, int]]) -> bytes:
    """Lay out header, section table and payloads (4-byte aligned, zero padded) with CRCs."""
    header_format, header_names = _header_codec()
    table_format, table_names = _table_codec()
    table_end = HEADER_BYTES + len(sections) * SECTION_ENTRY_BYTES
    offset = align(table_end)
    rows, body = [], bytearray(offset - table_end)
    for section, payload, size, count in sections:
        rows.append({"id": int(section), "flags": 0, "offset": offset, "length": len(payload),
                     "record_bytes": size, "record_count": count, "crc": crc32(payload)})
        body += payload
        body += bytes(align(len(payload)) - len(payload))
        offset = align(offset + len(payload))
    table = b"".join(struct.pack(table_format, *(row[name] for name in table_names))
                     for row in rows)
    values = {
        "magic": MAGIC_WORD, "version": FORMAT_VERSION, "header_bytes": HEADER_BYTES,
        "section_count": len(sections), "table_entry_bytes": SECTION_ENTRY_BYTES,
        "image_bytes": offset, "table_crc": crc32(table), "header_crc": 0,
    }
    for index, byte in enumerate(config_digest_bytes(config)):
        values[f"digest.{index}"] = byte
    header = struct.pack(header_format, *(values[name] for name in header_names))
    crc_at = HEADER_LAYOUT["header_crc"].offset // 8
    values["header_crc"] = crc32(header[:crc_at])
    header = struct.pack(header_format, *(values[name] for name in header_names))
    return header + table + bytes(body)


def encode_image(program: Program) -> bytes:
    """Validate ``program`` against its config and return the bytes of ``image.bin``.

    Raises
    ------
    BundleError
        When a field does not fit the config (see :func:`image_tables`).
    """
    tables = image_tables(program)
    return assemble_image(program.config, encode_sections(tables))


# ------------------------------------------------------------------------- parsing
def parse_image(blob: bytes, config: AcceleratorConfig, *, source: str = IMAGE_FILE,
                layer_names: list[str] | None = None) -> ParsedImage:
    """Decode and validate an image for ``config``.

    ``source`` names the image in error messages; ``layer_names`` (optional, e.g. from the
    manifest) label layer records in them.

    Checks, in stream order: header length, magic, version, header size, header CRC, config
    digest, section-table size and CRC, image length (truncation, trailing bytes), every
    table entry (known and unique ids, record size and count, alignment, bounds, overlap,
    placement), zero padding, section CRCs, reserved bits, then every record's fields (see
    docs/bundle.md). Any single changed byte is detected.

    Raises
    ------
    BundleError
        Naming ``source``, the header field or the section, record and field at fault.
    """
    blob = bytes(blob)
    place = _Place(source, layer_names)
    header_format, header_names = _header_codec()

    def header_error(name: str, message: str) -> BundleError:
        return place.error("header", name, message)

    def read_field(name: str) -> int:
        member = HEADER_LAYOUT[name]
        start = member.offset // 8
        return int.from_bytes(blob[start:start + Shape.cast(member.shape).width // 8], "little")

    prefix = HEADER_LAYOUT["digest"].offset // 8
    if len(blob) < prefix:
        raise header_error("magic", f"truncated header: the image has {len(blob)} bytes, the "
                                    f"header needs {HEADER_BYTES}")
    if read_field("magic") != MAGIC_WORD:
        raise header_error("magic", f"bad magic {blob[:4]!r}, expected {MAGIC!r}")
    if read_field("version") != FORMAT_VERSION:
        raise header_error("version", f"unknown format version {read_field('version')} (this "
                                      f"reader knows version {FORMAT_VERSION})")
    if read_field("header_bytes") != HEADER_BYTES:
        raise header_error("header_bytes", f"{read_field('header_bytes')}, expected "
                                           f"{HEADER_BYTES} for version {FORMAT_VERSION}")
    if len(blob) < HEADER_BYTES:
        raise header_error("header_bytes", f"truncated header: the image has {len(blob)} "
                                           f"bytes, the header needs {HEADER_BYTES}")
    header = dict(zip(header_names, struct.unpack(header_format, blob[:HEADER_BYTES])))
    crc_at = HEADER_LAYOUT["header_crc"].offset // 8
    computed = crc32(blob[:crc_at])
    if computed != header["header_crc"]:
        raise header_error("header_crc", f"CRC mismatch: stored 0x{header['header_crc']:08x}, "
                                         f"computed 0x{computed:08x}")
    digest = bytes(header[f"digest.{i}"] for i in range(DIGEST_BYTES))
    if digest != config_digest_bytes(config):
        raise header_error("digest", f"config digest mismatch: the image was built for config "
                                     f"{digest.hex()}..., this config is "
                                     f"{config_digest_bytes(config).hex()}...")
    if header["table_entry_bytes"] != SECTION_ENTRY_BYTES:
        raise header_error("table_entry_bytes", f"{header['table_entry_bytes']}, expected "
                                                f"{SECTION_ENTRY_BYTES}")
    count = header["section_count"]
    table_end = HEADER_BYTES + count * SECTION_ENTRY_BYTES
    image_bytes = header["image_bytes"]
    if len(blob) > image_bytes:
        raise header_error("image_bytes", f"{image_bytes}, but the image has {len(blob)} bytes "
                                          "(trailing data)")
    if len(blob) < table_end:
        raise place.error("section table", "section_count",
                          f"truncated: {count} entries need bytes [{HEADER_BYTES}, {table_end}), "
                          f"the image has only {len(blob)} bytes")
    if image_bytes < table_end:
        raise header_error("image_bytes", f"{image_bytes} is smaller than the header and "
                                          f"section table ({table_end} bytes)")
    table_blob = blob[HEADER_BYTES:table_end]
    computed = crc32(table_blob)
    if computed != header["table_crc"]:
        raise header_error("table_crc", f"section table CRC mismatch: stored "
                                        f"0x{header['table_crc']:08x}, computed 0x{computed:08x}")
    table_format, table_names = _table_codec()
    rows = [dict(zip(table_names, struct.unpack_from(table_format, table_blob,
                                                     i * SECTION_ENTRY_BYTES)))
            for i in range(count)]
    if len(blob) < image_bytes:
        for row in rows:
            if row["offset"] + row["length"] > len(blob) and row["id"] in _KNOWN_IDS:
                raise place.error(f"section {SectionId(row['id']).name}", "length",
                                  f"truncated: the section needs bytes [{row['offset']}, "
                                  f"{row['offset'] + row['length']}), the image has only "
                                  f"{len(blob)} of its {image_bytes} bytes")
        raise header_error("image_bytes", f"truncated: the image has {len(blob)} of its "
                                          f"{image_bytes} bytes")

    sections: dict[SectionId, SectionInfo] = {}
    for index, row in enumerate(rows):
        def table_error(name, message):
            return place.error(f"section table entry {index}", name, message)

        if row["id"] not in _KNOWN_IDS:
            raise table_error("id", f"unknown section id {row['id']}")
        section = SectionId(row["id"])
        if section in sections:
            raise table_error("id", f"section {section.name} (id {row['id']}) appears twice")
        if row["flags"]:
            raise table_error("flags", f"{row['flags']:#x}, reserved flags must be 0")
        size = record_bytes(section_layout(config, section))
        if row["record_bytes"] != size:
            raise table_error("record_bytes", f"{row['record_bytes']} for section "
                                              f"{section.name}, the config gives {size}")
        if row["length"] != row["record_count"] * size:
            raise table_error("length", f"{row['length']} bytes is not record_count "
                                        f"({row['record_count']}) x record_bytes ({size})")
        if row["offset"] % 4:
            raise table_error("offset", f"{row['offset']} is not 4-byte aligned")
        if row["offset"] < table_end or row["offset"] + row["length"] > image_bytes:
            raise table_error("offset", f"section {section.name} [{row['offset']}, "
                                        f"{row['offset'] + row['length']}) is out of bounds: "
                                        f"payloads lie in [{table_end}, {image_bytes})")
        sections[section] = SectionInfo(section, row["offset"], row["length"], size,
                                        row["record_count"], row["crc"])
    missing = [section.name for section in SectionId if section not in sections]
    if missing:
        raise place.error("section table", "id", f"missing section(s) {', '.join(missing)}")
    ordered = sorted(sections.values(), key=lambda info: info.offset)
    for before, after in zip(ordered, ordered[1:]):
        if after.offset < before.offset + before.length:
            raise place.error(f"section {after.name}", "offset",
                              f"[{after.offset}, {after.offset + after.length}) overlaps section "
                              f"{before.name} [{before.offset}, {before.offset + before.length})")
    expected = align(table_end)
    for info in sections.values():  # table order is stream order
        if info.offset != expected:
            raise place.error(f"section {info.name}", "offset",
                              f"{info.offset}, expected {expected} (sections follow the table in "
                              "table order, each at the next 4-byte boundary)")
        expected = align(info.offset + info.length)
    if image_bytes != expected:
        raise header_error("image_bytes", f"{image_bytes}, but the last section ends at "
                                          f"{expected} (aligned)")
    gaps = [(table_end, align(table_end), "section table")]
    gaps += [(info.offset + info.length, align(info.offset + info.length), f"section {info.name}")
             for info in sections.values()]
    for start, end, after in gaps:
        for position in range(start, end):
            if blob[position]:
                raise place.error("padding", "byte", f"byte {position} after the {after} is "
                                  f"0x{blob[position]:02x}, padding must be 0")
    payloads = {}
    for info in sections.values():
        payload = blob[info.offset:info.offset + info.length]
        computed = crc32(payload)
        if computed != info.crc:
            raise place.error(info.section, "crc", f"CRC mismatch: stored 0x{info.crc:08x}, "
                                                   f"computed 0x{computed:08x}")
        payloads[info.section] = payload

    tables = _decode_sections(config, payloads, place)
    tables.sections = sections
    _validate(tables, place)
    return tables


def _decode_sections(config: AcceleratorConfig, payloads: dict[SectionId, bytes],
                     place: _Place) -> ParsedImage:
    layout = layer_layout(config)
    bits = _record_bits(layout, payloads[SectionId.LAYERS])
    layers = np.zeros(len(bits), dtype=_layers_dtype(config))
    masks = np.zeros((len(bits), config.n_xbars), dtype=bool)
    for name, offset, width in flatten_fields(layout):
        if name == "xbar_mask":
            masks = bits[:, offset:offset + width].astype(bool)
        else:
            layers[name] = _field_value(bits, offset, width)

    layout = section_layout(config, SectionId.ROWMAPS)
    records = unpack(layout, payloads[SectionId.ROWMAPS])
    expected = section_capacity(config, SectionId.ROWMAPS)
    if len(records) != expected:
        raise place.error(SectionId.ROWMAPS, "record_count", f"{len(records)} records, "
                          f"expected n_xbars * rows = {expected}")
    valid = records["valid"].reshape(config.n_xbars, config.rows).astype(bool)
    row_index = records["index"].reshape(config.n_xbars, config.rows)

    units, cells = _unpack_cells(config, payloads[SectionId.CELLS], place)

    entries = unpack(entry_layout(config), payloads[SectionId.ENTRIES])

    layout = section_layout(config, SectionId.OUTPUT)
    bits = _record_bits(layout, payloads[SectionId.OUTPUT])
    fields = {name: (offset, width) for name, offset, width in flatten_fields(layout)}
    bias = _field_value(bits, *fields["bias"], signed=True)
    mult = _field_value(bits, *fields["mult"])
    shift = _field_value(bits, *fields["shift"])
    return ParsedImage(config=config, layers=layers, xbar_masks=masks, rowmap_valid=valid,
                       rowmap_index=row_index, cell_units=units, cells=cells, entries=entries,
                       bias=bias, mult=mult, shift=shift)


# ------------------------------------------------------------------------- manifest
def _json_safe(value, where: str):
    """Return ``value`` as plain JSON types (tuples -> lists, numpy scalars -> Python)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist(), where)
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, np.integer)):
                raise BundleError(f"{MANIFEST_FILE}: {where}: key {key!r} is not a string")
            out[str(key)] = _json_safe(item, f"{where}.{key}")
        return out
    raise BundleError(f"{MANIFEST_FILE}: {where}: cannot store a {type(value).__name__} "
                      f"({value!r}) in JSON")


def _tuples(value):
    """Inverse of :func:`_json_safe` for IR attributes: lists become tuples."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    return value


def _act_dict(params: ActParams | None):
    if params is None:
        return None
    return {"bits": int(params.bits), "scale": float(params.scale),
            "zero_point": int(params.zero_point)}


def _bitline_version() -> str:
    try:
        return metadata.version("bitline")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_manifest(program: Program, qmodel: QuantizedModel, tables: ParsedImage,
                   image: bytes) -> dict:
    """Return the manifest of a bundle (``tables`` with sections as parsed from ``image``)."""
    config = program.config
    model = qmodel.model
    compute_names = [layer.name for layer in model.compute_layers]
    layers_out = []
    for layer in model.layers:
        where = f"layers.{layer.name}"
        quant = qmodel.layers.get(layer.name)
        item = {
            "name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
            "output": layer.output,
            "input_shape": _json_safe(layer.input_shape, f"{where}.input_shape"),
            "output_shape": _json_safe(layer.output_shape, f"{where}.output_shape"),
            "attrs": _json_safe(layer.attrs, f"{where}.attrs"),
            "activation": layer.activation,
            "reference": (f"L{compute_names.index(layer.name)}" if layer.is_compute else None),
            "quant": None,
        }
        if quant is not None:
            entry = {
                "inputs": [_act_dict(params) for params in quant.inputs],
                "output": _act_dict(quant.output),
                "mode": quant.mode, "clamp_lo": int(quant.clamp_lo),
                "clamp_hi": int(quant.clamp_hi),
            }
            if not layer.is_compute:
                entry["mult"] = _json_safe(quant.mult, f"{where}.mult")
                entry["shift"] = _json_safe(quant.shift, f"{where}.shift")
            if quant.weight is not None:
                entry["weight_options"] = _json_safe(quant.weight.options,
                                                     f"{where}.weight.options")
            item["quant"] = entry
        layers_out.append(item)

    regions = []
    for index, layer in enumerate(program.layers):
        record = tables.layers[index]
        regions.append({
            "name": layer.name,
            "units": [int(unit) for unit in np.asarray(layer.xbars).reshape(-1)],
            "entries": [int(record["entry_start"]), int(record["entry_count"])],
            "params": [int(record["param_start"]), int(record["n_outputs"])],
            "n_inputs": int(record["n_inputs"]), "n_outputs": int(record["n_outputs"]),
            "act_bits": int(record["act_bits"]), "mode": layer.mode,
            "zero_point": int(record["zero_point"]), "clamp_lo": int(record["clamp_lo"]),
            "clamp_hi": int(record["clamp_hi"]),
            "stats": _json_safe(layer.stats, f"program.{layer.name}.stats"),
        })
    return {
        "bitline_version": _bitline_version(),
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "config_digest": config.digest,
        "strategy": program.strategy,
        "model": {
            "name": model.name, "source": model.source, "input_name": model.input_name,
            "input_shape": _json_safe(model.input_shape, "model.input_shape"),
            "output_name": model.output_name,
            "output_shape": _json_safe(model.output_shape, "model.output_shape"),
        },
        "input": _act_dict(qmodel.input),
        "quant_spec": _json_safe(qmodel.spec, "quant_spec"),
        "layers": layers_out,
        "program": regions,
        "totals": {
            "layers": len(program.layers), "units": int(len(tables.cell_units)),
            "entries": int(len(tables.entries)), "params": int(len(tables.bias)),
            "image_bytes": len(image),
        },
        "sections": [info.to_dict() for info in tables.sections.values()],
        "files": {"image": IMAGE_FILE, "image_sha256": hashlib.sha256(image).hexdigest(),
                  "reference": REFERENCE_FILE},
    }


def _reference_arrays(qmodel: QuantizedModel) -> dict[str, np.ndarray]:
    arrays = {}
    for index, layer in enumerate(qmodel.model.compute_layers):
        prefix = f"L{index}"
        quant = qmodel.layers.get(layer.name)
        weight = quant.weight if quant is not None else None
        if weight is not None:
            arrays[f"{prefix}.values"] = np.asarray(weight.values, dtype=np.int64)
            arrays[f"{prefix}.scale"] = np.asarray(weight.scale, dtype=np.float64)
            arrays[f"{prefix}.scheme"] = np.asarray(weight.scheme, dtype=str)
            arrays[f"{prefix}.bits"] = np.asarray(weight.bits, dtype=np.int64)
        elif layer.weight is not None:
            arrays[f"{prefix}.ir_weight"] = np.asarray(layer.weight)
        if layer.bias is not None:
            arrays[f"{prefix}.ir_bias"] = np.asarray(layer.bias)
        if quant is not None:
            for name in ("bias", "mult", "shift", "block_bits", "act_block_bits"):
                value = getattr(quant, name)
                if value is not None:
                    arrays[f"{prefix}.{name}"] = np.asarray(value, dtype=np.int64)
    return arrays


def write_bundle(out_dir: str | Path, program: Program, qmodel: QuantizedModel) -> Path:
    """Write ``image.bin``, ``reference.npz`` and ``manifest.json`` into ``out_dir``.

    Parameters
    ----------
    out_dir:
        Bundle directory (created if needed; existing bundle files are replaced).
    program:
        The mapped program; every field is range-checked against ``program.config``.
    qmodel:
        The quantized model the program was mapped from (graph, activation parameters and
        integer weights for the manifest and the reference file).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    BundleError
        When the program does not fit the config (naming section, layer, record and field),
        names a layer the model does not have as a compute layer, or holds values that
        cannot be stored.
    """
    out = Path(out_dir)
    model = qmodel.model
    compute = {layer.name: layer for layer in model.compute_layers}
    for layer in program.layers:
        if layer.name not in compute:
            raise BundleError(f"program: layer {layer.name!r} is not a compute layer of model "
                              f"{model.name!r}")
        weight = compute[layer.name].weight
        if weight is not None and weight.shape[0] != layer.n_outputs:
            raise BundleError(f"program: layer {layer.name!r} has n_outputs {layer.n_outputs}, "
                              f"the model's weight has {weight.shape[0]} output channels")
    tables = image_tables(program)
    image = assemble_image(program.config, encode_sections(tables))
    tables.sections = parse_image(image, program.config).sections
    manifest = build_manifest(program, qmodel, tables, image)
    text = json.dumps(manifest, indent=1)
    arrays = _reference_arrays(qmodel)
    out.mkdir(parents=True, exist_ok=True)
    (out / IMAGE_FILE).write_bytes(image)
    with open(out / REFERENCE_FILE, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    (out / MANIFEST_FILE).write_text(text + "\n")
    return out


# ------------------------------------------------------------------------- reading
class _Manifest:
    """Typed access to manifest keys with errors naming the key path."""

    def __init__(self, source: str):
        self.source = source

    def get(self, mapping, key, kind, where: str):
        if not isinstance(mapping, dict) or key not in mapping:
            raise BundleError(f"{self.source}: missing key {where}{key}")
        value = mapping[key]
        if kind is not None and not isinstance(value, kind):
            raise BundleError(f"{self.source}: {where}{key} must be "
                              f"{getattr(kind, '__name__', kind)}, not {value!r}")
        return value

    def act(self, value, where: str) -> ActParams | None:
        if value is None:
            return None
        try:
            return ActParams(bits=int(value["bits"]), scale=float(value["scale"]),
                             zero_point=int(value["zero_point"]))
        except (KeyError, TypeError, ValueError):
            raise BundleError(f"{self.source}: {where} must be an object with bits, scale and "
                              f"zero_point, not {value!r}") from None


def _rebuild_program(parsed: ParsedImage, manifest: dict, keys: _Manifest) -> Program:
    config = parsed.config
    regions = keys.get(manifest, "program", list, "")
    if len(regions) != len(parsed.layers):
        raise BundleError(f"{keys.source}: program lists {len(regions)} layers, {IMAGE_FILE} "
                          f"section LAYERS has {len(parsed.layers)} records")
    record_of_unit = {int(unit): index for index, unit in enumerate(parsed.cell_units)}
    layers = []
    for index, region in enumerate(regions):
        where = f"program[{index}]."
        name = keys.get(region, "name", str, where)
        units = keys.get(region, "units", list, where)
        if sorted(units) != parsed.layer_units(index).tolist() or len(set(units)) != len(units):
            raise BundleError(f"{keys.source}: {where}units {units} disagree with {IMAGE_FILE} "
                              f"section LAYERS record {index} field xbar_mask "
                              f"{parsed.layer_units(index).tolist()}")
        record = parsed.layers[index]
        for key, start, count in (("entries", "entry_start", "entry_count"),
                                  ("params", "param_start", "n_outputs")):
            stored = keys.get(region, key, list, where)
            actual = [int(record[start]), int(record[count])]
            if stored != actual:
                raise BundleError(f"{keys.source}: {where}{key} {stored} disagree with "
                                  f"{IMAGE_FILE} section LAYERS record {index} fields {start}, "
                                  f"{count} {actual}")
        xbars = np.asarray(units, dtype=np.int64)
        entry_start, entry_count = int(record["entry_start"]), int(record["entry_count"])
        param_start, n_outputs = int(record["param_start"]), int(record["n_outputs"])
        params = slice(param_start, param_start + n_outputs)
        layers.append(LayerProgram(
            name=name,
            n_inputs=int(record["n_inputs"]),
            n_outputs=n_outputs,
            act_bits=int(record["act_bits"]),
            xbars=xbars,
            row_maps=parsed.row_maps[xbars],
            cells=parsed.cells[[record_of_unit[unit] for unit in units]].reshape(
                len(units), config.rows, config.cols),
            entries=parsed.entries[entry_start:entry_start + entry_count].copy(),
            bias=parsed.bias[params].copy(),
            mult=parsed.mult[params].copy(),
            shift=parsed.shift[params].copy(),
            mode=OUTPUT_MODES[int(record["mode"])],
            zero_point=int(record["zero_point"]),
            clamp_lo=int(record["clamp_lo"]),
            clamp_hi=int(record["clamp_hi"]),
            stats=keys.get(region, "stats", dict, where),
        ))
    return Program(config=config, strategy=keys.get(manifest, "strategy", str, ""),
                   layers=layers)


def _rebuild_qmodel(manifest: dict, arrays: dict[str, np.ndarray], keys: _Manifest,
                    reference: str) -> QuantizedModel:
    model_info = keys.get(manifest, "model", dict, "")
    layers, quant_layers = [], {}

    def array(prefix, name, required=False):
        key = f"{prefix}.{name}"
        if key in arrays:
            return arrays[key]
        if required:
            raise BundleError(f"{reference}: missing array {key!r}")
        return None

    for index, item in enumerate(keys.get(manifest, "layers", list, "")):
        where = f"layers[{index}]."
        layer = Layer(
            name=keys.get(item, "name", str, where),
            op=keys.get(item, "op", str, where),
            inputs=list(keys.get(item, "inputs", list, where)),
            output=keys.get(item, "output", str, where),
            input_shape=tuple(keys.get(item, "input_shape", list, where)),
            output_shape=tuple(keys.get(item, "output_shape", list, where)),
            attrs=_tuples(keys.get(item, "attrs", dict, where)),
            activation=keys.get(item, "activation", None, where),
        )
        prefix = item.get("reference")
        weight = None
        if prefix is not None:
            values = array(prefix, "values")
            if values is not None:
                scheme, bits = array(prefix, "scheme", True), array(prefix, "bits", True)
                quant_info = item.get("quant") or {}
                weight = QuantizedTensor(
                    values=values.astype(np.int64),
                    scale=array(prefix, "scale", True).astype(np.float64),
                    scheme=str(scheme) if scheme.ndim == 0 else scheme,
                    bits=int(bits) if bits.ndim == 0 else bits.astype(np.int64),
                    options=dict(quant_info.get("weight_options") or {}),
                )
                layer.weight = weight.dequantize()
            else:
                layer.weight = array(prefix, "ir_weight")
            layer.bias = array(prefix, "ir_bias")
        layers.append(layer)
        quant = item.get("quant")
        if quant is None:
            continue
        qwhere = f"{where}quant."
        inputs = [keys.act(value, f"{qwhere}inputs[{i}]")
                  for i, value in enumerate(keys.get(quant, "inputs", list, qwhere))]

        def ints(value):
            return None if value is None else np.asarray(value, dtype=np.int64)

        if prefix is not None:
            mult, shift = ints(array(prefix, "mult")), ints(array(prefix, "shift"))
        else:
            mult, shift = ints(quant.get("mult")), ints(quant.get("shift"))
        quant_layers[layer.name] = QuantLayer(
            layer=layer,
            inputs=inputs,
            output=keys.act(keys.get(quant, "output", None, qwhere), f"{qwhere}output"),
            weight=weight,
            bias=ints(array(prefix, "bias")) if prefix is not None else None,
            mult=mult,
            shift=shift,
            mode=keys.get(quant, "mode", str, qwhere),
            clamp_lo=keys.get(quant, "clamp_lo", int, qwhere),
            clamp_hi=keys.get(quant, "clamp_hi", int, qwhere),
            block_bits=ints(array(prefix, "block_bits")) if prefix is not None else None,
            act_block_bits=(ints(array(prefix, "act_block_bits"))
                            if prefix is not None else None),
        )
    model = Model(
        name=keys.get(model_info, "name", str, "model."),
        input_name=keys.get(model_info, "input_name", str, "model."),
        input_shape=tuple(keys.get(model_info, "input_shape", list, "model.")),
        layers=layers,
        output_name=keys.get(model_info, "output_name", str, "model."),
        source=model_info.get("source", "<memory>"),
    )
    return QuantizedModel(model=model, input=keys.act(keys.get(manifest, "input", dict, ""),
                                                      "input"),
                          layers=quant_layers, spec=manifest.get("quant_spec") or {})


def read_bundle(out_dir: str | Path) -> Bundle:
    """Read and validate a bundle directory written by :func:`write_bundle`.

    The manifest's format version and config are checked first, then the image is parsed
    against that config (:func:`parse_image`), its SHA-256 and section table compared with
    the manifest, and the program and quantized model rebuilt.

    Raises
    ------
    BundleError
        Naming the file and the section / key / field at fault.
    """
    root = Path(out_dir)
    manifest_path, image_path = root / MANIFEST_FILE, root / IMAGE_FILE
    reference_path = root / REFERENCE_FILE
    keys = _Manifest(str(manifest_path))
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{manifest_path}: not found (not a bundle directory?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path}: not valid JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: must hold a JSON object")
    version = keys.get(manifest, "format_version", int, "")
    if version != FORMAT_VERSION:
        raise BundleError(f"{manifest_path}: format_version: unknown format version {version} "
                          f"(this reader knows version {FORMAT_VERSION})")
    try:
        config = AcceleratorConfig.from_dict(keys.get(manifest, "config", dict, ""),
                                             source=f"{manifest_path}: config")
    except BundleError:
        raise
    except (ValueError, TypeError) as error:
        raise BundleError(str(error)) from None
    if manifest.get("config_digest", config.digest) != config.digest:
        raise BundleError(f"{manifest_path}: config_digest {manifest['config_digest']} is not "
                          f"the digest of its config ({config.digest})")
    try:
        image = image_path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{image_path}: not found") from None
    regions = manifest.get("program")
    names = ([region.get("name") for region in regions if isinstance(region, dict)]
             if isinstance(regions, list) else None)
    parsed = parse_image(image, config, source=str(image_path), layer_names=names)
    files = keys.get(manifest, "files", dict, "")
    digest = keys.get(files, "image_sha256", str, "files.")
    if hashlib.sha256(image).hexdigest() != digest:
        raise BundleError(f"{manifest_path}: files.image_sha256 does not match {image_path} "
                          "(image and manifest come from different compilations)")
    summary = [info.to_dict() for info in parsed.sections.values()]
    if keys.get(manifest, "sections", list, "") != summary:
        raise BundleError(f"{manifest_path}: sections disagree with the section table of "
                          f"{image_path}")
    program = _rebuild_program(parsed, manifest, keys)
    try:
        with np.load(reference_path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise BundleError(f"{reference_path}: not found") from None
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise BundleError(f"{reference_path}: not a readable npz file: {error}") from None
    qmodel = _rebuild_qmodel(manifest, arrays, keys, str(reference_path))
    compute = {layer.name for layer in qmodel.model.compute_layers}
    for layer in program.layers:
        if layer.name not in compute:
            raise BundleError(f"{manifest_path}: program layer {layer.name!r} is not a compute "
                              "layer of the model's layers")
    return Bundle(program=program, qmodel=qmodel, manifest=manifest, image=image,
                  parsed=parsed, path=root)
