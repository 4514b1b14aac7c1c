"""``manifest.json`` and ``reference.npz``: build them and rebuild a program and model from them.

The manifest holds everything a host needs besides the image (config, strategy, the
model's integer graph, per-layer regions and mapper statistics, the image's section
summary); ``reference.npz`` holds the integer weights, scales and output-unit parameters
of every compute layer. :func:`build_manifest` and :func:`reference_arrays` write them;
:func:`rebuild_program` and :func:`rebuild_qmodel` turn them (and the parsed image) back
into a :class:`~bitline.hw.spec.program.Program` and a
:class:`~bitline.sw.integer.qmodel.QuantizedModel`, raising
:class:`~bitline.sw.bundle.tables.BundleError` naming the key path at fault.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from importlib import metadata

import numpy as np

from bitline.hw.spec.image import FORMAT_VERSION
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.program import LayerProgram, OutputMode, Program, ProgramError
from bitline.hw.spec.validate import validate_program
from bitline.sw.bundle.codec import IMAGE_FILE
from bitline.sw.bundle.tables import BundleError, ParsedImage
from bitline.sw.frontend.ir import Layer, Model
from bitline.sw.integer.qmodel import ActParams, QuantizedModel, QuantLayer
from bitline.sw.quant.tensor import QuantizedTensor

__all__ = ["MANIFEST_FILE", "REFERENCE_FILE", "build_manifest", "reference_arrays",
           "ManifestKeys", "rebuild_program", "rebuild_qmodel"]

MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.npz"


def _json_safe(value, where: str):
    """Return ``value`` as plain JSON types (tuples -> lists, numpy scalars -> Python)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist(), where)
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, np.integer)):
                raise BundleError(f"{MANIFEST_FILE}: {where}: key {key!r} is not a string")
            out[str(key)] = _json_safe(item, f"{where}.{key}")
        return out
    raise BundleError(f"{MANIFEST_FILE}: {where}: cannot store a {type(value).__name__} "
                      f"({value!r}) in JSON")


def _tuples(value):
    """Inverse of :func:`_json_safe` for IR attributes: lists become tuples."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    return value


def _act_dict(params: ActParams | None):
    if params is None:
        return None
    return {"bits": int(params.bits), "scale": float(params.scale),
            "zero_point": int(params.zero_point)}


def _bitline_version() -> str:
    try:
        return metadata.version("bitline")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_manifest(program: Program, qmodel: QuantizedModel, tables: ParsedImage,
                   image: bytes) -> dict:
    """Return the manifest of a bundle (``tables`` with sections as parsed from ``image``)."""
    config = program.config
    model = qmodel.model
    compute_names = [layer.name for layer in model.compute_layers]
    layers_out = []
    for layer in model.layers:
        where = f"layers.{layer.name}"
        quant = qmodel.layers.get(layer.name)
        item = {
            "name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
            "output": layer.output,
            "input_shape": _json_safe(layer.input_shape, f"{where}.input_shape"),
            "output_shape": _json_safe(layer.output_shape, f"{where}.output_shape"),
            "attrs": _json_safe(layer.attrs, f"{where}.attrs"),
            "activation": layer.activation,
            "reference": (f"L{compute_names.index(layer.name)}" if layer.is_compute else None),
            "quant": None,
        }
        if quant is not None:
            entry = {
                "inputs": [_act_dict(params) for params in quant.inputs],
                "output": _act_dict(quant.output),
                "mode": quant.mode, "clamp_lo": int(quant.clamp_lo),
                "clamp_hi": int(quant.clamp_hi),
            }
            if not layer.is_compute:
                entry["mult"] = _json_safe(quant.mult, f"{where}.mult")
                entry["shift"] = _json_safe(quant.shift, f"{where}.shift")
            if quant.weight is not None:
                entry["weight_options"] = _json_safe(quant.weight.options,
                                                     f"{where}.weight.options")
            item["quant"] = entry
        layers_out.append(item)

    regions = []
    for index, layer in enumerate(program.layers):
        record = tables.layers[index]
        regions.append({
            "name": layer.name,
            "units": [int(unit) for unit in np.asarray(layer.xbars).reshape(-1)],
            "entries": [int(record["entry_start"]), int(record["entry_count"])],
            "params": [int(record["param_start"]), int(record["n_outputs"])],
            "n_inputs": int(record["n_inputs"]), "n_outputs": int(record["n_outputs"]),
            "act_bits": int(record["act_bits"]), "mode": layer.mode,
            "zero_point": int(record["zero_point"]), "clamp_lo": int(record["clamp_lo"]),
            "clamp_hi": int(record["clamp_hi"]),
            "weight_offset": int(record["weight_offset"]),
            "stats": _json_safe(layer.stats, f"program.{layer.name}.stats"),
        })
        if layer.copies > 1:    # the copy map (docs/bundle.md "Copies"); absent: one copy
            regions[-1]["copies"] = [layer.copy_units(copy).tolist()
                                     for copy in range(1, layer.copies)]
    manifest = {
        "bitline_version": _bitline_version(),
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "config_digest": config.digest,
        "strategy": program.strategy,
        "encoding": program.encoding,
        "model": {
            "name": model.name, "source": model.source, "input_name": model.input_name,
            "input_shape": _json_safe(model.input_shape, "model.input_shape"),
            "output_name": model.output_name,
            "output_shape": _json_safe(model.output_shape, "model.output_shape"),
            # A final Softmax / LogSoftmax the host runs on the output (or null).
            "output_transform": model.output_transform,
        },
        "input": _act_dict(qmodel.input),
        "quant_spec": _json_safe(qmodel.spec, "quant_spec"),
        "layers": layers_out,
        "program": regions,
        "totals": {
            "layers": len(program.layers), "units": int(len(tables.cell_units)),
            "entries": int(len(tables.entries)), "params": int(len(tables.bias)),
            "image_bytes": len(image),
        },
        "sections": [info.to_dict() for info in tables.sections.values()],
        "files": {"image": IMAGE_FILE, "image_sha256": hashlib.sha256(image).hexdigest(),
                  "reference": REFERENCE_FILE},
    }
    if program.nodes is not None:
        # names and kinds of the NETWORK records, for messages and readers of the JSON (the
        # records themselves are the image's)
        manifest["network"] = [{"name": node.name, "kind": NodeKind(node.kind).name,
                                "to_host": bool(node.to_host)} for node in program.nodes]
    return manifest


def reference_arrays(qmodel: QuantizedModel) -> dict[str, np.ndarray]:
    arrays = {}
    for index, layer in enumerate(qmodel.model.compute_layers):
        prefix = f"L{index}"
        quant = qmodel.layers.get(layer.name)
        weight = quant.weight if quant is not None else None
        if weight is not None:
            arrays[f"{prefix}.values"] = np.asarray(weight.values, dtype=np.int64)
            arrays[f"{prefix}.scale"] = np.asarray(weight.scale, dtype=np.float64)
            arrays[f"{prefix}.scheme"] = np.asarray(weight.scheme, dtype=str)
            arrays[f"{prefix}.bits"] = np.asarray(weight.bits, dtype=np.int64)
        elif layer.weight is not None:
            arrays[f"{prefix}.ir_weight"] = np.asarray(layer.weight)
        if layer.bias is not None:
            arrays[f"{prefix}.ir_bias"] = np.asarray(layer.bias)
        if quant is not None:
            for name in ("bias", "mult", "shift", "block_bits", "act_block_bits"):
                value = getattr(quant, name)
                if value is not None:
                    arrays[f"{prefix}.{name}"] = np.asarray(value, dtype=np.int64)
    return arrays



class ManifestKeys:
    """Typed access to manifest keys with errors naming the key path."""

    def __init__(self, source: str):
        self.source = source

    def get(self, mapping, key, kind, where: str):
        if not isinstance(mapping, dict) or key not in mapping:
            raise BundleError(f"{self.source}: missing key {where}{key}")
        value = mapping[key]
        if kind is not None and not isinstance(value, kind):
            raise BundleError(f"{self.source}: {where}{key} must be "
                              f"{getattr(kind, '__name__', kind)}, not {value!r}")
        return value

    def act(self, value, where: str) -> ActParams | None:
        if value is None:
            return None
        try:
            return ActParams(bits=int(value["bits"]), scale=float(value["scale"]),
                             zero_point=int(value["zero_point"]))
        except (KeyError, TypeError, ValueError):
            raise BundleError(f"{self.source}: {where} must be an object with bits, scale and "
                              f"zero_point, not {value!r}") from None


def rebuild_program(parsed: ParsedImage, manifest: dict, keys: ManifestKeys) -> Program:
    config = parsed.config
    regions = keys.get(manifest, "program", list, "")
    if len(regions) != len(parsed.layers):
        raise BundleError(f"{keys.source}: program lists {len(regions)} layers, {IMAGE_FILE} "
                          f"section LAYERS has {len(parsed.layers)} records")
    record_of_unit = {int(unit): index for index, unit in enumerate(parsed.cell_units)}
    layers = []
    for index, region in enumerate(regions):
        where = f"program[{index}]."
        name = keys.get(region, "name", str, where)
        units = keys.get(region, "units", list, where)
        copies = keys.get(region, "copies", list, where) if "copies" in region else []
        if any(not isinstance(copy, list) or len(copy) != len(units) for copy in copies):
            raise BundleError(f"{keys.source}: {where}copies must be lists of {len(units)} "
                              f"units (one per unit of copy 0), not {copies}")
        every = units + [unit for copy in copies for unit in copy]
        if sorted(every) != parsed.layer_units(index).tolist() or len(set(every)) != len(every):
            raise BundleError(f"{keys.source}: {where}units {units} and copies {copies} "
                              f"disagree with {IMAGE_FILE} section LAYERS record {index} field "
                              f"xbar_mask {parsed.layer_units(index).tolist()}")
        # the image carries the copy map too (LAYERS lanes, CELLS source): the same one
        for lane, copy in enumerate([units, *copies]):
            want = [-1] * len(units) if lane == 0 else units
            if (parsed.lanes[index][copy].tolist() != [lane] * len(copy)
                    or (parsed.copy_of is not None
                        and parsed.copy_of[copy].tolist() != want)):
                raise BundleError(f"{keys.source}: {where}copies {copies} disagree with "
                                  f"{IMAGE_FILE}'s copy map (LAYERS record {index} field "
                                  f"lanes, CELLS field source) for copy {lane}")
        record = parsed.layers[index]
        stored = keys.get(region, "weight_offset", int, where)
        if stored != int(record["weight_offset"]):
            raise BundleError(f"{keys.source}: {where}weight_offset {stored} disagrees with "
                              f"{IMAGE_FILE} section LAYERS record {index} field weight_offset "
                              f"{int(record['weight_offset'])}")
        # Copies of the record's fields for readers of the JSON: they must say the same.
        for key in ("n_inputs", "n_outputs", "act_bits", "zero_point", "clamp_lo", "clamp_hi",
                    "mode"):
            if key not in region:
                continue
            actual = (OutputMode(int(record["mode"])).label if key == "mode"
                      else int(record[key]))
            if region[key] != actual:
                raise BundleError(f"{keys.source}: {where}{key} {region[key]!r} disagrees "
                                  f"with {IMAGE_FILE} section LAYERS record {index} field "
                                  f"{key} {actual!r}")
        for key, start, count in (("entries", "entry_start", "entry_count"),
                                  ("params", "param_start", "n_outputs")):
            stored = keys.get(region, key, list, where)
            actual = [int(record[start]), int(record[count])]
            if stored != actual:
                raise BundleError(f"{keys.source}: {where}{key} {stored} disagree with "
                                  f"{IMAGE_FILE} section LAYERS record {index} fields {start}, "
                                  f"{count} {actual}")
        xbars = np.asarray(units, dtype=np.int64)
        entry_start, entry_count = int(record["entry_start"]), int(record["entry_count"])
        param_start, n_outputs = int(record["param_start"]), int(record["n_outputs"])
        params = slice(param_start, param_start + n_outputs)
        layers.append(LayerProgram(
            name=name,
            n_inputs=int(record["n_inputs"]),
            n_outputs=n_outputs,
            act_bits=int(record["act_bits"]),
            xbars=xbars,
            row_maps=parsed.row_maps[xbars],
            cells=parsed.cells[[record_of_unit[unit] for unit in units]].reshape(
                len(units), config.rows, config.cols),
            entries=parsed.entries[entry_start:entry_start + entry_count].copy(),
            bias=parsed.bias[params].copy(),
            mult=parsed.mult[params].copy(),
            shift=parsed.shift[params].copy(),
            mode=OutputMode(int(record["mode"])).label,
            zero_point=int(record["zero_point"]),
            clamp_lo=int(record["clamp_lo"]),
            clamp_hi=int(record["clamp_hi"]),
            weight_offset=int(record["weight_offset"]),
            stats=keys.get(region, "stats", dict, where),
            copy_xbars=np.asarray(copies, dtype=np.int64) if copies else None,
        ))
    program = Program(config=config, strategy=keys.get(manifest, "strategy", str, ""),
                      layers=layers, nodes=_rebuild_nodes(parsed, manifest, keys))
    if any(layer.copies > 1 for layer in layers):
        # The rebuilt program's copies against the image's records (cells, row maps).
        try:
            validate_program(program, config, source=keys.source)
        except ProgramError as error:
            raise BundleError(str(error)) from None
    return program


def _rebuild_nodes(parsed: ParsedImage, manifest: dict, keys: ManifestKeys) -> list | None:
    """The NETWORK records as the program's nodes, named from the manifest's ``network``.

    ``None`` without a ``network`` key (a per-layer program; on whole-network hardware its
    NETWORK section must then be empty).
    """
    nodes = parsed.nodes or []
    if "network" not in manifest:
        if nodes:
            raise BundleError(f"{keys.source}: missing key network ({IMAGE_FILE} section "
                              f"NETWORK has {len(nodes)} records)")
        return None
    listed = keys.get(manifest, "network", list, "")
    if parsed.nodes is None or len(listed) != len(nodes):
        count = "no NETWORK section" if parsed.nodes is None else \
            f"section NETWORK has {len(nodes)} records"
        raise BundleError(f"{keys.source}: network lists {len(listed)} nodes, {IMAGE_FILE} "
                          f"{count}")
    out = []
    for index, (item, node) in enumerate(zip(listed, nodes)):
        where = f"network[{index}]."
        name = keys.get(item, "name", str, where)
        kind = keys.get(item, "kind", str, where)
        if kind != NodeKind(node.kind).name:
            raise BundleError(f"{keys.source}: {where}kind {kind!r} disagrees with "
                              f"{IMAGE_FILE} section NETWORK record {index} field kind "
                              f"{NodeKind(node.kind).name!r}")
        out.append(replace(node, name=name))
    return out


def rebuild_qmodel(manifest: dict, arrays: dict[str, np.ndarray], keys: ManifestKeys,
                    reference: str) -> QuantizedModel:
    model_info = keys.get(manifest, "model", dict, "")
    layers, quant_layers = [], {}

    def array(prefix, name, required=False):
        key = f"{prefix}.{name}"
        if key in arrays:
            return arrays[key]
        if required:
            raise BundleError(f"{reference}: missing array {key!r}")
        return None

    for index, item in enumerate(keys.get(manifest, "layers", list, "")):
        where = f"layers[{index}]."
        layer = Layer(
            name=keys.get(item, "name", str, where),
            op=keys.get(item, "op", str, where),
            inputs=list(keys.get(item, "inputs", list, where)),
            output=keys.get(item, "output", str, where),
            input_shape=tuple(keys.get(item, "input_shape", list, where)),
            output_shape=tuple(keys.get(item, "output_shape", list, where)),
            attrs=_tuples(keys.get(item, "attrs", dict, where)),
            activation=keys.get(item, "activation", None, where),
        )
        prefix = item.get("reference")
        weight = None
        if prefix is not None:
            values = array(prefix, "values")
            if values is not None:
                scheme, bits = array(prefix, "scheme", True), array(prefix, "bits", True)
                quant_info = item.get("quant") or {}
                weight = QuantizedTensor(
                    values=values.astype(np.int64),
                    scale=array(prefix, "scale", True).astype(np.float64),
                    scheme=str(scheme) if scheme.ndim == 0 else scheme,
                    bits=int(bits) if bits.ndim == 0 else bits.astype(np.int64),
                    options=dict(quant_info.get("weight_options") or {}),
                )
                layer.weight = weight.dequantize()
            else:
                layer.weight = array(prefix, "ir_weight")
            layer.bias = array(prefix, "ir_bias")
        layers.append(layer)
        quant = item.get("quant")
        if quant is None:
            continue
        qwhere = f"{where}quant."
        inputs = [keys.act(value, f"{qwhere}inputs[{i}]")
                  for i, value in enumerate(keys.get(quant, "inputs", list, qwhere))]

        def ints(value):
            return None if value is None else np.asarray(value, dtype=np.int64)

        if prefix is not None:
            mult, shift = ints(array(prefix, "mult")), ints(array(prefix, "shift"))
        else:
            mult, shift = ints(quant.get("mult")), ints(quant.get("shift"))
        quant_layers[layer.name] = QuantLayer(
            layer=layer,
            inputs=inputs,
            output=keys.act(keys.get(quant, "output", None, qwhere), f"{qwhere}output"),
            weight=weight,
            bias=ints(array(prefix, "bias")) if prefix is not None else None,
            mult=mult,
            shift=shift,
            mode=keys.get(quant, "mode", str, qwhere),
            clamp_lo=keys.get(quant, "clamp_lo", int, qwhere),
            clamp_hi=keys.get(quant, "clamp_hi", int, qwhere),
            block_bits=ints(array(prefix, "block_bits")) if prefix is not None else None,
            act_block_bits=(ints(array(prefix, "act_block_bits"))
                            if prefix is not None else None),
        )
    model = Model(
        name=keys.get(model_info, "name", str, "model."),
        input_name=keys.get(model_info, "input_name", str, "model."),
        input_shape=tuple(keys.get(model_info, "input_shape", list, "model.")),
        layers=layers,
        output_name=keys.get(model_info, "output_name", str, "model."),
        source=model_info.get("source", "<memory>"),
        output_transform=model_info.get("output_transform"),
    )
    return QuantizedModel(model=model, input=keys.act(keys.get(manifest, "input", dict, ""),
                                                      "input"),
                          layers=quant_layers, spec=manifest.get("quant_spec") or {})
