"""The bundle directory: write ``image.bin``, ``manifest.json`` and ``reference.npz``; read
them back with every check.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.image import FORMAT_VERSION
from bitline.hw.spec.program import Program
from bitline.sw.bundle.codec import IMAGE_FILE, assemble_image, encode_sections, parse_image
from bitline.sw.bundle.manifest import (
    MANIFEST_FILE,
    REFERENCE_FILE,
    ManifestKeys,
    build_manifest,
    rebuild_program,
    rebuild_qmodel,
    reference_arrays,
)
from bitline.sw.bundle.tables import BundleError, ParsedImage, image_tables
from bitline.sw.integer.qmodel import QuantizedModel

__all__ = ["Bundle", "write_bundle", "read_bundle"]


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
    arrays = reference_arrays(qmodel)
    out.mkdir(parents=True, exist_ok=True)
    (out / IMAGE_FILE).write_bytes(image)
    with open(out / REFERENCE_FILE, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    (out / MANIFEST_FILE).write_text(text + "\n")
    return out


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
    keys = ManifestKeys(str(manifest_path))
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
        older = (" (an older bundle: version 3 added the copy lanes of the layer records and "
                 "the CELLS records' source unit; compile it again)"
                 if isinstance(version, int) and version < FORMAT_VERSION else "")
        raise BundleError(f"{manifest_path}: format_version: unknown format version {version} "
                          f"(this reader knows version {FORMAT_VERSION}){older}")
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
    program = rebuild_program(parsed, manifest, keys)
    try:
        with np.load(reference_path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise BundleError(f"{reference_path}: not found") from None
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise BundleError(f"{reference_path}: not a readable npz file: {error}") from None
    qmodel = rebuild_qmodel(manifest, arrays, keys, str(reference_path))
    compute = {layer.name for layer in qmodel.model.compute_layers}
    for layer in program.layers:
        if layer.name not in compute:
            raise BundleError(f"{manifest_path}: program layer {layer.name!r} is not a compute "
                              "layer of the model's layers")
    return Bundle(program=program, qmodel=qmodel, manifest=manifest, image=image,
                  parsed=parsed, path=root)
