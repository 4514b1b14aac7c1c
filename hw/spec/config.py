"""The accelerator configuration: one frozen object every other part derives from.

`AcceleratorConfig` plays the role of Amaranth's ``lib.crc.Parameters``: the mapper, the
golden executor, the performance model and the Amaranth top are all built from one instance,
and every field width in the RTL or the bundle encoding is computed from it (see
:mod:`bitline.hw.spec.encoding`), never retyped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from bitline.hw.spec.toml_file import read_toml

__all__ = ["AcceleratorConfig", "NETWORK_FIELDS", "PRESETS", "preset", "clog2"]


def clog2(value: int) -> int:
    """Return the number of bits needed to index ``value`` items (at least 1)."""
    return max(1, math.ceil(math.log2(value))) if value > 1 else 1


# (field, lower bound, upper bound); an upper bound of a string names another field.
_RANGES: dict[str, tuple[int | float, int | float | str]] = {
    "rows": (2, 1024),
    "cols": (2, 1024),
    "cell_bits": (1, 4),
    "dac_bits": (1, 4),
    "ou_rows": (1, "rows"),
    "ou_cols": (1, "cols"),
    "adc_bits": (1, 12),
    "adcs_per_xbar": (1, "ou_cols"),
    "n_xbars": (1, 65536),
    "acc_bits": (16, 64),
    "clock_mhz": (1.0, 10000.0),
    "max_act_bits": (1, 16),
    "max_weight_bits": (2, 16),
    "max_out_channels": (1, 65536),
    "max_in_features": (1, 1 << 20),
    "max_layers": (1, 1024),
    "max_entries": (1, 1 << 24),
    "adc_latency": (0, 16),
    "max_copies": (1, 64),
    "act_buffer_depth": (0, 1 << 24),
    "max_nodes": (0, 4096),
    "max_map_channels": (0, 65536),
    "max_map_height": (0, 4096),
    "max_map_width": (0, 4096),
    "pipeline_stages": (0, "max_nodes"),
    "emulator_ou_words": (0, 1),
}

#: The whole-network fields (docs/network.md section 2): all 0 (no activation buffer, no
#: node table: the per-layer accelerator) or all >= 1.
NETWORK_FIELDS = ("act_buffer_depth", "max_nodes", "max_map_channels", "max_map_height",
                  "max_map_width")

_DIGEST_WHEN_SET = NETWORK_FIELDS + ("pipeline_stages", "emulator_ou_words")


def _check_network_keys(path: Path, table: dict) -> None:
    """Refuse a config file that turns the whole-network hardware on with some of
    :data:`NETWORK_FIELDS` and leaves the others out.

    The fields left out would be 0 (no network) and the ones set >= 1, which no config
    is; ``compile --network`` sizes all five only when the file sets none (or every one it
    sets is 0), so the error says which to add.
    """
    given = [name for name in NETWORK_FIELDS if name in table]
    missing = [name for name in NETWORK_FIELDS if name not in table]
    if given and missing and any(table[name] != 0 for name in given):
        setting = ", ".join(f"{name} = {table[name]!r}" for name in given)
        raise ValueError(
            f"{path}: sets {setting} but not {', '.join(missing)}: the whole-network fields "
            "are set all five or none (without any, compile --network sizes all five to "
            "the network); add the missing keys or remove the ones set")


@dataclass(frozen=True)
class AcceleratorConfig:
    """Geometry and sizing of a ReRAM crossbar PIM accelerator.

    Parameters
    ----------
    rows, cols:
        Crossbar size in wordlines x bitlines.
    cell_bits:
        Bits stored per ReRAM cell (levels ``0 .. 2**cell_bits - 1``).
    dac_bits:
        Input bits applied per slice (bit-serial input).
    ou_rows, ou_cols:
        Operation unit: wordlines and bitlines that may be active in one read.
    adc_bits:
        ADC resolution; codes saturate at ``2**adc_bits - 1``.
    adcs_per_xbar:
        ADCs shared by the OU's columns; one OU read takes
        ``ceil(ou_cols / adcs_per_xbar)`` conversion cycles.
    n_xbars:
        Number of crossbar units (each with its own periphery) in the accelerator.
    acc_bits:
        Width of the partial-sum accumulators and the output unit's input.
    clock_mhz:
        Clock of the periphery (one ADC conversion per cycle), used by the performance model.
    max_act_bits, max_weight_bits:
        Widest activation (unsigned, up to 16 bits: ISAAC's inputs) and weight
        (sign-magnitude, sign included, up to 16 bits) the hardware supports.
    max_out_channels, max_in_features:
        Largest output-channel count and input-vector length of one layer job.
    max_layers, max_entries:
        Capacity of the layer table and of the OU-entry memory.
    adc_latency:
        Cycles from a read strobe to valid ADC codes at the crossbar port.
    max_copies:
        Copies of one layer the hardware runs at once (docs/hardware.md, "Copies"): the
        ``inputs`` and ``outputs`` streams carry this many lanes, lane ``k`` the vector of
        copy ``k``. 1 (the default) is one lane, the single-stream accelerator.
    act_buffer_depth, max_nodes, max_map_channels, max_map_height, max_map_width:
        Whole-network hardware (docs/network.md section 2): codes the on-chip activation
        buffer holds, node records of the NETWORK section, and the largest feature map
        (channels, height, width) the address generator and pool unit count to. All 0 (the
        default): no whole-network hardware (:attr:`network` is False); otherwise all >= 1.
        Fields at 0 do not enter the :attr:`digest`, so configs without the buffer keep
        the digests (and build folders) they had before these fields existed.
    pipeline_stages:
        Stage engines of the inter-layer pipeline (docs/network.md section 6): 0 (the
        default) runs the nodes one at a time on one engine; ``E >= 1`` builds ``E``
        engines (each a scheduler, reduction, output unit, im2col readers, pool unit and
        residual add) that run their nodes concurrently on successive images. Needs the
        whole-network hardware and ``max_copies == 1``; at most ``max_nodes``. At 0 it does
        not enter the :attr:`digest`.
    emulator_ou_words:
        How the digital crossbar emulator (:class:`~bitline.hw.unit.emulator.CrossbarEmulator`,
        the FPGA's stand-in for the ReRAM arrays) stores cell levels; not the accelerator's
        behaviour, which is the same either way. 0 (the default): one memory per OU row
        position, one crossbar row per word (a row write takes one cycle; FPGA distributed
        RAM). 1: one memory per crossbar, one OU (``ou_rows x ou_cols`` levels) per word,
        addressed by row group and column group, so the FPGA maps it to block RAM and an OU
        read needs no column multiplexer; a row write then takes ``col_groups`` cycles,
        which the loader's byte-wide pace always leaves (checked: ``col_groups`` must not
        exceed a cell row's bytes), and it needs ``adc_latency >= 1`` (block RAM reads are
        synchronous). At 0 it does not enter the :attr:`digest`.
    pinned:
        Not hardware: the fields a user set explicitly (the keys of a config file,
        :meth:`load`), which compile's sizing must honour or refuse, never change
        (docs/hardware.md, "Pinned and sized fields"). Keyword-only; not part of
        :meth:`to_dict`, the TOML, the digest or equality; kept by :meth:`replace`.
    """

    rows: int = 128
    cols: int = 128
    cell_bits: int = 1
    dac_bits: int = 1
    ou_rows: int = 9
    ou_cols: int = 8
    adc_bits: int = 4
    adcs_per_xbar: int = 8
    n_xbars: int = 16
    acc_bits: int = 32
    clock_mhz: float = 1200.0
    max_act_bits: int = 8
    max_weight_bits: int = 8
    max_out_channels: int = 1024
    max_in_features: int = 4608
    max_layers: int = 64
    max_entries: int = 65536
    adc_latency: int = 1
    max_copies: int = 1
    act_buffer_depth: int = 0
    max_nodes: int = 0
    max_map_channels: int = 0
    max_map_height: int = 0
    max_map_width: int = 0
    pipeline_stages: int = 0
    emulator_ou_words: int = 0
    pinned: frozenset = dataclasses.field(default=frozenset(), compare=False, repr=False,
                                          kw_only=True)

    def __post_init__(self) -> None:
        pinned = self.pinned
        if not isinstance(pinned, (set, frozenset, list, tuple)) or any(
                name not in _RANGES for name in pinned):
            raise ValueError(f"pinned must be a set of config field names, not {pinned!r}")
        object.__setattr__(self, "pinned", frozenset(pinned))
        for field in fields(self):
            if field.name == "pinned":
                continue
            value = getattr(self, field.name)
            want = float if field.type in ("float", float) else int
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                want is int and not isinstance(value, int)
            ):
                raise ValueError(
                    f"{field.name} must be {'a number' if want is float else 'an integer'}, "
                    f"not {value!r}"
                )
            if want is float:
                object.__setattr__(self, field.name, float(value))
            low, high = _RANGES[field.name]
            high_value = getattr(self, high) if isinstance(high, str) else high
            if not low <= value <= high_value:
                bound = f"{high} ({high_value})" if isinstance(high, str) else f"{high}"
                raise ValueError(
                    f"{field.name} must be between {low} and {bound}, not {value!r}"
                )
        if any(getattr(self, name) for name in NETWORK_FIELDS):
            for name in NETWORK_FIELDS:
                if getattr(self, name) < 1:
                    raise ValueError(
                        f"{name} must be >= 1 when the whole-network hardware is configured "
                        f"(act_buffer_depth, max_nodes, max_map_channels, max_map_height, "
                        f"max_map_width: all 0 or all >= 1), not {getattr(self, name)}")
        if self.pipeline_stages and not self.network:
            raise ValueError(
                f"pipeline_stages ({self.pipeline_stages}) needs the whole-network hardware "
                f"(act_buffer_depth, max_nodes, max_map_channels, max_map_height, "
                f"max_map_width >= 1)")
        if self.pipeline_stages and self.max_copies != 1:
            raise ValueError(
                f"pipeline_stages ({self.pipeline_stages}) needs max_copies = 1, not "
                f"{self.max_copies} (layer copies do not run in whole-network mode)")
        if self.emulator_ou_words and self.adc_latency < 1:
            raise ValueError(
                "emulator_ou_words = 1 needs adc_latency >= 1 (an OU word is read from "
                "block RAM, synchronously), not 0")
        row_bytes = -(-self.cols * self.cell_bits // 8)
        if self.emulator_ou_words and self.col_groups > row_bytes:
            raise ValueError(
                f"emulator_ou_words = 1 writes a crossbar row in col_groups "
                f"({self.col_groups}) cycles, but the loader may deliver a row every "
                f"{row_bytes} cycles (cols * cell_bits / 8 bytes); it needs "
                f"ou_cols * cell_bits >= 8 (here {self.ou_cols} * {self.cell_bits})")
        if self.max_act_bits % self.dac_bits and self.dac_bits > 1:
            raise ValueError(
                f"max_act_bits ({self.max_act_bits}) must be a multiple of dac_bits "
                f"({self.dac_bits})"
            )
        if self.adc_max < self.level_max * self.dac_max:
            raise ValueError(
                f"adc_bits ({self.adc_bits}) cannot resolve even one active row: "
                f"one cell gives up to {self.level_max * self.dac_max}, the ADC saturates at "
                f"{self.adc_max}"
            )

    # ----------------------------------------------------------------- derived quantities
    @property
    def level_max(self) -> int:
        """Largest cell level, ``2**cell_bits - 1``."""
        return (1 << self.cell_bits) - 1

    @property
    def dac_max(self) -> int:
        """Largest value of one input slice, ``2**dac_bits - 1``."""
        return (1 << self.dac_bits) - 1

    @property
    def adc_max(self) -> int:
        """Largest ADC code, ``2**adc_bits - 1`` (codes saturate there)."""
        return (1 << self.adc_bits) - 1

    @property
    def row_groups(self) -> int:
        """Row groups per crossbar: rows ``[g*ou_rows, (g+1)*ou_rows)``."""
        return -(-self.rows // self.ou_rows)

    @property
    def col_groups(self) -> int:
        """Column groups per crossbar: columns ``[g*ou_cols, (g+1)*ou_cols)``."""
        return -(-self.cols // self.ou_cols)

    @property
    def conversions_per_read(self) -> int:
        """ADC conversion cycles of one OU read: ``ceil(ou_cols / adcs_per_xbar)``."""
        return -(-self.ou_cols // self.adcs_per_xbar)

    def act_slices(self, act_bits):
        """Return the input slices of an activation width: ``ceil(act_bits / dac_bits)``.

        The one slice-count formula. ``act_bits`` is an integer or an integer array (the
        result then has its shape, int64).
        """
        if isinstance(act_bits, (int, np.integer)):
            return -(-int(act_bits) // self.dac_bits)
        return -(-np.asarray(act_bits, dtype=np.int64) // self.dac_bits)

    @property
    def max_slices(self) -> int:
        """Input slices of the widest activation: ``act_slices(max_act_bits)``."""
        return self.act_slices(self.max_act_bits)

    @property
    def exact_rows_per_ou(self) -> int:
        """Rows a mapper may drive in one OU read and keep the ideal ADC exact.

        ``min(ou_rows, adc_max // (level_max * dac_max))``. With the ``bwq`` preset this is
        all 9 rows; with the ``isaac`` preset (8-bit ADC, 2-bit cells, 128 rows) it is 85, in
        place of ISAAC's flipped-weight encoding, which bitline does not model.
        """
        return min(self.ou_rows, self.adc_max // (self.level_max * self.dac_max))

    @property
    def network(self) -> bool:
        """Whether the hardware runs whole networks: ``act_buffer_depth > 0``."""
        return self.act_buffer_depth > 0

    @property
    def pipeline(self) -> bool:
        """Whether the whole-network hardware is the inter-layer pipeline:
        ``pipeline_stages > 0`` (docs/network.md section 6)."""
        return self.pipeline_stages > 0

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the fields; names builds and bundles.

        The :data:`NETWORK_FIELDS`, ``pipeline_stages`` and ``emulator_ou_words`` enter only
        when set (nonzero), so a config without them has the digest it had before those
        fields existed.
        """
        values = {name: value for name, value in self.to_dict().items()
                  if name not in _DIGEST_WHEN_SET or value}
        blob = json.dumps(values, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    # ----------------------------------------------------------------- (de)serialization
    def to_dict(self) -> dict[str, int | float]:
        """Return the hardware fields as a plain dict (the TOML / manifest form)."""
        return {field.name: getattr(self, field.name) for field in fields(self)
                if field.name != "pinned"}

    @classmethod
    def from_dict(cls, values: dict, *, source: str = "config") -> "AcceleratorConfig":
        """Build a config from a dict, rejecting unknown keys with a message naming them."""
        known = set(_RANGES)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {', '.join(unknown)}; known fields are "
                f"{', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    def to_toml(self) -> str:
        """Return the config as TOML text (a ``[accelerator]`` table)."""
        lines = ["[accelerator]"]
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {value!r}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the config as TOML to ``path``."""
        Path(path).write_text(self.to_toml())

    @classmethod
    def load(cls, path: str | Path) -> "AcceleratorConfig":
        """Read a TOML config (``[accelerator]`` table, or top-level keys) from ``path``.

        Optionally ``preset = "bwq"`` in the table starts from a preset and overrides fields
        (the defaults are the ``bwq`` preset's values). The keys the file sets are the
        config's :attr:`pinned` fields.
        """
        path = Path(path)
        data = read_toml(path, "config file")
        table = data.get("accelerator", data)
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [accelerator] must be a table")
        outside = sorted(set(data) - {"accelerator"}) if "accelerator" in data else []
        if outside:         # they would be ignored: keys before the table, or other tables
            raise ValueError(f"{path}: key(s) {', '.join(outside)} outside the [accelerator] "
                             "table; put every field inside it")
        table = dict(table)
        _check_network_keys(path, table)
        base = table.pop("preset", None)
        if base is not None:
            if not isinstance(base, str):
                raise ValueError(f"{path}: preset must be a preset name (a string: "
                                 f"{', '.join(sorted(PRESETS))}), not {base!r}")
            try:
                start = preset(base).to_dict()
            except ValueError as error:
                raise ValueError(f"{path}: preset: {error}") from None
            start.update(table)
        config = cls.from_dict(start if base is not None else table, source=str(path))
        return config.replace(pinned=frozenset(table))

    def replace(self, **changes) -> "AcceleratorConfig":
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, AcceleratorConfig] = {
    # BWQ paper: 128x128, 1-bit cells, 1-bit DAC, 9x8 OU, 4-bit ADC, one ADC per OU column.
    "bwq": AcceleratorConfig(
        rows=128, cols=128, cell_bits=1, dac_bits=1, ou_rows=9, ou_cols=8,
        adc_bits=4, adcs_per_xbar=8, clock_mhz=1200.0,
    ),
    # ISAAC (ISCA 2016): 2-bit cells, 1-bit DAC, all 128 rows read at once, one 8-bit ADC
    # shared by the crossbar's 128 columns (128 conversions per read); 16-bit weights and
    # 16-bit inputs, so 48-bit accumulators (exact sums of 16 x 16-bit products over up to
    # 2**16 inputs; one shift-and-add term alone needs 39 bits).
    "isaac": AcceleratorConfig(
        rows=128, cols=128, cell_bits=2, dac_bits=1, ou_rows=128, ou_cols=128,
        adc_bits=8, adcs_per_xbar=1, clock_mhz=1200.0, max_weight_bits=16,
        max_act_bits=16, acc_bits=48,
    ),
}


def preset(name: str) -> AcceleratorConfig:
    """Return the named preset (``bwq`` or ``isaac``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; known presets are {', '.join(sorted(PRESETS))}"
        ) from None
