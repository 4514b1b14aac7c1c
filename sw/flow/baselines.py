"""The named rows of ``bitline compare``: ISAAC baselines and activation-treatment variants.

A comparison is only as fair as its baseline, so each baseline is one documented record
(docs/performance.md section 6): which mapping, on which hardware, with which weights,
activations and weight encoding. Ratios in the output are named after the record's label
(``speedup_vs_isaac-paper``).

Baselines (:data:`BASELINES`, in output order):

* ``isaac-ou-16b`` -- ISAAC's mapping on the compared hardware (the same OU, ADCs and
  cells as the strategies), at ISAAC's published 16-bit weights and 16-bit inputs;
* ``isaac-ou-8b`` -- the same at 8/8 bits (the fair setting: the strategies use 8-bit
  activations and at most 8-bit weights);
* ``isaac-paper`` -- ISAAC as published: the ``isaac`` preset (128 rows per read, 2-bit
  cells, one 8-bit ADC shared by 128 columns), 16/16 bits, its offset (biased) weight
  encoding (one column set per weight digit, the bias times the input sum subtracted).

Variants (:data:`VARIANTS`) are compared rows that run a strategy with another activation
treatment: ``bwq-a`` is BWQ with BWQ-A's block-wise activation widths, next to ``bwq``
(block-wise weights, 8-bit activations), so weight-only and weight + activation
compression show separately. IVQ quantizes weights only (its paper varies the weight
schemes; activations stay uniform 8-bit), so it has no variant.

The ``isaac`` *strategy* row stays among the compared rows: it follows ``--quant``
overrides like every strategy (``speedup_vs_isaac`` isolates the mapping under the same
quantization), while baselines keep their own specs whatever ``--quant`` says. With the
default specs, ``isaac`` and ``isaac-ou-8b`` are the same run (compiled once).
"""

from __future__ import annotations

from dataclasses import dataclass

from bitline.hw.spec.config import AcceleratorConfig, preset

__all__ = ["NamedRun", "BASELINES", "VARIANTS", "baseline", "variant", "accumulator_bits"]


def accumulator_bits(weight_bits: int, act_bits: int) -> int:
    """Return accumulator bits exact for ``weight_bits`` x ``act_bits`` over 2**16 inputs.

    ``|w| < 2**(weight_bits - 1)``, ``x < 2**act_bits``, at most ``2**16`` products, and a
    sign bit: ``weight_bits + act_bits + 16`` (48 at 16/16 bits, 32 at 8/8).
    """
    return weight_bits + act_bits + 16


@dataclass(frozen=True)
class NamedRun:
    """One named comparison row: a strategy, its quantization, encoding and hardware.

    Attributes
    ----------
    label:
        Row name (``strategy`` in the output) and the suffix of ratios against it.
    strategy:
        Mapping strategy (:data:`bitline.hw.spec.program.STRATEGIES`).
    weights:
        Weight spec shorthand (``int16``, ``bwq3``; docs/quantization.md).
    act_bits:
        Activation width in bits; for BWQ-A (``act_budget``) the average block width.
    act_budget:
        ``True`` when ``act_bits`` is BWQ-A's block-wise average over 8-bit activations.
    encoding:
        Weight encoding: ``differential`` (sign-magnitude, positive and negative columns)
        or ``offset`` (ISAAC's biased weights with a digital correction).
    hardware:
        ``"compared"``: the compared config with its weight / activation / accumulator
        widths raised to what the row needs; or a preset name (:data:`PRESETS`).
    description:
        One line for the docs and ``--help``.
    """

    label: str
    strategy: str
    weights: str
    act_bits: int
    encoding: str
    hardware: str
    description: str
    act_budget: bool = False

    @property
    def spec(self) -> str:
        """The spec shorthand of the row: ``<weights>-a<act_bits>`` (``int16-a16``), or
        ``<weights>`` alone at the default 8-bit activations (``int8``)."""
        if self.act_bits == 8 and not self.act_budget:
            return self.weights
        return f"{self.weights}-a{self.act_bits}"

    @property
    def weight_bits(self) -> int:
        """Widest weight of the row's spec: ``N`` of ``intN``, else 8 (BWQ's widest block)."""
        digits = self.weights[3:]
        return int(digits) if self.weights.startswith("int") and digits.isdigit() else 8

    def config(self, compared: AcceleratorConfig) -> AcceleratorConfig:
        """Return the hardware of the row, given the compared strategies' ``compared``.

        ``"compared"`` keeps every geometry field (OU, ADC, cells, crossbar size) and only
        raises ``max_weight_bits``, ``max_act_bits`` and ``acc_bits`` to what the row's
        widths need (:func:`accumulator_bits`); a preset is taken as is.
        """
        if self.hardware != "compared":
            return preset(self.hardware)
        act_bits = 8 if self.act_budget else self.act_bits
        return compared.replace(
            max_weight_bits=max(compared.max_weight_bits, self.weight_bits),
            max_act_bits=max(compared.max_act_bits, act_bits),
            acc_bits=max(compared.acc_bits, accumulator_bits(self.weight_bits, act_bits)),
        )

    def config_name(self, compared: AcceleratorConfig, compared_name: str) -> str:
        """Name of :meth:`config` in the output: a preset, the compared config, or
        ``<compared>+w<W>a<A>`` when only the widths were raised."""
        if self.hardware != "compared":
            return self.hardware
        config = self.config(compared)
        if config == compared:
            return compared_name
        return f"{compared_name}+w{config.max_weight_bits}a{config.max_act_bits}"

    def to_dict(self) -> dict:
        return {"label": self.label, "strategy": self.strategy, "weights": self.weights,
                "act_bits": self.act_bits, "act_budget": self.act_budget,
                "spec": self.spec, "encoding": self.encoding, "hardware": self.hardware,
                "description": self.description}


#: The named ISAAC baselines, in output order (docs/performance.md section 6).
BASELINES: tuple[NamedRun, ...] = (
    NamedRun("isaac-ou-16b", "isaac", "int16", 16, "differential", "compared",
             "ISAAC mapping on the compared OU hardware, 16-bit weights and inputs "
             "(ISAAC's published widths)"),
    NamedRun("isaac-ou-8b", "isaac", "int8", 8, "differential", "compared",
             "ISAAC mapping on the compared OU hardware, 8-bit weights and inputs "
             "(the strategies' widths)"),
    NamedRun("isaac-paper", "isaac", "int16", 16, "offset", "isaac",
             "ISAAC as published: 128 rows per read, 2-bit cells, one 8-bit ADC per 128 "
             "columns, 16-bit weights and inputs, its offset (biased) weight encoding"),
)

#: Compared rows with another activation treatment: (label -> record).
VARIANTS: dict[str, NamedRun] = {
    "bwq-a": NamedRun("bwq-a", "bwq", "bwq3", 4, "differential", "compared",
                      "BWQ-A: block-wise weights (3 bits on average) and block-wise "
                      "activation widths (4 bits on average of 8)", act_budget=True),
}


def baseline(label: str) -> NamedRun:
    """Return the baseline named ``label``.

    Raises
    ------
    ValueError
        Naming the unknown label and the known ones.
    """
    for run in BASELINES:
        if run.label == label:
            return run
    raise ValueError(f"unknown baseline {label!r}; known baselines are "
                     f"{', '.join(run.label for run in BASELINES)}")


def variant(label: str) -> NamedRun:
    """Return the variant row named ``label`` (``bwq-a``).

    Raises
    ------
    ValueError
        Naming the unknown label and the known ones.
    """
    try:
        return VARIANTS[label]
    except KeyError:
        raise ValueError(f"unknown row {label!r}; known variants are "
                         f"{', '.join(VARIANTS)}") from None
