"""The program-image format: what the host streams to the accelerator's loader.

This module is the one definition of the ``image.bin`` byte layout. The bundle writer and
reader (:mod:`bitline.sw.bundle`) and the Amaranth loader both read it, so magic, version,
section ids, record layouts and the CRC live here and nowhere else. Layouts are
:class:`~amaranth.lib.data.StructLayout` objects; every record is packed LSB first in
declaration order and padded to whole bytes (as :func:`bitline.hw.spec.encoding.pack` does), and
multi-byte quantities are little-endian.

Image layout (docs/bundle.md has the field tables)::

    offset 0            header            HEADER_LAYOUT, HEADER_BYTES bytes
    HEADER_BYTES        section table     section_count x SECTION_ENTRY_LAYOUT
    align 4             section payloads  in table order, each starting on a 4-byte
                                          boundary; the gap bytes are zero

The header comes first and carries the CRC of the section table, and the table carries the
CRC, offset and record geometry of every section, so a loader that consumes the stream in
order knows where each section starts and how to check it before any payload arrives.

Sections (record layout from the accelerator config):

========  ==  =================================  =========================================
name      id  record layout                      records
========  ==  =================================  =========================================
LAYERS    1   :func:`~.encoding.layer_layout`    one per layer job, in program order
ROWMAPS   2   :func:`rowmap_layout`              ``n_xbars * rows``: unit-major, row-minor
CELLS     3   :func:`cells_layout`               one per crossbar unit holding weights
ENTRIES   4   :func:`~.encoding.entry_layout`    every OU entry, layers concatenated
OUTPUT    5   :func:`~.encoding.output_param_layout`  one per output channel, layer order
NETWORK   6   :func:`~.network.node_layout`      one per node, execution order; present iff
                                                 ``config.network`` (:func:`image_sections`)
========  ==  =================================  =========================================
"""

from __future__ import annotations

import enum
import zlib

from amaranth.lib import data
from amaranth.lib.crc import catalog

from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import (
    entry_layout,
    flatten_fields,
    layer_layout,
    output_param_layout,
    record_bytes,
)
from bitline.hw.spec.network import node_layout

__all__ = [
    "MAGIC", "MAGIC_WORD", "FORMAT_VERSION", "SECTION_ALIGN", "DIGEST_BYTES",
    "CRC_ALGORITHM", "SectionId",
    "HEADER_LAYOUT", "HEADER_BYTES", "SECTION_ENTRY_LAYOUT", "SECTION_ENTRY_BYTES",
    "rowmap_layout", "cell_row_layout", "cells_layout", "section_layout",
    "section_capacity", "image_sections", "config_digest_bytes", "crc32", "align",
    "struct_format",
]

#: The first four bytes of every image.
MAGIC = b"BTLN"
#: :data:`MAGIC` read as the little-endian ``magic`` header field.
MAGIC_WORD = int.from_bytes(MAGIC, "little")
#: Bumped on any change of the byte layout; readers reject other versions (4: the NETWORK
#: section of whole-network images).
FORMAT_VERSION = 4
#: Every section starts on a multiple of this many bytes (a 32-bit word).
SECTION_ALIGN = 4
#: Bytes of the config digest (SHA-256 of the config) kept in the header.
DIGEST_BYTES = 16

#: The CRC of the header, the section table and every section: the standard reflected
#: CRC-32 (polynomial 0x04C11DB7, initial value and final XOR 0xFFFFFFFF), i.e. zlib's.
#: ``CRC_ALGORITHM(data_width=8).create()`` is the loader's hardware checker.
CRC_ALGORITHM = catalog.CRC32_ETHERNET


class SectionId(enum.IntEnum):
    """Section identifiers of the section table (also the order the writer emits them)."""

    LAYERS = 1
    ROWMAPS = 2
    CELLS = 3
    ENTRIES = 4
    OUTPUT = 5
    NETWORK = 6


def image_sections(config: AcceleratorConfig) -> tuple[SectionId, ...]:
    """Return the sections an image for ``config`` has, in stream order.

    Every :class:`SectionId`; NETWORK only when the config has the whole-network hardware
    (``config.network``).
    """
    return tuple(section for section in SectionId
                 if section != SectionId.NETWORK or config.network)


#: Image header. ``header_crc`` is the CRC of the header bytes before it; ``table_crc`` the
#: CRC of the whole section table; ``image_bytes`` the total image length (a loader knows
#: when the stream ends, a reader detects truncation).
HEADER_LAYOUT = data.StructLayout({
    "magic": 32,
    "version": 16,
    "header_bytes": 16,
    "digest": data.ArrayLayout(8, DIGEST_BYTES),
    "section_count": 16,
    "table_entry_bytes": 16,
    "image_bytes": 32,
    "table_crc": 32,
    "header_crc": 32,
})
HEADER_BYTES = record_bytes(HEADER_LAYOUT)

#: One section-table entry. ``length`` counts payload bytes (``record_count *
#: record_bytes``), without the alignment padding that may follow; ``flags`` is reserved (0).
SECTION_ENTRY_LAYOUT = data.StructLayout({
    "id": 16,
    "flags": 16,
    "offset": 32,
    "length": 32,
    "record_bytes": 32,
    "record_count": 32,
    "crc": 32,
})
SECTION_ENTRY_BYTES = record_bytes(SECTION_ENTRY_LAYOUT)


def rowmap_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return the row-map record: which input drives one crossbar row.

    Record ``u * rows + r`` is row ``r`` of unit ``u``, for every unit of the accelerator
    (so the loader writes record ``i`` to row-map address ``i``). ``valid = 0`` leaves the
    row undriven and requires ``index = 0``.
    """
    return data.StructLayout({
        "valid": 1,
        "index": clog2(config.max_in_features),
    })


def cell_row_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return one crossbar row of levels, padded (with zeros) to whole bytes.

    Column ``c``'s level sits at bits ``[c*cell_bits, (c+1)*cell_bits)`` of the row, so a row
    is one crossbar write-port word; ``pad`` (present when ``cols * cell_bits`` is not a
    multiple of 8) must be 0.
    """
    levels = data.ArrayLayout(config.cell_bits, config.cols)
    pad = -levels.size % 8
    return data.StructLayout({"levels": levels, "pad": pad} if pad else {"levels": levels})


def cells_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return the CELLS record: one crossbar unit's full cell image.

    A 32-bit word -- ``unit`` (the global unit index), ``source`` (the unit whose OU entries
    this unit runs: itself, or for a unit of a layer's copy ``k >= 1`` the unit of copy 0 it
    copies, docs/bundle.md "Copies"; the loader writes each entry of ``source`` to it too),
    the bits above them reserved, 0 -- is followed by ``rows`` :func:`cell_row_layout` rows,
    row 0 first, so the loader streams the rows into the crossbar write port in order.
    """
    unit_bits = clog2(config.n_xbars)
    word = {"unit": unit_bits, "source": unit_bits}
    if 32 - 2 * unit_bits:
        word["reserved"] = 32 - 2 * unit_bits
    return data.StructLayout({
        **word,
        "rows": data.ArrayLayout(cell_row_layout(config), config.rows),
    })


def section_layout(config: AcceleratorConfig, section: SectionId) -> data.Layout:
    """Return the record layout of ``section`` for ``config``.

    NETWORK's needs ``config.network`` (a ``ValueError`` otherwise).
    """
    section = SectionId(section)
    return {
        SectionId.LAYERS: layer_layout,
        SectionId.ROWMAPS: rowmap_layout,
        SectionId.CELLS: cells_layout,
        SectionId.ENTRIES: entry_layout,
        SectionId.OUTPUT: output_param_layout,
        SectionId.NETWORK: node_layout,
    }[section](config)


def section_capacity(config: AcceleratorConfig, section: SectionId) -> int:
    """Return the largest record count of ``section`` the hardware holds.

    ROWMAPS always holds exactly this many records (``n_xbars * rows``).
    """
    section = SectionId(section)
    return {
        SectionId.LAYERS: config.max_layers,
        SectionId.ROWMAPS: config.n_xbars * config.rows,
        SectionId.CELLS: config.n_xbars,
        SectionId.ENTRIES: config.max_entries,
        SectionId.OUTPUT: config.max_layers * config.max_out_channels,
        SectionId.NETWORK: config.max_nodes,
    }[section]


def config_digest_bytes(config: AcceleratorConfig) -> bytes:
    """Return the header's ``digest``: the first bytes of the config's SHA-256."""
    return bytes.fromhex(config.digest)[:DIGEST_BYTES]


def crc32(blob: bytes) -> int:
    """Return the CRC-32 of ``blob`` (:data:`CRC_ALGORITHM`, computed by zlib)."""
    return zlib.crc32(blob) & 0xFFFFFFFF


def align(offset: int) -> int:
    """Round ``offset`` up to a multiple of :data:`SECTION_ALIGN`."""
    return -(-offset // SECTION_ALIGN) * SECTION_ALIGN


_STRUCT_CODES = {8: "B", 16: "H", 32: "I", 64: "Q"}


def struct_format(layout: data.Layout) -> tuple[str, list[str]]:
    """Return a :mod:`struct` format and the leaf field names of a byte-aligned layout.

    Every leaf must be 8, 16, 32 or 64 bits wide and start on a byte boundary; arrays of
    bytes appear as one field per byte (``digest.0`` ...). Used for the header and the
    section table, so the host packs them with exactly the layout the loader parses.
    """
    codes, names, position = ["<"], [], 0
    for name, offset, width in flatten_fields(layout):
        if offset != position or width not in _STRUCT_CODES:
            raise ValueError(f"field {name} ({width} bits at bit {offset}) is not byte-aligned")
        codes.append(_STRUCT_CODES[width])
        names.append(name)
        position += width
    return "".join(codes), names
