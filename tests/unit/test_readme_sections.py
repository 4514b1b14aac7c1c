"""scripts/readme_sections.py: each script rewrites only its own section of a README."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("readme_sections",
                                                  ROOT / "scripts" / "readme_sections.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replace_section_keeps_the_rest(tmp_path):
    sections = _module()
    path = tmp_path / "README.md"
    path.write_text("# Title\n\nintro\n\n<!-- begin a -->\nold a\n<!-- end a -->\n\ntail\n"
                    "<!-- begin b -->\nold b\n<!-- end b -->\n")
    sections.replace_section("a", "new a\nline 2", path)
    text = path.read_text()
    assert text == ("# Title\n\nintro\n\n<!-- begin a -->\nnew a\nline 2\n<!-- end a -->\n\n"
                    "tail\n<!-- begin b -->\nold b\n<!-- end b -->\n")
    assert sections.read_section("a", path) == "new a\nline 2"
    assert sections.read_section("b", path) == "old b"
    # a missing section is appended with its markers; a body with regex characters is kept
    sections.replace_section("c", r"| x | \1 $ |", path)
    assert path.read_text().endswith("<!-- begin c -->\n| x | \\1 $ |\n<!-- end c -->\n")
    assert sections.read_section("missing", path) is None


def test_models_readme_has_every_scripts_section():
    sections = _module()
    for name in ("digits", "mnist", "accuracy-mnist-lenet5", "accuracy-mnist-resnet"):
        assert sections.read_section(name), name
