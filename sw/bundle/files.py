"""The bundle directory: write ``image.bin``, ``manifest.json`` and ``reference.npz``; read
them back with every check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.image import FORMAT_VERSION
from bitline.hw.spec.program import Program
from bitline.sw.bundle.codec import IMAGE_FILE, assemble_image, encode_sections, parse_image
from bitline.sw.bundle.integrity import seal_manifest, verify_manifest, verify_reference
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
        Bundle directory. It must not exist, be empty, or hold a previous bundle (a
        ``manifest.json``), which is replaced as a whole; any other non-empty folder is
        refused. The bundle is written into a hidden temporary sibling folder and renamed
        into place, so a failed or interrupted write leaves no half-written bundle.
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
        cannot be stored; or when ``out_dir`` is a file or a non-empty folder that is not a
        bundle.
    """
    out = Path(out_dir)
    _check_destination(out)
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
    arrays = reference_arrays(qmodel)
    # Sealed after a JSON round trip: the digests are of exactly what a reader will parse.
    manifest = json.loads(json.dumps(build_manifest(program, qmodel, tables, image)))
    text = json.dumps(seal_manifest(manifest, arrays), indent=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-",
                                    dir=out.parent))
    try:
        (staging / IMAGE_FILE).write_bytes(image)
        with open(staging / REFERENCE_FILE, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        (staging / MANIFEST_FILE).write_text(text + "\n")     # last: marks a bundle
        os.chmod(staging, 0o777 & ~_umask())
        _replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _remove_leftovers(out: Path) -> None:
    """Remove the hidden ``.NAME.partial-PID-*`` / ``.NAME.old-PID-*`` siblings of ``out``
    that a writer killed outright (SIGKILL, power loss) left behind.

    Only folders whose writer process ``PID`` no longer runs on this machine are removed, so
    a concurrent writer's staging folder is never touched; names without a PID (older
    versions) are left alone.
    """
    for kind in ("partial", "old"):
        for leftover in out.parent.glob(f".{out.name}.{kind}-*-*"):
            pid = leftover.name[len(f".{out.name}.{kind}-"):].split("-", 1)[0]
            if pid.isdigit() and leftover.is_dir() and not _process_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (``os.kill(pid, 0)`` probes it)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # it runs, under another user
        return True
    except OSError:
        return True             # cannot tell: keep it
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_destination(out: Path) -> None:
    """Refuse a file, or a non-empty folder without ``manifest.json`` (not a bundle)."""
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out}: exists and is not a folder; choose another bundle folder")
    if out.is_dir() and not (out / MANIFEST_FILE).is_file() and any(out.iterdir()):
        raise BundleError(f"{out}: exists, is not empty and is not a bundle (no "
                          f"{MANIFEST_FILE}); refusing to mix a bundle with its files: choose "
                          "a new or empty folder")


def _replace_folder(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; a previous ``out`` is moved aside first, then removed.

    Between the two renames ``out`` is briefly absent, never half-written.
    """
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
    os.replace(out, old / "bundle")
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old / "bundle", out)    # put the previous bundle back
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def read_bundle(out_dir: str | Path) -> Bundle:
    """Read and validate a bundle directory written by :func:`write_bundle`.

    The manifest's format version and config are checked first, then the image is parsed
    against that config (:func:`parse_image`), its SHA-256 and section table compared with
    the manifest, ``reference.npz``'s arrays compared with the digests the manifest recorded,
    the program and quantized model rebuilt, and finally every manifest field compared with
    its recorded digest (:mod:`.integrity`): an edited field or a file from another compile
    is an error naming the file and the field or array.

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
        older = (" (an older bundle: version 4 added the NETWORK section of whole-network "
                 "images, version 3 the copy lanes of the layer records and the CELLS "
                 "records' source unit; compile it again)"
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
    listed = manifest.get("network")
    node_names = ([item.get("name") if isinstance(item, dict) else None for item in listed]
                  if isinstance(listed, list) else None)
    parsed = parse_image(image, config, source=str(image_path), layer_names=names,
                         node_names=node_names)
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
    verify_reference(manifest, arrays, str(reference_path), str(manifest_path))
    qmodel = rebuild_qmodel(manifest, arrays, keys, str(reference_path))
    compute = {layer.name for layer in qmodel.model.compute_layers}
    for layer in program.layers:
        if layer.name not in compute:
            raise BundleError(f"{manifest_path}: program layer {layer.name!r} is not a compute "
                              "layer of the model's layers")
    # Last, so the specific checks above name a disagreement with the image first.
    verify_manifest(manifest, str(manifest_path))
    return Bundle(program=program, qmodel=qmodel, manifest=manifest, image=image,
                  parsed=parsed, path=root)
