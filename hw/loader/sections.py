"""The loader's second stage: walk the section table, check each section, route its payload."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from bitline.hw.core.memories import param_capacity
from bitline.hw.loader.common import error_signature, restartable_state
from bitline.hw.loader.header import MAX_SECTIONS, TableSignature
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import record_bytes
from bitline.hw.spec.image import (
    CRC_ALGORITHM,
    HEADER_LAYOUT,
    SECTION_ENTRY_LAYOUT,
    SectionId,
    image_sections,
    section_capacity,
    section_layout,
)
from bitline.hw.spec.registers import ErrorCode

__all__ = ["PayloadSignature", "SectionRouter", "section_capacities", "section_record_bytes"]


def section_record_bytes(config: AcceleratorConfig) -> dict[SectionId, int]:
    """Return the record size in bytes of every section kind an image for ``config`` has."""
    return {kind: record_bytes(section_layout(config, kind)) for kind in image_sections(config)}


def section_capacities(config: AcceleratorConfig) -> dict[SectionId, int]:
    """Return the largest record count of every section the loader accepts.

    OUTPUT is bounded by the output-parameter memory the accelerator builds
    (:func:`~bitline.hw.core.memories.param_capacity`), the others by
    :func:`~bitline.hw.spec.image.section_capacity`.
    """
    capacity = {kind: section_capacity(config, kind) for kind in image_sections(config)}
    capacity[SectionId.OUTPUT] = param_capacity(config)
    return capacity


def _times(value, constant: int):
    """Return ``value * constant`` (``constant >= 1``) as a tree of shifted adds."""
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


class PayloadSignature(wiring.Signature):
    """A section's payload bytes, from the router to the record writer.

    Members (as seen by the router)
    -------------------------------
    bytes: Out(stream.Signature(8, always_ready=True))
        The section's payload bytes, in order (the writer never stalls).
    section: Out(SECTION_ENTRY_LAYOUT id shape)
        The section id of the bytes; steady from ``begin`` to the section's end.
    begin: Out(1)
        One-cycle pulse before a section's first byte: the writer restarts its record count.
    error: In(error_signature())
        A record the writer refused (the router stops in that cycle).
    """

    def __init__(self):
        super().__init__({
            "bytes": Out(stream.Signature(8, always_ready=True)),
            "section": Out(SECTION_ENTRY_LAYOUT["id"].shape),
            "begin": Out(1),
            "error": In(error_signature()),
        })


class SectionRouter(wiring.Component):
    """Check every section of the table, skip its padding and send its payload to the writer.

    For each table entry, in table order, the router checks (``BAD_SECTION`` unless noted):
    the id is a section of the config's images (:func:`~bitline.hw.spec.image.image_sections`:
    NETWORK only with the whole-network hardware), ``record_bytes`` is that section's
    record size, ``length == record_count * record_bytes``, the section starts at or after
    the current position and ends within ``image_bytes``, and ``record_count`` fits the
    memory (``CAPACITY``). It then skips to ``offset``, sends ``length`` payload bytes to
    :attr:`payload` and checks their CRC-32 (``SECTION_CRC``). After the last section it
    consumes bytes up to ``image_bytes`` (``BAD_SECTION`` if already past it) and raises
    ``programmed``.

    Timing (none of it changes what is loaded): a section's entry is fetched in one cycle,
    checked into registers in the next and decided in the third, so neither the table's
    multiplexer nor the 32-bit arithmetic is in series with the FSM; the skips count a
    registered ``gap`` down and the payload keeps registered ``first`` / ``last`` flags, so
    ``bytes.ready`` and the CRC's ``start`` come from flip-flops.

    Parameters
    ----------
    config:
        Accelerator configuration (record sizes and capacities).
    initial_layers:
        ``n_layers`` after reset; when given, ``programmed`` starts high (memories
        initialised at elaboration).

    Attributes
    ----------
    bytes: In(stream.Signature(8))
        The image after the section table; ``ready`` only while skipping or routing.
    start: In(1)
        A new image begins: stop, clear ``programmed`` and ``n_layers``.
    position: In(32)
        Image bytes consumed so far (by every stage).
    table: In(TableSignature())
        The checked table; the router starts on its ``valid``.
    payload: Out(PayloadSignature())
        To the record writer.
    error: Out(error_signature())
        A failed check, the router's own or the writer's; the router then stops.
    busy: Out(1)
        Walking the table.
    n_layers: Out(range(max_layers + 1))
        LAYERS records of the image, once their section's CRC checked.
    n_nodes: Out(range(max_nodes + 1))
        Whole-network hardware only (``config.network``): NETWORK records of the image,
        once their section's CRC checked.
    programmed: Out(1)
        The whole image is loaded.
    """

    def __init__(self, config: AcceleratorConfig, initial_layers: int | None = None,
                 initial_nodes: int | None = None):
        self.config = config
        nodes = ({"n_nodes": Out(range(config.max_nodes + 1), init=initial_nodes or 0)}
                 if config.network else {})
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "start": In(1),
            "position": In(HEADER_LAYOUT["image_bytes"].shape),
            "table": In(TableSignature()),
            "payload": Out(PayloadSignature()),
            "error": Out(error_signature()),
            "busy": Out(1),
            "n_layers": Out(range(config.max_layers + 1), init=initial_layers or 0),
            "programmed": Out(1, init=int(initial_layers is not None)),
            **nodes,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = CRC_ALGORITHM(data_width=8).create()
        take = self.bytes.valid & self.bytes.ready
        position = self.position
        image_bytes = self.table.image_bytes

        section_index = Signal(range(MAX_SECTIONS + 1))
        section = Signal(SECTION_ENTRY_LAYOUT)
        remaining = Signal.like(section.length)    # payload bytes left in the section
        checks = self._check_signals()
        # PAD and TRAILER skip ``gap`` bytes to a target position; ``gap_zero`` is registered
        # so that ``bytes.ready`` is a flip-flop, not a 32-bit compare
        gap = Signal.like(position)
        gap_zero = Signal()
        behind = Signal()                  # the skip target lies before ``position``
        first = Signal()                   # PAYLOAD: the section's first byte (CRC start)
        last = Signal()                    # PAYLOAD: remaining == 1

        m.d.comb += [
            self.payload.section.eq(section.id),
            self.payload.bytes.payload.eq(self.bytes.payload),
            crc.data.eq(self.bytes.payload),
        ]
        with m.If(self.payload.error.valid):
            m.d.comb += [self.error.valid.eq(1), self.error.payload.eq(self.payload.error.payload)]

        def fail(code: ErrorCode):
            m.d.comb += [self.error.valid.eq(1), self.error.payload.eq(code)]
            m.next = "IDLE"

        with m.FSM():
            with restartable_state(m, "IDLE", self.start, "IDLE"):
                with m.If(self.table.valid):
                    m.d.sync += section_index.eq(0)
                    m.next = "SECTION"
            with restartable_state(m, "SECTION", self.start, "IDLE"):
                # fetch the next table entry; the trailer's checks are registered in parallel
                entry = self.table.entries[section_index]
                m.d.comb += [self.busy.eq(1), self.payload.begin.eq(1)]
                m.d.sync += [section.eq(entry), remaining.eq(entry.length)]
                with m.If(section_index == self.table.section_count):
                    m.d.sync += [
                        behind.eq(position > image_bytes),
                        gap.eq(image_bytes - position),
                        gap_zero.eq(position == image_bytes),
                    ]
                    m.next = "TRAILER"
                with m.Else():
                    m.next = "SECTION_CHECK"
            with restartable_state(m, "SECTION_CHECK", self.start, "IDLE"):
                m.d.comb += self.busy.eq(1)
                self._register_checks(m, section, checks)
                m.d.sync += [
                    behind.eq(section.offset < position),
                    gap.eq(section.offset - position),
                    gap_zero.eq(section.offset == position),
                    last.eq(section.length == 1),
                ]
                m.next = "SECTION_DECIDE"
            with restartable_state(m, "SECTION_DECIDE", self.start, "IDLE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~checks.known | ~checks.size_ok
                          | (checks.expected_length != section.length) | behind
                          | (checks.section_end > image_bytes)):
                    fail(ErrorCode.BAD_SECTION)
                with m.Elif(~checks.count_ok):
                    fail(ErrorCode.CAPACITY)
                with m.Else():
                    m.next = "PAD"
            with restartable_state(m, "PAD", self.start, "IDLE"):
                m.d.comb += [self.busy.eq(1), self.bytes.ready.eq(~gap_zero)]
                with m.If(take):
                    m.d.sync += [gap.eq(gap - 1), gap_zero.eq(gap == 1)]
                with m.If(gap_zero):
                    m.d.sync += first.eq(1)
                    with m.If(checks.empty):
                        m.next = "SECTION_END"
                    with m.Else():
                        m.next = "PAYLOAD"
            with restartable_state(m, "PAYLOAD", self.start, "IDLE"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.bytes.ready.eq(1),
                    self.payload.bytes.valid.eq(take),
                    crc.start.eq(first),
                    crc.valid.eq(take),
                ]
                with m.If(take):
                    m.d.sync += [remaining.eq(remaining - 1), first.eq(0),
                                 last.eq(remaining == 2)]
                    with m.If(last):
                        m.next = "SECTION_END"
                with m.If(self.payload.error.valid):
                    m.next = "IDLE"
            with restartable_state(m, "SECTION_END", self.start, "IDLE"):
                m.d.comb += self.busy.eq(1)
                with m.If(~checks.empty & (crc.crc != section.crc)):
                    fail(ErrorCode.SECTION_CRC)
                with m.Else():
                    with m.If(section.id == SectionId.LAYERS):
                        m.d.sync += self.n_layers.eq(section.record_count)
                    if self.config.network:
                        with m.If(section.id == SectionId.NETWORK):
                            m.d.sync += self.n_nodes.eq(section.record_count)
                    m.d.sync += section_index.eq(section_index + 1)
                    m.next = "SECTION"
            with restartable_state(m, "TRAILER", self.start, "IDLE"):
                m.d.comb += [self.busy.eq(1), self.bytes.ready.eq(~behind & ~gap_zero)]
                with m.If(behind):
                    fail(ErrorCode.BAD_SECTION)
                with m.Elif(gap_zero):
                    m.d.sync += self.programmed.eq(1)
                    m.next = "IDLE"
                with m.If(take):
                    m.d.sync += [gap.eq(gap - 1), gap_zero.eq(gap == 1)]

        with m.If(self.start):
            m.d.sync += [self.programmed.eq(0), self.n_layers.eq(0)]
            if self.config.network:
                m.d.sync += self.n_nodes.eq(0)
        return m

    def _check_signals(self) -> SimpleNamespace:
        """Return the registers of one section's checks (set in SECTION_CHECK)."""
        sizes = section_record_bytes(self.config)
        length = Shape.cast(SECTION_ENTRY_LAYOUT["length"].shape).width
        return SimpleNamespace(
            known=Signal(),                # the id is a SectionId
            size_ok=Signal(),              # record_bytes is that section's record size
            count_ok=Signal(),             # record_count fits the memory
            expected_length=Signal(length + max(sizes.values()).bit_length()),
            section_end=Signal(length + 1),  # offset + length
            empty=Signal(),                # length == 0
        )

    def _register_checks(self, m, section, checks: SimpleNamespace):
        """Register the checks of the fetched table entry ``section`` (SECTION_CHECK)."""
        sizes = section_record_bytes(self.config)
        capacity = section_capacities(self.config)
        # ``record_count * size`` as shifts and adds of a constant: written as a product,
        # Yosys shares one multiplier between the section kinds (constant multiplexer ->
        # DSP block -> adders), which was the critical path
        products = {kind: _times(section.record_count, sizes[kind]) for kind in sizes}
        m.d.sync += [checks.known.eq(0), checks.size_ok.eq(0), checks.count_ok.eq(0),
                     checks.expected_length.eq(0)]
        with m.Switch(section.id):
            for kind in sizes:
                with m.Case(int(kind)):
                    m.d.sync += [
                        checks.known.eq(1),
                        checks.size_ok.eq(section.record_bytes == sizes[kind]),
                        checks.count_ok.eq(section.record_count <= capacity[kind]),
                        checks.expected_length.eq(products[kind]),
                    ]
        m.d.sync += [
            checks.section_end.eq(section.offset + section.length),
            checks.empty.eq(section.length == 0),
        ]
