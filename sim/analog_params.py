"""Parameters of the behavioral analog crossbar model: :class:`AnalogParams` and its files.

A frozen, validated dataclass of the ReRAM non-idealities (conductance range, programming
variation, read noise, stuck-at faults, IR drop, ADC offset and gain error), read from TOML
files such as the shipped examples (``ideal``, ``typical``). The device model that applies
them is :class:`bitline.sim.analog.AnalogDevice`; docs/analog.md has the equations.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from bitline.hw.spec.toml_file import read_toml

__all__ = ["AnalogParams", "EXAMPLES", "examples_dir"]

#: The example parameter files shipped in ``examples/analog/`` (name -> file name).
EXAMPLES = {"ideal": "ideal.toml", "typical": "typical.toml"}

#: Fields a TOML file may set besides the dataclass fields (converted on load).
_ALIASES = ("on_off_ratio",)


def _check_number(name: str, value, low: float, high: float, *, low_open: bool = False,
                  high_open: bool = False) -> float:
    """Return ``value`` as float if it lies in the range, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class AnalogParams:
    """Non-idealities of a ReRAM crossbar (docs/analog.md has the equations and sources).

    Parameters
    ----------
    g_on_us, g_off_us:
        Conductance of the highest and lowest level in microsiemens, ``g_on_us > g_off_us
        >= 0``; levels are evenly spaced in between. Only the ratio matters to the codes (the
        ADC reference tracks ``g_on - g_off``). A file may give ``on_off_ratio`` instead of
        ``g_off_us`` (then ``g_off_us = g_on_us / on_off_ratio``).
    variation:
        Programming variation: lognormal sigma of a cell's conductance, drawn once per
        programmed chip. One number for every level, or one per level ``0 .. level_max``
        (checked against the config by :class:`AnalogDevice`).
    read_noise:
        Relative sigma of a driven cell's conductance in one read (fresh every read).
    stuck_at_0, stuck_at_1:
        Fractions of cells stuck at level 0 (HRS) / ``level_max`` (LRS); sum at most 1.
    ir_drop:
        First-order IR drop: relative bitline-current loss per row driven with a nonzero
        slice, ``0 <= ir_drop < 1`` (the current is scaled by ``max(0, 1 - ir_drop *
        n_active)``).
    adc_offset:
        ADC input-referred offset in LSB (codes): added before rounding.
    adc_gain_error:
        ADC relative gain error, ``> -1``: the input is scaled by ``1 + adc_gain_error``.

    Raises
    ------
    ValueError
        For a value out of range; the message names the field and quotes the value.
    """

    g_on_us: float = 100.0
    g_off_us: float = 1.0
    variation: float | tuple[float, ...] = 0.0
    read_noise: float = 0.0
    stuck_at_0: float = 0.0
    stuck_at_1: float = 0.0
    ir_drop: float = 0.0
    adc_offset: float = 0.0
    adc_gain_error: float = 0.0

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("g_on_us", _check_number("g_on_us", self.g_on_us, 0.0, math.inf, low_open=True))
        set_("g_off_us", _check_number("g_off_us", self.g_off_us, 0.0, self.g_on_us,
                                       high_open=True))
        variation = self.variation
        if isinstance(variation, (list, tuple)):
            if len(variation) == 0:
                raise ValueError("variation must be a number or a non-empty list, not []")
            variation = tuple(_check_number(f"variation[{index}]", value, 0.0, 10.0)
                              for index, value in enumerate(variation))
        else:
            variation = _check_number("variation", variation, 0.0, 10.0)
        set_("variation", variation)
        set_("read_noise", _check_number("read_noise", self.read_noise, 0.0, 10.0))
        set_("stuck_at_0", _check_number("stuck_at_0", self.stuck_at_0, 0.0, 1.0))
        set_("stuck_at_1", _check_number("stuck_at_1", self.stuck_at_1, 0.0, 1.0))
        if self.stuck_at_0 + self.stuck_at_1 > 1.0:
            raise ValueError(
                f"stuck_at_0 + stuck_at_1 must be at most 1, not {self.stuck_at_0} + "
                f"{self.stuck_at_1}"
            )
        set_("ir_drop", _check_number("ir_drop", self.ir_drop, 0.0, 1.0, high_open=True))
        set_("adc_offset", _check_number("adc_offset", self.adc_offset, -math.inf, math.inf))
        set_("adc_gain_error", _check_number("adc_gain_error", self.adc_gain_error, -1.0,
                                             math.inf, low_open=True))

    # ------------------------------------------------------------------------ derived
    @property
    def on_off_ratio(self) -> float:
        """``g_on / g_off`` (``inf`` when ``g_off_us`` is 0)."""
        return math.inf if self.g_off_us == 0 else self.g_on_us / self.g_off_us

    def level_sigmas(self, n_levels: int) -> np.ndarray:
        """Return the lognormal sigma of each level as float64 ``(n_levels,)``.

        Raises
        ------
        ValueError
            If ``variation`` is a list whose length is not ``n_levels``.
        """
        if isinstance(self.variation, tuple):
            if len(self.variation) != n_levels:
                raise ValueError(
                    f"variation lists {len(self.variation)} sigmas, the crossbar has "
                    f"{n_levels} levels (2**cell_bits); give one number or {n_levels}"
                )
            return np.asarray(self.variation, dtype=np.float64)
        return np.full(n_levels, float(self.variation))

    @property
    def is_ideal(self) -> bool:
        """True when no non-ideality is enabled (the codes are the exact clipped sums)."""
        return (not np.any(np.asarray(self.variation)) and self.read_noise == 0
                and self.stuck_at_0 == 0 and self.stuck_at_1 == 0 and self.ir_drop == 0
                and self.adc_offset == 0 and self.adc_gain_error == 0)

    # ------------------------------------------------------------------------ construction
    @classmethod
    def ideal(cls) -> "AnalogParams":
        """Return parameters without any non-ideality (``examples/analog/ideal.toml``)."""
        return cls()

    def replace(self, **changes) -> "AnalogParams":
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Return the fields as a plain dict (lists for per-level variations)."""
        values = dataclasses.asdict(self)
        if isinstance(self.variation, tuple):
            values["variation"] = list(self.variation)
        return values

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "analog parameters",
                  table: str = "[analog]") -> "AnalogParams":
        """Build parameters from a dict (the TOML table), naming ``source`` in errors.

        ``table`` says where the values came from in the file (``[analog]``, the top
        level) for the unknown-field error.

        Raises
        ------
        ValueError
            For an unknown field (listing the known ones), ``on_off_ratio`` together with
            ``g_off_us``, or an invalid value; the message starts with ``source`` and names
            the field.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source}: {table} must be a table, not {values!r}")
        values = dict(values)
        known = sorted({field.name for field in fields(cls)} | set(_ALIASES))
        unknown = sorted(set(values) - set(known))
        if unknown:
            guesses = [close for name in unknown
                       for close in difflib.get_close_matches(name, known, n=1)]
            hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
            raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)} in {table}"
                             f"{hint}; known fields are {', '.join(known)}")
        if "on_off_ratio" in values:
            ratio = values.pop("on_off_ratio")
            if "g_off_us" in values:
                raise ValueError(f"{source}: give g_off_us or on_off_ratio, not both")
            try:
                ratio = _check_number("on_off_ratio", ratio, 1.0, math.inf, low_open=True)
            except ValueError as error:
                raise ValueError(f"{source}: {error}") from None
            values["g_off_us"] = values.get("g_on_us", cls.g_on_us) / ratio
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from None

    @classmethod
    def load(cls, path: str | Path) -> "AnalogParams":
        """Read parameters from a TOML file (an ``[analog]`` table, or top-level keys).

        ``path`` may also be the name of a shipped example (``ideal``, ``typical``).

        Raises
        ------
        ValueError
            If the file is missing or not TOML, holds keys outside its ``[analog]`` table or
            another table, or a field is unknown (the known ones are listed) or invalid;
            the message names the file, the table, the field and the value.
        """
        path = Path(path)
        if not path.exists() and str(path) in EXAMPLES:
            path = examples_dir() / EXAMPLES[str(path)]
        data = read_toml(path, "analog parameter file", alternatives=EXAMPLES)
        if "analog" in data:
            outside = sorted(set(data) - {"analog"})
            if outside:     # they would be ignored: keys before the table, or other tables
                raise ValueError(f"{path}: key(s) {', '.join(outside)} outside the [analog] "
                                 f"table; put every field inside it")
            return cls.from_dict(data["analog"], source=str(path))
        tables = sorted(key for key, value in data.items() if isinstance(value, dict))
        if tables:
            raise ValueError(f"{path}: unknown table [{tables[0]}]; the fields go in an "
                             f"[analog] table (or at the top level)")
        return cls.from_dict(data, source=str(path), table="the top level")


def examples_dir() -> Path:
    """Return the folder of the shipped analog parameter files (``bitline.examples`` data).

    It is the checkout's ``examples/analog`` in a source or editable install and
    ``bitline/examples/analog`` inside an installed wheel.
    """
    return Path(str(importlib.resources.files("bitline.examples") / "analog"))
