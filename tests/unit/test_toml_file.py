"""One TOML reader (hw/spec/toml_file.py): the same file errors from every reader that uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.toml_file import read_toml
from bitline.sim.analog_params import AnalogParams
from bitline.sw.flow.study import load_study
from bitline.sw.perf.costs import load_costs

#: Every reader of a TOML input file and what its errors call the file.
READERS = {
    "config file": AcceleratorConfig.load,
    "analog parameter file": AnalogParams.load,
    "costs file": load_costs,
    "study file": load_study,
}


def test_read_toml_returns_the_tables(tmp_path):
    path = tmp_path / "a.toml"
    path.write_bytes(b"\xef\xbb\xbf[accelerator]\nrows = 64\r\nname = \"caf\xc3\xa9\"\n")
    assert read_toml(path, "config file") == {"accelerator": {"rows": 64, "name": "café"}}


def _error(path, message: str) -> str:
    """A pattern for the whole error: the file's name, then ``message`` (a regex)."""
    return f"^{re.escape(str(path))}: {message}$"


@pytest.mark.parametrize("what", READERS)
def test_every_reader_names_the_file_and_the_problem(tmp_path, what):
    read = READERS[what]
    missing = tmp_path / "missing.toml"
    with pytest.raises(ValueError, match=_error(missing, f"{what} not found.*")):
        read(missing)
    with pytest.raises(ValueError, match=_error(tmp_path, f"a folder, not a {what}")):
        read(tmp_path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# r\xe9sistance\nrows = 64\n")
    with pytest.raises(ValueError, match=_error(latin, r"not valid TOML: not UTF-8 text "
                                                      r"\(byte 0xe9 at offset 3\)")):
        read(latin)
    broken = tmp_path / "broken.toml"
    broken.write_text("# a comment\nrows = 64\n[table\n")
    with pytest.raises(ValueError, match=_error(broken, r"not valid TOML: .*\(at line 3, "
                                                       r"column 7\)")):
        read(broken)


def test_analog_not_found_lists_the_examples(tmp_path):
    with pytest.raises(ValueError, match=r"nope.toml: analog parameter file not found \(or "
                                         r"use one of ideal, typical\)$"):
        AnalogParams.load(tmp_path / "nope.toml")
    with pytest.raises(ValueError, match=r"nope.toml: costs file not found$"):
        load_costs(tmp_path / "nope.toml")


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.toml"
    path.write_text("rows = 64\n")

    def refuse(self):                 # what chmod 0 gives a user who is not root
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ValueError, match=_error(path, "cannot read the config file: "
                                                     "Permission denied")):
        read_toml(path, "config file")
