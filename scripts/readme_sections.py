"""Marked sections of Markdown files, each rewritten by the script that owns it.

A script replaces only the text between its own ``<!-- begin NAME -->`` /
``<!-- end NAME -->`` markers of a file (``path``; default :data:`README`,
``sw/models/README.md``): there ``train_digits.py`` owns ``digits``, ``train_mnist.py`` owns
``mnist`` and ``accuracy_table.py --readme`` owns ``accuracy-<model>``; in the root README,
``results.py`` owns ``results``. Torch-free, so the accuracy and results scripts can use it
without the ``train`` extra.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "sw" / "models" / "README.md"


def read_section(name: str, path: Path = README) -> str | None:
    """Return the text of section ``name`` of ``path`` (without markers), or ``None`` if
    the file lacks it."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    match = re.search(re.escape(begin) + r"\n(.*?)\n?" + re.escape(end), path.read_text(),
                      re.DOTALL)
    return match.group(1) if match else None


def replace_section(name: str, body: str, path: Path = README) -> None:
    """Replace the text between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` in ``path``.

    The section is appended (with its markers) when the file lacks it.
    """
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.is_file() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + ("\n\n" if text.strip() else "") + block + "\n"
    path.write_text(text)
