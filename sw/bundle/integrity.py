"""Bundle integrity: bind ``manifest.json`` and ``reference.npz`` to the compile that wrote them.

``image.bin`` is covered by its CRCs and by ``files.image_sha256`` in the manifest. This
module covers the other two files, so that everything ``bitline run`` reads belongs to one
compile (docs/bundle.md "Integrity"):

* ``integrity.fields`` holds a short digest of every *leaf* of the manifest (a scalar, or a
  list of scalars such as a shape), keyed by its path (``input.zero_point``,
  ``layers[3].quant.clamp_hi``). On read, a leaf whose digest differs, or a path added or
  removed, is named in the error.
* ``integrity.reference`` holds the digest of every array of ``reference.npz`` (dtype, shape
  and bytes); an array from another compile is named in the error.
* ``integrity.manifest_sha256`` is the SHA-256 of the canonical JSON of the whole manifest
  (the ``integrity`` block included, without this key), so an edit the per-field digests
  cannot localize (e.g. of the ``integrity`` block itself) is still detected.

The digests are keyless: they detect edits and files mixed from different compiles, not a
deliberate forger who recomputes them (nothing in a bundle is secret).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import numpy as np

from bitline.sw.bundle.tables import BundleError

__all__ = ["INTEGRITY_KEY", "canonical_json", "array_digest", "manifest_leaves",
           "seal_manifest", "verify_manifest", "verify_reference"]

INTEGRITY_KEY = "integrity"
#: Hex characters kept of a field's or array's SHA-256: they only localize a difference (the
#: full manifest digest decides), so 48 bits are plenty and keep the manifest small.
DIGEST_CHARS = 12
#: Differences listed in one error before "... and N more".
_LISTED = 6


def canonical_json(value) -> bytes:
    """Return the canonical JSON bytes of ``value`` (sorted keys, no spaces, ASCII)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=True).encode()


def _short(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:DIGEST_CHARS]


def array_digest(array: np.ndarray) -> str:
    """Return the short digest of an array's dtype, shape and bytes (C order)."""
    array = np.asarray(array)
    head = f"{array.dtype.str}|{list(array.shape)}|".encode()
    return _short(head + np.ascontiguousarray(array).tobytes())


def manifest_leaves(value, path: str = "") -> Iterator[tuple[str, object]]:
    """Yield ``(path, leaf)`` for every leaf of a JSON value, in sorted key order.

    A leaf is a scalar, an empty container or a list holding no container (a shape, a unit
    list). Paths read like ``layers[3].quant.clamp_hi``.
    """
    if isinstance(value, dict) and value:
        for key in sorted(value):
            yield from manifest_leaves(value[key], f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        for index, item in enumerate(value):
            yield from manifest_leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _field_digests(body: dict) -> dict[str, str]:
    return {path: _short(canonical_json(leaf)) for path, leaf in manifest_leaves(body)}


def _full_digest(body: dict, integrity: dict) -> str:
    block = {key: value for key, value in integrity.items() if key != "manifest_sha256"}
    return hashlib.sha256(canonical_json({**body, INTEGRITY_KEY: block})).hexdigest()


def seal_manifest(manifest: dict, arrays: dict[str, np.ndarray]) -> dict:
    """Return ``manifest`` with its ``integrity`` block (field and array digests, full digest)."""
    body = {key: value for key, value in manifest.items() if key != INTEGRITY_KEY}
    integrity = {"fields": _field_digests(body),
                 "reference": {key: array_digest(arrays[key]) for key in sorted(arrays)}}
    integrity["manifest_sha256"] = _full_digest(body, integrity)
    return {**body, INTEGRITY_KEY: integrity}


def _layer_note(manifest: dict, path: str) -> str:
    """`` (layer 'conv1')`` for a path under ``layers[i]`` / ``program[i]``, else ``""``."""
    for key in ("layers", "program"):
        if path.startswith(f"{key}["):
            try:
                index = int(path[len(key) + 1:path.index("]")])
                return f" (layer {manifest[key][index]['name']!r})"
            except (ValueError, IndexError, KeyError, TypeError):
                return ""
    return ""


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return ", ".join(items[:_LISTED]) + more


def _integrity_block(manifest: dict, source: str) -> dict:
    integrity = manifest.get(INTEGRITY_KEY)
    if (not isinstance(integrity, dict) or not isinstance(integrity.get("fields"), dict)
            or not isinstance(integrity.get("reference"), dict)
            or not isinstance(integrity.get("manifest_sha256"), str)):
        raise BundleError(f"{source}: key {INTEGRITY_KEY} is missing or malformed (it must "
                          "hold fields, reference and manifest_sha256; a bundle written "
                          "before integrity digests existed, or an edited manifest: compile "
                          "again)")
    return integrity


def verify_manifest(manifest: dict, source: str) -> None:
    """Check the manifest against its ``integrity`` block.

    Raises
    ------
    BundleError
        Naming ``source`` and every field (path, with its layer) that was changed, added or
        removed since the compile wrote it; or the ``integrity`` block when only it changed.
    """
    integrity = _integrity_block(manifest, source)
    body = {key: value for key, value in manifest.items() if key != INTEGRITY_KEY}
    stored, actual = integrity["fields"], _field_digests(body)
    changed = [path for path in actual if path in stored and stored[path] != actual[path]]
    added = [path for path in actual if path not in stored]
    removed = [path for path in stored if path not in actual]
    problems = ([f"{path}{_layer_note(manifest, path)} changed" for path in changed]
                + [f"{path} added" for path in added]
                + [f"{path} removed" for path in removed])
    if problems:
        raise BundleError(f"{source}: field {_listing(problems)} since the compile that wrote "
                          "the bundle (an edited manifest, or one from another compile); "
                          "compile again")
    if _full_digest(body, integrity) != integrity["manifest_sha256"]:
        raise BundleError(f"{source}: {INTEGRITY_KEY} block edited (manifest_sha256 does not "
                          "match the manifest); compile again")


def verify_reference(manifest: dict, arrays: dict[str, np.ndarray], source: str,
                     manifest_source: str) -> None:
    """Check ``reference.npz``'s arrays against the digests the manifest recorded.

    An array the manifest recorded but the file lacks (``missing array``), one that differs
    and one that is extra are named here. (The rebuild treats some arrays as optional, e.g.
    a layer without a bias: a recorded one that is missing must not read as "none".)

    Raises
    ------
    BundleError
        Naming ``source``, the array key(s) and their layer.
    """
    stored = _integrity_block(manifest, manifest_source)["reference"]
    prefixes = {item.get("reference"): item.get("name") for item in manifest.get("layers", [])
                if isinstance(item, dict)}

    def note(key: str) -> str:
        name = prefixes.get(key.split(".", 1)[0])
        return f"{key!r} (layer {name!r})" if name is not None else repr(key)

    # (a recorded key of no layer is an edit of the integrity block: the final manifest
    # check names that)
    missing = [note(key) for key in sorted(stored)
               if key not in arrays and key.split(".", 1)[0] in prefixes]
    if missing:
        raise BundleError(f"{source}: missing array{'s' if len(missing) > 1 else ''} "
                          f"{_listing(missing)} ({manifest_source} records "
                          f"{'them' if len(missing) > 1 else 'it'}); compile again")
    changed = [note(key) for key in sorted(arrays)
               if key in stored and array_digest(arrays[key]) != stored[key]]
    extra = [note(key) for key in sorted(arrays) if key not in stored]
    if changed or extra:
        parts = ([f"array {_listing(changed)} differs" if len(changed) == 1
                  else f"arrays {_listing(changed)} differ"] if changed else []) + \
                ([f"array {_listing(extra)} is not one {manifest_source} recorded"
                  if len(extra) == 1 else f"arrays {_listing(extra)} are not ones "
                  f"{manifest_source} recorded"] if extra else [])
        raise BundleError(f"{source}: {'; '.join(parts)} (a reference.npz from another "
                          "compile, or an edited one); compile again")
