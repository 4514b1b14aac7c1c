"""The mapping step: quantized layers -> crossbar images, row maps and OU entries.

Public entry points:

* :func:`map_layer` — one :class:`~bitline.sw.integer.qmodel.QuantLayer` -> :class:`LayerProgram`;
* :func:`map_model` — a whole :class:`~bitline.sw.integer.qmodel.QuantizedModel` -> :class:`Program`
  (layers on consecutive crossbar units; ``xbars="auto"`` sizes ``n_xbars``);
* :func:`map_matrix` — the pure mapping of an integer ``(O, K)`` matrix (what the two above
  call), and :func:`reconstruct_matrix`, its inverse.
* :func:`fault_aware` — a mapped :class:`Program` placed for a chip's stuck cells
  (:class:`StuckMap`; :mod:`.faults`, docs/analog.md "Fault-aware mapping").

Strategies (:data:`STRATEGIES`): ``isaac`` (:mod:`.isaac`), ``ivq-naive``, ``ivq-spatial``,
``ivq-temporal`` (:mod:`.ivq`) and ``bwq`` (:mod:`.bwq`); the layouts are described in
docs/mapping.md, the program format in docs/contract.md section 4.
"""

from __future__ import annotations

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import ENCODINGS, STRATEGIES, LayerProgram, Program, empty_entries
from bitline.sw.mapping.bwq import check_block_bits, place_bwq
from bitline.sw.mapping.faults import StuckMap, fault_aware
from bitline.sw.mapping.isaac import place_isaac
from bitline.sw.mapping.ivq import place_naive, place_spatial, place_temporal
from bitline.sw.mapping.inverse import reconstruct_matrix
from bitline.sw.mapping.layout import (
    DENSE,
    SPREAD_FACTORS,
    Spread,
    assemble,
    PlacementCounts,
    layer_bits,
    placement_busiest_reads,
    placement_counts,
)

__all__ = [
    "map_layer",
    "map_model",
    "map_matrix",
    "fault_aware",
    "StuckMap",
    "reconstruct_matrix",
    "relocate",
    "spread_counts",
    "SPREAD_FACTORS",
    "Spread",
    "check_strategy",
    "check_encoding",
    "STRATEGIES",
    "ENCODINGS",
    "ENCODING_STRATEGIES",
    "LayerProgram",
    "Program",
    "empty_entries",
]

_PLACERS = {
    "isaac": place_isaac,
    "ivq-naive": place_naive,
    "ivq-spatial": place_spatial,
    "ivq-temporal": place_temporal,
    "bwq": place_bwq,
}

#: The strategies that can store each weight encoding (docs/mapping.md): the offset
#: encoding is ISAAC's, one column set per digit on ISAAC's dense grid.
ENCODING_STRATEGIES = {"differential": STRATEGIES, "offset": ("isaac",)}


def check_encoding(encoding: str, strategy: str) -> str:
    """Return ``encoding`` if known and supported by ``strategy``, else raise ``ValueError``.

    The message names the value and lists the known encodings, or the strategies that
    support it.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown weight encoding {encoding!r}; known encodings are "
                         f"{', '.join(ENCODINGS)}")
    if strategy not in ENCODING_STRATEGIES[encoding]:
        raise ValueError(f"weight encoding {encoding!r} is not supported by strategy "
                         f"{strategy!r}; it is supported by "
                         f"{', '.join(ENCODING_STRATEGIES[encoding])}")
    return encoding


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` if it is known, else raise ``ValueError`` listing the known ones."""
    if strategy not in _PLACERS:
        raise ValueError(
            f"unknown mapping strategy {strategy!r}; known strategies are "
            f"{', '.join(STRATEGIES)}"
        )
    return strategy


def map_matrix(
    matrix: np.ndarray,
    config: AcceleratorConfig,
    strategy: str,
    *,
    act_bits: int,
    act_block_bits: np.ndarray | None = None,
    block_bits: np.ndarray | None = None,
    block_rows: int | None = None,
    block_cols: int | None = None,
    name: str = "layer",
    xbar_offset: int = 0,
    encoding: str = "differential",
    spread: int = 1,
) -> LayerProgram:
    """Map an integer weight matrix onto crossbars with one strategy.

    Parameters
    ----------
    matrix:
        int ``(O, K)`` sign-magnitude weights in im2col order.
    config:
        The accelerator.
    strategy:
        One of :data:`STRATEGIES`.
    act_bits:
        Input activation width (slices ``[0, ceil(act_bits / dac_bits))``).
    act_block_bits:
        BWQ activation width per row block of ``block_rows`` inputs (honoured by every
        strategy, since it is part of the layer's arithmetic, docs/contract.md section 2).
    block_bits:
        BWQ weight width per ``block_cols x block_rows`` block; checked (pruned blocks must
        be zero) by the ``bwq`` strategy.
    block_rows, block_cols:
        BWQ block geometry (the OU of the quantization); default ``config.ou_rows`` /
        ``config.ou_cols``.
    name:
        Layer name (program name and error messages).
    xbar_offset:
        Global index of the layer's first crossbar unit.
    encoding:
        Weight encoding, one of :data:`ENCODINGS` (``"offset"``: ``isaac`` only, see
        :data:`ENCODING_STRATEGIES`).
    spread:
        Spread factor ``s`` (docs/mapping.md, "Spread placements"): 1 is the strategy's
        dense placement; ``s > 1`` caps every unit at ``1/s`` of its row groups or of its
        column groups, whichever gives the lower busiest-unit reads (:func:`_spread_place`).
        A spread program's ``stats`` (hence the bundle manifest) carry ``"placement":
        "spread-<s>"`` and ``"spread_axis"``; a dense one's stats are unchanged (no
        ``placement`` key means dense, so dense bundles stay byte-identical).

    Returns
    -------
    LayerProgram
        With zero output-unit parameters (:func:`map_layer` fills them).

    Raises
    ------
    ValueError
        For an unknown strategy or encoding, an encoding the strategy does not support, a
        layer larger than the configuration's limits, or inconsistent BWQ widths; the
        message names the layer.
    """
    check_strategy(strategy)
    check_encoding(encoding, strategy)
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.dtype.kind not in "iu":
        raise ValueError(
            f"layer {name}: weights must be a 2-D integer matrix, not {matrix.dtype} "
            f"{matrix.shape}"
        )
    n_out, n_in = matrix.shape
    if n_out > config.max_out_channels:
        raise ValueError(
            f"layer {name}: {n_out} output channels exceed max_out_channels "
            f"({config.max_out_channels})"
        )
    if n_in > config.max_in_features:
        raise ValueError(
            f"layer {name}: {n_in} inputs exceed max_in_features ({config.max_in_features})"
        )
    if strategy == "bwq" and block_bits is not None:
        check_block_bits(matrix.astype(np.int64), block_bits,
                         block_rows or config.ou_rows, block_cols or config.ou_cols, name)
    bits = layer_bits(matrix, config, act_bits=int(act_bits), act_block_bits=act_block_bits,
                      block_rows=block_rows, name=name, encoding=encoding)
    if isinstance(spread, bool) or int(spread) != spread or spread < 1:
        raise ValueError(f"layer {name}: spread factor must be an integer >= 1, not {spread!r}")
    placement, chosen = _spread_place(_PLACERS[strategy], bits, config, int(spread))
    program = assemble(bits, placement, config, name=name, xbar_offset=xbar_offset)
    if chosen.factor > 1:
        program.stats.update(placement=chosen.label, spread_axis=chosen.axis)
    return program


def _spread_place(placer, bits, config: AcceleratorConfig, factor: int):
    """Return ``(placement, Spread)``: the dense placement, or the better spread axis.

    For ``factor > 1`` both caps are placed (placement only, no cells) and the one whose
    busiest unit reads least per vector is kept; ties go to the fewer units, then to rows.
    Which axis wins depends on the layout: a layer with few row chunks (a first conv, ``K``
    of a few row groups) only shrinks under the column cap, one with few columns (a
    classifier, ``O`` of a few column groups) only under the row cap.
    """
    if factor == 1:
        return placer(bits, config), DENSE
    best = None
    for rank, axis in enumerate(("rows", "cols")):
        spread = Spread(factor, axis)
        placement = placer(bits, config, spread)
        key = (placement_busiest_reads(bits, placement, config), placement.n_xbars, rank)
        if best is None or key < best[0]:
            best = (key, placement, spread)
    return best[1], best[2]


def spread_counts(qlayer, config: AcceleratorConfig, strategy: str, factors=SPREAD_FACTORS,
                  *, block_rows: int | None = None, block_cols: int | None = None,
                  encoding: str = "differential") -> dict[int, PlacementCounts]:
    """Return, per spread factor, the counts of the layer's spread placement (no cells).

    The placement :func:`map_layer` with ``spread=s`` would assemble (same axis choice),
    counted by :func:`~bitline.sw.mapping.layout.placement_counts`: what pricing a spread
    variant needs, at the cost of one chunking and two placements per factor instead of
    building and counting the cells (assembly and counting are about three quarters of
    mapping a layer). The layer's bits are cut once for all factors.
    """
    from bitline.sw.integer.arith import layer_matrix

    check_strategy(strategy)
    check_encoding(encoding, strategy)
    bits = layer_bits(layer_matrix(qlayer), config, act_bits=qlayer.inputs[0].bits,
                      act_block_bits=qlayer.act_block_bits, block_rows=block_rows,
                      name=qlayer.layer.name, encoding=encoding)
    out = {}
    for factor in factors:
        placement, _ = _spread_place(_PLACERS[strategy], bits, config, int(factor))
        out[int(factor)] = placement_counts(bits, placement, config)
    return out


def relocate(layer: LayerProgram, xbar_offset: int) -> LayerProgram:
    """Return ``layer`` moved to units ``[xbar_offset, xbar_offset + len(xbars))``.

    The unit indices (``xbars`` and every entry's ``xbar``) shift; cells, row maps and
    output parameters are shared. A layer with copies keeps none (copies are given
    afresh, :meth:`~bitline.hw.spec.program.Program.with_copies`).
    """
    from dataclasses import replace

    xbars = np.asarray(layer.xbars, dtype=np.int64)
    shift = int(xbar_offset) - (int(xbars[0]) if len(xbars) else int(xbar_offset))
    entries = layer.entries.copy()
    entries["xbar"] = entries["xbar"] + shift
    return replace(layer, xbars=xbars + shift, entries=entries, copy_xbars=None)


def map_layer(
    qlayer,
    config: AcceleratorConfig,
    strategy: str,
    xbar_offset: int = 0,
    *,
    block_rows: int | None = None,
    block_cols: int | None = None,
    encoding: str = "differential",
    spread: int = 1,
) -> LayerProgram:
    """Map one quantized compute layer; copy its output-unit parameters into the program.

    Parameters
    ----------
    qlayer:
        A :class:`~bitline.sw.integer.qmodel.QuantLayer` of a ``conv`` or ``gemm`` (its matrix is
        :func:`bitline.sw.integer.arith.layer_matrix`: block-diagonal for depthwise convs).
    config, strategy, xbar_offset:
        See :func:`map_matrix`.
    block_rows, block_cols:
        BWQ block geometry of ``qlayer.block_bits`` / ``act_block_bits`` (the quantized
        model's ``spec["ou_rows"]`` / ``spec["ou_cols"]``); default the config's OU.
    encoding, spread:
        Weight encoding and spread factor (see :func:`map_matrix`).

    Returns
    -------
    LayerProgram

    Raises
    ------
    ValueError
        See :func:`map_matrix`.
    """
    from bitline.sw.integer.arith import layer_matrix

    name = qlayer.layer.name
    matrix = layer_matrix(qlayer)
    program = map_matrix(
        matrix, config, strategy, act_bits=qlayer.inputs[0].bits,
        act_block_bits=qlayer.act_block_bits, block_bits=qlayer.block_bits,
        block_rows=block_rows, block_cols=block_cols, name=name, xbar_offset=xbar_offset,
        encoding=encoding, spread=spread,
    )
    n_out = matrix.shape[0]

    def channel_param(value, field):
        if value is None:
            return np.zeros(n_out, dtype=np.int64)
        value = np.asarray(value, dtype=np.int64).reshape(-1)
        if value.shape != (n_out,):
            raise ValueError(f"layer {name}: {field} must have {n_out} entries, not {value.size}")
        return value.copy()

    program.bias = channel_param(qlayer.bias, "bias")
    program.mult = channel_param(qlayer.mult, "mult")
    program.shift = channel_param(qlayer.shift, "shift")
    program.mode = qlayer.mode
    program.zero_point = int(qlayer.output.zero_point) if qlayer.output is not None else 0
    program.clamp_lo = int(qlayer.clamp_lo)
    program.clamp_hi = int(qlayer.clamp_hi)
    program.stats["strategy"] = strategy
    return program


def map_model(
    qmodel,
    config: AcceleratorConfig,
    strategy: str,
    *,
    xbars: str | int = "config",
    encoding: str = "differential",
    spread: dict[str, int] | None = None,
) -> Program:
    """Map every compute layer of a quantized model onto consecutive crossbar units.

    Layer ``i`` owns units ``[offset_i, offset_i + n_i)`` with ``offset_i`` the units of the
    layers before it (a unit holds one layer).

    Parameters
    ----------
    qmodel:
        A :class:`~bitline.sw.integer.qmodel.QuantizedModel`; BWQ block geometry is read from
        ``qmodel.spec["ou_rows"]`` / ``["ou_cols"]`` when present.
    config:
        The accelerator.
    strategy:
        One of :data:`STRATEGIES`.
    xbars:
        ``"config"``: the network must fit ``config.n_xbars``; ``"auto"``: the returned
        program's config has ``n_xbars`` set to the units the network needs; an integer:
        use that many units (checked like ``"config"``).
    encoding:
        Weight encoding of every layer (see :func:`map_matrix`).
    spread:
        Spread factor per layer name (:func:`map_matrix`); layers not named are dense.

    Returns
    -------
    Program

    Raises
    ------
    ValueError
        If the network needs more crossbar units than available, has more compute layers
        than ``config.max_layers``, or a layer cannot be mapped.
    """
    check_strategy(strategy)
    check_encoding(encoding, strategy)
    if isinstance(xbars, bool) or not (xbars in ("config", "auto") or isinstance(xbars, int)):
        raise ValueError(f"xbars must be 'config', 'auto' or an integer, not {xbars!r}")
    if isinstance(xbars, int):
        config = config.replace(n_xbars=xbars)
    spec = qmodel.spec if isinstance(qmodel.spec, dict) else {}
    block_rows = spec.get("ou_rows")
    block_cols = spec.get("ou_cols")
    layers = qmodel.compute_layers
    unknown = set(spread or ()) - {qlayer.layer.name for qlayer in layers}
    if unknown:
        raise ValueError(f"spread: the model has no compute layer {sorted(unknown)[0]!r}")
    if len(layers) > config.max_layers:
        raise ValueError(
            f"network has {len(layers)} compute layers, the configuration's layer table "
            f"holds max_layers={config.max_layers}"
        )
    programs: list[LayerProgram] = []
    offset = 0
    for qlayer in layers:
        program = map_layer(qlayer, config, strategy, offset,
                            block_rows=None if block_rows is None else int(block_rows),
                            block_cols=None if block_cols is None else int(block_cols),
                            encoding=encoding,
                            spread=int((spread or {}).get(qlayer.layer.name, 1)))
        programs.append(program)
        offset += len(program.xbars)
    if xbars == "auto":
        try:
            config = config.replace(n_xbars=max(offset, 1))
        except ValueError as error:
            raise ValueError(
                f"network needs {offset} crossbar units, more than any configuration holds "
                f"({error}); use larger crossbars or another strategy"
            ) from None
    elif offset > config.n_xbars:
        raise ValueError(
            f"network needs {offset} crossbar units, the configuration has "
            f"{config.n_xbars}; use --xbars auto or raise n_xbars"
        )
    return Program(config=config, strategy=strategy, layers=programs)
