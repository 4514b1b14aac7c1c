"""pyproject.toml describes the tree: every package listed, every package-data line matching
files, every dependency explained (the wheel itself is built in tests/e2e/test_wheel.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def setuptools_table(pyproject: Path = PYPROJECT) -> dict:
    return tomllib.loads(pyproject.read_text())["tool"]["setuptools"]


def package_folder(package: str, package_dir: dict[str, str]) -> Path:
    """Return the folder of ``package`` through the longest matching package-dir entry."""
    for prefix in sorted(package_dir, key=len, reverse=True):
        if package == prefix or package.startswith(prefix + "."):
            rest = package[len(prefix):].lstrip(".")
            return ROOT / package_dir[prefix] / Path(*rest.split(".")) if rest else (
                ROOT / package_dir[prefix])
    raise AssertionError(f"pyproject.toml: package {package} is under no package-dir entry")


def test_every_code_package_is_listed():
    table = setuptools_table()
    listed = set(table["packages"])
    missing = []
    for prefix, folder in table["package-dir"].items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder).parts
            package = ".".join([prefix, *relative])
            if package not in listed:
                missing.append(f"{package} ({init.parent.relative_to(ROOT)})")
    assert not missing, f"pyproject.toml [tool.setuptools] packages lacks {missing}"


def test_every_listed_package_exists():
    table = setuptools_table()
    absent = [package for package in table["packages"]
              if not package_folder(package, table["package-dir"]).is_dir()]
    assert not absent, f"pyproject.toml lists packages without a folder: {absent}"


def test_every_package_data_pattern_matches_files():
    table = setuptools_table()
    empty = [f"{package}: {pattern}" for package, patterns in table["package-data"].items()
             for pattern in patterns
             if not list(package_folder(package, table["package-dir"]).glob(pattern))]
    assert not empty, f"pyproject.toml package-data names files that do not exist: {empty}"


def _section(text: str, header: str) -> str:
    start = text.index(f"\n{header}\n") + len(header) + 2
    end = text.find("\n[", start)
    return text[start:] if end < 0 else text[start:end]


def test_every_dependency_says_why():
    # tomllib drops comments, so read the requirement lines of [project] dependencies and
    # [project.optional-dependencies] from the text
    text = PYPROJECT.read_text()
    project = re.search(r"^dependencies = \[\n(.*?)^\]", _section(text, "[project]"),
                        flags=re.M | re.S).group(1)
    extras = _section(text, "[project.optional-dependencies]")
    lines = [line.strip() for line in (project + extras).splitlines()
             if line.strip().startswith('"')]
    requirements = tomllib.loads(text)["project"]
    count = len(requirements["dependencies"]) + sum(
        len(group) for group in requirements["optional-dependencies"].values())
    assert len(lines) == count
    bare = [line for line in lines if "#" not in line]
    assert not bare, f"pyproject.toml dependencies without a comment: {bare}"
