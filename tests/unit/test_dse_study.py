"""Study files of `bitline dse`: parsing errors, axes expansion, point ids and seeds."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from bitline.hw.spec.config import preset
from bitline.sw.cli import main
from bitline.sw.flow.explore import point_config as explore_point_config
from bitline.sw.flow.study import load_study, parse_study, point_seed


def _write(tmp_path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[axes]\nstrategy = ['bwq', 'foo']", "axis 'strategy': value 'foo' is not a mapping strategy"),
    ("[axes]\nou_rows = [9, 'x']", "axis 'ou_rows': value 'x' is not an integer"),
    ("[axes]\nou = ['9x8', '16']", "axis 'ou': value '16' is not ROWSxCOLS"),
    ("[axes]\nwidth = [1]", "axis 'width': unknown axis"),
    ("[axes]\nstrategy = []", "axis 'strategy': expected a non-empty list"),
    ("[axes]\nstrategy = 'bwq'", "axis 'strategy': expected a non-empty list"),
    ("[axes]\nadc_bits = [4, 4]", "axis 'adc_bits': repeated value"),
    ("[axes]\nou = ['9x8']\nou_rows = [9]", "axis 'ou' sets ou_rows and ou_cols"),
    ("[axes]\nquant = ['nonsense-spec']", "axis 'quant': value 'nonsense-spec'"),
    ("[axes]\nbudget = ['xbars:-3']", "axis 'budget': value 'xbars:-3'"),
    ("[axes]\nstuck = [0, 2.0]", "axis 'stuck': value 2.0 is not a stuck-at rate"),
    ("[study]\nmetrics = ['speed']", "[study] metrics: unknown metric 'speed'"),
    ("[study]\nseed = -1", "[study] seed = -1: expected a non-negative integer"),
    ("[study]\nchips = 0", "[study] chips = 0: expected a positive integer"),
    ("[study]\nadc = 'sometimes'", "[study] adc = 'sometimes'"),
    ("[study]\ncolour = 1", "[study] unknown key 'colour'"),
    ("[study]\npreset = 'nope'", "[study] config:"),
    ("[points]\na = 1", "unknown table 'points'"),
    ("[axes\n", "not valid TOML"),
])
def test_bad_study_files_name_file_axis_and_value(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as error:
        load_study(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_missing_study_file_and_cli_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="study file not found"):
        load_study(tmp_path / "none.toml")
    path = _write(tmp_path, "[axes]\nstrategy = ['bwq', 'foo']")
    assert main(["dse", str(path), "--serial"]) == 2
    assert "error: " in capsys.readouterr().err


def test_expansion_is_the_cartesian_product_with_explore_configs():
    study = parse_study({"study": {"seed": 5}, "axes": {
        "strategy": ["isaac", "bwq"], "ou": ["9x8", "16x16", "128x128"], "xbar": [64, 128]}})
    assert len(study.points) == 2 * 3 * 2
    combos = [(p.axes["strategy"], p.axes["ou"], p.axes["xbar"]) for p in study.points]
    assert combos == list(itertools.product(["isaac", "bwq"], ["9x8", "16x16", "128x128"],
                                            ["64x64", "128x128"]))
    invalid = [p for p in study.points if p.config is None]
    # a 128-row OU does not fit a 64-row crossbar: an invalid point, not a failed study
    assert {(p.axes["ou"], p.axes["xbar"]) for p in invalid} == {("128x128", "64x64")}
    assert all("ou_rows" in p.error for p in invalid)
    # on one axis, the point's config is what `bitline explore ou` builds (ADC follows)
    base = preset("bwq")
    for point in study.points:
        if point.axes["xbar"] == "128x128":
            assert point.config == explore_point_config(base, "ou", point.axes["ou"])


def test_point_ids_and_seeds_depend_on_the_axes_only():
    axes = {"strategy": ["isaac", "bwq"], "adc_bits": [4, 5]}
    one = parse_study({"study": {"seed": 7}, "axes": axes})
    other = parse_study({"study": {"seed": 7},
                         "axes": {"adc_bits": [5, 4], "strategy": ["bwq", "isaac"]}})
    by_axes = {tuple(sorted(p.axes.items())): (p.id, p.seed) for p in one.points}
    assert by_axes == {tuple(sorted(p.axes.items())): (p.id, p.seed) for p in other.points}
    assert len({p.id for p in one.points}) == len({p.seed for p in one.points}) == 4
    point = one.points[0]
    # the seed, recomputed from its definition
    digest = hashlib.sha256(f"7/{point.id}".encode()).hexdigest()
    assert point.seed == int(digest[:8], 16) == point_seed(7, point.id)
    reseeded = parse_study({"study": {"seed": 8}, "axes": axes})
    assert [p.id for p in reseeded.points] == [p.id for p in one.points]
    assert all(a.seed != b.seed for a, b in zip(reseeded.points, one.points))
    assert reseeded.digest != one.digest


def test_study_digest_ignores_comments_but_not_settings(tmp_path):
    a = _write(tmp_path, "[axes]\nstrategy = ['bwq']\n")
    digest = load_study(a).digest
    a.write_text("# a comment\n[axes]\nstrategy = [ 'bwq' ]\n")
    assert load_study(a).digest == digest
    a.write_text("[study]\nchips = 2\n[axes]\nstrategy = ['bwq']\n")
    assert load_study(a).digest != digest


def test_relative_paths_resolve_against_the_study_file(tmp_path):
    path = _write(tmp_path, "[study]\nconfig = 'base.toml'\n[axes]\nnetwork = ['net.onnx']\n")
    preset("bwq").replace(n_xbars=32).save(tmp_path / "base.toml")
    study = load_study(path)
    assert study.points[0].axes["network"] == str(tmp_path / "net.onnx")
    assert study.base_config.n_xbars == 32
