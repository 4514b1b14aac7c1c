"""Read a TOML input file, with the errors every reader of the project gives.

The config (:meth:`~bitline.hw.spec.config.AcceleratorConfig.load`), analog parameter
(:meth:`bitline.sim.analog_params.AnalogParams.load`), costs
(:func:`bitline.sw.perf.costs.load_costs`) and study (:func:`bitline.sw.flow.study.load_study`)
readers open their file with :func:`read_toml` and then check its tables themselves.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

__all__ = ["read_toml"]


def read_toml(path: str | Path, what: str, *, alternatives=()) -> dict:
    """Return the parsed TOML file at ``path``.

    Parameters
    ----------
    path:
        The file.
    what:
        What the file is, for the errors (``"config file"``).
    alternatives:
        Names the caller also accepts instead of a file (``ideal``, ``typical``), listed in
        the not-found error.

    Raises
    ------
    ValueError
        Naming the file and the problem: ``"{path}: {what} not found"``, a folder, a file
        that cannot be read (permissions), text that is not UTF-8 (with the byte offset)
        or ``"{path}: not valid TOML: ..."`` with tomllib's message, which gives the line
        and column.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")     # a BOM (Windows editors) is fine
    except FileNotFoundError:
        others = f" (or use one of {', '.join(alternatives)})" if alternatives else ""
        raise ValueError(f"{path}: {what} not found{others}") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: a folder, not a {what}") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read the {what}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: not UTF-8 text (byte "
                         f"0x{error.object[error.start]:02x} at offset {error.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None
