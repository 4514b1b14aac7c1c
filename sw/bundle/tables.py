"""Program <-> image tables for the bundle, and the bundle's error type.

The records themselves and every check on them belong to the contract
(:func:`bitline.hw.spec.tables.program_tables`,
:func:`bitline.hw.spec.validate.validate_program`); this module adds what the image needs on
top (the section table, :class:`SectionInfo`) and turns the contract's
:class:`~bitline.hw.spec.program.ProgramError` into :class:`BundleError`, so bundle users
catch one type whose message names file, section, record and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from bitline.hw.spec.image import SectionId
from bitline.hw.spec.program import Program, ProgramError
from bitline.hw.spec.tables import Place, ProgramTables, check_lanes
from bitline.hw.spec.validate import validate_program, validate_tables

__all__ = ["BundleError", "BundlePlace", "SectionInfo", "ParsedImage", "image_tables",
           "validate_image_tables"]


class BundleError(ValueError):
    """A bundle that cannot be written or read; the message names file, section and field."""


class BundlePlace(Place):
    """:class:`~bitline.hw.spec.tables.Place` whose errors are :class:`BundleError`."""

    def error(self, *args, **kwargs) -> BundleError:
        kwargs.setdefault("error", BundleError)
        return super().error(*args, **kwargs)


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
class ParsedImage(ProgramTables):
    """The records of an image (:class:`~bitline.hw.spec.tables.ProgramTables`) and its
    section table (``sections``, empty until the image is assembled or parsed)."""

    sections: dict[SectionId, SectionInfo] = field(default_factory=dict)

    @classmethod
    def of(cls, tables: ProgramTables) -> "ParsedImage":
        """Return ``tables`` as a :class:`ParsedImage` with an empty section table."""
        return cls(**{item.name: getattr(tables, item.name) for item in fields(ProgramTables)})


def image_tables(program: Program) -> ParsedImage:
    """Flatten a :class:`Program` into image tables, validated against its config.

    Raises
    ------
    BundleError
        From :func:`~bitline.hw.spec.validate.validate_program` (source ``program``): a
        malformed layer program or a field out of range for the config, naming the section,
        field, layer and record.
    """
    try:
        tables = validate_program(program, program.config)
        check_lanes(tables, Place("program", [layer.name for layer in program.layers]))
        return ParsedImage.of(tables)
    except ProgramError as error:
        raise BundleError(str(error)) from None


def validate_image_tables(tables: ProgramTables, place: BundlePlace) -> None:
    """Validate decoded image tables (:func:`~bitline.hw.spec.validate.validate_tables`).

    Raises
    ------
    BundleError
        Naming ``place``'s source, the section, record and field.
    """
    try:
        validate_tables(tables, place)
    except ProgramError as error:
        raise BundleError(str(error)) from None
