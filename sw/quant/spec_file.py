"""Quantization spec files (TOML or JSON) and shorthands: reading them into a :class:`QuantSpec`.

A spec says how every compute layer's weights and every activation are quantized. It has
one of three modes:

* ``fixed`` — a default ``[weights]`` rule, optionally overridden per layer and per output
  channel (``[layers."NAME"]`` and its ``channels`` list);
* ``varied`` — automatic per-channel choice of scheme and width among candidates, under an
  average weight-bit budget (:mod:`bitline.sw.quant.varied`);
* ``bwq`` — block-wise mixed precision on the OU grid (:mod:`bitline.sw.quant.blockwise`).

File format (every key optional unless marked; JSON uses the same structure)::

    name = "int4"                 # label used in reports (default: the file stem)
    mode = "fixed"                # "fixed" | "varied" | "bwq"

    [weights]                     # default rule of every compute layer
    scheme = "int"                # int | pot | apot | adaptivfloat | ternary | binary
    bits = 4                      # storage bits per weight, sign included (required)
    granularity = "channel"       # "channel" (one scale per output channel) | "tensor"
    clip = "mse"                  # further keys are scheme options (see schemes.quantize)

    [activations]
    bits = 8                      # unsigned width of every activation tensor
    rule = "percentile"           # calibration rule: max | percentile | mse
    percentile = 99.99

    [layers."/features/features.0/Conv"]   # overrides for one compute layer
    scheme = "int"
    bits = 8
    activation_bits = 8           # width of the activations this layer reads

    [[layers."/features/features.0/Conv".channels]]
    index = [0, 1, 2]             # output channels (list, int, or "start:stop")
    scheme = "pot"
    bits = 4

    [varied]                      # mode = "varied"
    budget = 4.0                  # average weight bits (required)
    schemes = ["int", "pot", "apot", "adaptivfloat"]
    bits = [2, 3, 4, 5, 6, 7, 8]  # candidate widths (each scheme where it is defined)
    sensitivity = "output"        # error measure, see below

    [bwq]                         # mode = "bwq"
    budget = 3.0                  # average weight bits over all weights (required)
    min_bits = 0                  # narrowest block width (0 = pruned blocks allowed)
    max_bits = 8                  # widest block width
    act_budget = 8.0              # average activation bits over row blocks (default: none)
    min_act_bits = 2              # narrowest row-block activation width
    sensitivity = "output"        # error measure, see below
    finetune_epochs = 0           # > 0: quantization-aware fine-tuning (needs PyTorch)
    finetune_lr = 1e-4
    [bwq.layers]                  # optional fixed block width for whole layers
    "/classifier/classifier.2/Gemm" = 8

``sensitivity`` picks the error that varied and BWQ minimize: ``"weight"`` — plain squared
weight error; ``"hessian"`` — weight error weighted by the Hessian diagonal ``E[x_i**2]`` of
the layer output (calibration data), relative to the layer's output power; ``"output"``
(default) — the ``"hessian"`` error times each layer's measured gain to the model output
(:func:`bitline.sw.quant.pipeline.layer_gains`), so layers compete in one unit.

Shorthands are accepted wherever a spec is: ``<scheme><bits>`` (``int8``, ``int4``,
``pot4``, ``apot4``, ``adaptivfloat6``, ``ternary``, ``binary``) and
``varied<budget>`` / ``bwq<budget>`` (the number is the average weight-bit budget and may
be fractional, e.g. ``bwq2.5``). An optional suffix ``-a<N>`` sets the activations:
``[activations] bits = N`` (``int16-a16``: ISAAC's 16-bit weights and inputs), or for
``bwq`` the BWQ-A block-wise activation budget ``act_budget = N`` over 8-bit activations
(``bwq3-a4`` equals ``examples/quant/bwq3-act4.toml``). A shorthand equals the committed file
``examples/quant/<shorthand>.toml`` where one exists.

Every error is a ``ValueError`` that names the source (file or shorthand) and the field,
e.g. ``spec my.toml: weights.bits: bits for scheme apot must be between 3 and 6, not 8``.
Checks that need the model (layer names, channel indices, a BWQ budget below what fixed
layers need) run in :meth:`QuantSpec.check_model`.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path

from bitline.sw.quant.schemes import BIT_RANGES, SCHEMES, check_scheme, default_options
from bitline.sw.quant.spec import (
    BWQ_MAX_BITS, CALIBRATION_RULES, GRANULARITIES, MAX_ACT_BITS, MODES, SENSITIVITIES,
    ActivationRule, BWQRule, ChannelRule, LayerRule, QuantSpec, VariedRule, WeightRule,
)

__all__ = ["load_spec", "parse_spec", "shorthand_spec"]

# Defaults a shorthand fills in (kept equal to examples/quant/*.toml).
_SHORTHAND = re.compile(r"^(?P<scheme>[a-z]+?)(?P<number>\d+(\.\d+)?)?"
                        r"(-a(?P<act>\d+(\.\d+)?))?$")
# Low-bit uniform grids clip at the MSE-optimal threshold (a 4-bit grid spent on a rare
# outlier loses most of its levels); 8 bits keep max scaling.
_MSE_CLIP_MAX_BITS = 6


class _Fields:
    """Pops keys of one table and raises naming ``where`` for unknown or bad ones."""

    def __init__(self, table, where: str, source: str):
        if not isinstance(table, dict):
            raise ValueError(f"spec {source}: {where} must be a table, not {table!r}")
        self.table = dict(table)
        self.where = where
        self.source = source

    def error(self, key: str, message: str) -> ValueError:
        path = f"{self.where}.{key}" if self.where else key
        return ValueError(f"spec {self.source}: {path}: {message}")

    def pop(self, key, default=None):
        return self.table.pop(key, default)

    def number(self, key, default=None, *, integer=False, low=None, high=None):
        value = self.table.pop(key, default)
        if value is None:
            return None
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = "an integer" if integer else "a number"
            raise self.error(key, f"must be {kind}, not {value!r}")
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, not {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, f"must be between {low} and {high}, not {value!r}")
        return value

    def choice(self, key, choices, default=None):
        value = self.table.pop(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(map(str, choices))}, not {value!r}")
        return value

    def finish(self, allowed: tuple[str, ...] = ()):
        if self.table:
            names = ", ".join(sorted(self.table))
            where = f"[{self.where}]" if self.where else "top level"
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            raise ValueError(f"spec {self.source}: unknown key(s) {names} in {where}{hint}")


def _weight_rule(fields: _Fields, *, required: bool,
                 inherit: WeightRule | None) -> WeightRule | None:
    scheme = fields.pop("scheme", None)
    bits = fields.pop("bits", None)
    granularity = fields.pop("granularity", None)
    option_keys = [k for k in list(fields.table) if k not in ("channels", "activation_bits",
                                                               "index")]
    options = {k: fields.table.pop(k) for k in option_keys}
    if scheme is None and bits is None and granularity is None and not options:
        if required:
            raise fields.error("bits", "is required")
        return None
    if scheme is None:
        scheme = inherit.scheme if inherit else "int"
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        # checked before the width lookups below, which index tables by the scheme
        raise fields.error("scheme", f"unknown scheme {scheme!r}; known schemes are "
                           f"{', '.join(SCHEMES)}")
    if bits is None:
        if inherit is not None and inherit.scheme == scheme:
            bits = inherit.bits
        elif BIT_RANGES.get(scheme, (0, 1))[0] == BIT_RANGES.get(scheme, (0, 0))[1]:
            bits = BIT_RANGES[scheme][0]
        else:
            raise fields.error("bits", f"is required for scheme {scheme!r}")
    if granularity is None:
        granularity = inherit.granularity if inherit else "channel"
    try:
        check_scheme(scheme, bits, where="x")
    except ValueError as error:
        raise fields.error("bits", str(error).split(": ", 1)[1]) from None
    if granularity not in GRANULARITIES:
        raise fields.error("granularity", f"must be one of {', '.join(GRANULARITIES)}, not "
                           f"{granularity!r}")
    if inherit is not None and inherit.scheme == scheme:
        options = {**inherit.options, **options}
    try:
        options = default_options(scheme, bits, **options)
    except ValueError as error:
        raise ValueError(f"spec {fields.source}: {fields.where}: {error}") from None
    return WeightRule(scheme, int(bits), granularity, options)


def _channel_index(value, fields: _Fields) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise fields.error("index", f"must be channel numbers, not {value!r}")
    if isinstance(value, int):
        return (value,)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", value)
        if not match or int(match[1]) >= int(match[2]):
            raise fields.error(
                "index", f'must be a list, an integer or "start:stop", not {value!r}')
        return tuple(range(int(match[1]), int(match[2])))
    if isinstance(value, list) and value and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    raise fields.error("index", f'must be a list, an integer or "start:stop", not {value!r}')


def _layer_rule(name: str, table, source: str, default: WeightRule | None,
                act_bits_max: int) -> LayerRule:
    where = f'layers."{name}"'
    fields = _Fields(table, where, source)
    activation_bits = fields.number("activation_bits", integer=True, low=1, high=act_bits_max)
    channels_table = fields.pop("channels", [])
    weights = _weight_rule(fields, required=False, inherit=default)
    if not isinstance(channels_table, list):
        raise fields.error("channels", "must be a list of tables ([[...channels]])")
    base = weights or default
    channel_rules = []
    for position, entry in enumerate(channels_table):
        sub = _Fields(entry, f"{where}.channels[{position}]", source)
        if "index" not in sub.table:
            raise sub.error("index", "is required")
        index = _channel_index(sub.pop("index"), sub)
        rule = _weight_rule(sub, required=False, inherit=base)
        if rule is None:
            raise sub.error("scheme", "a channel rule needs a scheme and/or bits")
        if rule.granularity != "channel":
            raise sub.error("granularity", "channel rules are per channel")
        channel_rules.append(ChannelRule(index, rule))
    fields.finish()
    return LayerRule(weights, tuple(channel_rules), activation_bits)


def _budget(fields: _Fields, key: str, minimum: float, maximum: float, what: str) -> float:
    value = fields.pop(key)
    if value is None:
        raise fields.error(key, "is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fields.error(key, f"must be a number, not {value!r}")
    if not math.isfinite(value):
        # NaN compares false with both bounds: it would pass them (a budget of nan gave
        # 7.87 average bits)
        raise fields.error(key, f"must be a finite number, not {value!r}")
    if value < minimum:
        raise fields.error(key, f"{value} is below the minimum {minimum} ({what})")
    if value > maximum:
        raise fields.error(key, f"{value} is above the maximum {maximum}")
    return float(value)


def _varied_rule(table, source: str) -> VariedRule:
    fields = _Fields(table, "varied", source)
    schemes = fields.pop("schemes", list(VariedRule.schemes))
    if not isinstance(schemes, list) or not schemes:
        raise fields.error("schemes", f"must be a non-empty list, not {schemes!r}")
    for scheme in schemes:
        if scheme not in SCHEMES:
            raise fields.error("schemes", f"unknown scheme {scheme!r}; known schemes are "
                               f"{', '.join(SCHEMES)}")
    bits = fields.pop("bits", list(VariedRule.bits))
    if not isinstance(bits, list) or not bits or any(
        isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 16 for b in bits
    ):
        raise fields.error("bits", f"must be a non-empty list of widths 1..16, not {bits!r}")
    sensitivity = fields.choice("sensitivity", SENSITIVITIES, "output")
    rule = VariedRule(0.0, tuple(schemes), tuple(sorted(set(bits))), sensitivity)
    pairs = rule.candidates()
    if not pairs:
        raise fields.error("bits", f"no scheme of {schemes} is defined at widths {bits}")
    narrowest = min(b for _, b in pairs)
    widest = max(b for _, b in pairs)
    budget = _budget(fields, "budget", narrowest, widest, "the narrowest candidate width")
    fields.finish(("budget", "schemes", "bits", "sensitivity"))
    return VariedRule(budget, tuple(schemes), rule.bits, sensitivity)


def _bwq_rule(table, source: str, act_bits: int) -> BWQRule:
    fields = _Fields(table, "bwq", source)
    min_bits = fields.number("min_bits", 0, integer=True, low=0, high=BWQ_MAX_BITS)
    max_bits = fields.number("max_bits", BWQ_MAX_BITS, integer=True, low=1, high=BWQ_MAX_BITS)
    if min_bits > max_bits:
        raise fields.error("min_bits", f"{min_bits} is above max_bits ({max_bits})")
    layers = fields.pop("layers", {})
    if not isinstance(layers, dict):
        raise fields.error("layers", "must be a table of layer name = block width")
    for name, width in layers.items():
        if isinstance(width, bool) or not isinstance(width, int) \
                or not 0 <= width <= BWQ_MAX_BITS:
            raise fields.error(f'layers."{name}"', f"must be a block width between 0 and "
                               f"{BWQ_MAX_BITS}, not {width!r}")
    budget = _budget(fields, "budget", max(min_bits, 1e-9), BWQ_MAX_BITS,
                     "min_bits" if min_bits else "it must be positive")
    min_act_bits = fields.number("min_act_bits", 2, integer=True, low=0, high=act_bits)
    act_budget = None
    if "act_budget" in fields.table:
        act_budget = _budget(fields, "act_budget", max(min_act_bits, 1e-9), act_bits,
                             "min_act_bits")
    sensitivity = fields.choice("sensitivity", SENSITIVITIES, "output")
    epochs = fields.number("finetune_epochs", 0, integer=True, low=0, high=10000)
    learning_rate = fields.number("finetune_lr", 1e-4, low=1e-9, high=1.0)
    if epochs:
        from bitline.sw.quant.finetune import torch_available

        if not torch_available():
            raise fields.error("finetune_epochs", "fine-tuning needs PyTorch, the optional "
                               'training extra: pip install -e ".[train]"')
    fields.finish(("budget", "min_bits", "max_bits", "act_budget", "min_act_bits",
                   "sensitivity", "layers", "finetune_epochs", "finetune_lr"))
    return BWQRule(budget, min_bits, max_bits, act_budget, min_act_bits, sensitivity,
                   dict(layers), int(epochs), float(learning_rate))


def parse_spec(data: dict, *, source: str = "<memory>", name: str | None = None) -> QuantSpec:
    """Validate a spec given as plain data (the parsed TOML/JSON) and return it.

    Raises
    ------
    ValueError
        Naming ``source`` and the offending field.
    """
    top = _Fields(data, "", source)
    spec_name = top.pop("name", name or source)
    if not isinstance(spec_name, str):
        raise top.error("name", f"must be a string, not {spec_name!r}")
    mode = top.choice("mode", MODES, "fixed")

    act_fields = _Fields(top.pop("activations", {}), "activations", source)
    activations = ActivationRule(
        bits=act_fields.number("bits", 8, integer=True, low=1, high=MAX_ACT_BITS),
        rule=act_fields.choice("rule", CALIBRATION_RULES, "percentile"),
        percentile=float(act_fields.number("percentile", 99.99, low=50, high=100)),
    )
    act_fields.finish(("bits", "rule", "percentile"))

    weights_table = top.pop("weights")
    weights = None
    if weights_table is not None:
        weights = _weight_rule(_Fields(weights_table, "weights", source), required=True,
                               inherit=None)
    elif mode == "fixed":
        raise ValueError(f"spec {source}: weights: a fixed-mode spec needs a [weights] table")

    layers_table = top.pop("layers", {})
    if not isinstance(layers_table, dict):
        raise top.error("layers", "must be a table of layer names")
    layers = {
        name: _layer_rule(name, table, source, weights, activations.bits)
        for name, table in layers_table.items()
    }
    if mode != "fixed":
        for name, rule in layers.items():
            if rule.weights is not None or rule.channels:
                raise ValueError(
                    f'spec {source}: layers."{name}": weight overrides need mode = "fixed" '
                    f"(mode {mode!r} assigns weights automatically; use [{mode}] options)"
                )

    varied = bwq = None
    varied_table = top.pop("varied")
    bwq_table = top.pop("bwq")
    if mode == "varied":
        if varied_table is None:
            raise ValueError(f"spec {source}: varied: mode 'varied' needs a [varied] table "
                             "with a budget")
        varied = _varied_rule(varied_table, source)
    elif varied_table is not None:
        raise top.error("varied", f"only allowed with mode = \"varied\", not {mode!r}")
    if mode == "bwq":
        if bwq_table is None:
            raise ValueError(f"spec {source}: bwq: mode 'bwq' needs a [bwq] table with a budget")
        bwq = _bwq_rule(bwq_table, source, activations.bits)
    elif bwq_table is not None:
        raise top.error("bwq", f"only allowed with mode = \"bwq\", not {mode!r}")
    top.finish(("name", "mode", "weights", "activations", "layers", "varied", "bwq"))
    return QuantSpec(spec_name, mode, weights, activations, layers, varied, bwq, source)


def _shorthand_data(text: str) -> dict:
    match = _SHORTHAND.match(text)
    if not match:
        raise ValueError(
            f"spec {text!r} is neither a spec file nor a shorthand like int8, pot4, apot4, "
            "adaptivfloat6, ternary, binary, varied4, bwq3, int16-a16 or bwq3-a4"
        )
    data = _weights_shorthand(text, match["scheme"], match["number"])
    act = match["act"]
    if act is None:
        return data
    if data["mode"] == "bwq":
        # BWQ-A: block-wise activation widths, ``act`` bits per input on average
        data["bwq"]["act_budget"] = float(act)
    elif "." in act:
        raise ValueError(f"spec {text}: activations.bits: must be an integer, not {act}")
    else:
        data["activations"] = {"bits": int(act)}
    return data


def _weights_shorthand(text: str, scheme: str, number: str | None) -> dict:
    """The spec data of a shorthand without its ``-a`` activation suffix."""
    if scheme in ("varied", "bwq"):
        if number is None:
            raise ValueError(f"spec {text}: budget: {scheme} needs a budget, e.g. {scheme}4")
        return {"name": text, "mode": scheme, scheme: {"budget": float(number)}}
    if scheme not in SCHEMES:
        raise ValueError(
            f"spec {text}: scheme: unknown scheme {scheme!r}; known schemes are "
            f"{', '.join(SCHEMES)}, varied and bwq"
        )
    if number is None:
        low, high = BIT_RANGES[scheme]
        if low != high:
            raise ValueError(f"spec {text}: bits: scheme {scheme} needs a width, e.g. {scheme}4")
        bits = low
    elif "." in number:
        raise ValueError(f"spec {text}: bits: must be an integer, not {number}")
    else:
        bits = int(number)
    weights: dict = {"scheme": scheme, "bits": bits}
    if scheme in ("int", "pot", "apot") and bits <= _MSE_CLIP_MAX_BITS:
        weights["clip"] = "mse"
    return {"name": text, "mode": "fixed", "weights": weights}


def shorthand_spec(text: str) -> QuantSpec:
    """Parse a shorthand such as ``int4``, ``apot4``, ``varied4`` or ``bwq3``."""
    return parse_spec(_shorthand_data(text), source=text, name=text)


def load_spec(spec) -> QuantSpec:
    """Return a :class:`QuantSpec` from a path (TOML/JSON), a shorthand, a dict or a spec.

    Parameters
    ----------
    spec:
        A :class:`QuantSpec` (returned as is); a dict (the file structure); a path to a
        ``.toml`` or ``.json`` file; or a shorthand string (see the module docstring).

    Raises
    ------
    ValueError
        For an unreadable file or any invalid field, naming the source and the field.
    """
    if isinstance(spec, QuantSpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec)
    if not isinstance(spec, (str, Path)):
        raise ValueError(f"spec must be a path, a shorthand or a dict, not {type(spec).__name__}")
    path = Path(spec)
    text = str(spec)
    looks_like_file = path.suffix.lower() in (".toml", ".json") or path.exists()
    if not looks_like_file:
        return shorthand_spec(text)
    if not path.is_file():
        raise ValueError(f"spec {text}: file not found")
    raw = path.read_text()
    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else tomllib.loads(raw)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"spec {text}: not valid {path.suffix[1:].upper()}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"spec {text}: the top level must be a table/object")
    return parse_spec(data, source=text, name=path.stem)


