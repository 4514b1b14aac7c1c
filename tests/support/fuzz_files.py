"""Fuzz cases of the ``config``, ``bundle`` and ``input`` categories, and :data:`CATEGORIES`.

* ``config`` -- accelerator TOML configs (random keys, types, out-of-range values, unknown
  keys, presets, broken TOML) compiled with the tiny MLP: an exit 0 must honour every key
  the file sets (the bundle's config holds the value) and run equal to the golden model; and
  quantization specs shaped like ``examples/quant/*.toml`` (modes, budgets including nan /
  inf / negative, widths, schemes, rules, layer names, unknown keys).
* ``bundle`` -- random edits of a compiled tiny bundle (manifest fields, image bytes,
  reference arrays, a file of another compile, missing and extra files), then ``run``: an
  exit 0 must give exactly the unedited bundle's outputs.
* ``input`` -- input files for ``run`` (dtypes, shapes, NaN / Inf, empty, object, complex,
  structured, huge values, broken files, ``--strict``) on a bundle or the float model: an
  exit 0 must equal the golden model on the clamped inputs (bundles; the clamp count is
  counted here too) or onnx's reference evaluator (the float backend).

Every oracle is written from TOML / numpy facts (which values cannot be right), not from
bitline's validators.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import tomllib
from dataclasses import fields
from functools import lru_cache

import numpy as np
from hypothesis import strategies as st

from support.fuzz import (
    DIR,
    Case,
    baseline,
    check_bundle_against_golden,
    cli,
    compare_float,
    onnx_reference,
)
from support.fuzz_network import network_cases
from support.fuzz_onnx import STRATEGIES, onnx_cases, rarely

__all__ = ["CATEGORIES", "bundle_cases", "config_cases", "input_cases", "quant_cases"]


# --------------------------------------------------------------------- TOML values
def toml_value(value) -> str:
    """``value`` as a TOML literal (nan / inf as TOML spells them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


ANY_VALUE = st.one_of(
    st.integers(-3, 12), st.sampled_from([0, 1, 2 ** 31, 2 ** 63 - 1, 4096, 65536]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, 128.0, -1.0]),
    st.text(max_size=6), st.booleans(), st.lists(st.integers(0, 9), max_size=3),
    st.just({"a": 1}))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------ config category
def _config_fields() -> dict[str, type]:
    from bitline.hw.spec.config import AcceleratorConfig

    return {f.name: (float if f.type in ("float", float) else int)
            for f in fields(AcceleratorConfig) if f.name != "pinned"}


def _config_must_refuse(table: dict) -> str | None:
    """Why the table cannot be a config (TOML facts), or ``None`` if it may be one."""
    known = _config_fields()
    for key, value in table.items():
        if key == "preset":
            if not isinstance(value, str) or value not in ("bwq", "isaac"):
                return f"preset {value!r}"
            continue
        if key not in known:
            return f"unknown key {key!r}"
        if known[key] is int and not (_is_int(value) or (isinstance(value, float)
                                                         and value.is_integer())):
            return f"{key} = {value!r} is no integer"
        if known[key] is float and not _is_number(value):
            return f"{key} = {value!r} is no number"
        if _is_number(value) and (not math.isfinite(value) or value < 0):
            return f"{key} = {value!r}"
    return None


def _honoured(table: dict):
    """Check of an exit-0 compile with a config: every key set is in the bundle's config,
    and the bundle runs equal to the golden model."""
    def check(folder, run):
        manifest = json.loads((folder / "out" / "manifest.json").read_text())
        for key, value in table.items():
            if key != "preset" and manifest["config"].get(key) != value:
                return (f"config sets {key} = {value!r}, the bundle has "
                        f"{manifest['config'].get(key)!r}")
        problem, _ = check_bundle_against_golden(run, folder / "out", baseline().x, folder)
        return problem
    return check


@st.composite
def config_cases(draw):
    """A random accelerator config TOML compiled with the tiny MLP (module docstring)."""
    names = sorted(_config_fields())
    table: dict = {}
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.one_of(st.sampled_from(names), st.sampled_from(
            ["n_xbar", "foo", "Rows", "preset"])))
        table[key] = draw(st.one_of(ANY_VALUE, st.sampled_from(["bwq", "isaac", "BWQ"]),
                                    st.integers(1, 300)) if key == "preset" or draw(
            st.booleans()) else st.integers(1, 300))
    top = draw(st.booleans())
    text = ("" if top else "[accelerator]\n") + "".join(
        f"{key} = {toml_value(value)}\n" for key, value in table.items())
    kind = "table"
    if rarely(draw, 9):
        text, kind = text[:draw(st.integers(0, len(text)))] + draw(st.sampled_from(
            ["", "=", "[", "x = \n", "\x00", "[accelerator]\n"])), "broken"
    try:
        document = tomllib.loads(text)
        # the fields are the [accelerator] table's if there is one (then nothing may stand
        # outside it), else the top-level keys
        parsed = document.get("accelerator", document)
        outside = set(document) - {"accelerator"} if "accelerator" in document else set()
        refuse = (f"keys {sorted(outside)} outside [accelerator]" if outside else
                  _config_must_refuse(parsed) if isinstance(parsed, dict) else "not a table")
    except tomllib.TOMLDecodeError:
        parsed, refuse = {}, "not TOML"
    strategy = draw(st.sampled_from(STRATEGIES))
    return Case("config", kind, text.replace("\n", "; ")[:200],
                ["compile", f"{DIR}/tiny.onnx", "-s", strategy, "--config",
                 f"{DIR}/chip.toml", "-o", f"{DIR}/out", "-q"],
                "refuse" if refuse else "either",
                files={"tiny.onnx": baseline().onnx_bytes, "chip.toml": text.encode()},
                check=None if refuse else _honoured(parsed))


SCHEMES = ["int", "pot", "apot", "adaptivfloat", "ternary", "binary"]


@st.composite
def quant_cases(draw):
    """A quantization spec shaped like examples/quant/*.toml, compiled with the tiny MLP."""
    mode = draw(st.sampled_from(["fixed", "varied", "bwq", "fixed", "mixed-up"]))
    spec: dict = {"name": "fuzz", "mode": mode}
    refuse = [] if mode in ("fixed", "varied", "bwq") else [f"mode {mode!r}"]
    budget = draw(st.floats(1.0, 8.0)) if not rarely(draw, 3) else draw(st.sampled_from(
        [math.nan, math.inf, -math.inf, -1.0, 0.0, 100.0]))
    if mode in ("varied", "bwq") and not (math.isfinite(budget) and budget > 0):
        refuse.append(f"budget {budget}")
    if mode == "varied":
        spec["varied"] = {"budget": budget,
                          "schemes": draw(st.lists(st.sampled_from(SCHEMES[:4]), min_size=1,
                                                   max_size=4, unique=True)),
                          "bits": draw(st.lists(st.integers(2, 8), min_size=1, max_size=4,
                                                unique=True))}
    elif mode == "bwq":
        spec["bwq"] = {"budget": budget, "min_bits": draw(st.integers(0, 4)),
                       "max_bits": draw(st.integers(4, 8))}
    else:
        bits = draw(st.integers(2, 8)) if not rarely(draw, 3) else draw(
            st.sampled_from([0, -1, 2.5, 33]))
        scheme = draw(st.sampled_from(SCHEMES * 3 + ["float", "Int"]))
        spec["weights"] = {"scheme": scheme, "bits": bits}
        if scheme not in SCHEMES:
            refuse.append(f"scheme {scheme!r}")
        if not _is_int(bits) or bits <= 0:
            refuse.append(f"bits {bits!r}")
    act_bits = draw(st.integers(2, 8)) if not rarely(draw, 4) else draw(
        st.sampled_from([0, -2, 8.5]))
    percentile = draw(st.floats(90.0, 100.0)) if not rarely(draw, 4) else draw(
        st.sampled_from([math.nan, 0.0, -5.0, 150.0]))
    spec["activations"] = {"bits": act_bits, "rule": "percentile", "percentile": percentile}
    if not _is_int(act_bits) or act_bits <= 0:
        refuse.append(f"activation bits {act_bits!r}")
    if not (math.isfinite(percentile) and 0 < percentile <= 100):
        refuse.append(f"percentile {percentile!r}")
    layer = draw(st.sampled_from([None, None, "fc1", "fc2", "conv9"]))
    if layer is not None and mode == "fixed":
        spec["layers"] = {layer: {"bits": draw(st.integers(2, 8))}}
        if layer not in ("fc1", "fc2"):
            refuse.append(f"unknown layer {layer!r}")
    if rarely(draw, 9):
        spec["budgett"] = 3.0
        refuse.append("unknown key 'budgett'")
    text = _toml(spec)
    return Case("config", "quant", text.replace("\n", "; ")[:240],
                ["compile", f"{DIR}/tiny.onnx", "-s", "bwq", "--quant", f"{DIR}/spec.toml",
                 "-o", f"{DIR}/out", "-q"],
                "refuse" if refuse else "either",
                files={"tiny.onnx": baseline().onnx_bytes, "spec.toml": text.encode()},
                check=None if refuse else _golden_check)


def _toml(spec: dict) -> str:
    plain = "".join(f"{k} = {toml_value(v)}\n" for k, v in spec.items()
                    if not isinstance(v, dict))
    tables = []
    for key, value in spec.items():
        if isinstance(value, dict) and key == "layers":
            for name, table in value.items():
                tables.append(f'[layers."{name}"]\n' + "".join(
                    f"{k} = {toml_value(v)}\n" for k, v in table.items()))
        elif isinstance(value, dict):
            tables.append(f"[{key}]\n" + "".join(f"{k} = {toml_value(v)}\n"
                                                  for k, v in value.items()))
    return plain + "\n".join(tables)


def _golden_check(folder, run):
    return check_bundle_against_golden(run, folder / "out", baseline().x, folder)[0]


# ------------------------------------------------------------------ bundle category
def _leaves(data, path=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(data, list) and data and len(path) < 6:
        for index, value in enumerate(data):
            yield from _leaves(value, (*path, index))
    else:
        yield path


def _mutate_json(draw, data):
    paths = list(_leaves(data))
    path = draw(st.sampled_from(paths))
    parent = data
    for step in path[:-1]:
        parent = parent[step]
    old = parent[path[-1]] if path else data
    how = draw(st.sampled_from(["delta", "double", "negate", "string", "null", "delete",
                                "zero"]))
    if how == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        new = {"delta": (old + draw(st.sampled_from([1, -1, 7]))) if _is_number(old) else
               "x", "double": old * 2 if _is_number(old) else [old, old],
               "negate": -old if _is_number(old) else not old,
               "string": "fuzz", "null": None, "zero": 0}.get(how)
        parent[path[-1]] = new
    return "/".join(map(str, path)) + f" {how}"


def _edit(draw):
    """Return ``(kind, description, edit(folder))`` of one bundle edit."""
    kind = draw(st.sampled_from(["manifest", "manifest", "reformat", "image_flip",
                                 "image_cut", "image_append", "reference", "other_file",
                                 "missing", "extra", "sidecar"]))
    if kind == "sidecar":
        sidecar = json.loads((baseline().bundle / "compile.json").read_text())
        what = _mutate_json(draw, sidecar)
        text = draw(st.sampled_from([json.dumps(sidecar), "[1]", "{", "", "\x00"]))
        label = what if text.startswith('{"') else repr(text)
        return kind, f"compile.json: {label}", lambda b: (b / "compile.json").write_text(text)
    if kind == "manifest":
        manifest = json.loads((baseline().bundle / "manifest.json").read_text())
        what = _mutate_json(draw, manifest)
        text = json.dumps(manifest, indent=2)
        return kind, what, lambda b: (b / "manifest.json").write_text(text)
    if kind == "reformat":
        manifest = json.loads((baseline().bundle / "manifest.json").read_text())
        text = json.dumps(manifest, indent=draw(st.sampled_from([None, 1, 4])),
                          sort_keys=draw(st.booleans()))
        return kind, "manifest re-serialized", lambda b: (b / "manifest.json").write_text(text)
    if kind.startswith("image"):
        image = bytearray((baseline().bundle / "image.bin").read_bytes())
        at = draw(st.integers(0, len(image) - 1))
        if kind == "image_flip":
            image[at] ^= draw(st.integers(1, 255))
        elif kind == "image_cut":
            image = image[:at]
        else:
            image += bytes(draw(st.binary(min_size=1, max_size=16)))
        data = bytes(image)
        return kind, f"at byte {at}", lambda b: (b / "image.bin").write_bytes(data)
    if kind == "reference":
        with np.load(baseline().bundle / "reference.npz") as loaded:
            arrays = {key: loaded[key] for key in loaded}
        key = draw(st.sampled_from(sorted(arrays)))
        how = draw(st.sampled_from(["bump", "drop", "extra", "dtype"]))
        text = arrays[key].dtype.kind == "U"        # e.g. a layer's scheme name
        if how == "bump" and text:
            arrays[key] = np.array("pot" if str(arrays[key]) != "pot" else "int")
        elif how == "bump" and arrays[key].size:
            arrays[key] = arrays[key].copy()
            arrays[key].flat[draw(st.integers(0, arrays[key].size - 1))] += 1
        elif how == "drop":
            del arrays[key]
        elif how == "extra":
            arrays["L9.values"] = np.ones(3)
        else:
            arrays[key] = arrays[key].astype(object if text else np.float32
                                             if arrays[key].dtype != np.float32 else np.float64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        return kind, f"{key} {how}", lambda b: (b / "reference.npz").write_bytes(data)
    if kind == "other_file":
        name = draw(st.sampled_from(["manifest.json", "image.bin", "reference.npz",
                                     "compile.json"]))
        source = baseline("other").bundle / name
        return kind, f"{name} of another compile", lambda b: shutil.copy(source, b / name)
    if kind == "missing":
        name = draw(st.sampled_from(["image.bin", "reference.npz", "compile.json",
                                     "manifest.json"]))
        return kind, f"{name} removed", lambda b: (b / name).unlink()
    name = draw(st.sampled_from(["notes.txt", "extra.npy", "image.bin.bak"]))
    return kind, f"extra file {name}", lambda b: (b / name).write_bytes(b"fuzz")


@st.composite
def bundle_cases(draw):
    """One random edit of the tiny bundle, then ``run`` on the executor or golden model."""
    kind, what, edit = _edit(draw)
    base = baseline()

    def setup(folder):
        shutil.copytree(base.bundle, folder / "b")
        edit(folder / "b")
        np.save(folder / "x.npy", base.x)

    def same_outputs(folder, run):
        with np.load(folder / "y.npz") as data:
            if not np.array_equal(data["output_int"], base.output_int):
                return "outputs differ from the unedited bundle's"
            if not np.allclose(data["output"], base.output, rtol=0, atol=0):
                return "dequantized outputs differ from the unedited bundle's"
        return None

    command = draw(st.sampled_from(["executor", "golden", "report"]))
    if command == "report":
        def same_report(folder, run):
            got, want = json.loads(run.results[0].out), dict(_baseline_report())
            labels, want_labels = got.pop("labels", None), want.pop("labels")
            if got != want:
                return "report differs from the unedited bundle's"
            warned = "compile.json" in run.results[0].err and "warning: " in run.results[0].err
            # the labels come from compile.json, which is not authenticated (docs/bundle.md):
            # edited there they may show; left out, a warning must say so
            if kind != "sidecar" and labels != want_labels and not (labels == {} and warned):
                return "report labels differ from the unedited bundle's without a warning"
            return None

        return Case("bundle", kind, what, ["report", f"{DIR}/b", "--json"], "either",
                    setup=setup, check=same_report)
    return Case("bundle", kind, what,
                ["run", f"{DIR}/b", "-i", f"{DIR}/x.npy", "-o", f"{DIR}/y.npz", "-b", command,
                 "-q"], "either", setup=setup, check=same_outputs)


@lru_cache(maxsize=1)
def _baseline_report() -> dict:
    result = cli(["report", baseline().bundle, "--json"])
    assert result.code == 0, result.err
    return json.loads(result.out)


# ------------------------------------------------------------------- input category
DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
          "uint64", "bool", "complex64", "object", "<U3", "structured"]


def _array(draw, shape):
    dtype = draw(st.sampled_from(DTYPES[:10] * 2 + DTYPES[10:]))     # mostly real ones
    n = 0 if rarely(draw, 5) else draw(st.integers(1, 3))
    form = draw(st.sampled_from(["batch"] * 4 + ["sample", "sample", "wrong", "scalar"]))
    dims = {"batch": (n, *shape), "sample": shape, "scalar": (),
            "wrong": (max(n, 1), *shape[:-1], shape[-1] + draw(st.sampled_from([-1, 1])))
            }[form]
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    low, high = draw(st.sampled_from([(0.0, 0.9), (0.0, 0.9), (-3.0, 3.0), (0.0, 1e6)]))
    values = rng.uniform(low, high, dims)
    if values.size and rarely(draw, 3):
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(
            [math.nan, math.inf, -math.inf, 1e39, -1e300, 2.0 ** 70]))
    with np.errstate(all="ignore"):
        if dtype == "object":
            return values.astype(object)
        if dtype == "structured":
            array = np.zeros(dims, dtype=[("a", "f4")])
            array["a"] = values
            return array
        if dtype.startswith(("int", "uint")):
            values = np.nan_to_num(values, posinf=0, neginf=0)
            info = np.iinfo(dtype)
            return np.clip(values, info.min, info.max).astype(dtype)
        return values.astype(dtype)


def _input_must_refuse(array, shape, strict, base) -> str | None:
    """Why ``array`` cannot be run on a model of input ``shape`` (numpy facts), or None."""
    if array.dtype.kind not in "biuf":
        return f"dtype {array.dtype}"
    if array.size == 0 or array.ndim == 0:
        return "no elements"
    if array.shape != shape and array.shape[1:] != shape:
        return f"shape {array.shape}"
    with np.errstate(all="ignore"):
        values = array.astype(np.float32)
    if not np.isfinite(values).all():
        return "not finite in float32"
    if strict and _clamped(values, base):
        return "values outside the calibrated range with --strict"
    return None


def _clamped(values, base) -> int:
    codes = np.rint(values.astype(np.float64) / base.scale) + base.zero_point
    return int(np.count_nonzero((codes < 0) | (codes > base.qmax)))


def _input_check(array, base, target):
    values = array.astype(np.float32).reshape(-1, *base.input_shape)

    def check(folder, run):
        with np.load(folder / "y.npz") as data:
            arrays = {key: data[key] for key in data}
        if target == "model":
            return compare_float(arrays["output"], onnx_reference(base.onnx_bytes, values),
                                 1e-4)
        from bitline.sim.golden import run_golden
        from bitline.sw.bundle import read_bundle

        want = run_golden(read_bundle(base.bundle).qmodel, values).output_int
        if not np.array_equal(arrays["output_int"], want):
            return "output_int differs from the golden model on the clamped inputs"
        said = re.search(r"(\d+) of (\d+) input values lie outside", run.results[0].err)
        count = _clamped(values, base)
        if (int(said.group(1)) if said else 0) != count:
            return f"the warning counts {said and said.group(1)} clamped values, not {count}"
        return None
    return check


@st.composite
def input_cases(draw):
    """An input file for ``run`` on a bundle (executor / golden) or the float model."""
    base = baseline(draw(st.sampled_from(["tiny", "small"])))
    array = _array(draw, base.input_shape)
    target = draw(st.sampled_from(["executor", "golden", "model"]))
    strict = target != "model" and rarely(draw, 2)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    data, kind = buffer.getvalue(), "npy"
    form = draw(st.sampled_from(["npy"] * 6 + ["npz", "npz_keys", "garbage", "cut"]))
    if form == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, **{draw(st.sampled_from(["input", "x"])): array})
        data, kind = buffer.getvalue(), "npz"
    elif form == "npz_keys":
        buffer = io.BytesIO()
        np.savez(buffer, a=array, b=array)
        data, kind = buffer.getvalue(), "npz_keys"
    elif form == "garbage":
        data, kind = draw(st.binary(max_size=64)), "garbage"
    elif form == "cut":
        data, kind = data[:draw(st.integers(0, len(data) - 1))], "cut"
    refuse = {"npz_keys": "an npz of two arrays and no 'input'"}.get(kind)
    if kind in ("garbage", "cut"):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
            if not isinstance(array, np.ndarray):
                refuse = "not an array file"
        except Exception:           # noqa: BLE001 - numpy cannot read it: must be refused
            refuse = "not a numpy file"
    refuse = refuse or _input_must_refuse(array, base.input_shape, strict, base)
    model = ["run", f"{DIR}/model.onnx"] if target == "model" else [
        "run", str(base.bundle), "-b", target]
    argv = [*model, "-i", f"{DIR}/x.{'npz' if kind.startswith('npz') else 'npy'}",
            "-o", f"{DIR}/y.npz", *(["--strict"] if strict else [])]
    files = {argv[argv.index("-i") + 1].replace(f"{DIR}/", ""): data}
    if target == "model":
        files["model.onnx"] = base.onnx_bytes
    return Case("input", f"{kind}-{array.dtype.kind if hasattr(array, 'dtype') else '?'}",
                f"{base.name} {target} {kind} dtype {getattr(array, 'dtype', '?')} shape "
                f"{getattr(array, 'shape', '?')}{' strict' if strict else ''}",
                argv, "refuse" if refuse else "accept", files=files,
                check=None if refuse else _input_check(array, base, target))


#: Category name -> strategy of :class:`~support.fuzz.Case`.
CATEGORIES = {
    "onnx": onnx_cases(),
    "config": st.one_of(config_cases(), quant_cases()),
    "bundle": bundle_cases(),
    "input": input_cases(),
    "network": network_cases(),
}
