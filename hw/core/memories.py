"""Memory contents of the accelerator for a mapped program.

:func:`program_memories` turns a program's layers into the initial contents of every memory
of :class:`~bitline.hw.core.top.Accelerator` (the same words the image loader writes), so a
simulation or a generated design can start from a programmed accelerator. The layers are
validated and turned into records by the contract's one validator
(:func:`bitline.hw.spec.validate.validate_program`, which also rejects accumulators that
could overflow ``acc_bits`` and more issued entries than a unit's entry memory holds); this
module only packs those records into memory words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.encoding import (
    entry_layout,
    layer_layout,
    output_param_layout,
    pack,
    pack_columns,
    record_bytes,
    value_bits,
)
from bitline.hw.spec.network import node_columns, node_layout
from bitline.hw.spec.program import Program
from bitline.hw.spec.tables import Place, check_lanes, lanes_bits
from bitline.hw.spec.validate import validate_program

__all__ = [
    "UnitMemories", "AcceleratorMemories", "program_memories", "default_unit_entries",
    "required_unit_entries", "param_capacity", "pack_words", "node_words",
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


def node_words(config: AcceleratorConfig, nodes) -> list[int]:
    """Return the node memory's words for ``nodes`` (NodeProgram list, execution order).

    Raises
    ------
    ValueError
        Without whole-network hardware, more nodes than ``max_nodes``, or a node's field
        out of range (the message names the node and the field).
    """
    nodes = list(nodes)
    if not nodes:
        return []
    if not config.network:
        raise ValueError("network nodes given but the config has no whole-network hardware "
                         "(act_buffer_depth = 0)")
    if len(nodes) > config.max_nodes:
        raise ValueError(f"{len(nodes)} network nodes exceed max_nodes ({config.max_nodes})")
    records = []
    for index, node in enumerate(nodes):
        try:
            records.append(node.record(config))
        except ValueError as error:
            raise ValueError(f"{node.label(index)}: {error}") from None
    layout = node_layout(config)
    return _words(layout, pack_columns(layout, len(records), node_columns(config, records)))


def pack_words(layout, records: np.ndarray) -> list[int]:
    """Return the records of a structured array as integers of ``layout``'s bit pattern."""
    return _words(layout, pack(layout, records))


def _words(layout, blob: bytes) -> list[int]:
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
    #: network node records (:func:`~bitline.hw.spec.network.node_layout` words), in
    #: execution order; empty without whole-network mode
    nodes: list[int] = field(default_factory=list)


def program_memories(config: AcceleratorConfig, layers,
                     unit_entries: int | None = None, nodes=None) -> AcceleratorMemories:
    """Return the memory contents that run ``layers`` (mapped layer programs) on ``config``.

    Parameters
    ----------
    config:
        The hardware (may differ from the config the layers were mapped for, e.g. more
        units).
    layers:
        :class:`~bitline.hw.spec.program.LayerProgram` objects, in program order.
    unit_entries:
        Depth of each unit's entry memory (default :func:`default_unit_entries`).
    nodes:
        Optional :class:`~bitline.hw.spec.network.NodeProgram` list (whole-network mode,
        ``config.network``): the node memory's records, checked by
        :meth:`~bitline.hw.spec.network.NodeProgram.record` (a ``ValueError`` names the node
        and field) and against ``max_nodes``.

    Entries with no slice to issue (``slice_hi <= slice_lo``) are dropped, as the image
    loader drops them: they read nothing and add nothing.

    Raises
    ------
    ProgramError
        From :func:`~bitline.hw.spec.validate.validate_program`, or when a layer has more
        copies (:attr:`~bitline.hw.spec.program.LayerProgram.copy_xbars`) than
        ``config.max_copies`` (:func:`~bitline.hw.spec.tables.check_lanes`).

    A copy unit holds the entries of the copy-0 unit it copies, as the loader writes them
    (the CELLS record's ``source``, docs/bundle.md "Copies").
    """
    unit_entries = default_unit_entries(config) if unit_entries is None else unit_entries
    program = Program(config=config, strategy="", layers=list(layers))
    tables = validate_program(program, config, unit_entries=unit_entries)
    check_lanes(tables, Place("program", [layer.name for layer in program.layers]))
    units = [UnitMemories(row_map=np.full(config.rows, -1, np.int64),
                          cells=np.zeros((config.rows, config.cols), np.int64))
             for _ in range(config.n_xbars)]
    row_maps = tables.row_maps.astype(np.int64)
    for record, unit in enumerate(tables.cell_units.tolist()):
        units[unit].row_map = row_maps[unit].copy()
        units[unit].cells = tables.cells[record].astype(np.int64)
    entries = tables.entries
    slices = (entries["slice_hi"] - entries["slice_lo"]).astype(np.int64)
    copies_of = [[] for _ in range(config.n_xbars)]   # unit -> the units that copy it
    for unit, source in enumerate(tables.copy_of.tolist()):
        if source >= 0:
            copies_of[source].append(unit)
    for e, word in enumerate(pack_words(entry_layout(config), entries)):
        if slices[e] > 0:
            source = int(entries["xbar"][e])
            for unit in (source, *copies_of[source]):
                units[unit].entries.append(word)
    layer_reads = []
    for index in range(len(tables.layers)):
        start = int(tables.layers["entry_start"][index])
        chosen = slice(start, start + int(tables.layers["entry_count"][index]))
        issued = np.maximum(slices[chosen], 0)
        layer_reads.append(np.bincount(entries["xbar"][chosen], weights=issued,
                                       minlength=config.n_xbars).astype(np.int64))
    # the same field columns the image encoder packs (xbar_mask and bias as bit matrices)
    columns = {name: tables.layers[name] for name in tables.layers.dtype.names}
    columns["xbar_mask"] = tables.xbar_masks.astype(np.uint8)
    columns["lanes"] = lanes_bits(config, tables.lanes)
    layer_type, param_type = layer_layout(config), output_param_layout(config)
    params = {"bias": value_bits(tables.bias, config.acc_bits), "mult": tables.mult,
              "shift": tables.shift}
    return AcceleratorMemories(
        nodes=node_words(config, nodes or []),
        config=config,
        unit_entries=unit_entries,
        layers=_words(layer_type, pack_columns(layer_type, len(tables.layers), columns)),
        params=_words(param_type, pack_columns(param_type, len(tables.bias), params)),
        units=units,
        layer_reads=layer_reads,
    )
