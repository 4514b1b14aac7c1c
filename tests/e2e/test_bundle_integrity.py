"""`bitline compile` / `bitline run` on edited bundles, mixed files and bad input arrays
(issue 15, items 1 and 2): every case ends in exit 2 with `error: ...` naming the file and
the field, or, for inputs outside the calibrated range, a warning with the count (--strict:
exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bitline.sw.bundle import read_bundle
from bitline.sw.cli import main
from bitline.sw.flow.inputs import input_range

from support.networks import small_cnn_onnx


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(map(str, args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Two compiles of the small CNN (int8 and int4) and an input batch in range."""
    root = tmp_path_factory.mktemp("cli_integrity")
    model = small_cnn_onnx(root / "small.onnx")
    for name, quant in (("a", "int8"), ("b", "int4")):
        assert main(["compile", str(model), "-s", "bwq", "--quant", quant, "-o",
                     str(root / name), "-q"]) == 0
    act = read_bundle(root / "a").qmodel.input
    lo, hi = input_range(act)
    x = np.random.default_rng(0).uniform(lo, hi, (3, 2, 8, 8)).astype(np.float32)
    np.save(root / "x.npy", x)
    return root


@pytest.fixture()
def bundle(bundles, tmp_path):
    return shutil.copytree(bundles / "a", tmp_path / "a")


def edit(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1))


def quant_layers(manifest):
    return [item for item in manifest["layers"] if item["quant"] is not None]


EDITS = {    # the examples: field path -> edit
    "input.zero_point": lambda m: m["input"].update(zero_point=300),
    "input.scale": lambda m: m["input"].update(scale=m["input"]["scale"] * 2),
    "clamp_hi": lambda m: quant_layers(m)[0]["quant"].update(clamp_hi=5),
    "output.scale": lambda m: [item for item in quant_layers(m) if item["quant"]["output"]][
        -1]["quant"]["output"].update(scale=1.0),
    "strategy": lambda m: m.update(strategy="isaac"),
}


def test_untouched_bundle_runs(bundles, tmp_path, capsys):
    code, out, err = cli(capsys, "run", bundles / "a", "-i", bundles / "x.npy", "-o",
                         tmp_path / "y.npz")
    assert code == 0 and "warning" not in err, err


@pytest.mark.parametrize("field", sorted(EDITS))
def test_edited_manifest_is_refused(bundles, bundle, tmp_path, capsys, field):
    edit(bundle, EDITS[field])
    code, _, err = cli(capsys, "run", bundle, "-i", bundles / "x.npy", "-o", tmp_path / "y.npz")
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert "manifest.json: field " in err and field in err and "changed" in err
    assert not (tmp_path / "y.npz").exists()


def test_reference_from_another_compile(bundles, bundle, tmp_path, capsys):
    shutil.copy(bundles / "b" / "reference.npz", bundle / "reference.npz")
    code, _, err = cli(capsys, "run", bundle, "-i", bundles / "x.npy", "-o", tmp_path / "y.npz")
    assert code == 2 and "reference.npz: arrays" in err and "'L0.values' (layer 'conv')" in err
    assert "another compile" in err


def test_image_from_another_compile(bundles, bundle, tmp_path, capsys):
    shutil.copy(bundles / "b" / "image.bin", bundle / "image.bin")
    code, _, err = cli(capsys, "run", bundle, "-i", bundles / "x.npy", "-o", tmp_path / "y.npz")
    assert code == 2 and "image.bin" in err


def test_compile_refuses_a_foreign_folder_and_replaces_a_bundle(bundles, bundle, tmp_path,
                                                                capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("keep")
    code, _, err = cli(capsys, "compile", bundles / "small.onnx", "-s", "isaac", "-o", folder)
    assert code == 2 and "is not a bundle" in err
    assert [path.name for path in folder.iterdir()] == ["thesis.tex"]
    code, _, err = cli(capsys, "compile", bundles / "small.onnx", "-s", "isaac", "-o", bundle,
                       "-q")
    assert code == 0, err
    assert read_bundle(bundle).program.strategy == "isaac"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a", "mine"]
    code, out, _ = cli(capsys, "compile", "--help")
    assert "previous bundle" in out and "refused" in out


BAD = {
    "nan": (lambda x: np.where(x == x.max(), np.nan, x), "found 1 NaN"),
    "inf": (lambda x: np.full_like(x, np.inf), "found 384 +Inf"),
    "complex": (lambda x: x.astype(np.complex128), "found dtype complex128"),
    "empty": (lambda x: x[:0], "found an empty array of shape (0, 2, 8, 8)"),
    "shape": (lambda x: x[:, :1], "input has shape (3, 1, 8, 8)"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("target", ["bundle", "model"])
def test_bad_inputs(bundles, tmp_path, capsys, kind, target):
    change, found = BAD[kind]
    np.save(tmp_path / f"{kind}.npy", change(np.load(bundles / "x.npy")))
    spec = bundles / "a" if target == "bundle" else bundles / "small.onnx"
    code, _, err = cli(capsys, "run", spec, "-i", tmp_path / f"{kind}.npy", "-o",
                       tmp_path / "y.npz")
    assert code == 2 and err.startswith(f"error: {tmp_path / kind}.npy: "), err
    assert found in err and "(N, 2, 8, 8)" in err
    assert not (tmp_path / "y.npz").exists()


def test_object_input(bundles, tmp_path, capsys):
    np.save(tmp_path / "obj.npy", np.array([None, 1.0], dtype=object), allow_pickle=True)
    code, _, err = cli(capsys, "run", bundles / "a", "-i", tmp_path / "obj.npy", "-o",
                       tmp_path / "y.npz")
    assert code == 2 and "obj.npy: input must be a real numeric array" in err
    assert "object array" in err


def test_clamped_inputs_warn_and_strict_refuses(bundles, tmp_path, capsys):
    x = np.load(bundles / "x.npy")
    lo, hi = input_range(read_bundle(bundles / "a").qmodel.input)
    x[0, 0, 0, :7] = hi + 3 * (hi - lo)
    x[2, 1, 4, :2] = lo - 3 * (hi - lo)
    np.save(tmp_path / "wide.npy", x)
    code, _, err = cli(capsys, "run", bundles / "a", "-i", tmp_path / "wide.npy", "-o",
                       tmp_path / "y.npz")
    assert code == 0 and f"warning: {tmp_path / 'wide.npy'}: 9 of 384 input values" in err
    wide = np.load(tmp_path / "y.npz")["output_int"]
    np.save(tmp_path / "clipped.npy", np.clip(x, lo, hi))
    code, _, err = cli(capsys, "run", bundles / "a", "-i", tmp_path / "clipped.npy", "-o",
                       tmp_path / "c.npz")
    assert code == 0 and "warning" not in err
    assert np.array_equal(np.load(tmp_path / "c.npz")["output_int"], wide)   # clamped alike
    code, _, err = cli(capsys, "run", bundles / "a", "-i", tmp_path / "wide.npy", "-o",
                       tmp_path / "s.npz", "--strict")
    assert code == 2 and "9 of 384" in err and "strict" in err
    assert not (tmp_path / "s.npz").exists()
