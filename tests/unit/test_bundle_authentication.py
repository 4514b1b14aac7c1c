"""A bundle is one authenticated thing (issue 15, item 1) and run inputs are checked at the
boundary (item 2): edited manifest fields and files from another compile are named, bundle
writes are atomic, bad input arrays are refused and clamped values counted."""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings

import numpy as np
import pytest

from bitline.sw import api
from bitline.sim.backends import run_backend
from bitline.sw.bundle import BundleError, read_bundle, write_bundle
from bitline.sw.bundle import files as bundle_files
from bitline.sw.bundle.integrity import manifest_leaves
from bitline.sw.flow import Target
from bitline.sw.flow.inputs import (
    InputClampWarning,
    InputError,
    check_input,
    count_clamped,
    input_range,
    load_input,
)
from bitline.sw.frontend.onnx_import import load_onnx
from bitline.sw.integer.arith import quantize_input

from support.networks import small_cnn_onnx

SHAPE = (2, 8, 8)


def _compile(model, seed: int):
    calib = np.random.default_rng(seed).random((8, *SHAPE), dtype=np.float32)
    return api.compile(model, "bwq", spec="int8", calib=calib)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Two compiles of the small CNN: the second with other weights and calibration."""
    root = tmp_path_factory.mktemp("integrity")
    model = load_onnx(small_cnn_onnx(root / "small.onnx"))
    other = copy.deepcopy(model)
    for layer in other.compute_layers:
        layer.weight = layer.weight * 1.5 + 0.01
    return _compile(model, 0), _compile(other, 1)


@pytest.fixture()
def bundle(tmp_path, compiled):
    return write_bundle(tmp_path / "bundle", compiled[0].program, compiled[0].qmodel)


def edit(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1))


def last_output(manifest):
    return [item for item in manifest["layers"]
            if item["quant"] is not None and item["quant"]["output"] is not None][-1]


# ----------------------------------------------------------------- manifest fields
EDITS = {
    "input.zero_point": lambda m: m["input"].update(zero_point=300),
    "input.scale": lambda m: m["input"].update(scale=m["input"]["scale"] * 2),
    "strategy": lambda m: m.update(strategy="isaac"),
    "quant.clamp_hi": lambda m: next(item for item in m["layers"] if item["quant"])[
        "quant"].update(clamp_hi=3),
    "quant.output.scale": lambda m: last_output(m)["quant"]["output"].update(
        scale=last_output(m)["quant"]["output"]["scale"] * 2),
    "model.output_transform": lambda m: m["model"].update(output_transform="softmax"),
}


def test_bundle_reads_back_untouched(bundle):
    assert read_bundle(bundle).manifest["integrity"]["manifest_sha256"]


@pytest.mark.parametrize("field", sorted(EDITS))
def test_each_manifest_edit_is_named(bundle, field):
    edit(bundle, EDITS[field])
    with pytest.raises(BundleError) as info:
        read_bundle(bundle)
    message = str(info.value)
    assert "manifest.json: field " in message and "changed" in message
    assert field in message
    if field.startswith("quant."):      # a layer's field names its layer too
        assert "(layer '" in message


def test_added_and_removed_fields_are_named(bundle):
    edit(bundle, lambda m: m.update(extra=1) or m["model"].pop("source"))
    with pytest.raises(BundleError, match=r"manifest.json: field extra added, model.source "
                                          r"removed"):
        read_bundle(bundle)


def test_edited_integrity_block_is_detected(bundle):
    edit(bundle, lambda m: m["integrity"]["reference"].update({"L9.values": "0" * 12}))
    with pytest.raises(BundleError, match=r"manifest.json: integrity block edited"):
        read_bundle(bundle)


def test_manifest_without_integrity_is_refused(bundle):
    edit(bundle, lambda m: m.pop("integrity"))
    with pytest.raises(BundleError, match=r"manifest.json: key integrity is missing"):
        read_bundle(bundle)


def test_every_leaf_is_covered(bundle):
    """Changing any single leaf of the manifest is detected (a second, exhaustive count of
    what the per-field digests cover: no field is read unchecked)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    body = {key: value for key, value in manifest.items() if key != "integrity"}
    paths = [path for path, _ in manifest_leaves(body)]
    assert set(paths) == set(manifest["integrity"]["fields"])
    assert len(paths) > 50 and "input.zero_point" in paths


# ----------------------------------------------------------------- files of another compile
def test_reference_from_another_compile(tmp_path, compiled, bundle):
    other = write_bundle(tmp_path / "other", compiled[1].program, compiled[1].qmodel)
    shutil.copy(other / "reference.npz", bundle / "reference.npz")
    with pytest.raises(BundleError, match=r"reference.npz: arrays .*'L0.values' \(layer 'conv'\)"
                                          r".* differ .*another compile"):
        read_bundle(bundle)


def test_reference_extra_array(bundle):
    with np.load(bundle / "reference.npz") as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["L0.extra"] = np.zeros(3)
    np.savez(bundle / "reference.npz", **arrays)
    with pytest.raises(BundleError, match=r"'L0.extra' \(layer 'conv'\) is not one"):
        read_bundle(bundle)


def test_manifest_from_another_compile(tmp_path, compiled, bundle):
    other = write_bundle(tmp_path / "other", compiled[1].program, compiled[1].qmodel)
    shutil.copy(other / "manifest.json", bundle / "manifest.json")
    with pytest.raises(BundleError, match=r"manifest.json: files.image_sha256 does not match"):
        read_bundle(bundle)


# ----------------------------------------------------------------- atomic writes
def test_failed_write_leaves_nothing(tmp_path, compiled, monkeypatch):
    out = tmp_path / "b"

    def broken(handle, **arrays):
        handle.write(b"PK\x03\x04 half")
        raise OSError("disk full")

    monkeypatch.setattr(bundle_files.np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(out, compiled[0].program, compiled[0].qmodel)
    assert list(tmp_path.iterdir()) == []       # no bundle, no staging folder


def test_interrupted_write_keeps_the_previous_bundle(tmp_path, compiled, monkeypatch):
    out = write_bundle(tmp_path / "b", compiled[0].program, compiled[0].qmodel)
    before = (out / "manifest.json").read_text()

    def interrupted(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_files.Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bundle(out, compiled[1].program, compiled[1].qmodel)
    monkeypatch.undo()
    assert [path.name for path in tmp_path.iterdir()] == ["b"]
    assert (out / "manifest.json").read_text() == before
    read_bundle(out)


def test_failed_rename_restores_the_previous_bundle(tmp_path, compiled, monkeypatch):
    out = write_bundle(tmp_path / "b", compiled[0].program, compiled[0].qmodel)
    real = bundle_files.os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:       # the staging folder's rename into place
            raise OSError("interrupted")
        real(src, dst)

    monkeypatch.setattr(bundle_files.os, "replace", flaky)
    with pytest.raises(OSError, match="interrupted"):
        write_bundle(out, compiled[1].program, compiled[1].qmodel)
    monkeypatch.undo()
    assert [path.name for path in tmp_path.iterdir()] == ["b"]
    assert read_bundle(out).program.strategy == "bwq"


def test_previous_bundle_replaced_other_folders_refused(tmp_path, compiled):
    program, qmodel = compiled[0].program, compiled[0].qmodel
    out = write_bundle(tmp_path / "b", program, qmodel)
    (out / "compile.json").write_text("{}")
    write_bundle(out, compiled[1].program, compiled[1].qmodel)     # a bundle is replaced
    assert sorted(path.name for path in out.iterdir()) == [
        "image.bin", "manifest.json", "reference.npz"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["b"]
    (tmp_path / "empty").mkdir()
    write_bundle(tmp_path / "empty", program, qmodel)              # an empty folder is fine
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match=r"mine: exists, is not empty and is not a bundle"):
        write_bundle(mine, program, qmodel)
    assert [path.name for path in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(BundleError, match=r"notes.txt: exists and is not a folder"):
        write_bundle(mine / "notes.txt", program, qmodel)


# ----------------------------------------------------------------- inputs
BAD_INPUTS = {
    "complex": (np.ones((1, *SHAPE), np.complex64), r"found dtype complex64"),
    "string": (np.full((1, *SHAPE), "a"), r"found dtype <U1"),
    "empty": (np.zeros((0, *SHAPE), np.float32), r"N >= 1, found an empty array of shape "
                                                 r"\(0, 2, 8, 8\)"),
    "scalar": (np.float32(1), r"found an array scalar"),
    "shape": (np.zeros((3, 8, 8), np.float32), r"has shape \(3, 8, 8\); the model expects "
                                               r"\(N, 2, 8, 8\)"),
    "nan": (np.where(np.arange(128).reshape(1, *SHAPE) == 5, np.nan, 0.5),
            r"found 1 NaN of 128 \(first at index \(0, 0, 0, 5\): nan\)"),
    "inf": (np.full((2, *SHAPE), -np.inf), r"found 256 -Inf"),
    "overflow": (np.full((1, *SHAPE), 1e300), r"found 128 \+Inf .*overflows float32"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_arrays(kind):
    x, pattern = BAD_INPUTS[kind]
    with pytest.raises(InputError, match=r"^in.npy: .*" + pattern):
        check_input(x, SHAPE, "in.npy")


def test_bad_input_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"obj.npy: input must be a real numeric array of "
                                         r"shape \(N, 2, 8, 8\), found an object array"):
        load_input(tmp_path / "obj.npy", SHAPE)
    np.savez(tmp_path / "obj.npz", input=np.array([1, "a"], dtype=object))
    with pytest.raises(InputError, match=r"obj.npz: .*found an object array"):
        load_input(tmp_path / "obj.npz", SHAPE)
    np.save(tmp_path / "c.npy", np.ones(SHAPE, np.complex128))
    with pytest.raises(InputError, match=r"c.npy: .*found dtype complex128"):
        load_input(tmp_path / "c.npy", SHAPE)
    np.save(tmp_path / "ok.npy", np.ones(SHAPE, np.int16))
    x = load_input(tmp_path / "ok.npy", SHAPE)
    assert x.shape == (1, *SHAPE) and x.dtype == np.float32


def test_clamp_count_matches_the_quantizer(compiled):
    act = compiled[0].qmodel.input
    lo, hi = input_range(act)
    rng = np.random.default_rng(3)
    x = rng.uniform(lo - (hi - lo), hi + (hi - lo), (4, *SHAPE))
    # second count: the values the real quantizer changes by clipping
    unclipped = np.rint(x / act.scale) + act.zero_point
    expected = int(np.sum(quantize_input(x, act) != unclipped))
    assert 0 < count_clamped(x, act) == expected
    assert count_clamped(np.clip(x, lo, hi), act) == 0


def test_run_backend_warns_and_strict_refuses(bundle, compiled):
    act = compiled[0].qmodel.input
    lo, hi = input_range(act)
    x = np.full((1, *SHAPE), (lo + hi) / 2, np.float32)
    x[0, 0, 0, :3] = hi + 10 * (hi - lo)
    target = Target(str(bundle), bundle=bundle)
    seen = []
    arrays = run_backend("golden", target, x, {}, source="x.npy", warn=seen.append)
    assert len(seen) == 1 and seen[0].startswith("x.npy: 3 of 128 input values lie outside")
    clipped = run_backend("golden", target, np.clip(x, lo, hi), {}, warn=seen.append)
    assert len(seen) == 1                      # in range: no warning, and the same answer
    assert np.array_equal(arrays["output_int"], clipped["output_int"])
    with pytest.raises(InputError, match=r"x.npy: 3 of 128 .*strict: refused"):
        run_backend("golden", target, x, {}, source="x.npy", strict=True)
    with pytest.raises(InputError, match=r"input: .*found 3 NaN of 128"):
        run_backend("executor", target, np.where(x > hi, np.nan, x), {})


def test_api_run_checks_inputs(compiled):
    model = compiled[0]
    lo, hi = input_range(model.qmodel.input)
    x = np.full((1, *SHAPE), hi + 1.0, np.float32)
    with pytest.warns(InputClampWarning, match=r"x: 128 of 128 input values"):
        model.run(x, "golden")
    with pytest.raises(InputError, match=r"strict: refused"):
        model.run(x, "golden", strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputClampWarning)
        model.run(x, "float")                  # the float model does not clamp
    with pytest.raises(InputError, match=r"x: .*found dtype complex128"):
        model.run(x.astype(np.complex128), "executor")
    with pytest.raises(InputError, match=r"x: .*found 128 \+Inf"):
        model.run(np.full((1, *SHAPE), np.inf), "executor")


@pytest.mark.parametrize("key, value", [("clamp_hi", 7), ("zero_point", 3), ("act_bits", 2),
                                        ("mode", "raw")])
def test_program_copies_of_the_record_are_checked(bundle, key, value):
    """The manifest's copies of a LAYERS record's fields are compared with the image first."""
    edit(bundle, lambda m: m["program"][0].update({key: value}))
    with pytest.raises(BundleError, match=rf"manifest.json: program\[0\].{key} '?{value}'? "
                                          rf"disagrees with image.bin section LAYERS record 0 "
                                          rf"field {key}"):
        read_bundle(bundle)


def test_leftovers_of_a_killed_writer_are_removed(tmp_path, compiled):
    """A writer killed outright leaves ``.b.partial-PID-*``; the next write removes it when
    that process is gone, and leaves a live writer's folder (and unrelated names) alone."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".b.partial-{dead_pid}-abc"
    stale_old = tmp_path / f".b.old-{dead_pid}-xyz"
    live = tmp_path / f".b.partial-{os.getppid()}-def"     # the test runner's parent runs
    other = tmp_path / f".c.partial-{dead_pid}-ghi"        # another bundle's leftover
    for folder in (stale, stale_old, live, other):
        folder.mkdir()
        (folder / "image.bin").write_bytes(b"x")
    write_bundle(tmp_path / "b", compiled[0].program, compiled[0].qmodel)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == sorted(["b", live.name, other.name])
