"""The compile steps 3-7 (see :mod:`bitline.sw.flow`): size the hardware, quantize, map,
validate, write the bundle.

A little over 600 lines: the steps and the placement / copy allocation that reshapes their
program stay in one module, so the sizing rule (which fields are sized, which pinned ones are
refused) is read in one place.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import STRATEGIES, Program
from bitline.sw.flow.inputs import (
    DEFAULT_PRESET,
    SYNTHETIC_CALIB_SAMPLES,
    calibration_inputs,
    model_labels,
    parse_xbars,
    resolve_target,
)

__all__ = ["WIDEST_WEIGHT_BITS", "COMPILE_SIDECAR", "COMPILE_STEPS", "Sizing", "HardwarePlan",
           "CompileResult", "sized_quantization", "size_hardware", "quantize", "resolve_spec",
           "map_program",
           "validate", "compile_model", "spread_placements", "with_placements",
           "allocate_copies", "compile_bundle", "fault_aware_mapping", "network_program"]

#: The widest ``max_weight_bits`` an :class:`AcceleratorConfig` accepts.
WIDEST_WEIGHT_BITS = 16
#: Side file ``bitline compile`` writes into the bundle (model, strategy, labels, sizing).
COMPILE_SIDECAR = "compile.json"

#: The compile steps in order: (name, function name in this module or where it lives).
COMPILE_STEPS: tuple[tuple[str, str], ...] = (
    ("resolve model", "resolve_target"),
    ("calibration inputs", "calibration_inputs"),
    ("size hardware", "size_hardware"),
    ("quantize", "quantize"),
    ("map", "map_program"),
    ("validate", "validate"),
    ("bundle", "bitline.sw.bundle.write_bundle"),
)


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Sizing:
    """One config field :func:`size_hardware` chose.

    Attributes
    ----------
    field:
        The :class:`AcceleratorConfig` field.
    requested:
        Its value in the requested config (preset or file).
    chosen:
        The value the program is compiled for.
    reason:
        Why, in words (printed by the CLI).
    """

    field: str
    requested: int
    chosen: int
    reason: str

    @property
    def note(self) -> str:
        """One line for the CLI: ``"<field> raised from A to B (reason)"``."""
        verb = "raised" if self.chosen > self.requested else "set"
        return f"{self.field} {verb} from {self.requested} to {self.chosen} ({self.reason})"

    def to_dict(self) -> dict:
        return {"field": self.field, "requested": self.requested, "chosen": self.chosen,
                "reason": self.reason}


@dataclass(frozen=True)
class HardwarePlan:
    """What :func:`size_hardware` returns.

    Attributes
    ----------
    config:
        The config every later step uses.
    sizing:
        One :class:`Sizing` per field that differs from the requested config.
    qmodel:
        The quantized model measured on the way, when its quantization equals what
        :func:`quantize` gives for :attr:`config` (reused instead of quantizing again);
        else ``None``.
    layers:
        The layer programs of the mapping measured on the way (``--xbars auto``), else
        ``None``. The mapper reads ``n_xbars`` and ``max_entries`` only to reject, so they
        are the layers :func:`map_program` gives for :attr:`config` (tests/e2e/test_flow.py
        maps again and compares); :func:`compile_model` reuses them instead of mapping twice.
    """

    config: AcceleratorConfig
    sizing: tuple[Sizing, ...] = ()
    qmodel: object = None
    layers: tuple = None


@dataclass
class CompileResult:
    """The products of :func:`compile_model` and how long each step took (seconds)."""

    qmodel: object
    program: object
    config: AcceleratorConfig
    sizing: tuple[Sizing, ...]
    size_s: float
    quantize_s: float
    map_s: float

    @property
    def notes(self) -> list[str]:
        """One line per :class:`Sizing` record."""
        return [record.note for record in self.sizing]


# ------------------------------------------------------------------------ compile steps
def _capacity_sizing(model, config: AcceleratorConfig) -> list[Sizing]:
    """Layer-job capacity: ``max_in_features`` / ``max_out_channels`` of the largest layer.

    A layer's input vector (``K``; a depthwise conv's block-diagonal matrix has
    ``C * KH * KW`` inputs) and output channels must fit the config's layer-job capacity.
    """
    largest_k = largest_o = 1
    for layer in model.compute_layers:
        weight = layer.weight
        groups = int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1
        largest_k = max(largest_k, int(np.prod(weight.shape[1:])) * groups)
        largest_o = max(largest_o, int(weight.shape[0]))
    records = []
    for name, need, what in (("max_in_features", largest_k, "largest layer input"),
                             ("max_out_channels", largest_o, "largest layer output")):
        if need > getattr(config, name):
            _refuse_pinned(config, name, need, what)
            records.append(Sizing(name, getattr(config, name), need, what))
    return records


def _refuse_pinned(config: AcceleratorConfig, name: str, need: int, what: str) -> None:
    """Raise when the user set ``name`` (``config.pinned``) and the network needs ``need``.

    A value the user set is honoured or refused, never changed (docs/hardware.md, "Pinned
    and sized fields"); only fields left unset are sized.
    """
    if name in config.pinned:
        raise ValueError(
            f"the config sets {name} = {getattr(config, name)}, but the network needs "
            f"{need} ({what}); raise {name} in the config file, or remove the key to "
            "let compile size it")


def _apply(config: AcceleratorConfig, records) -> AcceleratorConfig:
    changes = {record.field: record.chosen for record in records}
    return config.replace(**changes) if changes else config


def _weight_sizing(model, spec, calib_x, config: AcceleratorConfig):
    """Quantize to measure the weight planes; return ``(qmodel, records)``.

    A spec whose weights need more magnitude bit planes than ``config.max_weight_bits``
    allows (varied schemes such as power-of-two or adaptive float reach high magnitudes) is
    quantized with the widest weights a config holds, and ``max_weight_bits`` is chosen as
    exactly what the weights need.
    """
    try:
        return quantize(model, spec, calib_x, config), []
    except ValueError as error:
        if config.max_weight_bits >= WIDEST_WEIGHT_BITS:
            raise
        if "max_weight_bits" in config.pinned:
            raise ValueError(f"{error} (the config sets max_weight_bits = "
                             f"{config.max_weight_bits}; raise it in the config file, or "
                             "remove the key to let compile size it)") from None
        qmodel = quantize(model, spec, calib_x,
                          config.replace(max_weight_bits=WIDEST_WEIGHT_BITS))
    planes = max((qlayer.weight.magnitude_bits for qlayer in qmodel.compute_layers
                  if qlayer.weight is not None), default=1)
    needed = max(config.max_weight_bits, planes + 1)
    return qmodel, [Sizing("max_weight_bits", config.max_weight_bits, needed,
                           f"{planes} magnitude bit planes")]


def sized_quantization(model, spec, calib_x: np.ndarray, config: AcceleratorConfig, *,
                       qmodels: dict | None = None):
    """The quantizing half of :func:`size_hardware` (``--xbars auto``).

    Raises the layer-job capacity and ``max_weight_bits`` as the network and the spec need
    and quantizes (once per ``(spec, config digest, pinned)`` in ``qmodels``; only specs given by
    name or path are cached, a spec object may be edited later). Returns
    ``(config, qmodel, records)``: the config with those fields raised, the quantized
    model and the :class:`Sizing` records. ``scripts/bench_compile.py`` times it as the
    ``quantize`` step.
    """
    from bitline.sw.quant import load_spec

    records = _capacity_sizing(model, config)
    config = _apply(config, records)
    cache = qmodels if qmodels is not None and isinstance(spec, (str, Path)) else {}
    key = (str(spec), config.digest, config.pinned)     # a pinned field refuses, not sizes
    if key not in cache:
        cache[key] = _weight_sizing(model, None if spec is None else load_spec(spec),
                                    calib_x, config)
    qmodel, weight_records = cache[key]
    return _apply(config, weight_records), qmodel, records + list(weight_records)


def size_hardware(model, spec, calib_x: np.ndarray, config: AcceleratorConfig, strategy: str,
                  *, xbars: str | int = "auto", qmodels: dict | None = None,
                  encoding: str = "differential") -> HardwarePlan:
    """Choose the config the program is compiled for (compile step 3).

    With ``xbars="auto"`` the machine is sized to the network, each field raised only when
    the requested config is too small: ``max_in_features`` / ``max_out_channels`` (largest
    layer), ``max_weight_bits`` (quantizing to measure the weight planes), ``n_xbars`` (the
    units the mapping needs; set, not only raised) and ``max_entries`` (the mapping's OU
    entries; mapping to measure). With a unit count, ``n_xbars`` is that count and nothing
    else changes. The quantizer and the mapper read none of ``max_weight_bits`` (except to
    reject), ``n_xbars`` and ``max_entries``, so measuring under the requested values gives
    exactly the program the later steps build under the chosen ones.

    Only fields the user left unset are sized: a field in ``config.pinned`` (a key the
    config file sets) is kept as it is, and a network that needs more than it holds is a
    ``ValueError`` naming the field, its value and what the network needs. A unit count
    (``--xbars N``) is the user's too and replaces ``n_xbars``, pinned or not (a
    command-line flag overrides the file; the record says so).

    Parameters
    ----------
    qmodels:
        Optional cache ``(spec, config digest) -> (qmodel, records)`` shared between calls
        (:func:`compare_strategies` quantizes once per spec).
    encoding:
        Weight encoding of the mapping (:data:`bitline.hw.spec.program.ENCODINGS`).

    Raises
    ------
    ValueError
        From the quantizer or the mapper, when the network cannot fit any config, or when
        it does not fit a pinned field.
    """
    from bitline.sw.mapping import map_model

    xbars = parse_xbars(xbars)
    if xbars != "auto":
        sizing = ()
        if xbars != config.n_xbars:
            sizing = (Sizing("n_xbars", config.n_xbars, xbars, "--xbars"),)
        return HardwarePlan(_apply(config, sizing), sizing)
    config, qmodel, records = sized_quantization(model, spec, calib_x, config, qmodels=qmodels)
    probe = map_model(qmodel, config, strategy, xbars="auto", encoding=encoding)
    units = probe.config.n_xbars
    if units > config.n_xbars:
        _refuse_pinned(config, "n_xbars", units, f"crossbar units of the {strategy} mapping")
    if units != config.n_xbars and "n_xbars" not in config.pinned:
        records.append(Sizing("n_xbars", config.n_xbars, units,
                              f"units the {strategy} mapping needs"))
    entries = sum(len(layer.entries) for layer in probe.layers)
    if entries > config.max_entries:
        _refuse_pinned(config, "max_entries", entries, "OU entries of the program")
        records.append(Sizing("max_entries", config.max_entries, entries,
                              "OU entries of the program"))
    return HardwarePlan(_apply(config, records), tuple(records), qmodel, tuple(probe.layers))


def quantize(model, spec, calib_x: np.ndarray, config: AcceleratorConfig):
    """Quantize ``model`` with ``spec`` for ``config`` (compile step 4).

    ``spec=None`` takes the quantization of a model read from a quantized file (QDQ /
    QONNX, ``model.quantization``; :func:`bitline.sw.quant.prequantized.quantized_from_file`)
    and needs no calibration; :func:`resolve_spec` chooses ``spec``.
    """
    if spec is None:
        from bitline.sw.quant.prequantized import quantized_from_file

        return quantized_from_file(model, config)
    if getattr(model, "quantization", None) is not None:
        raise ValueError(
            f"model {model.name} is already quantized ({model.quantization.format} in "
            f"{model.source}); quantizing it with spec {getattr(spec, 'name', spec)} would "
            "discard that: compile it without --quant, or with --requantize "
            "(bitline.sw.flow.resolve_spec)")
    from bitline.sw.quant import quantize_model

    return quantize_model(model, spec, calib_x, config)


def resolve_spec(model, spec, requantize: bool = False):
    """Return ``(model, spec)`` for the quantize step: the file's quantization or a spec.

    A model read from a quantized file (``model.quantization``) is mapped as it is
    (``spec=None``); a ``spec`` with such a model is an error unless ``requantize``, which
    quantizes its float graph (the file's weights dequantized) with ``spec`` (default
    ``int8``). A float model gets ``spec`` (default ``int8``).

    Raises
    ------
    ValueError
        ``spec`` given for a quantized model without ``requantize``, or ``requantize`` for a
        model that is not quantized.
    """
    from dataclasses import replace

    quantized = getattr(model, "quantization", None) is not None
    if quantized and spec is not None and not requantize:
        raise ValueError(
            f"model {model.name} is already quantized ({model.quantization.format} in "
            f"{model.source}); it is mapped with its own quantization: drop --quant, or pass "
            "--requantize to quantize its float weights again with that spec")
    if requantize and not quantized:
        raise ValueError(f"--requantize: model {model.name} is not a quantized model (no QDQ "
                         "or QONNX quantization nodes); use --quant alone")
    if quantized and not requantize:
        return model, None
    if quantized:
        model = replace(model, quantization=None)
    return model, "int8" if spec is None else spec


def map_program(qmodel, config: AcceleratorConfig, strategy: str,
                encoding: str = "differential"):
    """Map ``qmodel`` onto exactly ``config`` with ``strategy`` and ``encoding`` (step 5).

    Raises
    ------
    ValueError
        If the network does not fit ``config`` (too many units, layers, ...).
    """
    from bitline.sw.mapping import map_model

    return map_model(qmodel, config, strategy, xbars="config", encoding=encoding)


def validate(program) -> None:
    """Check ``program`` with the one OU-program validator (compile step 6).

    :func:`bitline.hw.spec.validate.validate_program` on the program's own config: every
    table fits its field and the config (accumulator width, entry counts, ...), as the
    bundle reader, the hardware generation and the executor check it.

    Raises
    ------
    bitline.hw.spec.program.ProgramError
        A ``ValueError`` naming the layer and field that break the contract.
    """
    from bitline.hw.spec.validate import validate_program

    validate_program(program, program.config)


def compile_model(model, strategy: str, spec, config: AcceleratorConfig, calib_x: np.ndarray,
                  *, xbars: str | int = "auto", qmodels: dict | None = None,
                  encoding: str = "differential", network: bool = False,
                  pipeline: bool = False, replicate: dict | None = None,
                  budget=None) -> CompileResult:
    """Size, quantize, map and validate (compile steps 3-6).

    ``xbars`` is ``"auto"`` (the machine is sized to the network, :func:`size_hardware`) or
    a unit count that replaces ``config.n_xbars``. ``qmodels`` is the optional cache of
    :func:`size_hardware`. ``encoding`` is the weight encoding
    (:data:`bitline.hw.spec.program.ENCODINGS`; ``offset`` is ISAAC's, ``isaac`` only).
    ``network`` adds the whole-network nodes (:func:`network_program`), ``pipeline`` lays
    them out for the inter-layer pipeline (``--pipeline``; needs ``network``);
    ``replicate`` and ``budget`` give its layers replicas (:func:`network_program`).

    Raises
    ------
    ValueError
        If the strategy or encoding is unknown, the strategy does not support the
        encoding, ``pipeline`` comes without ``network``, or a step rejects the model,
        spec or config.
    """
    from bitline.sw.mapping import check_encoding

    if pipeline and not network:
        raise ValueError("--pipeline pipelines the whole-network mode's nodes: it needs "
                         "--network")
    if (replicate or budget is not None) and not pipeline:
        raise ValueError(f"{'--replicate' if replicate else '--budget'} here gives layers "
                         "replicas in the inter-layer pipeline: it needs --network --pipeline")

    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    check_encoding(encoding, strategy)
    start = time.perf_counter()
    plan = size_hardware(model, spec, calib_x, config, strategy, xbars=xbars, qmodels=qmodels,
                         encoding=encoding)
    sized = time.perf_counter()
    # The sizing's measured quantization is the one quantize() gives for plan.config (the
    # quantizer reads max_weight_bits only to reject wider weights), so it is reused.
    qmodel = plan.qmodel if plan.qmodel is not None else quantize(model, spec, calib_x,
                                                                   plan.config)
    quantized = time.perf_counter()
    if plan.layers is not None and plan.qmodel is not None:
        program = Program(plan.config, strategy, list(plan.layers))
    else:
        program = map_program(qmodel, plan.config, strategy, encoding)
    sizing = plan.sizing
    if network:
        program, records = network_program(program, qmodel, pipeline=pipeline,
                                            replicate=replicate, budget=budget)
        grown = [record for record in records if record.field == "n_xbars"]
        if grown and parse_xbars(xbars) != "auto":     # the user's unit count: honoured
            raise ValueError(f"--xbars {xbars}: the network needs {grown[0].chosen} crossbar "
                             f"units ({grown[0].reason}); raise --xbars, or use --xbars auto")
        sizing += records
    validate(program)
    return CompileResult(qmodel, program, program.config, sizing, sized - start,
                         quantized - sized, time.perf_counter() - quantized)


#: Why :func:`network_program` sizes each whole-network field (the CLI's notes).
_NETWORK_REASONS = {
    "act_buffer_depth": "--network: the activation buffer's peak of live feature maps",
    "max_nodes": "--network: nodes of the layer graph",
    "max_map_channels": "--network: channels of the largest feature map",
    "max_map_height": "--network: height of the largest feature map",
    "max_map_width": "--network: width of the largest feature map",
}

#: The reasons that change with ``--pipeline`` (docs/network.md section 6).
_PIPELINE_REASONS = {
    "act_buffer_depth": "--pipeline: every feature map's copies, no region reused",
    "pipeline_stages": "--pipeline: one stage engine per node",
}


def network_program(program: Program, qmodel, *, pipeline: bool = False,
                    replicate: dict | None = None, budget=None
                    ) -> tuple[Program, tuple[Sizing, ...]]:
    """Return ``program`` with its whole-network nodes and the config sized for them.

    The nodes are :func:`bitline.sw.integer.network.network_nodes` of the quantized model's
    layer graph (docs/network.md section 2). The config's whole-network fields
    (``act_buffer_depth``, ``max_nodes``, ``max_map_channels``, ``max_map_height``,
    ``max_map_width``) are raised to what the nodes need, each only when the user did not
    set it (``config.pinned``; a pinned value that is too small is refused) and only when
    too small.

    With ``pipeline`` (``--pipeline``, docs/network.md section 6) the nodes run on
    ``pipeline_stages`` stage engines: one per node, unless the config pins the count
    (then :func:`~bitline.sw.integer.network.partition_stages` groups the nodes into that
    many contiguous runs by their :func:`~bitline.hw.spec.net_timing.node_timing`), and the
    buffer is laid out with copies instead of liveness
    (:func:`~bitline.sw.integer.network.pipeline_plan`); ``act_buffer_depth`` is sized to
    the sum of the regions.

    ``replicate`` (``--replicate NAME=R``, docs/network.md section 7) gives the named
    compute layers ``R`` replicas: further layer records on fresh units
    (:meth:`~bitline.hw.spec.program.Program.with_replicas`; ``n_xbars`` grows, a sizing)
    and further COMPUTE nodes after the layer's, taking turns by image
    (:func:`~bitline.sw.integer.network.replicate_nodes`). ``budget`` (``--pipeline
    --budget xbars:N``) doubles the replicas of the bottleneck group
    (:func:`pipeline_replicas`) while the units fit ``N``.

    Raises
    ------
    ValueError
        For a program with layer copies, a layer op the whole-network hardware does not
        run (naming the layer and op), a pinned field below what the network needs, a
        config that pins ``pipeline_stages`` without ``pipeline`` or to a count outside
        ``1 .. nodes`` with it, or ``max_copies`` above 1 with ``pipeline``; replicas
        without ``pipeline``, of a name that is no compute layer or of a non-COMPUTE or
        ``to_host`` node, a count that is not 1, 2, 4 or 8, replicas sharing an engine,
        a pinned ``n_xbars`` below the replicas' units (each naming the layer and value).
    """
    from bitline.sw.integer.network import network_nodes

    for layer in program.layers:
        if layer.copies > 1:
            raise ValueError(f"layer {layer.name!r} has {layer.copies} copies: --network runs "
                             "one copy of each layer (compile without --budget, or without "
                             "--network)")
    config = program.config
    if not pipeline and config.pipeline_stages:
        raise ValueError(f"the config sets pipeline_stages = {config.pipeline_stages} (the "
                         "inter-layer pipeline's engines): compile with --pipeline, or set "
                         "pipeline_stages = 0")
    replicate = dict(replicate or {})
    if (replicate or budget is not None) and not pipeline:
        what = "--replicate" if replicate else "--budget"
        raise ValueError(f"{what} gives layers replicas in the inter-layer pipeline: it needs "
                         "--network --pipeline")
    plan = network_nodes(qmodel, [layer.name for layer in program.layers])
    reasons = dict(_NETWORK_REASONS)
    records = []
    if pipeline:
        if budget is not None:
            replicate = pipeline_replicas(program, qmodel, plan, budget, replicate)
        if replicate:
            program, plan, grown = _replicated(program, qmodel, plan, replicate)
            records += grown
            config = program.config
        plan = _pipeline_plan(program, plan)
        reasons.update(_PIPELINE_REASONS)
    for name, need in plan.sizes.items():
        exact = name == "pipeline_stages"           # the engines, not a capacity
        if need > getattr(config, name) or (exact and need != getattr(config, name)):
            _refuse_pinned(config, name, need, reasons[name])
            records.append(Sizing(name, getattr(config, name), need, reasons[name]))
    try:
        config = _apply(config, records)
    except ValueError as error:         # a need beyond what a config can hold at all
        named = [record for record in records if str(error).startswith(record.field)]
        needs = ", ".join(f"{record.field} = {record.chosen} "
                          f"({record.reason.removeprefix('--network: ')}"
                          f"{_map_owner(plan.nodes, record.field, record.chosen)})"
                          for record in named or records)
        raise ValueError(f"--network: the network needs {needs}, but {error}; the "
                         "whole-network hardware cannot hold it (compile without --network "
                         "for per-layer jobs)") from None
    return (Program(config, program.strategy, program.layers, nodes=plan.nodes),
            tuple(records))


def replica_counts(program: Program) -> dict[str, int]:
    """Layer name -> replicas of each replicated layer of a pipelined program's nodes."""
    return {node.name: 1 << int(node.replicas_log2) for node in program.nodes or ()
            if int(node.replicas_log2) and not node.phase}


def parse_budget_label(budget) -> str:
    """``budget``'s label (``xbars:N``), from a string or a parsed budget."""
    from bitline.sw.perf import parse_budget

    return (parse_budget(budget) if isinstance(budget, str) else budget).label


def _check_replicate(plan, replicate: dict) -> dict[int, int]:
    """The node index and count of each ``--replicate NAME=R``; refusals name both."""
    from bitline.hw.spec.network import NodeKind
    from bitline.sw.integer.network import MAX_REPLICAS

    by_name = {node.name: index for index, node in enumerate(plan.nodes)}
    computes = [node.name for node in plan.nodes if node.kind == NodeKind.COMPUTE]
    counts = {}
    for name, count in replicate.items():
        where = f"--replicate {name}={count}"
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or \
                count < 1 or count > MAX_REPLICAS or count & (count - 1):
            raise ValueError(f"{where}: {count!r} replicas; a layer has 1, 2, 4 or "
                             f"{MAX_REPLICAS} (a power of two up to {MAX_REPLICAS})")
        if name not in by_name:
            raise ValueError(f"{where}: {name!r} is no compute layer of the network (its "
                             f"compute layers: {', '.join(computes)})")
        index = by_name[name]
        node = plan.nodes[index]
        if node.kind != NodeKind.COMPUTE:
            raise ValueError(f"{where}: {name!r} is a {NodeKind(node.kind).name} node; only "
                             f"COMPUTE nodes are replicated ({', '.join(computes)})")
        if node.to_host:
            raise ValueError(f"{where}: {name!r} is the last node, which sends its outputs "
                             "to the host; the to_host node is not replicated")
        if count > 1:
            counts[index] = int(count)
    return counts


def _replicated(program: Program, qmodel, plan, replicate: dict):
    """The program with the replicas' layer records, the node plan with the groups and
    the ``n_xbars`` sizing (:func:`network_program`)."""
    from bitline.sw.integer.network import network_nodes, replicate_nodes

    counts = _check_replicate(plan, replicate)
    named = {plan.nodes[index].name: count for index, count in counts.items()}
    if not named:
        return program, plan, []
    grown, indices = program.with_replicas(named)
    records = []
    need = grown.config.n_xbars
    if need > program.config.n_xbars:
        reason = ("--replicate: the replicas of "
                  + ", ".join(f"{name} x{count}" for name, count in named.items())
                  + " on fresh units")
        _refuse_pinned(program.config, "n_xbars", need, reason)
        records.append(Sizing("n_xbars", program.config.n_xbars, need, reason))
    grown = Program(grown.config, grown.strategy, grown.layers)
    plan = network_nodes(qmodel, [layer.name for layer in grown.layers])
    groups = {index: indices[plan.nodes[index].name] for index in counts}
    return grown, replicate_nodes(plan, groups), records


def _group_times(program: Program, plan) -> list[float]:
    """Per node of ``plan`` its cycles per image of the batch: ``node_timing / R`` (a
    replica runs one image in ``R``); the stage model's view of a replica group."""
    from bitline.hw.spec.net_timing import node_timing
    from bitline.hw.spec.network import NodeKind

    return [node_timing(program.config, node, program.layers[node.layer]
                        if node.kind == NodeKind.COMPUTE else None).cycles
            / (1 << int(node.replicas_log2)) for node in plan.nodes]


def pipeline_replicas(program: Program, qmodel, plan, budget, replicate: dict | None = None
                      ) -> dict[str, int]:
    """Return the replicas per layer name ``--pipeline --budget xbars:N`` chooses (7.3).

    Starting from ``replicate`` (``--replicate``, else none), the replicas of the
    bottleneck group are doubled while the program's units fit ``N`` and ``R <= 8``. The
    bottleneck is the node with the most cycles per image of the batch,
    ``node_timing / R`` (one engine per node: its engine's share per image); the doubling
    stops when that node cannot be replicated (not COMPUTE, the ``to_host`` node, already
    8), its doubling does not fit ``N`` or the records (a layout refused, e.g. a map
    needing more than 15 copies), or ``pipeline_schedule``'s steady cycles per image of
    the program with the doubling (:func:`~bitline.sw.perf.network.pipelined_report`, 8
    images) are not below the current program's.

    Raises
    ------
    ValueError
        If the budget is not ``xbars:N`` or the program without replicas does not fit it.
    """
    from bitline.hw.spec.network import NodeKind
    from bitline.sw.integer.network import MAX_REPLICAS
    from bitline.sw.perf import parse_budget

    budget = parse_budget(budget) if isinstance(budget, str) else budget
    if budget.kind != "xbars":
        raise ValueError(f"--pipeline --budget {budget.label}: the pipeline's replicas take a "
                         "crossbar-unit budget, xbars:N")
    limit = int(budget.amount)
    replicas = {name: int(count) for name, count in (replicate or {}).items()}
    units = {layer.name: len(np.asarray(layer.xbars).reshape(-1)) for layer in program.layers}

    def used(counts: dict[str, int]) -> int:
        return program.xbars_used + sum((count - 1) * units[name]
                                        for name, count in counts.items())

    if used(replicas) > limit:
        raise ValueError(f"--pipeline --budget {budget.label}: the network's layers (with "
                         f"their replicas) use {used(replicas)} crossbar units, more than "
                         f"the budget's {limit}")
    _check_replicate(plan, replicas)
    times = _group_times(program, plan)
    steady = _steady_cycles(program, qmodel, plan, replicas)
    while True:
        slowest = int(np.argmax([time / replicas.get(node.name, 1)
                                 for time, node in zip(times, plan.nodes)]))
        node = plan.nodes[slowest]
        count = replicas.get(node.name, 1)
        if node.kind != NodeKind.COMPUTE or node.to_host or count >= MAX_REPLICAS:
            return replicas
        doubled = {**replicas, node.name: 2 * count}
        if used(doubled) > limit:
            return replicas
        try:
            faster = _steady_cycles(program, qmodel, plan, doubled)
        except ValueError:              # e.g. a map would need more copies than 15
            return replicas
        if faster >= steady:            # the schedule: the doubling gains nothing
            return replicas
        replicas, steady = doubled, faster


def _steady_cycles(program: Program, qmodel, plan, replicas: dict[str, int]) -> int:
    """``pipeline_schedule``'s steady cycles per image (8 images) of ``program`` with
    ``replicas``, laid out as :func:`network_program` does (the config sized to it)."""
    from bitline.sw.perf.network import PIPELINE_BATCH, pipelined_report

    if any(count > 1 for count in replicas.values()):
        program, plan, _ = _replicated(program, qmodel, plan, replicas)
    laid = _pipeline_plan(program, plan)
    config = program.config.replace(**laid.sizes)
    trial = Program(config, program.strategy, program.layers, nodes=laid.nodes)
    return pipelined_report(trial, n_images=PIPELINE_BATCH).steady_cycles


def _pipeline_plan(program: Program, plan):
    """The pipelined layout of ``plan`` (:func:`network_program`): the engine count, the
    nodes' stages and the copies; refusals name the config field and the values."""
    from bitline.sw.integer.network import partition_stages, pipeline_plan

    config = program.config
    count = len(plan.nodes)
    if config.max_copies != 1:
        raise ValueError(f"--pipeline: the config sets max_copies = {config.max_copies}; the "
                         "inter-layer pipeline runs one copy of each layer (max_copies = 1)")
    engines = count
    if "pipeline_stages" in config.pinned:
        engines = config.pipeline_stages
        if not 1 <= engines <= count:
            raise ValueError(f"--pipeline: the config sets pipeline_stages = {engines}, but the "
                             f"network has {count} nodes and every engine runs at least one "
                             f"node: set pipeline_stages to 1 .. {count}, or remove the key "
                             f"to get one engine per node")
    times = [int(np.ceil(time)) for time in _group_times(program, plan)]
    stages = partition_stages(times, engines)
    for index, node in enumerate(plan.nodes):
        if node.phase and stages[index] == stages[index - 1]:
            raise ValueError(f"--pipeline: pipeline_stages = {engines} puts replicas "
                             f"{node.phase - 1} and {node.phase} of layer {node.name!r} on "
                             f"engine {stages[index]}; the replicas of a layer run on "
                             "distinct engines: pin more pipeline_stages, or fewer "
                             "replicas")
    for index, node in enumerate(plan.nodes):
        shared = [other for other in range(len(stages))
                  if other != index and stages[other] == stages[index]]
        if node.replicas_log2 and shared:
            other = plan.nodes[shared[0]]
            raise ValueError(f"--pipeline: pipeline_stages = {engines} puts replica "
                             f"{node.phase} of layer {node.name!r} on engine {stages[index]} "
                             f"with {other.label(shared[0])}; every replica runs alone on "
                             "its engine (a replica beside its consumer deadlocks from 4 "
                             "images, docs/network.md 7.5): pin more pipeline_stages, or "
                             "fewer replicas")
    return pipeline_plan(plan, stages)


def _map_owner(nodes, field: str, size: int) -> str:
    """``", node NAME reads it"`` / ``"writes it"`` for the first node whose source or
    output map has ``size`` as the ``max_map_*`` ``field``; ``""`` for other fields."""
    axis = {"max_map_channels": 0, "max_map_height": 1, "max_map_width": 2}.get(field)
    if axis is None:
        return ""
    for node in nodes:
        window = node.window
        if (window.channels, window.height, window.width)[axis] == size:
            return f": node {node.name!r} reads it"
        if (node.dst_channels, *window.out_hw())[axis] == size:
            return f": node {node.name!r} writes it"
    return ""


def _block_geometry(qmodel) -> dict:
    """BWQ block geometry of ``qmodel`` as :func:`bitline.sw.mapping.map_layer` takes it."""
    spec = qmodel.spec if isinstance(qmodel.spec, dict) else {}
    return {key: None if spec.get(field) is None else int(spec[field])
            for key, field in (("block_rows", "ou_rows"), ("block_cols", "ou_cols"))}


def spread_placements(program: Program, qmodel, *, factors=None, costs=None,
                      report=None) -> dict[str, tuple]:
    """Return the spread placements the pipeline allocator may choose, per layer name.

    Each compute layer of ``program`` is placed again with every spread factor ``s`` of
    ``factors`` (default :data:`bitline.sw.mapping.SPREAD_FACTORS`; docs/mapping.md,
    "Spread placements") and counted without building its cells
    (:func:`bitline.sw.mapping.spread_counts`), then priced from the dense layer's report
    (:func:`bitline.sw.perf.pipeline.variant_placement`): a
    :class:`~bitline.sw.perf.pipeline.Placement` ``"spread-<s>"`` with the units of one
    copy, ``C_comp`` and the layer job's energy. A variant is kept only if its ``C_comp``
    is below that of the dense placement and of every smaller factor (otherwise it could
    never shorten the stage); a layer whose busiest unit reads once per vector has none,
    nor has any layer on a machine whose unit is one OU.
    :func:`with_placements` maps the chosen ones for real. ``report`` is
    ``analyze(program, qmodel, costs=costs)`` when the caller has it.
    """
    from bitline.sw.mapping import SPREAD_FACTORS, spread_counts
    from bitline.sw.perf import ISAAC_COSTS, analyze
    from bitline.sw.perf.pipeline import layer_placement, variant_placement

    from bitline.sw.mapping.layout import usable_row_groups

    costs = costs or ISAAC_COSTS
    factors = SPREAD_FACTORS if factors is None else tuple(factors)
    config = program.config
    if usable_row_groups(config) == 1 and config.col_groups == 1:
        return {}           # a unit is one OU (ISAAC's 128x128 read): nothing to spread
    report = report or analyze(program, qmodel, costs=costs)
    geometry = _block_geometry(qmodel)
    out = {}
    for layer, perf in zip(program.layers, report.layers):
        if perf.max_unit_reads <= 1:
            continue
        best = layer_placement(perf, config).compute_cycles
        counts = spread_counts(qmodel.layers[layer.name], config, program.strategy, factors,
                               encoding="offset" if layer.weight_offset else "differential",
                               **geometry)
        found = []
        for factor, count in counts.items():
            placement = variant_placement(perf, f"spread-{factor}", count, config, costs)
            if placement.compute_cycles < best:
                found.append(placement)
                best = placement.compute_cycles
        if found:
            out[layer.name] = tuple(found)
    return out


def with_placements(program: Program, qmodel, placements: dict[str, str]) -> Program:
    """Return ``program`` with each layer mapped in its placement of ``placements``.

    ``placements`` maps layer names to ``"dense"`` or ``"spread-<s>"`` (the allocator's
    choice, :attr:`~bitline.sw.perf.pipeline.PipelineReport.placements`); a spread layer is
    mapped again with its factor, the others are kept, and every layer is moved so the
    layers own consecutive units again (:func:`bitline.sw.mapping.relocate`). ``n_xbars``
    and ``max_entries`` grow when the spread layers need more. Copies are not kept (give
    them afterwards with :meth:`~bitline.hw.spec.program.Program.with_copies`).

    Raises
    ------
    ValueError
        For a placement name that is neither ``dense`` nor ``spread-<s>``.
    """
    from bitline.sw.mapping import map_layer, relocate

    factors = {}
    for name, label in placements.items():
        _, dash, factor = str(label).partition("spread-")
        if label != "dense" and not (dash and factor.isdigit() and int(factor) >= 1):
            raise ValueError(f"layer {name}: unknown placement {label!r} (dense or "
                             f"spread-<s>)")
        if label != "dense":
            factors[name] = int(factor)
    if not factors:
        return program
    geometry = _block_geometry(qmodel)
    layers, offset = [], 0
    for layer in program.layers:
        if layer.name in factors:
            layer = map_layer(qmodel.layers[layer.name], program.config, program.strategy,
                              offset,
                              encoding="offset" if layer.weight_offset else "differential",
                              spread=factors[layer.name], **geometry)
        else:
            layer = relocate(layer, offset)
        layers.append(layer)
        offset += len(layer.xbars)
    config = program.config
    entries = sum(len(layer.entries) for layer in layers)
    if offset > config.n_xbars or entries > config.max_entries:
        config = config.replace(n_xbars=max(config.n_xbars, offset),
                                max_entries=max(config.max_entries, entries))
    return Program(config, program.strategy, layers)


def allocate_copies(result: CompileResult, budget, *,
                    spread: bool = True) -> tuple[CompileResult, object]:
    """Give the program's layers placements and copies at ``budget`` (``compile --budget``).

    :func:`bitline.sw.perf.pipeline.pipeline_report` chooses, per layer, the placement
    (dense, or with ``spread`` one of :func:`spread_placements`) and the copies that make
    the slowest pipeline stage as fast as the budget allows; the program gets them
    (:func:`with_placements`, then
    :meth:`~bitline.hw.spec.program.Program.with_copies`: fresh units after the mapped
    ones) and is validated again. ``n_xbars`` (and ``max_entries``, when spread layers
    have more entries) grow to what the program uses and ``max_copies`` to its most
    copies of a layer (the hardware's lanes), recorded as :class:`Sizing` records. Returns the new result and the
    :class:`~bitline.sw.perf.pipeline.PipelineReport`.

    Raises
    ------
    ValueError
        When the budget cannot hold one copy of every layer, or is not ``xbars:N`` /
        ``area:MM2``.
    """
    from dataclasses import replace

    from bitline.sw.perf import analyze, parse_budget, pipeline_report

    budget = parse_budget(budget) if isinstance(budget, str) else budget
    report = analyze(result.program, result.qmodel)
    variants = (spread_placements(result.program, result.qmodel, report=report)
                if spread else None)
    pipe = pipeline_report(report, budget, variants=variants)
    program = with_placements(result.program, result.qmodel, pipe.placements)
    program = program.with_copies(pipe.copies)
    validate(program)
    sizing = result.sizing
    reason = f"layer placements and copies at --budget {budget.label}"
    for field in ("n_xbars", "max_entries", "max_copies"):
        before, after = getattr(result.config, field), getattr(program.config, field)
        if after > before:
            _refuse_pinned(result.config, field, after, reason)
        if after != before:
            sizing += (Sizing(field, before, after, reason),)
    return replace(result, program=program, config=program.config, sizing=sizing), pipe


def fault_aware_mapping(result: CompileResult, faults) -> tuple[CompileResult, dict]:
    """Place ``result``'s program for a chip's stuck cells (docs/analog.md, "Fault-aware
    mapping") and validate it again.

    ``faults`` is a :class:`~bitline.sw.mapping.faults.StuckMap` or a callable that returns
    one for the program's config (the CLI's ``chip:SEED:RATE`` draw, which needs the final
    unit count). Returns the result with the placed program and ``{"source", "layers"}``:
    :func:`~bitline.sw.mapping.faults.faults_table` rows (stuck, read, wrong and weighted
    error per layer, before and after, and a total).

    Raises
    ------
    ValueError
        If the stuck map does not fit the program's config or units.
    """
    from dataclasses import replace

    from bitline.sw.mapping.faults import fault_aware, faults_table

    stuck_map = faults(result.program.config) if callable(faults) else faults
    program, report = fault_aware(result.program, stuck_map)
    if result.program.nodes is not None:    # placement moves units, not layers: same nodes
        program = replace(program, nodes=result.program.nodes)
    validate(program)
    return replace(result, program=program), {"source": stuck_map.source,
                                              "layers": faults_table(report)}


def compile_bundle(model_name: str, strategy: str, spec, config: AcceleratorConfig,
                   output: str | Path, *, xbars: str | int = "auto", dataset: str | None = None,
                   calib_samples: int = SYNTHETIC_CALIB_SAMPLES,
                   config_label: str = DEFAULT_PRESET,
                   budget=None, encoding: str = "differential",
                   requantize: bool = False, spread: bool = True,
                   faults=None, network: bool = False,
                   pipeline: bool = False,
                   replicate: dict | None = None) -> tuple[CompileResult, dict]:
    """Run the whole compile flow (:data:`COMPILE_STEPS`) and write the bundle to ``output``.

    ``dataset`` is the calibration data set (:func:`calibration_inputs`); ``config_label``
    names the config in the side file (preset name or config path). Returns the
    :class:`CompileResult` and the ``compile.json`` side file written next to the bundle:
    ``image_sha256`` (of ``image.bin``: whose side file it is),
    ``model``, ``strategy``, ``encoding``, ``quant``, ``config``, ``xbars``, ``labels``,
    ``sizing`` (the
    :class:`Sizing` records as dicts) and ``seconds`` (``size``, ``quantize``, ``map``,
    ``write``). ``spec`` and ``requantize`` go through :func:`resolve_spec` (``spec=None``:
    a quantized file's own quantization, else ``int8``). With a ``budget`` (``xbars:N`` /
    ``area:MM2``) the layers get their placements (dense, or spread unless ``spread`` is
    false) and copies before the bundle is written (:func:`allocate_copies`) and the side
    file also holds
    ``budget`` and ``pipeline`` (the :class:`~bitline.sw.perf.pipeline.PipelineReport`).
    With ``faults`` (:func:`fault_aware_mapping`) the program is placed for that chip's
    stuck cells last, and the side file holds ``faults`` (per-layer wrong cells before /
    after). ``network`` compiles for the whole-network mode (:func:`network_program`: the
    NETWORK section; no copies, so not with a ``budget``); the side file then holds
    ``network: true``. ``pipeline`` (with ``network``) lays the nodes out for the
    inter-layer pipeline (docs/network.md section 6); the side file then also holds
    ``pipeline_stages``. With ``pipeline``, ``replicate`` (``--replicate``) and ``budget``
    (``xbars:N``) give layers replicas (docs/network.md section 7, :func:`network_program`);
    the side file then holds ``replicas`` (layer name -> R, the replicated layers).
    """
    if pipeline and not network:
        raise ValueError("--pipeline pipelines the whole-network mode's nodes: it needs "
                         "--network")
    if replicate and not pipeline:
        raise ValueError("--replicate gives layers replicas in the inter-layer pipeline: it "
                         "needs --network --pipeline")
    if network and budget is not None and not pipeline:
        raise ValueError("--network runs one copy of each layer; --budget allocates copies: "
                         "use one of them")
    from bitline.sw.bundle import write_bundle

    target = resolve_target(model_name)
    model, spec = resolve_spec(target.require("model", "bitline compile"), spec, requantize)
    calib_x, calib_label = calibration_inputs(model, dataset, model_name=model_name,
                                              samples=calib_samples)
    result = compile_model(model, strategy, spec, config, calib_x, xbars=xbars,
                           encoding=encoding, network=network, pipeline=pipeline,
                           replicate=replicate, budget=budget if pipeline else None)
    pipe = None
    if budget is not None and not pipeline:
        result, pipe = allocate_copies(result, budget, spread=spread)
    fault_report = None
    if faults is not None:
        result, fault_report = fault_aware_mapping(result, faults)
    out = Path(output)
    start = time.perf_counter()
    write_bundle(out, result.program, result.qmodel)
    sidecar = {
        # binds the side file to this bundle's image (`bitline report` checks it)
        "image_sha256": hashlib.sha256((out / "image.bin").read_bytes()).hexdigest(),
        "model": model_name, "strategy": strategy, "encoding": encoding,
        "quant": str(spec) if spec is not None else f"file ({model.quantization.format})",
        "config": config_label,
        "xbars": parse_xbars(xbars), "labels": model_labels(model_name, calib_label),
        "sizing": [record.to_dict() for record in result.sizing],
        "seconds": {"size": result.size_s, "quantize": result.quantize_s,
                    "map": result.map_s, "write": time.perf_counter() - start},
    }
    if pipe is not None:
        sidecar.update(budget=pipe.budget.label, pipeline=pipe.to_dict())
    if fault_report is not None:
        sidecar["faults"] = fault_report
    if network:
        sidecar["network"] = True
    if pipeline:
        sidecar["pipeline_stages"] = result.program.config.pipeline_stages
        replicas = replica_counts(result.program)
        if replicas:
            sidecar["replicas"] = replicas
        if budget is not None:
            sidecar["budget"] = parse_budget_label(budget)
    (out / COMPILE_SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    return result, sidecar
