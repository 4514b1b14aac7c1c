"""The one validator of OU programs: what the hardware can hold and run exactly.

:func:`validate_program` is called by every consumer of a program: the compile flow at its
end, the bundle writer and reader (:mod:`bitline.sw.bundle`), the accelerator's memory
contents (:func:`bitline.hw.core.memories.program_memories`, hence hardware generation) and
the crossbar executor (:mod:`bitline.sim.executor`). It checks, on the record form of the
program (:mod:`bitline.hw.spec.tables`):

* the configuration: one shift-and-add term fits ``acc_bits`` (:func:`check_config`);
* capacities: layer jobs, CELLS records, OU entries and output channels against the
  config, and (when the hardware's depth is given) the issued entries of each unit against
  its entry memory;
* LAYERS: sizes, activation width, mode, zero point and clamps, weight offset (0 or a
  power of two up to ``2**(max_weight_bits - 1)``), contiguous entry and parameter ranges,
  one layer per unit;
* ROWMAPS: unused rows hold index 0, only owned units are driven, indices below the
  layer's ``n_inputs``;
* CELLS: one record per owned unit, levels within ``level_max``;
* ENTRIES: every field fits its width, units owned by the entry's layer, row and column
  groups, slices within ``max_slices`` and the layer's ``act_bits``, valid columns inside
  the crossbar, destinations below ``n_outputs``, shifts below ``max_weight_bits``;
* OUTPUT: bias, mult and shift fit their fields;
* copies (when the records carry the copy map, ``copy_of``): a copy unit is owned by the
  layer of the unit it copies, which is not itself a copy; its cells and row map are that
  unit's; no entry names it; every unit of a layer's copy 0 has the same number of copies;
* lanes (the layer records' ``lanes``): 0 for copy 0 and for units a layer does not own;
  the units of lane ``k >= 1`` are copies of copy 0's units, one of each, and a layer's
  lanes run ``0 .. copies - 1``;
* NETWORK (whole-network programs, docs/network.md section 2): every node record's fields
  against the geometry (:meth:`~bitline.hw.spec.network.NodeProgram.record`), a COMPUTE
  node's layer index and its layer's ``n_inputs`` (``C*KH*KW`` of the window) and
  ``n_outputs`` (``dst_channels``), a raw layer only on the ``to_host`` node, which is the
  last node and the only one; node 0 reads the input map at 0; every other map a node
  reads is exactly the output map of the node that last wrote those addresses (or the
  input), so no slot was overwritten in part while live (a map of the same base and shape
  written over a live one cannot be told from the records: the records carry no graph); a
  node's output does not overlap what it reads;
* the inter-layer pipeline (``pipeline_stages > 0``, docs/network.md section 6.3): stages
  non-decreasing in node order and every engine used; ``src0_node`` / ``src1_node`` name
  an earlier node (or the network input) whose map is the one read (``window.base`` /
  ``src1_base`` its ``dst_base``, the same shape); ``copies`` at least the copies rule (1
  on the ``to_host`` node); ``input_copies`` on node 0 only and at least its rule; every
  map's copies disjoint from every other's and inside ``act_buffer_depth``; COMPUTE nodes'
  layers on disjoint units (``xbar_mask``);
* accumulators: no output channel can reach ``|acc + bias|`` beyond ``acc_bits``
  (:func:`accumulator_bound`; with a weight offset ``B`` also not the correction ``B *
  n_inputs * (2**act_bits - 1)``), so the hardware's sums are exact.

Every failure is a :class:`~bitline.hw.spec.program.ProgramError` (a ``ValueError``) whose
message names the section, record, layer and field, and the value at fault.
"""

from __future__ import annotations

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.spec.encoding import MULT_BITS, SHIFT_BITS, entry_layout, flatten_fields
from bitline.hw.spec.image import SectionId, section_capacity
from bitline.hw.spec.network import NodeFieldError, NodeKind, NodeProgram
from bitline.hw.spec.program import (
    OutputMode,
    Program,
    ProgramError,
    entry_columns,
)
from bitline.hw.spec.tables import (
    CAPACITY_NAMES,
    RECORD_NAMES,
    Place,
    ProgramTables,
    program_tables,
)

__all__ = ["validate_program", "validate_tables", "check_config", "accumulator_bound"]


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(np.asarray(mask).reshape(-1))
    return int(hits[0]) if len(hits) else None


def check_config(config: AcceleratorConfig) -> None:
    """Reject a configuration whose datapath widths cannot hold one shift-and-add term.

    The largest term is ``adc_max << (2**clog2(max_weight_bits) - 1 + (max_slices - 1) *
    dac_bits)``; with its sign it must fit ``acc_bits``.

    Raises
    ------
    ProgramError
        Naming ``acc_bits`` and the width the term needs.
    """
    largest_shift = ((1 << clog2(config.max_weight_bits)) - 1
                     + (config.max_slices - 1) * config.dac_bits)
    term_bits = config.adc_bits + largest_shift + 1
    if term_bits > config.acc_bits:
        raise ProgramError(
            f"acc_bits ({config.acc_bits}) cannot hold one shift-and-add term: an ADC code of "
            f"{config.adc_bits} bits shifted by up to {largest_shift} needs {term_bits} bits "
            f"with its sign"
        )


def validate_program(program: Program | ProgramTables, config: AcceleratorConfig | None = None,
                     *, unit_entries: int | None = None, source: str = "program",
                     layer_names: list[str] | None = None) -> ProgramTables:
    """Check that ``program`` fits ``config`` and runs exactly on it; return its records.

    Parameters
    ----------
    program:
        A :class:`~bitline.hw.spec.program.Program` (converted with
        :func:`~bitline.hw.spec.tables.program_tables`) or its records.
    config:
        The hardware (default: the program's or the tables' config). Tables must have been
        built for this config.
    unit_entries:
        Depth of each unit's entry memory, when the hardware is already sized; ``None``
        leaves the per-unit count to the hardware generation (only ``max_entries`` holds).
    source, layer_names:
        How messages name what is checked and its layers (default: ``"program"`` and the
        program's layer names).

    Returns
    -------
    ProgramTables
        The validated records.

    Raises
    ------
    ProgramError
        The first check that fails (module docstring), naming layer, field and value.
    """
    if isinstance(program, ProgramTables):
        config = program.config if config is None else config
        if program.config != config:
            raise ProgramError(f"{source}: the tables were built for config "
                               f"{program.config.digest[:12]}..., not {config.digest[:12]}...")
        tables = program
        place = Place(source, layer_names)
    else:
        config = program.config if config is None else config
        names = layer_names if layer_names is not None else [
            layer.name for layer in program.layers]
        place = Place(source, names)
        tables = program_tables(program, config, place=place)
    validate_tables(tables, place, unit_entries=unit_entries)
    return tables


def validate_tables(tables: ProgramTables, place: Place, *,
                    unit_entries: int | None = None) -> None:
    """Run every check of the module docstring on ``tables`` (see :func:`validate_program`)."""
    check_config(tables.config)
    _check_counts(tables, place)
    owner = _check_layers(tables, place)
    _check_rowmaps(tables, owner, place)
    _check_cells(tables, owner, place)
    _check_entries(tables, owner, place)
    if unit_entries is not None:
        _check_unit_entries(tables, owner, unit_entries, place)
    _check_params(tables, place)
    _check_copies(tables, owner, place)
    _check_lanes(tables, owner, place)
    _check_accumulators(tables, place)
    _check_nodes(tables, place)


def _check_counts(tables: ProgramTables, place: Place) -> None:
    config = tables.config
    for section, count in ((SectionId.LAYERS, len(tables.layers)),
                           (SectionId.CELLS, len(tables.cell_units)),
                           (SectionId.ENTRIES, len(tables.entries)),
                           (SectionId.OUTPUT, len(tables.bias))):
        capacity = section_capacity(config, section)
        if count > capacity:
            raise place.error(section, "record_count",
                              f"{count} {RECORD_NAMES[section]} exceed the config's capacity "
                              f"{CAPACITY_NAMES[section]} = {capacity}")


def _check_layers(tables: ProgramTables, place: Place) -> np.ndarray:
    """Check the LAYERS records; return the owning layer of each unit (-1: none)."""
    config, layers = tables.config, tables.layers
    n_layers, n_entries, n_params = len(layers), len(tables.entries), len(tables.bias)

    def check(field_name, bad, message):
        index = _first(bad)
        if index is not None:
            raise place.error(SectionId.LAYERS, field_name, message(index), index,
                              place.layer(index))

    n_outputs, mode = layers["n_outputs"], layers["mode"]
    for name, values, high, bound in (
        ("n_inputs", layers["n_inputs"], config.max_in_features, "max_in_features"),
        ("n_outputs", n_outputs, config.max_out_channels, "max_out_channels"),
        ("act_bits", layers["act_bits"], config.max_act_bits, "max_act_bits"),
    ):
        check(name, (values < 1) | (values > high),
              lambda i, values=values, high=high, bound=bound:
              f"{values[i]} is not between 1 and {bound} ({high})")
    check("mode", (mode < 0) | (mode >= len(OutputMode)),
          lambda i: f"unknown output mode {mode[i]} (known: "
                    f"{', '.join(f'{int(m)} = {m.label}' for m in OutputMode)})")
    code_max = (1 << config.max_act_bits) - 1
    for name in ("zero_point", "clamp_lo", "clamp_hi"):
        values = layers[name]
        check(name, (values < 0) | (values > code_max),
              lambda i, values=values: f"{values[i]} is not a code of max_act_bits "
                                       f"({config.max_act_bits}) bits: 0 .. {code_max}")
    offset, offset_max = layers["weight_offset"], 1 << (config.max_weight_bits - 1)
    check("weight_offset", (offset < 0) | (offset > offset_max) | ((offset & (offset - 1)) != 0),
          lambda i: f"{offset[i]} is not 0 (differential encoding) or a power of two up to "
                    f"2**(max_weight_bits - 1) = {offset_max} (offset encoding)")
    requant = mode == OutputMode.REQUANT
    check("clamp_lo", requant & (layers["clamp_lo"] > layers["clamp_hi"]),
          lambda i: f"clamp_lo {layers['clamp_lo'][i]} > clamp_hi {layers['clamp_hi'][i]}")
    starts, counts = layers["entry_start"], layers["entry_count"]
    check("entry_count", (counts < 0) | (starts < 0) | (starts + counts > n_entries),
          lambda i: f"entry range [{starts[i]}, {starts[i] + counts[i]}) runs past the "
                    f"ENTRIES section ({n_entries} records)")
    expected = np.cumsum(counts) - counts
    check("entry_start", starts != expected,
          lambda i: f"{starts[i]}, expected {expected[i]} (the layers' entry ranges "
                    "follow each other in layer order)")
    param_starts = layers["param_start"]
    check("param_start", (param_starts < 0) | (param_starts + n_outputs > n_params),
          lambda i: f"parameter range [{param_starts[i]}, "
                    f"{param_starts[i] + n_outputs[i]}) runs past the OUTPUT section "
                    f"({n_params} records)")
    expected = np.cumsum(n_outputs) - n_outputs
    check("param_start", param_starts != expected,
          lambda i: f"{param_starts[i]}, expected {expected[i]} (the layers' parameter "
                    "ranges follow each other in layer order)")
    if int(counts.sum()) != n_entries:
        raise place.error(SectionId.ENTRIES, "record_count", f"{n_entries} records, but the "
                          f"layers' entry ranges cover {int(counts.sum())}")
    if int(n_outputs.sum()) != n_params:
        raise place.error(SectionId.OUTPUT, "record_count", f"{n_params} records, but the "
                          f"layers have {int(n_outputs.sum())} output channels")
    owner = np.full(config.n_xbars, -1, dtype=np.int64)
    for index in range(n_layers):
        units = np.flatnonzero(tables.xbar_masks[index])
        taken = units[owner[units] >= 0]
        if len(taken):
            raise place.error(SectionId.LAYERS, "xbar_mask", f"unit {taken[0]} is already owned "
                              f"by {place.layer(owner[taken[0]])}", index, place.layer(index))
        owner[units] = index
    return owner


def _check_rowmaps(tables: ProgramTables, owner: np.ndarray, place: Place) -> None:
    config = tables.config
    valid, row_index, rows = tables.rowmap_valid, tables.rowmap_index, config.rows
    n_inputs = tables.layers["n_inputs"]

    def check(field_name, bad, message):
        flat = _first(bad)
        if flat is not None:
            unit, row = divmod(flat, rows)
            raise place.error(SectionId.ROWMAPS, field_name, message(unit, row), flat,
                              f"unit {unit} row {row}")

    check("index", ~valid & (row_index != 0),
          lambda u, r: f"{row_index[u, r]} on an unused row (valid = 0), must be 0")
    check("valid", valid & (owner[:, None] < 0),
          lambda u, r: f"row is driven but no layer owns unit {u}")
    unit_inputs = np.where(owner >= 0, n_inputs[np.maximum(owner, 0)] if len(n_inputs) else 0, 0)
    check("index", valid & ((row_index < 0) | (row_index >= unit_inputs[:, None])),
          lambda u, r: f"input index {row_index[u, r]} is not below n_inputs "
                       f"({unit_inputs[u]}) of {place.layer(owner[u])}")


def _check_cells(tables: ProgramTables, owner: np.ndarray, place: Place) -> None:
    config, cell_units = tables.config, tables.cell_units
    seen: dict[int, int] = {}
    for record, unit in enumerate(cell_units.tolist()):
        detail = f"unit {unit}"
        if not 0 <= unit < config.n_xbars:
            raise place.error(SectionId.CELLS, "unit", f"unit {unit} is not below n_xbars "
                              f"({config.n_xbars})", record, detail)
        if unit in seen:
            raise place.error(SectionId.CELLS, "unit", f"unit {unit} appears twice (first in "
                              f"record {seen[unit]})", record, detail)
        if owner[unit] < 0:
            raise place.error(SectionId.CELLS, "unit", f"unit {unit} holds cells but no layer "
                              "owns it", record, detail)
        seen[unit] = record
    for unit in np.flatnonzero(owner >= 0).tolist():
        if unit not in seen:
            raise place.error(SectionId.CELLS, "unit", f"unit {unit}, owned by "
                              f"{place.layer(owner[unit])}, has no CELLS record")
    if len(cell_units):
        bad = tables.cells > config.level_max
        flat = _first(bad)
        if flat is not None:
            record, row, col = np.unravel_index(flat, bad.shape)
            raise place.error(SectionId.CELLS, f"rows.{row}.levels.{col}", f"level "
                              f"{tables.cells[record, row, col]} exceeds level_max "
                              f"({config.level_max})", int(record), f"unit {cell_units[record]}")


def _entry_layers(tables: ProgramTables) -> tuple[np.ndarray, np.ndarray]:
    """Return the layer record of each entry and its index within the layer."""
    counts, starts = tables.layers["entry_count"], tables.layers["entry_start"]
    entry_layer = np.repeat(np.arange(len(tables.layers)), counts)
    local = np.arange(len(tables.entries)) - starts[entry_layer] if len(entry_layer) else (
        entry_layer)
    return entry_layer, local


def _check_entries(tables: ProgramTables, owner: np.ndarray, place: Place) -> None:
    config, entries, layers = tables.config, tables.entries, tables.layers
    entry_layer, local = _entry_layers(tables)

    def check(field_name, bad, message):
        flat = _first(bad)
        if flat is not None:
            index = flat // (bad.shape[1] if bad.ndim == 2 else 1)
            raise place.error(SectionId.ENTRIES, field_name(flat) if callable(field_name)
                              else field_name, message(flat), index,
                              f"{place.layer(entry_layer[index])} entry {local[index]}")

    for name, _, width in flatten_fields(entry_layout(config)):
        values = entries[name]
        check(name, (values < 0) | (values >= (1 << width)),
              lambda i, values=values, width=width: f"{values[i]} does not fit {width} bits")
    xbar = entries["xbar"]
    check("xbar", xbar >= config.n_xbars,
          lambda i: f"unit {xbar[i]} is not below n_xbars ({config.n_xbars})")
    check("xbar", owner[np.minimum(xbar, config.n_xbars - 1)] != entry_layer,
          lambda i: f"unit {xbar[i]} is not owned by this layer: "
                    f"{place.layer(entry_layer[i])} does not own it (owner: "
                    f"{'none' if owner[xbar[i]] < 0 else place.layer(owner[xbar[i]])})")
    for name, high, bound in (("row_group", config.row_groups, "row_groups"),
                              ("col_group", config.col_groups, "col_groups")):
        values = entries[name]
        check(name, values >= high,
              lambda i, values=values, high=high, bound=bound:
              f"{values[i]} is not below {bound} ({high})")
    slice_lo, slice_hi = entries["slice_lo"], entries["slice_hi"]
    check("slice_hi", slice_hi > config.max_slices,
          lambda i: f"{slice_hi[i]} exceeds max_slices ({config.max_slices})")
    check("slice_lo", slice_lo > slice_hi,
          lambda i: f"slice_lo {slice_lo[i]} > slice_hi {slice_hi[i]}")
    act_bits = layers["act_bits"]
    entry_slices = config.act_slices(act_bits)[entry_layer]
    check("slice_hi", slice_hi > entry_slices,
          lambda i: f"{slice_hi[i]} is past the {entry_slices[i]} slices of the layer's "
                    f"act_bits ({act_bits[entry_layer[i]]}) at dac_bits ({config.dac_bits})")
    if not len(entries):
        return
    ou_cols = config.ou_cols
    columns = entry_columns(entries, ou_cols)
    col_valid = columns["valid"] != 0
    dest, shift = columns["dest"], columns["shift"]
    column = entries["col_group"][:, None] * ou_cols + np.arange(ou_cols)
    outputs = layers["n_outputs"][entry_layer][:, None]
    check(lambda f: f"cols.{f % ou_cols}.valid", col_valid & (column >= config.cols),
          lambda f: f"column {column.flat[f]} is past the crossbar's {config.cols} columns")
    check(lambda f: f"cols.{f % ou_cols}.dest", col_valid & (dest >= outputs),
          lambda f: f"output channel {dest.flat[f]} is not below n_outputs "
                    f"({outputs.flat[f]}) of the layer")
    check(lambda f: f"cols.{f % ou_cols}.shift", col_valid & (shift >= config.max_weight_bits),
          lambda f: f"{shift.flat[f]} is not below max_weight_bits ({config.max_weight_bits})")


def _check_unit_entries(tables: ProgramTables, owner: np.ndarray, unit_entries: int,
                        place: Place) -> None:
    """Check the issued entries of each unit against the depth of its entry memory."""
    entries, config = tables.entries, tables.config
    issued = entries["slice_hi"] > entries["slice_lo"]
    counts = np.bincount(entries["xbar"][issued], minlength=config.n_xbars)
    if counts.max(initial=0) > unit_entries:
        unit = int(np.argmax(counts))
        raise place.error(SectionId.ENTRIES, "xbar", f"crossbar unit {unit} has "
                          f"{int(counts[unit])} OU entries, its entry memory holds "
                          f"{unit_entries}", detail=place.layer(int(owner[unit])))


def _check_params(tables: ProgramTables, place: Place) -> None:
    config, layers = tables.config, tables.layers
    param_layer = np.repeat(np.arange(len(layers)), layers["n_outputs"])
    channel = (np.arange(len(tables.bias)) - layers["param_start"][param_layer]
               if len(param_layer) else param_layer)

    def check(field_name, bad, message):
        index = _first(bad)
        if index is not None:
            raise place.error(SectionId.OUTPUT, field_name, message(index), index,
                              f"{place.layer(param_layer[index])} channel {channel[index]}")

    low, high = -(1 << (config.acc_bits - 1)), (1 << (config.acc_bits - 1)) - 1
    bias, mult, shift = tables.bias, tables.mult, tables.shift
    check("bias", (bias < low) | (bias > high),
          lambda i: f"value {bias[i]} does not fit acc_bits ({config.acc_bits}) two's "
                    f"complement [{low}, {high}]")
    check("mult", (mult < 0) | (mult >= (1 << MULT_BITS)),
          lambda i: f"value {mult[i]} does not fit {MULT_BITS} bits unsigned")
    check("shift", (shift < 0) | (shift >= (1 << SHIFT_BITS)),
          lambda i: f"value {shift[i]} does not fit {SHIFT_BITS} bits unsigned")


def _check_copies(tables: ProgramTables, owner: np.ndarray, place: Place) -> None:
    """Check the copy map (module docstring); nothing to check without one."""
    config, copy_of = tables.config, tables.copy_of
    if copy_of is None:
        return
    copy_of = np.asarray(copy_of, dtype=np.int64)
    if copy_of.shape != (config.n_xbars,):
        raise place.error("copies", "copy_of", f"shape {copy_of.shape}, expected "
                          f"(n_xbars,) = ({config.n_xbars},)")

    def fail(unit, message):
        layer = place.layer(int(owner[unit])) if owner[unit] >= 0 else "no layer"
        return place.error("copies", "copy_of", message, int(unit), f"{layer} unit {unit}")

    copies = np.flatnonzero(copy_of != -1)
    for unit in copies.tolist():
        source = int(copy_of[unit])
        if not 0 <= source < config.n_xbars:
            raise fail(unit, f"unit {source} is not below n_xbars ({config.n_xbars})")
        if owner[unit] < 0 or owner[source] != owner[unit]:
            raise fail(unit, f"copies unit {source}, which its layer does not own")
        if copy_of[source] != -1:
            raise fail(unit, f"copies unit {source}, itself a copy of unit {copy_of[source]}")
    if not len(copies):
        return
    record_of_unit = np.full(config.n_xbars, -1, dtype=np.int64)
    record_of_unit[tables.cell_units] = np.arange(len(tables.cell_units))
    sources = copy_of[copies]
    differs = np.any(tables.cells[record_of_unit[copies]] != tables.cells[record_of_unit[sources]],
                     axis=(1, 2))
    differs |= np.any((tables.rowmap_valid[copies] != tables.rowmap_valid[sources])
                      | (tables.row_maps[copies] != tables.row_maps[sources]), axis=1)
    bad = _first(differs)
    if bad is not None:
        raise fail(copies[bad], f"cells or row map differ from those of unit {sources[bad]}, "
                                "which it copies")
    named = np.isin(np.asarray(tables.entries["xbar"], dtype=np.int64), copies)
    bad = _first(named)
    if bad is not None:
        unit = int(tables.entries["xbar"][bad])
        raise fail(unit, f"ENTRIES record {bad} names it; entries name copy 0's units only")
    counts = np.bincount(sources, minlength=config.n_xbars)
    for index in range(len(tables.layers)):
        originals = np.flatnonzero((owner == index) & (copy_of == -1))
        if len(originals) and counts[originals].min() != counts[originals].max():
            unit = originals[np.argmin(counts[originals])]
            raise fail(unit, f"has {counts[unit]} copies, another unit of the layer "
                             f"{counts[originals].max()}: every unit of copy 0 needs one "
                             "unit in each copy")


def _check_lanes(tables: ProgramTables, owner: np.ndarray, place: Place) -> None:
    """Check the layer records' ``lanes`` against the units and the copy map."""
    config = tables.config
    lanes = np.asarray(tables.lanes, dtype=np.int64)
    if lanes.shape != (len(tables.layers), config.n_xbars):
        raise place.error(SectionId.LAYERS, "lanes", f"shape {lanes.shape}, expected "
                          f"(layers, n_xbars) = ({len(tables.layers)}, {config.n_xbars})")
    copy_of = (np.full(config.n_xbars, -1, np.int64) if tables.copy_of is None
               else np.asarray(tables.copy_of, dtype=np.int64))
    for index in range(len(lanes)):
        mine = owner == index
        label = place.layer(index)

        def fail(unit, message):
            return place.error(SectionId.LAYERS, "lanes", message, index,
                               f"{label} unit {unit}")

        bad = _first((lanes[index] != 0) & ~mine)
        if bad is not None:
            raise fail(bad, f"lane {lanes[index, bad]} on a unit the layer does not own")
        bad = _first(mine & ((copy_of == -1) != (lanes[index] == 0)))
        if bad is not None:
            what = "copy 0 unit" if copy_of[bad] == -1 else f"copy of unit {copy_of[bad]}"
            raise fail(bad, f"lane {lanes[index, bad]} on a {what} (copy 0 is lane 0, "
                            "a copy lane 1 or more)")
        originals = np.flatnonzero(mine & (copy_of == -1))
        used = np.unique(lanes[index][mine])
        if len(used) and used[-1] != len(used) - 1:
            raise fail(int(np.flatnonzero(mine & (lanes[index] == used[-1]))[0]),
                       f"lanes {used.tolist()} are not 0 .. copies - 1")
        for lane in used[1:].tolist():
            units = np.flatnonzero(mine & (lanes[index] == lane))
            if sorted(copy_of[units].tolist()) != originals.tolist():
                raise fail(int(units[0]), f"lane {lane}'s units {units.tolist()} copy units "
                                          f"{copy_of[units].tolist()}, not each unit of copy "
                                          f"0 ({originals.tolist()}) once")


def _column_sums(tables: ProgramTables) -> np.ndarray:
    """Return int64 ``(U, row_groups, padded cols)``: levels on driven rows per group/column."""
    config = tables.config
    padded_rows = config.row_groups * config.ou_rows
    padded_cols = config.col_groups * config.ou_cols
    count = len(tables.cell_units)
    grid = np.zeros((count, padded_rows, padded_cols), np.int32)
    driven = tables.rowmap_valid[tables.cell_units]                     # (U, rows)
    grid[:, :config.rows, :config.cols] = tables.cells * driven[:, :, None]
    return grid.reshape(count, config.row_groups, config.ou_rows, padded_cols).sum(
        axis=2, dtype=np.int64)


def accumulator_bound(tables: ProgramTables, index: int,
                      column_sums: np.ndarray | None = None) -> np.ndarray:
    """Return, per output channel of layer record ``index``, the largest ``|acc|`` it can reach.

    Each issued read contributes at most ``min(adc_max, dac_max * sum of the levels of the
    column on the group's driven rows) << (shift + t * dac_bits)`` to its destination, for
    every slice ``t`` in ``[slice_lo, slice_hi)``. The records must have passed the other
    checks (units owned, groups and columns in range). ``column_sums`` (from the tables,
    computed when omitted) saves work over many layers.

    Returns
    -------
    np.ndarray
        ``(n_outputs,)`` int64, or Python integers (object) where int64 could overflow.
    """
    config = tables.config
    n_outputs = int(tables.layers["n_outputs"][index])
    entries = tables.layer_entries(index)
    # Each term is below 2**(adc_bits + max_weight_bits + max_slices*dac_bits); int64 holds
    # their sum unless that and the term count exceed 62 bits.
    term_bits = config.adc_bits + config.max_weight_bits + config.max_slices * config.dac_bits
    exact = term_bits + (len(entries) * config.ou_cols + 1).bit_length() < 63
    bound = np.zeros(n_outputs, dtype=np.int64 if exact else object)
    if not len(entries):
        return bound
    if column_sums is None:
        column_sums = _column_sums(tables)
    record_of_unit = np.full(config.n_xbars, 0, dtype=np.int64)
    record_of_unit[tables.cell_units] = np.arange(len(tables.cell_units))
    columns = entry_columns(entries, config.ou_cols)
    column = entries["col_group"][:, None] * config.ou_cols + np.arange(config.ou_cols)
    e, j = np.nonzero((columns["valid"] != 0) & (column < config.cols))
    sums = column_sums[record_of_unit[entries["xbar"][e]], entries["row_group"][e], column[e, j]]
    code = np.minimum(config.adc_max, config.dac_max * sums)
    # sum over t in [lo, hi) of 2**(t*dac_bits): a geometric series
    step = 1 << config.dac_bits
    lo, hi = entries["slice_lo"][e], entries["slice_hi"][e]
    kind = np.int64 if exact else object
    slices = ((step ** hi.astype(kind)) - (step ** lo.astype(kind))) // (step - 1)
    terms = code.astype(kind) * (np.ones(len(e), kind) << columns["shift"][e, j].astype(kind))
    np.add.at(bound, columns["dest"][e, j], terms * slices)
    return bound


def _check_accumulators(tables: ProgramTables, place: Place) -> None:
    """Reject a layer in which ``|acc + bias|`` of some channel could overflow ``acc_bits``.

    With a weight offset ``B`` the crossbars accumulate ``raw >= 0`` (at most the
    :func:`accumulator_bound`) and the output path computes ``raw - B * sum(x) + bias``
    with ``0 <= B * sum(x) <= B * n_inputs * (2**act_bits - 1)``: both extremes must fit.
    """
    config = tables.config
    limit = (1 << (config.acc_bits - 1)) - 1
    column_sums = _column_sums(tables) if len(tables.entries) else None
    for index in range(len(tables.layers)):
        record = tables.layers[index]
        start = int(record["param_start"])
        bias = tables.bias[start:start + int(record["n_outputs"])]
        worst = accumulator_bound(tables, index, column_sums).astype(object)
        correction = (int(record["weight_offset"]) * int(record["n_inputs"])
                      * ((1 << int(record["act_bits"])) - 1))
        worst = np.maximum(worst, correction) + np.abs(bias).astype(object)
        if len(worst) and max(worst) > limit:
            channel = int(np.argmax(np.array([int(v) for v in worst], dtype=object)))
            raise place.error(
                SectionId.OUTPUT, "bias",
                f"channel {channel} can reach |acc + bias| = {int(worst[channel])}, which "
                f"overflows acc_bits = {config.acc_bits} (limit {limit})", start + channel,
                f"{place.layer(index)} channel {channel}")


def _check_nodes(tables: ProgramTables, place: Place) -> None:
    """Check the NETWORK records (module docstring), in execution order."""
    nodes, config = tables.nodes, tables.config
    if nodes is None:
        return
    if len(nodes) > config.max_nodes:
        raise place.error(SectionId.NETWORK, "record_count",
                          f"{len(nodes)} network nodes exceed the config's capacity "
                          f"max_nodes = {config.max_nodes}")
    layers = tables.layers

    def fail(index: int, field_name: str, message: str):
        return place.error(SectionId.NETWORK, field_name, message, index,
                           nodes[index].label())

    for index, node in enumerate(nodes):
        try:
            node.record(config)
        except NodeFieldError as error:
            raise fail(index, error.field, error.reason) from None
        last = index == len(nodes) - 1
        if bool(node.to_host) != last:
            raise fail(index, "to_host", f"{int(bool(node.to_host))}: set on the network's "
                                         f"last node (node {len(nodes) - 1}) and only there")
        if node.kind != NodeKind.COMPUTE:
            continue
        if node.layer >= len(layers):
            raise fail(index, "layer", f"{node.layer} is not a layer record (the LAYERS "
                                       f"section has {len(layers)})")
        record = layers[node.layer]
        label = place.layer(node.layer)
        window = node.window
        inputs = window.channels * window.kernel[0] * window.kernel[1]
        if int(record["n_inputs"]) != inputs:
            raise fail(index, "window.channels", f"the window reads {window.channels} x "
                       f"{window.kernel[0]} x {window.kernel[1]} = {inputs} inputs per "
                       f"vector, {label} has n_inputs {int(record['n_inputs'])}")
        if int(record["n_outputs"]) != node.dst_channels:
            raise fail(index, "dst_channels", f"{node.dst_channels}, {label} has n_outputs "
                       f"{int(record['n_outputs'])}")
        if int(record["mode"]) == OutputMode.RAW and not node.to_host:
            raise fail(index, "layer", f"{label} outputs raw accumulators (mode raw), which "
                       "only the to_host node may send (a map holds codes)")
    if config.pipeline_stages:
        _check_pipeline(tables, place)
    _check_node_maps(nodes, place)


def _check_pipeline(tables: ProgramTables, place: Place) -> None:
    """Check the pipeline fields of the NETWORK records (module docstring, section 6.3).

    Runs after every record passed :meth:`~bitline.hw.spec.network.NodeProgram.record`
    (so each field fits its width, ``stage < pipeline_stages``, ``src1_node`` is 0 off
    ADD nodes).
    """
    nodes, config = tables.nodes, tables.config
    if not nodes:           # a per-layer program on pipeline hardware: nothing to check
        return
    engines = config.pipeline_stages

    def fail(index: int, field_name: str, message: str):
        return place.error(SectionId.NETWORK, field_name, message, index,
                           nodes[index].label())

    stages = [int(node.stage) for node in nodes]
    for index, stage in enumerate(stages):
        before = stages[index - 1] if index else -1
        if stage < before:
            raise fail(index, "stage", f"{stage} after node {index - 1}'s stage {before}: "
                       "stages are non-decreasing in node order")
        if stage > before + 1:
            after = f"node {index - 1}'s stage {before}" if index else "no earlier node"
            raise fail(index, "stage", f"{stage} after {after}: engine {before + 1} runs no "
                       f"node (each of the pipeline_stages = {engines} engines runs at least "
                       "one)")
    if stages and stages[-1] != engines - 1:
        raise fail(len(nodes) - 1, "stage", f"{stages[-1]} on the last node: engines "
                   f"{stages[-1] + 1} .. {engines - 1} of pipeline_stages = {engines} run "
                   "no node")
    first = _check_replicas(tables, fail)
    input_shape = (nodes[0].window.channels, nodes[0].window.height, nodes[0].window.width)

    def source_map(ref: int) -> tuple[int, tuple[int, int, int]]:
        if ref == 0:
            return 0, input_shape
        producer = nodes[ref - 1]
        return producer.dst_base, (producer.dst_channels, *producer.window.out_hw())

    copies_need = [1] * len(nodes)
    input_need = 0
    for index, node in enumerate(nodes):
        window = node.window
        shape = (window.channels, window.height, window.width)
        reads = [("src0_node", "window.base", int(node.src0_node), window.base)]
        if node.kind == NodeKind.ADD:
            reads.append(("src1_node", "src1_base", int(node.src1_node), node.src1_base))
        for ref_field, base_field, ref, base in reads:
            if ref > index:
                raise fail(index, ref_field, f"{ref}: names node {ref - 1}, not an earlier "
                           f"node (0 = the network input, j + 1 = node j < {index})")
            if ref and nodes[ref - 1].to_host:
                raise fail(index, ref_field, f"{ref}: node {ref - 1} sends its outputs to the "
                           "host and writes no map")
            if ref and first[ref - 1] != ref - 1:
                raise fail(index, ref_field, f"{ref}: node {ref - 1} is replica "
                           f"{nodes[ref - 1].phase} of the group of node {first[ref - 1]}; "
                           f"a source names the group's first node ({first[ref - 1] + 1})")
            producer_base, producer_shape = source_map(ref)
            what = "the network input" if ref == 0 else f"node {ref - 1}'s output"
            if producer_shape != shape:
                raise fail(index, ref_field, "{}: {} is a {}x{}x{} map, the node reads "
                           "{}x{}x{}".format(ref, what, *producer_shape, *shape))
            if base != producer_base:
                raise fail(index, base_field, f"{base}: {ref_field} = {ref} is {what}, whose "
                           f"map (copy 0) is at {producer_base}")
            if ref == 0:
                input_need = max(input_need, stages[index] + 2)
            else:
                copies_need[ref - 1] = max(copies_need[ref - 1],
                                           stages[index] - stages[ref - 1] + 1)
        if index and node.input_copies:
            raise fail(index, "input_copies", f"{node.input_copies} on node {index} (node 0 "
                       "only; 0 in every other record)")
    for index, node in enumerate(nodes):
        if node.to_host and node.copies != 1:
            raise fail(index, "copies", f"{node.copies} on the to_host node (it writes no "
                       "map: 1)")
        if node.copies < copies_need[index]:
            far = max((c for c, other in enumerate(nodes)
                       if index + 1 in (int(other.src0_node), int(other.src1_node))),
                      key=lambda c: stages[c])
            raise fail(index, "copies", f"{node.copies}: its consumer node {far} runs "
                       f"{stages[far] - stages[index]} stages later, so it needs at least "
                       f"{copies_need[index]} (stage_c - stage_i + 1)")
    if int(nodes[0].input_copies) < input_need:
        raise fail(0, "input_copies", f"{nodes[0].input_copies}: a node of stage "
                   f"{input_need - 2} reads the network input, so it needs at least "
                   f"{input_need} (stage_c + 2)")
    _check_pipeline_regions(tables, place, fail)
    _check_engine_units(tables, fail)


#: Fields of a layer record its replicas repeat (all but where its tables start).
_REPLICA_SAME = ("n_inputs", "n_outputs", "entry_count", "act_bits", "mode", "zero_point",
                 "clamp_lo", "clamp_hi", "weight_offset")


def _check_replicas(tables: ProgramTables, fail) -> list[int]:
    """Check the replica groups (docs/network.md section 7.1); return each node's group
    first node.

    A group is ``R = 2**replicas_log2`` consecutive nodes, phases ``0 .. R-1``, with the
    same ``replicas_log2``, window, ``dst_base``, ``dst_channels``, ``copies`` and sources,
    each on its own layer record (records equal but for their units and table starts, the
    same output parameters), engines strictly increasing (distinct), and no other node on a
    replica's engine (R2 found an engine running a replica before its consumer deadlocks
    from 4 images: the replica runs ahead every other image and waits for a copy its
    consumer, behind it on the same engine, would free). Disjoint units are
    :func:`_check_engine_units`'.
    """
    nodes, layers = tables.nodes, tables.layers
    first = list(range(len(nodes)))
    index = 0
    while index < len(nodes):
        node = nodes[index]
        count = 1 << int(node.replicas_log2)
        if node.phase:
            raise fail(index, "phase", f"{node.phase}: no group starts before it (replica "
                       f"{node.phase} follows the phase-0 node of its group and replicas "
                       f"0 .. {node.phase - 1})")
        if count == 1:
            index += 1
            continue
        if index + count > len(nodes):
            raise fail(index, "replicas_log2", f"{node.replicas_log2}: a group of {count} "
                       f"replicas, but only {len(nodes) - index} nodes from this one on")
        lead_params = _layer_params(tables, int(node.layer))
        for phase in range(1, count):
            at = index + phase
            other = nodes[at]
            first[at] = index
            if int(other.replicas_log2) != int(node.replicas_log2):
                raise fail(at, "replicas_log2", f"{other.replicas_log2}: replica {phase} of "
                           f"node {index}'s group of {count} (replicas_log2 "
                           f"{node.replicas_log2})")
            if int(other.phase) != phase:
                raise fail(at, "phase", f"{other.phase}: node {at} is replica {phase} of "
                           f"node {index}'s group (phases 0 .. {count - 1} in node order)")
            for name in ("window", "dst_base", "dst_channels", "copies", "src0_node",
                         "to_host"):
                if getattr(other, name) != getattr(node, name):
                    raise fail(at, name, f"{getattr(other, name)}: replica {phase} of node "
                               f"{index}'s group, whose {name} is {getattr(node, name)} (a "
                               "group's nodes read, write and are read alike)")
            if int(other.stage) <= int(nodes[at - 1].stage):
                raise fail(at, "stage", f"{other.stage}: replica {phase} of node {index}'s "
                           f"group after node {at - 1}'s stage {nodes[at - 1].stage} (the "
                           "replicas of a layer run on distinct engines)")
            if int(other.layer) in {int(nodes[k].layer) for k in range(index, at)}:
                raise fail(at, "layer", f"{other.layer}: replica {phase} of node {index}'s "
                           "group on the same layer record as an earlier replica (each "
                           "replica has its own record on its own units)")
            if other.layer >= len(layers) or node.layer >= len(layers):
                continue                    # named by the record checks
            for name in _REPLICA_SAME:
                mine, theirs = int(layers[name][other.layer]), int(layers[name][node.layer])
                if mine != theirs:
                    raise fail(at, "layer", f"{other.layer}: its record's {name} {mine} "
                               f"differs from layer {node.layer}'s {theirs} (node {index}, "
                               "the group's first; replicas are copies of one layer)")
            if not all(np.array_equal(a, b) for a, b in
                       zip(_layer_params(tables, int(other.layer)), lead_params)):
                raise fail(at, "layer", f"{other.layer}: its output parameters (bias, mult, "
                           f"shift) differ from layer {node.layer}'s (node {index}, the "
                           "group's first; replicas are copies of one layer)")
            differs = _replica_arrays(tables, int(node.layer), int(other.layer))
            if differs:
                raise fail(at, "layer", f"{other.layer}: {differs} (node {index}, the "
                           "group's first; replicas are copies of one layer on their own "
                           "units, paired in ascending order)")
        index += count
    stages = [int(node.stage) for node in nodes]
    for at, node in enumerate(nodes):
        if node.replicas_log2 and stages.count(stages[at]) > 1:
            other = next(k for k, stage in enumerate(stages) if stage == stages[at] and k != at)
            share = 1 << int(node.replicas_log2)
            raise fail(at, "stage", f"{node.stage}: a replica shares engine {node.stage} with "
                       f"node {other} (a replica runs one image in {share}; an engine that "
                       "also runs other nodes, in node order, can wait forever for itself: "
                       "each replica has an engine to itself)")
    return first


def _replica_arrays(tables: ProgramTables, lead: int, replica: int) -> str:
    """How layer record ``replica``'s cells, row maps or entries differ from ``lead``'s
    with the units paired in ascending order (``""`` when they are copies)."""
    mine, theirs = tables.layer_units(replica), tables.layer_units(lead)
    if len(mine) != len(theirs):
        return f"its record has {len(mine)} units, layer {lead}'s {len(theirs)}"
    row = {int(unit): k for k, unit in enumerate(tables.cell_units)}
    for ours, source in zip(mine.tolist(), theirs.tolist()):
        if ours in row and source in row and \
                not np.array_equal(tables.cells[row[ours]], tables.cells[row[source]]):
            return f"unit {ours}'s cells differ from unit {source}'s of layer {lead}"
        if not (np.array_equal(tables.rowmap_valid[ours], tables.rowmap_valid[source])
                and np.array_equal(tables.rowmap_index[ours], tables.rowmap_index[source])):
            return f"unit {ours}'s row map differs from unit {source}'s of layer {lead}"
    expected = np.array(tables.layer_entries(lead), copy=True)
    if len(expected):
        expected["xbar"] = mine[np.minimum(np.searchsorted(theirs, expected["xbar"]),
                                           len(mine) - 1)] if len(mine) else -1
    if not np.array_equal(expected, tables.layer_entries(replica)):
        return (f"its OU entries differ from layer {lead}'s (with the units renumbered)")
    return ""


def _layer_params(tables: ProgramTables, layer: int) -> tuple[np.ndarray, ...]:
    """The bias, mult and shift OUTPUT records of layer record ``layer`` (empty when the
    index is out of range: the record checks name it)."""
    if not 0 <= layer < len(tables.layers):
        return ()
    start = int(tables.layers["param_start"][layer])
    end = start + int(tables.layers["n_outputs"][layer])
    return tables.bias[start:end], tables.mult[start:end], tables.shift[start:end]


def _check_pipeline_regions(tables: ProgramTables, place: Place, fail) -> None:
    """Every map's copies inside the buffer and disjoint from every other map's (a
    replica group's one map is its first node's)."""
    nodes, depth = tables.nodes, tables.config.act_buffer_depth
    regions = [(0, int(nodes[0].input_copies) * nodes[0].window.size, -1)]
    regions += [(int(node.dst_base), int(node.dst_base) + int(node.copies) * node.dst_size,
                 index) for index, node in enumerate(nodes)
                if not node.to_host and not node.phase]

    def name(owner: int) -> str:
        return "the network input's copies" if owner == -1 else f"node {owner}'s copies"

    def value(owner: int) -> tuple[int, str, int]:
        """The record, field and value that place ``owner``'s region."""
        if owner == -1:
            return 0, "input_copies", int(nodes[0].input_copies)
        return owner, "dst_base", int(nodes[owner].dst_base)

    for start, end, owner in regions:
        if end > depth:
            record = max(owner, 0)
            field_name = "input_copies" if owner == -1 else "copies"
            raise fail(record, field_name, f"{getattr(nodes[record], field_name)}: "
                       f"{name(owner)} [{start}, {end}) end beyond act_buffer_depth ({depth})")
    reach, reacher = 0, None                # the furthest end so far and its region
    for start, end, owner in sorted(region for region in regions if region[1] > region[0]):
        if reacher is not None and start < reach:
            later = max(owner, reacher[2])
            earlier = reacher if later == owner else (start, end, owner)
            record, field_name, at = value(later)
            raise fail(record, field_name,
                       f"{at}: {name(later)} overlap {name(earlier[2])} [{earlier[0]}, "
                       f"{earlier[1]}) (a pipelined program reuses no region)")
        if end > reach:
            reach, reacher = end, (start, end, owner)


def _check_engine_units(tables: ProgramTables, fail) -> None:
    """COMPUTE nodes drive disjoint crossbar units (each engine its layer's)."""
    owner = np.full(tables.config.n_xbars, -1, dtype=np.int64)
    for index, node in enumerate(tables.nodes):
        if node.kind != NodeKind.COMPUTE:
            continue
        mask = np.asarray(tables.xbar_masks[node.layer], dtype=bool)
        shared = np.flatnonzero(mask & (owner >= 0))
        if shared.size:
            unit = int(shared[0])
            raise fail(index, "layer", f"{node.layer}: its layer's units include unit {unit}, "
                       f"which node {int(owner[unit])}'s layer drives too (pipelined COMPUTE "
                       "nodes use disjoint units)")
        owner[mask] = index


def _check_node_maps(nodes: list[NodeProgram], place: Place) -> None:
    """Check that every map a node reads is whole and still holds its producer's output.

    The buffer is replayed by address: who wrote each code last (-1: the network input at
    0, -2: nobody). A read map must lie on one producer's whole output map (same base and
    shape; the input map for node 0's), so a slot overwritten while live, a map read from
    the wrong base, or a read of codes never written is named.
    """
    if not nodes:
        return
    first = nodes[0].window
    depth = max([first.base + first.size]
                + [node.dst_base + node.dst_size for node in nodes if not node.to_host]
                + [base + size for node in nodes for base, size in node.sources()])
    owner = np.full(depth, -2, dtype=np.int64)
    maps: dict[int, tuple[int, int, int, int]] = {}    # producer -> (base, C, H, W)
    if first.base != 0:
        raise place.error(SectionId.NETWORK, "window.base", f"{first.base}: node 0 reads the "
                          "network input, which the host writes at 0", 0, nodes[0].label())
    owner[:first.size] = -1
    maps[-1] = (0, first.channels, first.height, first.width)
    for index, node in enumerate(nodes):
        window = node.window
        shape = (window.channels, window.height, window.width)
        reads = [("window.base", window.base)]
        if node.kind == NodeKind.ADD:
            reads.append(("src1_base", node.src1_base))
        for field_name, base in reads:
            writers = np.unique(owner[base:base + window.size])
            if writers.size != 1 or writers[0] == -2 or \
                    maps[int(writers[0])] != (base, *shape):
                found = ", ".join("never written" if w == -2 else
                                  "the network input" if w == -1 else f"node {w}'s output"
                                  for w in writers.tolist())
                what = ("" if writers.size != 1 or writers[0] == -2 else
                        " at base {} of {}x{}x{}".format(*maps[int(writers[0])]))
                raise place.error(SectionId.NETWORK, field_name,
                                  f"{base}: the node reads a {shape[0]}x{shape[1]}x{shape[2]} "
                                  f"map at {base}, the buffer there holds {found}{what} (a "
                                  "map is read whole, from its producer's output map, before "
                                  "it is overwritten)", index, node.label())
        if node.to_host:
            continue
        out_h, out_w = window.out_hw()
        span = (node.dst_base, node.dst_base + node.dst_size)
        for base, size in node.sources():
            if span[0] < base + size and base < span[1]:
                raise place.error(SectionId.NETWORK, "dst_base",
                                  f"{node.dst_base}: the output map [{span[0]}, {span[1]}) "
                                  f"overlaps the map the node reads at [{base}, "
                                  f"{base + size})", index, node.label())
        owner[span[0]:span[1]] = index
        maps[index] = (node.dst_base, node.dst_channels, out_h, out_w)
