"""``image.bin`` bytes: encode program tables into an image and parse an image back.

The byte layout is :mod:`bitline.hw.spec.image` (docs/bundle.md has the byte tables). The
encoder packs :class:`~bitline.sw.bundle.tables.ParsedImage` records into sections and lays
out header, section table and payloads with their CRCs; the parser checks the stream in
order (header, section table, placement and padding, CRCs, reserved bits), decodes the
sections and hands the records to the contract's validator. Every error is a
:class:`~bitline.sw.bundle.tables.BundleError` naming the image, section, record and field.
"""

from __future__ import annotations

import struct

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import (
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
    SECTION_ENTRY_BYTES,
    SECTION_ENTRY_LAYOUT,
    SectionId,
    align,
    cells_layout,
    config_digest_bytes,
    crc32,
    image_sections,
    section_capacity,
    section_layout,
    struct_format,
)
from bitline.hw.spec.network import (
    NetGeometry,
    NodeFieldError,
    node_columns,
    node_layout,
    nodes_from_records,
)
from bitline.hw.spec.program import Program
from bitline.hw.spec.tables import lanes_bits, lanes_from_bits, layers_dtype
from bitline.sw.bundle.tables import (
    BundleError,
    BundlePlace,
    ParsedImage,
    SectionInfo,
    image_tables,
    validate_image_tables,
)

__all__ = ["IMAGE_FILE", "encode_sections", "assemble_image", "encode_image", "parse_image"]

IMAGE_FILE = "image.bin"

_KNOWN_IDS = frozenset(int(section) for section in SectionId)


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(np.asarray(mask).reshape(-1))
    return int(hits[0]) if len(hits) else None


def _pack_records(place: BundlePlace, section: SectionId, layout: data.Layout, count: int,
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



# ------------------------------------------------------------------------- cells fast path
def _cells_geometry(config: AcceleratorConfig):
    layout = cells_layout(config)
    head_bits = layout["rows"].offset
    row_bits = Shape.cast(layout["rows"].shape.elem_shape).width
    unit_bits = Shape.cast(layout["unit"].shape).width
    return layout, head_bits // 8, row_bits, unit_bits


def _pack_cells(config: AcceleratorConfig, units: np.ndarray, cells: np.ndarray,
                sources: np.ndarray | None = None) -> bytes:
    """Pack CELLS records (:func:`~bitline.hw.spec.image.cells_layout`) with numpy.

    ``sources`` is each record's ``source`` unit (default: the unit itself). The same bytes
    as the generic packer (tests pin this), without one Python step per cell.
    """
    _, head_bytes, row_bits, unit_bits = _cells_geometry(config)
    count = len(units)
    if count == 0:       # every weight of the network is zero: no cell is programmed
        return b""
    units = np.asarray(units, dtype=np.int64)
    sources = units if sources is None else np.asarray(sources, dtype=np.int64)
    word = units | (sources << unit_bits)
    level_bits = config.cols * config.cell_bits
    bits = np.zeros((count, config.rows, row_bits), dtype=np.uint8)
    shifts = np.arange(config.cell_bits, dtype=np.uint8)
    planes = (cells.astype(np.uint8)[..., None] >> shifts) & 1
    bits[..., :level_bits] = planes.reshape(count, config.rows, level_bits)
    body = np.packbits(bits, axis=2, bitorder="little").reshape(count, -1)
    byte_shifts = 8 * np.arange(head_bytes, dtype=np.int64)
    head = ((word[:, None] >> byte_shifts) & 0xFF).astype(np.uint8)
    return np.concatenate([head, body], axis=1).tobytes()


def _unpack_cells(config: AcceleratorConfig, blob: bytes, place: BundlePlace):
    layout, head_bytes, row_bits, unit_bits = _cells_geometry(config)
    raw = np.frombuffer(blob, dtype=np.uint8).reshape(-1, record_bytes(layout))
    count = len(raw)
    byte_shifts = 8 * np.arange(head_bytes, dtype=np.int64)
    word = (raw[:, :head_bytes].astype(np.int64) << byte_shifts).sum(axis=1)
    units = word & ((1 << unit_bits) - 1)
    sources = (word >> unit_bits) & ((1 << unit_bits) - 1)
    reserved = word >> (2 * unit_bits)
    index = _first(reserved != 0)
    if index is not None:
        raise place.error(SectionId.CELLS, "reserved", f"reserved bits are {reserved[index]:#x}, "
                          "must be 0", index)
    body = raw[:, head_bytes:].reshape(count, config.rows, row_bits // 8)
    bits = np.unpackbits(body, axis=2, bitorder="little")
    level_bits = config.cols * config.cell_bits
    pad = bits[..., level_bits:].reshape(count, config.rows * (row_bits - level_bits))
    index = _first(pad.any(axis=1))
    if index is not None:
        row = _first(bits[index, :, level_bits:].any(axis=1))
        raise place.error(SectionId.CELLS, f"rows.{row}.pad", "row padding bits must be 0",
                          index, f"unit {units[index]}")
    planes = bits[..., :level_bits].reshape(count, config.rows, config.cols, config.cell_bits)
    weights = (1 << np.arange(config.cell_bits)).astype(np.int64)
    levels = (planes.astype(np.int64) @ weights).astype(np.uint8)
    return units.astype(np.int64), sources.astype(np.int64), levels


# ------------------------------------------------------------------------- encoding
def encode_sections(tables: ParsedImage) -> list[tuple[SectionId, bytes, int, int]]:
    """Pack the tables into ``(section, payload, record_bytes, record_count)`` in image order.

    Only checks that values fit their fields (no semantic validation, so tests can build
    well-formed but invalid images); :func:`encode_image` validates first.
    """
    config = tables.config
    place = BundlePlace("image tables")
    sections = []

    layout = layer_layout(config)
    columns = {name: tables.layers[name] for name in tables.layers.dtype.names}
    columns["xbar_mask"] = tables.xbar_masks.astype(np.uint8)
    columns["lanes"] = lanes_bits(config, tables.lanes)
    sections.append((SectionId.LAYERS, _pack_records(place, SectionId.LAYERS, layout,
                                                     len(tables.layers), columns)))

    layout = section_layout(config, SectionId.ROWMAPS)
    records = np.zeros(config.n_xbars * config.rows, dtype=numpy_dtype(layout))
    records["valid"] = tables.rowmap_valid.reshape(-1)
    records["index"] = tables.rowmap_index.reshape(-1)
    sections.append((SectionId.ROWMAPS, _pack_records(
        place, SectionId.ROWMAPS, layout, len(records),
        {name: records[name] for name in records.dtype.names})))

    copy_of = (np.full(config.n_xbars, -1, np.int64) if tables.copy_of is None
               else np.asarray(tables.copy_of, dtype=np.int64))
    units = np.asarray(tables.cell_units, dtype=np.int64)
    # (a unit past n_xbars has no copy map entry; the packer reports it as it fits)
    source_of = copy_of[np.clip(units, 0, config.n_xbars - 1)]
    sources = np.where((units < config.n_xbars) & (source_of >= 0), source_of, units)
    sections.append((SectionId.CELLS, _pack_cells(config, units, tables.cells, sources)))

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

    if config.network:
        nodes = tables.nodes or []
        records = []
        for index, node in enumerate(nodes):
            try:
                records.append(node.record(config))
            except NodeFieldError as error:
                raise place.error(SectionId.NETWORK, error.field, error.reason, index,
                                  node.label()) from None
        sections.append((SectionId.NETWORK, _pack_records(
            place, SectionId.NETWORK, node_layout(config), len(records),
            node_columns(config, records))))

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
                layer_names: list[str] | None = None,
                node_names: list[str] | None = None) -> ParsedImage:
    """Decode and validate an image for ``config``.

    ``source`` names the image in error messages; ``layer_names`` and ``node_names``
    (optional, e.g. from the manifest) label layer and node records in them.

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
    place = BundlePlace(source, layer_names)
    header = _parse_header(blob, config, place)
    sections = _parse_section_table(blob, header, config, place)
    _check_placement(blob, header, sections, place)
    payloads = {}
    for info in sections.values():
        payload = blob[info.offset:info.offset + info.length]
        computed = crc32(payload)
        if computed != info.crc:
            raise place.error(info.section, "crc", f"CRC mismatch: stored 0x{info.crc:08x}, "
                                                   f"computed 0x{computed:08x}")
        payloads[info.section] = payload
    tables = _decode_sections(config, payloads, place, node_names)
    tables.sections = sections
    validate_image_tables(tables, place)
    return tables


def _header_error(place: BundlePlace, name: str, message: str) -> BundleError:
    return place.error("header", name, message)


def _parse_header(blob: bytes, config: AcceleratorConfig, place: BundlePlace) -> dict:
    """Check the header (length, magic, version, size, CRC, config digest); return its fields."""
    header_format, header_names = _header_codec()

    def read_field(name: str) -> int:
        member = HEADER_LAYOUT[name]
        start = member.offset // 8
        return int.from_bytes(blob[start:start + Shape.cast(member.shape).width // 8], "little")

    prefix = HEADER_LAYOUT["digest"].offset // 8
    if len(blob) < prefix:
        raise _header_error(place, "magic", f"truncated header: the image has {len(blob)} "
                                            f"bytes, the header needs {HEADER_BYTES}")
    if read_field("magic") != MAGIC_WORD:
        raise _header_error(place, "magic", f"bad magic {blob[:4]!r}, expected {MAGIC!r}")
    if read_field("version") != FORMAT_VERSION:
        raise _header_error(place, "version", f"unknown format version "
                                              f"{read_field('version')} (this reader knows "
                                              f"version {FORMAT_VERSION})")
    if read_field("header_bytes") != HEADER_BYTES:
        raise _header_error(place, "header_bytes", f"{read_field('header_bytes')}, expected "
                                                   f"{HEADER_BYTES} for version {FORMAT_VERSION}")
    if len(blob) < HEADER_BYTES:
        raise _header_error(place, "header_bytes", f"truncated header: the image has "
                                                   f"{len(blob)} bytes, the header needs "
                                                   f"{HEADER_BYTES}")
    header = dict(zip(header_names, struct.unpack(header_format, blob[:HEADER_BYTES])))
    crc_at = HEADER_LAYOUT["header_crc"].offset // 8
    computed = crc32(blob[:crc_at])
    if computed != header["header_crc"]:
        raise _header_error(place, "header_crc", f"CRC mismatch: stored "
                                                 f"0x{header['header_crc']:08x}, computed "
                                                 f"0x{computed:08x}")
    digest = bytes(header[f"digest.{i}"] for i in range(DIGEST_BYTES))
    if digest != config_digest_bytes(config):
        raise _header_error(place, "digest", f"config digest mismatch: the image was built "
                                             f"for config {digest.hex()}..., this config is "
                                             f"{config_digest_bytes(config).hex()}...")
    if header["table_entry_bytes"] != SECTION_ENTRY_BYTES:
        raise _header_error(place, "table_entry_bytes", f"{header['table_entry_bytes']}, "
                                                        f"expected {SECTION_ENTRY_BYTES}")
    return header


def _table_rows(blob: bytes, header: dict, place: BundlePlace) -> list[dict]:
    """Check the image length and the section table's CRC; return the table's entries."""
    count = header["section_count"]
    table_end = HEADER_BYTES + count * SECTION_ENTRY_BYTES
    image_bytes = header["image_bytes"]
    if len(blob) > image_bytes:
        raise _header_error(place, "image_bytes", f"{image_bytes}, but the image has "
                                                  f"{len(blob)} bytes (trailing data)")
    if len(blob) < table_end:
        raise place.error("section table", "section_count",
                          f"truncated: {count} entries need bytes [{HEADER_BYTES}, {table_end}), "
                          f"the image has only {len(blob)} bytes")
    if image_bytes < table_end:
        raise _header_error(place, "image_bytes", f"{image_bytes} is smaller than the header "
                                                  f"and section table ({table_end} bytes)")
    table_blob = blob[HEADER_BYTES:table_end]
    computed = crc32(table_blob)
    if computed != header["table_crc"]:
        raise _header_error(place, "table_crc", f"section table CRC mismatch: stored "
                                                f"0x{header['table_crc']:08x}, computed "
                                                f"0x{computed:08x}")
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
        raise _header_error(place, "image_bytes", f"truncated: the image has {len(blob)} of "
                                                  f"its {image_bytes} bytes")
    return rows


def _parse_section_table(blob: bytes, header: dict, config: AcceleratorConfig,
                         place: BundlePlace) -> dict[SectionId, SectionInfo]:
    """Check every section-table entry (id, flags, record geometry, alignment, bounds)."""
    table_end = HEADER_BYTES + header["section_count"] * SECTION_ENTRY_BYTES
    image_bytes = header["image_bytes"]
    sections: dict[SectionId, SectionInfo] = {}
    for index, row in enumerate(_table_rows(blob, header, place)):
        def table_error(name, message):
            return place.error(f"section table entry {index}", name, message)

        if row["id"] not in _KNOWN_IDS:
            raise table_error("id", f"unknown section id {row['id']}")
        section = SectionId(row["id"])
        if section not in image_sections(config):
            raise table_error("id", f"section {section.name} (id {row['id']}) in an image "
                                    "for a config without whole-network hardware "
                                    "(act_buffer_depth = 0)")
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
    missing = [section.name for section in image_sections(config)
               if section not in sections]
    if missing:
        raise place.error("section table", "id", f"missing section(s) {', '.join(missing)}")
    return sections


def _check_placement(blob: bytes, header: dict, sections: dict[SectionId, SectionInfo],
                     place: BundlePlace) -> None:
    """Check that sections follow the table in order, without overlap, zero padded."""
    table_end = HEADER_BYTES + header["section_count"] * SECTION_ENTRY_BYTES
    image_bytes = header["image_bytes"]
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
        raise _header_error(place, "image_bytes", f"{image_bytes}, but the last section ends "
                                                  f"at {expected} (aligned)")
    gaps = [(table_end, align(table_end), "section table")]
    gaps += [(info.offset + info.length, align(info.offset + info.length), f"section {info.name}")
             for info in sections.values()]
    for start, end, after in gaps:
        for position in range(start, end):
            if blob[position]:
                raise place.error("padding", "byte", f"byte {position} after the {after} is "
                                  f"0x{blob[position]:02x}, padding must be 0")


def _decode_sections(config: AcceleratorConfig, payloads: dict[SectionId, bytes],
                     place: BundlePlace, node_names: list[str] | None = None) -> ParsedImage:
    layout = layer_layout(config)
    bits = _record_bits(layout, payloads[SectionId.LAYERS])
    layers = np.zeros(len(bits), dtype=layers_dtype(config))
    masks = np.zeros((len(bits), config.n_xbars), dtype=bool)
    lanes = np.zeros((len(bits), config.n_xbars), dtype=np.int64)
    for name, offset, width in flatten_fields(layout):
        if name == "xbar_mask":
            masks = bits[:, offset:offset + width].astype(bool)
        elif name == "lanes":
            lanes = lanes_from_bits(config, bits[:, offset:offset + width])
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

    units, sources, cells = _unpack_cells(config, payloads[SectionId.CELLS], place)
    bad = _first((sources >= config.n_xbars) & (sources != units))  # (units: the validator)
    if bad is not None:
        raise place.error(SectionId.CELLS, "source", f"unit {sources[bad]} is not below "
                          f"n_xbars ({config.n_xbars})", bad, f"unit {units[bad]}")
    copy_of = np.full(config.n_xbars, -1, dtype=np.int64)
    inside = units < config.n_xbars     # a unit out of range is the validator's to name
    copied = inside & (sources != units)
    copy_of[units[copied]] = sources[copied]

    entries = unpack(entry_layout(config), payloads[SectionId.ENTRIES])

    layout = section_layout(config, SectionId.OUTPUT)
    bits = _record_bits(layout, payloads[SectionId.OUTPUT])
    fields = {name: (offset, width) for name, offset, width in flatten_fields(layout)}
    bias = _field_value(bits, *fields["bias"], signed=True)
    mult = _field_value(bits, *fields["mult"])
    shift = _field_value(bits, *fields["shift"])
    nodes = None
    if config.network:
        layout = node_layout(config)
        records = unpack(layout, payloads[SectionId.NETWORK])
        nodes = nodes_from_records(config, records, node_names)
        _check_node_windows(config, records, nodes, place)
    return ParsedImage(config=config, layers=layers, xbar_masks=masks, lanes=lanes,
                       copy_of=copy_of, rowmap_valid=valid,
                       rowmap_index=row_index, cell_units=units, cells=cells, entries=entries,
                       bias=bias, mult=mult, shift=shift, nodes=nodes)


def _check_node_windows(config: AcceleratorConfig, records: np.ndarray, nodes: list,
                        place: BundlePlace) -> None:
    """Name a node record whose window fields are out of range or whose stored output size
    its window cannot give.

    The record keeps ``out_h``/``out_w`` (bottom and right padding follow from them), so a
    decoded window is rebuilt with the smallest such padding; a stored size below what the
    map gives without that padding (an edited byte) would otherwise pass unseen.
    """
    geometry = NetGeometry.from_config(config)
    for index, node in enumerate(nodes):
        window = node.window
        try:
            window.record(geometry)
        except ValueError as error:
            raise place.error(SectionId.NETWORK, "window", str(error), index,
                              node.label()) from None
        out_h, out_w = window.out_hw()
        for name, value, size, pad, k, s, d in (
                ("out_h", out_h, window.height, window.pads[0], window.kernel[0],
                 window.stride[0], window.dilation[0]),
                ("out_w", out_w, window.width, window.pads[1], window.kernel[1],
                 window.stride[1], window.dilation[1])):
            stored = int(records[f"window.{name}"][index])
            if stored != value:
                raise place.error(SectionId.NETWORK, f"window.{name}",
                                  f"{stored}: a map of {size} with leading padding {pad}, "
                                  f"kernel {k}, stride {s}, dilation {d} gives at least "
                                  f"{value}", index, node.label())
