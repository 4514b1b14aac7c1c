"""FPGA boards the prototyping flow targets (``bitline fpga --board NAME``).

:data:`BOARDS` maps a board name to a :class:`Board`: the amaranth-boards platform, the top
level that puts the accelerator on it, its oscillator and default core clock, and the file
of extra constraints in the ``bitline.constraints`` package data (the top-level
``constraints/`` folder of the checkout, shipped in the wheel). Only this module and the
board tops import amaranth-boards, lazily, so the rest of ``bitline.hw`` does not need the
``fpga`` extra.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from bitline.hw.boards.ulx3s import DEFAULT_CORE_HZ

__all__ = ["Board", "BOARDS", "get_board", "constraints_dir"]


@dataclass(frozen=True)
class Board:
    """An FPGA board the flow can build for.

    Attributes
    ----------
    name:
        Name on the command line (``ulx3s-85f``).
    description:
        One line for listings.
    family, device, package:
        FPGA family (``ecp5``), device and package as the vendor names them.
    variant:
        Key of the board module's platform variants (``85f``).
    oscillator_hz, default_core_hz:
        Board oscillator and default core clock.
    constraints:
        File of the ``bitline.constraints`` package data appended to the generated
        constraints (or ``None``).
    """

    name: str
    description: str
    family: str
    device: str
    package: str
    variant: str
    oscillator_hz: int
    default_core_hz: int
    constraints: str | None

    def platform(self):
        """Return a new amaranth-boards platform object for the board."""
        from bitline.hw.boards.ulx3s import platform_class

        return platform_class(self.variant)()

    def top(self, config, *, core_hz: float | None = None, **options):
        """Return the board top level for ``config`` (options: ``baud``, ``memories``, ...)."""
        from bitline.hw.boards.ulx3s import ULX3SAccelerator

        return ULX3SAccelerator(config, core_hz=core_hz or self.default_core_hz, **options)

    def constraints_file(self) -> Path | None:
        """Return the path of the extra constraints file (``FileNotFoundError`` if missing)."""
        if self.constraints is None:
            return None
        path = constraints_dir() / self.constraints
        if not path.is_file():
            raise FileNotFoundError(f"board {self.name}: constraints file {path} is missing")
        return path


def constraints_dir() -> Path:
    """Return the folder of the ``bitline.constraints`` package data.

    It is the checkout's ``constraints/`` folder in a source or editable install and
    ``bitline/constraints/`` inside an installed wheel (a real folder either way: wheels
    install unpacked).
    """
    return Path(str(importlib.resources.files("bitline.constraints")))


def _ulx3s(variant: str, device: str) -> Board:
    return Board(
        name=f"ulx3s-{variant}",
        description=f"Radiona ULX3S with a Lattice ECP5 {device} (25 MHz oscillator, FTDI UART)",
        family="ecp5", device=device, package="CABGA381", variant=variant,
        oscillator_hz=25_000_000, default_core_hz=DEFAULT_CORE_HZ, constraints="ulx3s.lpf")


#: Board name -> :class:`Board`.
BOARDS: dict[str, Board] = {
    board.name: board for board in (
        _ulx3s("12f", "LFE5U-12F"),
        _ulx3s("25f", "LFE5U-25F"),
        _ulx3s("45f", "LFE5U-45F"),
        _ulx3s("85f", "LFE5U-85F"),
    )
}


def get_board(name: str) -> Board:
    """Return the board called ``name``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known boards.
    """
    try:
        return BOARDS[str(name).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known boards: "
                         f"{', '.join(sorted(BOARDS))}") from None
