"""The suite's scheduling list names files that exist (a renamed file would silently drop out)."""

from pathlib import Path

from support.ordering import LONGEST_FIRST


def test_longest_first_files_exist():
    tests_dir = Path(__file__).resolve().parents[1]
    missing = [name for name in LONGEST_FIRST if not (tests_dir / name).is_file()]
    assert not missing, f"tests/support/ordering.py LONGEST_FIRST names missing files: {missing}"
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
