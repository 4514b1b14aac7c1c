"""Memory contents of the accelerator for a mapped program, and the checks that guard them.

:func:`program_memories` turns the layer programs a mapper emits into the initial contents
of every memory of :class:`~bitline.hw.core.top.Accelerator` (the same words the image loader
writes), so a simulation can start from a programmed accelerator. It takes plain arrays:
any object with the attributes of ``bitline.sw.mapping.LayerProgram`` (``n_inputs``,
``n_outputs``, ``xbars``, ``row_maps``, ``cells``, ``entries``, ``bias``, ``mult``,
``shift``, ``mode``, ``zero_point``, ``clamp_lo``, ``clamp_hi``) will do; ``hw`` never
imports ``sw``.

:func:`check_config` and :func:`check_layers` reject, with a message naming the problem,
configurations and programs the hardware cannot run exactly: more crossbar units than the
hardware has, more entries than a unit's entry memory holds, accumulators that could
overflow ``acc_bits``, fields that do not fit their encodings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import (
    MULT_BITS,
    SHIFT_BITS,
    entry_layout,
    layer_layout,
    output_param_layout,
)
from bitline.hw.spec.image import OUTPUT_MODES

__all__ = [
    "UnitMemories", "AcceleratorMemories", "program_memories", "check_config",
    "check_layers", "default_unit_entries", "required_unit_entries", "param_capacity",
    "pack_words",
    "accumulator_bound",
]


def default_unit_entries(config: AcceleratorConfig) -> int:
    """Return the default entry-memory depth of a unit: one entry per OU of the crossbar."""
    return min(config.max_entries, config.row_groups * config.col_groups)


def required_unit_entries(config: AcceleratorConfig, layers) -> int:
    """Return the entry-memory depth ``layers`` need: the most issued entries of one unit."""
    counts = np.zeros(config.n_xbars + 1, dtype=np.int64)
    for layer in layers:
        entries = layer.entries
        if len(entries):
            issued = np.asarray(entries["slice_hi"]) > np.asarray(entries["slice_lo"])
            units = np.asarray(entries["xbar"], dtype=np.int64)[issued]
            counts += np.bincount(np.minimum(units, config.n_xbars),
                                  minlength=config.n_xbars + 1)[:config.n_xbars + 1]
    return int(counts[:config.n_xbars].max(initial=0))


def param_capacity(config: AcceleratorConfig) -> int:
    """Return the output-parameter records the hardware holds."""
    return config.max_layers * config.max_out_channels


def pack_words(layout, records: np.ndarray) -> list[int]:
    """Return the records of a structured array as integers of ``layout``'s bit pattern."""
    from bitline.hw.spec.encoding import pack, record_bytes

    blob = pack(layout, records)
    size = record_bytes(layout)
    return [int.from_bytes(blob[i:i + size], "little") for i in range(0, len(blob), size)]


@dataclass
class UnitMemories:
    """One crossbar unit's contents: row map, cell levels, entries (packed words)."""

    row_map: np.ndarray
    cells: np.ndarray
    entries: list[int] = field(default_factory=list)

    @property
    def n_entries(self) -> int:
        return len(self.entries)


@dataclass
class AcceleratorMemories:
    """Initial contents of every memory of the accelerator (packed words)."""

    config: AcceleratorConfig
    unit_entries: int
    layers: list[int]
    params: list[int]
    units: list[UnitMemories]
    #: per layer: (n_inputs, n_outputs, reads per unit (n_xbars,)) for timing checks
    layer_reads: list[np.ndarray] = field(default_factory=list)


def check_config(config: AcceleratorConfig) -> None:
    """Reject a configuration whose datapath widths cannot hold one shift-and-add term.

    The largest term is ``adc_max << (2**clog2(max_weight_bits) - 1 + (max_slices - 1) *
    dac_bits)``; with its sign it must fit ``acc_bits``.
    """
    largest_shift = ((1 << clog2(config.max_weight_bits)) - 1
                     + (config.max_slices - 1) * config.dac_bits)
    term_bits = config.adc_bits + largest_shift + 1
    if term_bits > config.acc_bits:
        raise ValueError(
            f"acc_bits ({config.acc_bits}) cannot hold one shift-and-add term: an ADC code of "
            f"{config.adc_bits} bits shifted by up to {largest_shift} needs {term_bits} bits "
            f"with its sign"
        )


def _columns(entries: np.ndarray, config: AcceleratorConfig, name: str) -> np.ndarray:
    return np.stack([np.asarray(entries[f"cols.{j}.{name}"], dtype=np.int64)
                     for j in range(config.ou_cols)], axis=1) if len(entries) else (
        np.zeros((0, config.ou_cols), np.int64))


def accumulator_bound(config: AcceleratorConfig, layer) -> np.ndarray:
    """Return, per output channel, the largest ``|acc|`` the layer's OU program can reach.

    Each issued read contributes at most ``min(adc_max, dac_max * sum of the levels of the
    column on the group's mapped rows) << (shift + t * dac_bits)`` to its destination.
    """
    bound = np.zeros(int(layer.n_outputs), dtype=object)
    entries = layer.entries
    if not len(entries):
        return bound
    xbars = [int(x) for x in np.asarray(layer.xbars).reshape(-1)]
    local = {unit: index for index, unit in enumerate(xbars)}
    cells = np.asarray(layer.cells, dtype=np.int64)
    row_maps = np.asarray(layer.row_maps, dtype=np.int64)
    padded_rows = config.row_groups * config.ou_rows
    padded_cols = config.col_groups * config.ou_cols
    grid = np.zeros((len(xbars), padded_rows, padded_cols), np.int64)
    grid[:, :config.rows, :config.cols] = cells * (row_maps[:, :, None] >= 0)
    column_sums = grid.reshape(len(xbars), config.row_groups, config.ou_rows,
                               padded_cols).sum(axis=2)                 # (X, groups, cols)
    valid = _columns(entries, config, "valid")
    dest = _columns(entries, config, "dest")
    shift = _columns(entries, config, "shift")
    for e in range(len(entries)):
        unit = local[int(entries["xbar"][e])]
        group = int(entries["row_group"][e])
        base = int(entries["col_group"][e]) * config.ou_cols
        for j in range(config.ou_cols):
            if not valid[e, j] or base + j >= config.cols:
                continue
            code = min(config.adc_max, config.dac_max * int(column_sums[unit, group, base + j]))
            for t in range(int(entries["slice_lo"][e]), int(entries["slice_hi"][e])):
                bound[int(dest[e, j])] += code << (int(shift[e, j]) + t * config.dac_bits)
    return bound


def check_layers(config: AcceleratorConfig, layers, unit_entries: int | None = None) -> None:
    """Reject layer programs this hardware cannot hold or run exactly (``ValueError``)."""
    unit_entries = default_unit_entries(config) if unit_entries is None else unit_entries
    check_config(config)
    if len(layers) > config.max_layers:
        raise ValueError(f"program has {len(layers)} layer jobs, the hardware holds "
                         f"max_layers = {config.max_layers}")
    owner: dict[int, str] = {}
    total_params = 0
    limit = (1 << (config.acc_bits - 1)) - 1
    for index, layer in enumerate(layers):
        name = getattr(layer, "name", f"#{index}")
        xbars = [int(x) for x in np.asarray(layer.xbars).reshape(-1)]
        for unit in xbars:
            if not 0 <= unit < config.n_xbars:
                needed = max(xbars) + 1
                raise ValueError(
                    f"layer {name} needs crossbar unit {unit} ({needed} units), the hardware "
                    f"has n_xbars = {config.n_xbars}")
            if unit in owner:
                raise ValueError(f"crossbar unit {unit} holds layers {owner[unit]} and {name}; "
                                 f"a unit holds one layer")
            owner[unit] = name
        if not 1 <= layer.n_inputs <= config.max_in_features:
            raise ValueError(f"layer {name}: n_inputs {layer.n_inputs} is not in 1.."
                             f"{config.max_in_features} (max_in_features)")
        if not 1 <= layer.n_outputs <= config.max_out_channels:
            raise ValueError(f"layer {name}: n_outputs {layer.n_outputs} is not in 1.."
                             f"{config.max_out_channels} (max_out_channels)")
        row_maps = np.asarray(layer.row_maps, dtype=np.int64)
        cells = np.asarray(layer.cells, dtype=np.int64)
        if row_maps.shape != (len(xbars), config.rows):
            raise ValueError(f"layer {name}: row_maps must be {(len(xbars), config.rows)}, "
                             f"not {row_maps.shape}")
        if cells.shape != (len(xbars), config.rows, config.cols):
            raise ValueError(f"layer {name}: cells must be "
                             f"{(len(xbars), config.rows, config.cols)}, not {cells.shape}")
        if row_maps.size and (row_maps.min() < -1 or row_maps.max() >= layer.n_inputs):
            raise ValueError(f"layer {name}: a row map index is outside -1..{layer.n_inputs - 1}")
        if cells.size and (cells.min() < 0 or cells.max() > config.level_max):
            raise ValueError(f"layer {name}: a cell level is outside 0..{config.level_max}")
        entries = layer.entries
        if len(entries):
            stray = set(int(x) for x in entries["xbar"]) - set(xbars)
            if stray:
                raise ValueError(f"layer {name}: entries name unit(s) {sorted(stray)} the "
                                 f"layer does not own")
            if np.any(entries["slice_hi"] > config.max_slices):
                raise ValueError(f"layer {name}: an entry's slice_hi exceeds max_slices "
                                 f"({config.max_slices})")
            valid = _columns(entries, config, "valid") != 0
            dest = _columns(entries, config, "dest")
            if np.any(dest[valid] >= layer.n_outputs):
                raise ValueError(f"layer {name}: a column names channel "
                                 f"{int(dest[valid].max())} >= n_outputs {layer.n_outputs}")
            issued = np.asarray(entries["slice_hi"]) > np.asarray(entries["slice_lo"])
            counts = np.bincount(np.asarray(entries["xbar"], np.int64)[issued],
                                 minlength=config.n_xbars)
            if counts.max(initial=0) > unit_entries:
                unit = int(np.argmax(counts))
                raise ValueError(f"layer {name}: crossbar unit {unit} has {int(counts[unit])} "
                                 f"OU entries, its entry memory holds {unit_entries}")
        bias = np.asarray(layer.bias, dtype=np.int64)
        mult = np.asarray(layer.mult, dtype=np.int64)
        shift = np.asarray(layer.shift, dtype=np.int64)
        for label, values, low, high in (
            ("bias", bias, -limit - 1, limit),
            ("mult", mult, 0, (1 << MULT_BITS) - 1),
            ("shift", shift, 0, (1 << SHIFT_BITS) - 1),
        ):
            if values.shape != (layer.n_outputs,):
                raise ValueError(f"layer {name}: {label} must have shape ({layer.n_outputs},)")
            if values.size and (values.min() < low or values.max() > high):
                raise ValueError(f"layer {name}: {label} outside {low}..{high}")
        act_max = (1 << config.max_act_bits) - 1
        for label in ("zero_point", "clamp_lo", "clamp_hi"):
            value = int(getattr(layer, label))
            if not 0 <= value <= act_max:
                raise ValueError(f"layer {name}: {label} {value} outside 0..{act_max}")
        if layer.mode not in OUTPUT_MODES:
            raise ValueError(f"layer {name}: mode must be one of {OUTPUT_MODES}, "
                             f"not {layer.mode!r}")
        worst = accumulator_bound(config, layer) + np.abs(bias).astype(object)
        if len(worst) and max(worst) > limit:
            channel = int(np.argmax(np.array([int(v) for v in worst])))
            raise ValueError(
                f"layer {name}: channel {channel} can reach |acc + bias| = {int(worst[channel])}"
                f", which overflows acc_bits = {config.acc_bits} (limit {limit})")
        total_params += int(layer.n_outputs)
    if total_params > param_capacity(config):
        raise ValueError(f"program has {total_params} output-parameter records, the hardware "
                         f"holds {param_capacity(config)}")


def program_memories(config: AcceleratorConfig, layers,
                     unit_entries: int | None = None) -> AcceleratorMemories:
    """Return the memory contents that run ``layers`` (mapped layer programs) on ``config``.

    Entries with no slice to issue (``slice_hi <= slice_lo``) are dropped, as the image
    loader drops them: they read nothing and add nothing.

    Raises
    ------
    ValueError
        From :func:`check_layers`.
    """
    unit_entries = default_unit_entries(config) if unit_entries is None else unit_entries
    check_layers(config, layers, unit_entries)
    units = [UnitMemories(row_map=np.full(config.rows, -1, np.int64),
                          cells=np.zeros((config.rows, config.cols), np.int64))
             for _ in range(config.n_xbars)]
    layer_dtype = np.dtype([(name, np.int64) for name, _ in _layer_fields(config)])
    records = np.zeros(len(layers), dtype=layer_dtype)
    param_records = []
    entry_start = 0
    param_start = 0
    layer_reads = []
    entry_type = entry_layout(config)
    for index, layer in enumerate(layers):
        xbars = [int(x) for x in np.asarray(layer.xbars).reshape(-1)]
        for local, unit in enumerate(xbars):
            units[unit].row_map = np.asarray(layer.row_maps[local], dtype=np.int64).copy()
            units[unit].cells = np.asarray(layer.cells[local], dtype=np.int64).copy()
        entries = layer.entries
        reads = np.zeros(config.n_xbars, np.int64)
        if len(entries):
            words = pack_words(entry_type, entries)
            for e, word in enumerate(words):
                slices = int(entries["slice_hi"][e]) - int(entries["slice_lo"][e])
                if slices <= 0:
                    continue
                unit = int(entries["xbar"][e])
                units[unit].entries.append(word)
                reads[unit] += slices
        layer_reads.append(reads)
        mask = 0
        for unit in xbars:
            mask |= 1 << unit
        record = records[index]
        record["entry_start"] = entry_start
        record["entry_count"] = len(entries)
        record["n_inputs"] = layer.n_inputs
        record["n_outputs"] = layer.n_outputs
        record["act_bits"] = getattr(layer, "act_bits", config.max_act_bits)
        record["xbar_mask"] = mask
        record["param_start"] = param_start
        record["mode"] = OUTPUT_MODES.index(layer.mode)
        record["zero_point"] = layer.zero_point
        record["clamp_lo"] = layer.clamp_lo
        record["clamp_hi"] = layer.clamp_hi
        entry_start += len(entries)
        param_start += int(layer.n_outputs)
        for n in range(int(layer.n_outputs)):
            bias = int(layer.bias[n])
            param_records.append((bias & ((1 << config.acc_bits) - 1),
                                  int(layer.mult[n]), int(layer.shift[n])))
    params = np.zeros(len(param_records),
                      dtype=np.dtype([("bias", np.int64), ("mult", np.int64),
                                      ("shift", np.int64)]))
    for i, (bias, mult, shift) in enumerate(param_records):
        params[i] = (bias, mult, shift)
    return AcceleratorMemories(
        config=config,
        unit_entries=unit_entries,
        layers=pack_words(layer_layout(config), records),
        params=pack_words(output_param_layout(config), params),
        units=units,
        layer_reads=layer_reads,
    )


def _layer_fields(config: AcceleratorConfig):
    from bitline.hw.spec.encoding import flatten_fields

    return [(name, width) for name, _, width in flatten_fields(layer_layout(config))]
