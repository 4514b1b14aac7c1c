"""scripts/results.py: the README's results block, regenerated on the digits CNN.

The script's tables are checked against ``compare_strategies`` (a separate compile of the
same rows) and against ratios divided by hand; a second run must write the same bytes.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from bitline.sw.flow import compare_strategies
from bitline.sw.perf import pipeline_report
from bitline.sw.perf.pipeline import Budget

ROOT = Path(__file__).resolve().parents[2]
MODEL = "digits-cnn"


def _load(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))   # results.py imports readme_sections
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)   # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run(module, folder: Path) -> tuple[dict, Path, Path, Path]:
    readme = folder / "README.md"
    readme.write_text("# title\n\nintro\n\n<!-- begin results -->\nold hand-written table\n"
                      "<!-- end results -->\n\nafter the block\n")
    doc, plot = folder / "docs" / "results.md", folder / "docs" / "img" / "results.png"
    results = module.collect((MODEL,), (MODEL,), echo=lambda _text: None)
    module.write(results, readme, doc, plot, "python scripts/results.py --models digits-cnn")
    return results, readme, doc, plot


def _cells(text: str, row_label: str) -> list[str]:
    """The cells of the first Markdown table row whose first cell is ``row_label``."""
    match = re.search(rf"^\| {re.escape(row_label)} \|(.*)\|$", text, flags=re.MULTILINE)
    assert match, row_label
    return [cell.strip() for cell in match.group(1).split("|")]


def _ratio(text: str) -> float | None:
    return None if text == "-" else float(text.rstrip("x"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    try:
        module = _load(monkeypatch)
        first = _run(module, tmp_path_factory.mktemp("first"))
        second = _run(module, tmp_path_factory.mktemp("second"))
    finally:
        monkeypatch.undo()
    return module, first, second


def test_block_replaced_and_rerun_identical(generated):
    _, (_, readme, doc, plot), (_, readme2, doc2, plot2) = generated
    text = readme.read_text()
    assert "old hand-written table" not in text
    assert text.startswith("# title\n\nintro\n\n<!-- begin results -->\n")
    assert text.endswith("<!-- end results -->\n\nafter the block\n")
    block = text.split("<!-- begin results -->")[1].split("<!-- end results -->")[0]
    assert "| digits-cnn | trained |" in block
    assert "![speedup at equal area and energy saving per network](docs/img/results.png)" in block
    assert "Decomposition of bwq vs isaac-paper on digits-cnn" in block
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for one, two in ((readme, readme2), (doc, doc2), (plot, plot2)):
        assert one.read_bytes() == two.read_bytes(), one.name
    assert not re.search(r"\d+\.\d+ s\b", text + doc.read_text())   # no timings


def test_tables_hold_compare_strategies_ratios(generated):
    """Every cell of the digits-cnn table against compare_strategies' rows (compiled again
    there): energy savings divided by hand, throughput at equal crossbars as compare's
    default budget computes it, throughput at equal area from the pipeline by hand."""
    module, (results, _, doc, _), _ = generated
    work, _, _ = results[MODEL]
    # Both allocate copies and placements (dense or spread), compare_strategies from
    # programs it compiles again.
    rows = {row["strategy"]: row
            for row in compare_strategies(work.model(), calib_x=work.calib_x)}
    text = doc.read_text().split(f"## {MODEL}")[1]
    baselines = ("isaac-ou-16b", "isaac-ou-8b", "isaac-paper")
    for label in ("isaac", "ivq-naive", "ivq-spatial", "ivq-temporal", "bwq", "bwq-a"):
        cells = _cells(text, label)
        assert cells[0] == rows[label]["quant"]
        for base, cell in zip(baselines, cells[1:4]):
            at_crossbars, *at_areas, energy = (_ratio(part) for part in cell.split(" / "))
            assert energy == round(rows[base]["energy_pj"] / rows[label]["energy_pj"], 2)
            expected = rows[label][f"throughput_speedup_vs_{base}"]
            assert at_crossbars == (None if expected is None else round(expected, 2))
            ours, theirs = (_run_of(work, rows[name], _config(module, name))
                            for name in (label, base))
            for factor, at_area in zip((1, 2), at_areas, strict=True):
                area = factor * float(sum(theirs[0].used_area_mm2.values()))
                assert at_area == _area_speedup(ours, theirs, area), (label, base, factor)
        assert cells[4] == ("6.08x / 17.47x" if label.startswith("bwq") else
                            "19.7x / 17.7x" if label.startswith("ivq") else "")


_RUNS: dict[tuple, tuple] = {}


def _run_of(work, row: dict, config) -> tuple:
    """``(report, spread placements)`` of a compare row, compiled here again (not the
    script's own runs): the allocator's inputs at an area budget."""
    from bitline.sw.flow import compile_model
    from bitline.sw.flow.compile import spread_placements
    from bitline.sw.perf import analyze

    key = (row["mapping"], row["quant"], config.digest, row["encoding"])
    if key not in _RUNS:
        result = compile_model(work.model(), row["mapping"], row["quant"], config,
                               work.calib_x, encoding=row["encoding"])
        report = analyze(result.program, result.qmodel)
        _RUNS[key] = report, spread_placements(result.program, result.qmodel, report=report)
    return _RUNS[key]


def _area_speedup(ours, theirs, area: float) -> float | None:
    """Throughput ratio with both at ``area`` mm2 (each ``(report, variants)``), rounded as
    printed (``None``: one copy of every layer of a side needs more)."""
    budget = Budget("area", area)
    try:
        return round(pipeline_report(ours[0], budget, variants=ours[1]).throughput_ips
                     / pipeline_report(theirs[0], budget, variants=theirs[1]).throughput_ips, 2)
    except ValueError:
        return None


def _config(module, name: str):
    from bitline.hw.spec.config import preset
    from bitline.sw.flow import BASELINES, VARIANTS

    records = {record.label: record for record in BASELINES} | VARIANTS
    return records[name].config(preset("bwq")) if name in records else preset("bwq")


def test_decomposition_switches(generated):
    """The decomposition's ends are compare rows: its start energy is bwq vs isaac-paper,
    after the encoding switch bwq vs isaac-ou-8b, after the activation switch bwq-a vs
    isaac-ou-8b; every speedup is a pipeline ratio at the stated area; the factors multiply
    to the last ratio over the first."""
    _, (results, readme, _, _), _ = generated
    work, tables, (area, steps) = results[MODEL]
    rows = {row["strategy"]: row for row in tables["equal area"]}
    names = [step.factor for step in steps]
    assert names == ["start", "baseline bit width", "baseline hardware", "baseline encoding",
                     "activation compression", "weights", "copies"]
    by_name = dict(zip(names, steps))
    assert by_name["start"].energy_saving == pytest.approx(
        rows["bwq"]["energy_saving_vs_isaac-paper"])
    assert by_name["baseline encoding"].energy_saving == pytest.approx(
        rows["bwq"]["energy_saving_vs_isaac-ou-8b"])
    assert by_name["activation compression"].energy_saving == pytest.approx(
        rows["bwq-a"]["energy_saving_vs_isaac-ou-8b"])
    # The copies switch changes no energy; the weights switch does (a synthetic twin).
    assert by_name["copies"].energy_saving == by_name["weights"].energy_saving
    assert by_name["weights"].energy_saving != by_name["activation compression"].energy_saving
    # Start speedup by hand: bwq and isaac-paper at the fixed area.
    from bitline.hw.spec.config import preset

    bwq = work.report("bwq", "bwq3", preset("bwq"))
    paper = work.report("isaac", "int16-a16", preset("isaac"), "offset")
    budget = Budget("area", area)
    assert by_name["start"].speedup == pytest.approx(
        pipeline_report(bwq, budget, variants=work.variants(bwq)).throughput_ips
        / pipeline_report(paper, budget, variants=work.variants(paper)).throughput_ips)
    assert area >= 2 * max(sum(r.used_area_mm2.values()) for r in (bwq, paper)) * (1 - 1e-12)
    block = readme.read_text()
    factors = re.findall(r"\| x([0-9.]+) / x([0-9.]+) \|", block)
    assert len(factors) == len(steps) - 1
    speedups = [float(s) for s, _ in factors]
    product = 1.0
    for value in speedups:
        product *= value
    assert product == pytest.approx(steps[-1].speedup / steps[0].speedup, rel=0.05)


def test_unknown_network_is_a_usage_error(monkeypatch):
    from click.testing import CliRunner

    module = _load(monkeypatch)
    result = CliRunner().invoke(module.main, ["--models", "digits-cnn,lenet"])
    assert result.exit_code == 2
    assert "unknown network 'lenet'" in result.output


def test_root_readme_has_the_generated_block(monkeypatch, tmp_path):
    """The root README carries the block (the script refuses a file without markers
    instead of appending one), and an empty block is a block."""
    module = _load(monkeypatch)
    import readme_sections

    block = readme_sections.read_section(module.SECTION, ROOT / "README.md")
    assert block and "papers' claims (vs ISAAC)" in block
    empty = tmp_path / "README.md"
    empty.write_text("<!-- begin results -->\n<!-- end results -->\n")
    assert readme_sections.read_section("results", empty) == ""
    module.check_markers(empty)
    empty.write_text("no markers\n")
    from click import UsageError

    with pytest.raises(UsageError, match="no '<!-- begin results -->'"):
        module.check_markers(empty)


def test_a_run_that_fits_no_configuration_is_a_row_that_says_so(generated):
    """As compare's keep_going: a baseline that needs more units than any config holds
    (MobileNetV2 at 16 bits) gives a row with its error and ``-`` ratios against it."""
    from bitline.hw.spec.config import preset

    module, (results, *_), _ = generated
    work, reference, _ = results[MODEL]

    class TooLarge:
        def report(self, strategy, spec, config, encoding="differential", weights="own"):
            if spec == "int16-a16" and encoding == "differential":
                raise ValueError("network needs 81770 crossbar units, more than any "
                                 "configuration holds")
            return work.report(strategy, spec, config, encoding, weights)

        def variants(self, report):
            return work.variants(report)

    tables = module.compare_rows(TooLarge(), preset("bwq"))
    for heading, rows in tables.items():
        by_label = {row["strategy"]: row for row in rows}
        assert by_label["isaac-ou-16b"]["error"].startswith("network needs 81770")
        assert by_label["bwq"]["throughput_speedup_vs_isaac-ou-16b"] is None, heading
        assert by_label["bwq"]["energy_saving_vs_isaac-ou-16b"] is None
        other = next(row for row in reference[heading] if row["strategy"] == "bwq")
        assert (by_label["bwq"]["throughput_speedup_vs_isaac-paper"]
                == other["throughput_speedup_vs_isaac-paper"])
    assert "| bwq | bwq3 | - / - / - / - |" in module.network_table(tables)
    assert "does not fit: network needs 81770" in module.baselines_table(tables)
