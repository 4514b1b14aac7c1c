"""The quantization spec as data: which scheme and width goes where (docs/quantization.md).

:class:`QuantSpec` and its rules are frozen, validated dataclasses; they are read from TOML /
JSON files, shorthands (``int4``, ``bwq3``) or dicts by :mod:`bitline.sw.quant.spec_file`,
whose docstring documents the file format, and turned back into that structure by
:meth:`QuantSpec.to_dict`. :func:`layer_channel_rules` resolves the rule of every output
channel of a layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.sw.quant.schemes import BIT_RANGES

__all__ = [
    "MODES",
    "WeightRule",
    "ChannelRule",
    "LayerRule",
    "ActivationRule",
    "VariedRule",
    "BWQRule",
    "QuantSpec",
    "layer_channel_rules",
]

MODES = ("fixed", "varied", "bwq")
GRANULARITIES = ("channel", "tensor")
CALIBRATION_RULES = ("max", "percentile", "mse")
SENSITIVITIES = ("output", "hessian", "weight")
MAX_ACT_BITS = 16
BWQ_MAX_BITS = 8


@dataclass(frozen=True)
class WeightRule:
    """One scheme at one width: ``quantize(w, scheme, bits, axis=..., **options)``."""

    scheme: str
    bits: int
    granularity: str = "channel"
    options: dict = field(default_factory=dict)

    @property
    def axis(self) -> int | None:
        """The ``axis`` argument of :func:`~bitline.sw.quant.schemes.quantize`."""
        return 0 if self.granularity == "channel" else None

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "bits": self.bits, "granularity": self.granularity,
                **self.options}


@dataclass(frozen=True)
class ChannelRule:
    """A weight rule for some output channels of one layer."""

    channels: tuple[int, ...]
    rule: WeightRule

    def to_dict(self) -> dict:
        return {"index": list(self.channels), **self.rule.to_dict()}


@dataclass(frozen=True)
class LayerRule:
    """Overrides for one compute layer."""

    weights: WeightRule | None = None
    channels: tuple[ChannelRule, ...] = ()
    activation_bits: int | None = None

    def to_dict(self) -> dict:
        out = dict(self.weights.to_dict()) if self.weights else {}
        if self.channels:
            out["channels"] = [c.to_dict() for c in self.channels]
        if self.activation_bits is not None:
            out["activation_bits"] = self.activation_bits
        return out


@dataclass(frozen=True)
class ActivationRule:
    """Activation width and calibration rule (:mod:`bitline.sw.quant.calibrate`)."""

    bits: int = 8
    rule: str = "percentile"
    percentile: float = 99.99

    def to_dict(self) -> dict:
        return {"bits": self.bits, "rule": self.rule, "percentile": self.percentile}


@dataclass(frozen=True)
class VariedRule:
    """Automatic per-channel scheme choice (:mod:`bitline.sw.quant.varied`)."""

    budget: float
    schemes: tuple[str, ...] = ("int", "pot", "apot", "adaptivfloat")
    bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    sensitivity: str = "output"

    def candidates(self) -> list[tuple[str, int]]:
        """``(scheme, bits)`` pairs: every scheme at every candidate width it supports."""
        pairs = []
        for scheme in self.schemes:
            low, high = BIT_RANGES[scheme]
            pairs += [(scheme, b) for b in self.bits if low <= b <= high]
        return pairs

    def to_dict(self) -> dict:
        return {"budget": self.budget, "schemes": list(self.schemes), "bits": list(self.bits),
                "sensitivity": self.sensitivity}


@dataclass(frozen=True)
class BWQRule:
    """Block-wise mixed precision (:mod:`bitline.sw.quant.blockwise`)."""

    budget: float
    min_bits: int = 0
    max_bits: int = BWQ_MAX_BITS
    act_budget: float | None = None
    min_act_bits: int = 2
    sensitivity: str = "output"
    layers: dict = field(default_factory=dict)
    finetune_epochs: int = 0
    finetune_lr: float = 1e-4

    def to_dict(self) -> dict:
        out = {"budget": self.budget, "min_bits": self.min_bits, "max_bits": self.max_bits,
               "min_act_bits": self.min_act_bits, "sensitivity": self.sensitivity}
        if self.finetune_epochs:
            out["finetune_epochs"] = self.finetune_epochs
            out["finetune_lr"] = self.finetune_lr
        if self.act_budget is not None:
            out["act_budget"] = self.act_budget
        if self.layers:
            out["layers"] = dict(self.layers)
        return out


@dataclass(frozen=True)
class QuantSpec:
    """A validated quantization spec (see the module docstring for the file format)."""

    name: str
    mode: str = "fixed"
    weights: WeightRule | None = None
    activations: ActivationRule = field(default_factory=ActivationRule)
    layers: dict = field(default_factory=dict)
    varied: VariedRule | None = None
    bwq: BWQRule | None = None
    source: str = "<memory>"

    def to_dict(self) -> dict:
        """Return the spec as plain data (the TOML/JSON structure; kept in manifests)."""
        out: dict = {"name": self.name, "mode": self.mode}
        if self.weights is not None:
            out["weights"] = self.weights.to_dict()
        out["activations"] = self.activations.to_dict()
        if self.layers:
            out["layers"] = {name: rule.to_dict() for name, rule in self.layers.items()}
        if self.varied is not None:
            out["varied"] = self.varied.to_dict()
        if self.bwq is not None:
            out["bwq"] = self.bwq.to_dict()
        return out

    def error(self, field_path: str, message: str) -> ValueError:
        """A ``ValueError`` naming this spec's source and ``field_path``."""
        return ValueError(f"spec {self.source}: {field_path}: {message}")

    def check_model(self, model) -> None:
        """Check the parts that depend on the model: layer names and channel indices.

        Raises
        ------
        ValueError
            For a layer name that is not a compute layer of ``model`` or an output-channel
            index out of range, naming the field.
        """
        compute = {layer.name: layer for layer in model.compute_layers}
        for table, names in (("layers", self.layers),
                             ("bwq.layers", self.bwq.layers if self.bwq else {})):
            for name in names:
                if name not in compute:
                    raise self.error(
                        f'{table}."{name}"',
                        f"model {model.name} has no compute layer of that name; compute "
                        f"layers are {', '.join(compute)}",
                    )
        for name, rule in self.layers.items():
            out_channels = compute[name].weight.shape[0]
            for position, channel_rule in enumerate(rule.channels):
                bad = [c for c in channel_rule.channels if not 0 <= c < out_channels]
                if bad:
                    raise self.error(
                        f'layers."{name}".channels[{position}].index',
                        f"channel {bad[0]} out of range: layer {name} has {out_channels} "
                        f"output channels (0..{out_channels - 1})",
                    )


def layer_channel_rules(spec: QuantSpec, layer) -> list[tuple[np.ndarray, WeightRule]]:
    """Return ``[(channel mask, rule)]`` covering every output channel of ``layer``.

    The layer's own rule (or the spec default) covers all channels first; each channel rule
    then takes over its channels, later rules winning.
    """
    out_channels = layer.weight.shape[0]
    layer_rule = spec.layers.get(layer.name, LayerRule())
    base = layer_rule.weights or spec.weights
    owner = np.zeros(out_channels, dtype=np.int64)
    rules = [base]
    for position, channel_rule in enumerate(layer_rule.channels, start=1):
        owner[list(channel_rule.channels)] = position
        rules.append(channel_rule.rule)
    return [(owner == index, rule) for index, rule in enumerate(rules) if np.any(owner == index)]
