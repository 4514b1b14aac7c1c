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

:func:`write_bundle` validates the program against its config before writing, seals the
manifest with digests of its fields and of the reference arrays (:mod:`.integrity`) and
writes the directory atomically (a temporary sibling renamed into place); and
:func:`read_bundle` / :func:`parse_image` validate everything they read, both through the
contract's one validator (:func:`bitline.hw.spec.validate.validate_program`); errors are
:class:`BundleError` (a ``ValueError``) naming the file, section, record and field.

Modules: :mod:`.tables` (program <-> records, :class:`BundleError`), :mod:`.codec` (image
bytes), :mod:`.manifest` (manifest and reference arrays, rebuilding on read), :mod:`.files`
(the directory: :func:`write_bundle`, :func:`read_bundle`), :mod:`.integrity` (the digests
that bind the manifest and the reference arrays to one compile). This package only re-exports
their public names.
"""

from bitline.sw.bundle.codec import (
    IMAGE_FILE,
    assemble_image,
    encode_image,
    encode_sections,
    parse_image,
)
from bitline.sw.bundle.files import Bundle, read_bundle, write_bundle
from bitline.sw.bundle.manifest import MANIFEST_FILE, REFERENCE_FILE, build_manifest
from bitline.sw.bundle.tables import BundleError, ParsedImage, SectionInfo, image_tables

__all__ = [
    "BundleError", "Bundle", "ParsedImage", "SectionInfo",
    "IMAGE_FILE", "MANIFEST_FILE", "REFERENCE_FILE",
    "write_bundle", "read_bundle", "encode_image", "parse_image",
    "image_tables", "encode_sections", "assemble_image", "build_manifest",
]
