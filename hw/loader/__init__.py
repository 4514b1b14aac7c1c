"""The program loader: the ``image.bin`` byte stream into the accelerator's memories.

The image format is :mod:`bitline.hw.spec.image` (header, section table, sections) and the
record layouts are :mod:`bitline.hw.spec.encoding`; every width, id and size here is read
from them. The loader is four components joined by
:class:`~bitline.hw.loader.loader.Loader`, one byte per cycle end to end::

    bytes ─► SkidBuffer ─► HeaderParser ─table─► SectionRouter ─payload─► RecordWriter ─► memories
             buffer.py     header.py             sections.py              writer.py

    SkidBuffer     two registered bytes of input
    HeaderParser   header fields and CRC, section table and its CRC
    SectionRouter  per-section checks, padding, payload routing, section CRC, trailer
    RecordWriter   records to the layer table, output parameters, row maps, OU entries, cells

* :class:`~bitline.hw.loader.buffer.SkidBuffer` decouples the producer (the UART bridge's
  FIFO on the board) so every loader input starts at a flip-flop.
* :class:`~bitline.hw.loader.header.HeaderParser` takes the header and the section table,
  checks magic, version, sizes, config digest, header CRC and table CRC, and hands the
  table to the router (:class:`~bitline.hw.loader.header.TableSignature`).
* :class:`~bitline.hw.loader.sections.SectionRouter` walks the table: checks each entry (id,
  record size, length, position, capacity), skips the alignment padding, streams the payload
  to the writer (:class:`~bitline.hw.loader.sections.PayloadSignature`), checks each
  section's CRC, consumes the trailer up to ``image_bytes`` and raises ``programmed``.
* :class:`~bitline.hw.loader.writer.RecordWriter` assembles records and writes each one, the
  cycle after its last byte, to its memory; it refuses records naming a unit that does not
  exist or overflowing a unit's entry memory.

The parser and the router take the buffered bytes in turn (each is ready only in its own
states). Every stage reports a failed check on an ``error`` stream
(:func:`~bitline.hw.loader.common.error_signature`) and stops; the top keeps the first
:class:`~bitline.hw.spec.registers.ErrorCode` and drains the rest of the image until
``restart`` or ``clear_error``.
"""
