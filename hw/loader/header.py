"""The loader's first stage: the image header and the section table, checked in hardware."""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.loader.common import error_signature, restartable_state
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.image import (
    CRC_ALGORITHM,
    FORMAT_VERSION,
    HEADER_BYTES,
    HEADER_LAYOUT,
    MAGIC_WORD,
    SECTION_ENTRY_BYTES,
    SECTION_ENTRY_LAYOUT,
    SectionId,
    config_digest_bytes,
)
from bitline.hw.spec.registers import ErrorCode

__all__ = ["MAX_SECTIONS", "HeaderParser", "TableSignature"]

#: Section-table entries the loader holds (one per section id).
MAX_SECTIONS = len(SectionId)
#: The header CRC covers the header bytes before its ``header_crc`` field.
HEADER_CRC_COVERS = HEADER_LAYOUT["header_crc"].offset // 8


class TableSignature(wiring.Signature):
    """The checked header and section table, handed from the header parser to the router.

    Members (as seen by the parser)
    -------------------------------
    valid: Out(1)
        One-cycle pulse: the header and the table passed every check; the other members
        hold the image's values until the next restart.
    section_count, image_bytes: Out
        The header fields of those names.
    entries: Out(ArrayLayout(SECTION_ENTRY_LAYOUT, MAX_SECTIONS))
        The section table, entry ``i`` at index ``i`` (entries past ``section_count`` are
        stale).
    """

    def __init__(self):
        super().__init__({
            "valid": Out(1),
            "section_count": Out(HEADER_LAYOUT["section_count"].shape),
            "image_bytes": Out(HEADER_LAYOUT["image_bytes"].shape),
            "entries": Out(data.ArrayLayout(SECTION_ENTRY_LAYOUT, MAX_SECTIONS)),
        })


class HeaderParser(wiring.Component):
    """Parse and check the image header and the section table, one byte per cycle.

    After ``start`` the parser takes :data:`~bitline.hw.spec.image.HEADER_BYTES` header
    bytes, then checks, in this order (the first failure is reported):

    ========================================================  =========================
    check                                                     :class:`ErrorCode`
    ========================================================  =========================
    ``magic`` is :data:`~bitline.hw.spec.image.MAGIC_WORD`     ``BAD_MAGIC``
    ``version`` is :data:`~bitline.hw.spec.image.FORMAT_VERSION`  ``BAD_VERSION``
    ``header_bytes``, ``table_entry_bytes`` are this format's,  ``BAD_HEADER``
    ``section_count <= MAX_SECTIONS``
    ``digest`` is the config's                                ``BAD_DIGEST``
    CRC-32 of the bytes before ``header_crc``                  ``HEADER_CRC``
    ========================================================  =========================

    then takes ``section_count`` table entries and checks their CRC-32 against
    ``table_crc`` (``TABLE_CRC``; not checked for an empty table). On success ``table.valid``
    pulses in the cycle after the table's last byte was taken (two cycles after the header's
    last byte for an empty table), and the parser stops taking bytes.

    Parameters
    ----------
    config:
        Accelerator configuration (the expected digest).

    Attributes
    ----------
    bytes: In(stream.Signature(8))
        The image from its first byte; ``ready`` only while parsing.
    start: In(1)
        Begin a new image (wins over everything else in its cycle).
    table: Out(TableSignature())
        The checked header fields and section table.
    error: Out(error_signature())
        The failed check; the parser then stops until the next ``start``.
    busy: Out(1)
        Parsing or checking.
    """

    def __init__(self, config: AcceleratorConfig):
        self.config = config
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "start": In(1),
            "table": Out(TableSignature()),
            "error": Out(error_signature()),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = CRC_ALGORITHM(data_width=8).create()
        byte = self.bytes.payload
        take = self.bytes.valid & self.bytes.ready

        # the header, then one table entry at a time, is assembled here; ``current`` is the
        # record including this cycle's byte (only meaningful when ``take``, so ``take`` is
        # not in the byte multiplexer's select and the checks start at flip-flops)
        assembly_bytes = max(HEADER_BYTES, SECTION_ENTRY_BYTES)
        index = Signal(range(assembly_bytes))
        assembly = Signal(assembly_bytes * 8)
        current = Signal(assembly_bytes * 8)
        m.d.comb += current.eq(Cat(
            Mux(index == i, byte, assembly[8 * i:8 * i + 8]) for i in range(assembly_bytes)))
        with m.If(take):
            m.d.sync += assembly.eq(current)

        header = Signal(HEADER_LAYOUT)
        table = Array(Signal(SECTION_ENTRY_LAYOUT, name=f"section{i}")
                      for i in range(MAX_SECTIONS))
        section_index = Signal(range(MAX_SECTIONS + 1))
        m.d.comb += [
            self.table.section_count.eq(header.section_count),
            self.table.image_bytes.eq(header.image_bytes),
        ]
        m.d.comb += [self.table.entries[i].eq(table[i]) for i in range(MAX_SECTIONS)]

        def fail(code: ErrorCode):
            m.d.comb += [self.error.valid.eq(1), self.error.payload.eq(code)]
            m.next = "IDLE"

        with m.FSM():
            with restartable_state(m, "IDLE", self.start, "HEADER"):
                pass
            with restartable_state(m, "HEADER", self.start, "HEADER"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.bytes.ready.eq(1),
                    crc.start.eq(index == 0),
                    crc.data.eq(byte),
                    crc.valid.eq(take & (index < HEADER_CRC_COVERS)),
                ]
                with m.If(take):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == HEADER_BYTES - 1):
                        m.d.sync += [header.eq(current[:HEADER_LAYOUT.size]), index.eq(0)]
                        m.next = "CHECK_HEADER"
            with restartable_state(m, "CHECK_HEADER", self.start, "HEADER"):
                m.d.comb += self.busy.eq(1)
                self._check_header(m, header, crc, fail)
                with m.If(~self.error.valid):
                    m.d.sync += [section_index.eq(0), index.eq(0)]
                    with m.If(header.section_count == 0):
                        m.next = "CHECK_TABLE"
                    with m.Else():
                        m.next = "TABLE"
            with restartable_state(m, "TABLE", self.start, "HEADER"):
                # the table's first byte (position HEADER_BYTES) is entry 0, byte 0
                m.d.comb += [
                    self.busy.eq(1),
                    self.bytes.ready.eq(1),
                    crc.start.eq((section_index == 0) & (index == 0)),
                    crc.data.eq(byte),
                    crc.valid.eq(take),
                ]
                with m.If(take):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == SECTION_ENTRY_BYTES - 1):
                        m.d.sync += [table[section_index].eq(current[:SECTION_ENTRY_LAYOUT.size]),
                                     index.eq(0), section_index.eq(section_index + 1)]
                        with m.If(section_index + 1 == header.section_count):
                            m.next = "CHECK_TABLE"
            with restartable_state(m, "CHECK_TABLE", self.start, "HEADER"):
                m.d.comb += self.busy.eq(1)
                with m.If((header.section_count != 0) & (crc.crc != header.table_crc)):
                    fail(ErrorCode.TABLE_CRC)
                with m.Else():
                    m.d.comb += self.table.valid.eq(1)
                    m.next = "IDLE"

        with m.If(self.start):
            m.d.sync += index.eq(0)
        return m

    def _check_header(self, m, header, crc, fail):
        """Check the assembled ``header`` (CHECK_HEADER); ``fail`` with the first bad field."""
        digest = config_digest_bytes(self.config)
        digest_bits = Cat(header.digest[i] for i in range(len(digest)))
        with m.If(header.magic != MAGIC_WORD):
            fail(ErrorCode.BAD_MAGIC)
        with m.Elif(header.version != FORMAT_VERSION):
            fail(ErrorCode.BAD_VERSION)
        with m.Elif((header.header_bytes != HEADER_BYTES)
                    | (header.table_entry_bytes != SECTION_ENTRY_BYTES)
                    | (header.section_count > MAX_SECTIONS)):
            fail(ErrorCode.BAD_HEADER)
        with m.Elif(digest_bits != int.from_bytes(digest, "little")):
            fail(ErrorCode.BAD_DIGEST)
        with m.Elif(crc.crc != header.header_crc):
            fail(ErrorCode.HEADER_CRC)
