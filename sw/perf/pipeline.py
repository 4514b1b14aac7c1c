"""The inter-layer pipeline at a resource budget: layer copies, stage times, throughput.

One image flows through the compute layers as a pipeline of *stages*, one stage per layer
job; while layer ``l`` works on image ``n``, layer ``l + 1`` works on image ``n - 1``. A layer
placed as ``c`` identical copies splits its ``V`` input vectors into ``c`` contiguous shares
and runs them at once, so its stage lasts (:func:`bitline.hw.spec.timing.layer_cycles` with
``copies=c``, docs/contract.md section 5)::

    T_l(c) = K + (ceil(V / c) - 1) * max(C_comp + O + P, K) + (C_comp + O + P) + Q

The pipeline accepts one image per ``T_max = max_l T_l`` cycles, so

* throughput = ``clock / T_max`` images per second;
* single-image latency = ``sum_l T_l / clock`` (stages in sequence; docs/performance.md
  writes ISAAC's pipelined-latency equation next to this one);
* energy per image = the sum of the layers' energies with their chosen placements: a
  copy repeats no event, it only takes a share of the vectors (the cost model has no
  leakage or idle power);
* the bottleneck = the layer whose stage is ``T_max``.

:func:`allocate` chooses, under a :class:`Budget` (``xbars:N`` units or ``area:MM2``
square millimetres of crossbar units, :func:`bitline.sw.perf.costs.unit_area_mm2`), a
placement (``dense``, or a ``spread-<s>`` one: more units per copy, a shorter compute
phase, :func:`variant_placement`; docs/mapping.md "Spread placements") and a copy count
for every layer that minimizes ``T_max``. It searches the
bottleneck directly: for a target ``T`` the fewest copies each placement needs follow in
closed form (``T_l(c)`` falls with ``ceil(V / c)``), a target is feasible when the cheapest
placements fit the budget, and feasibility is monotone in ``T``, so a binary search over
``T`` finds the smallest feasible bottleneck -- the optimum, with several placements per
layer too (where adding a copy to the current bottleneck, greedily, is optimal only with one
placement per layer). tests/unit/test_pipeline.py checks it against brute force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.timing import drain_latency, job_cycles
from bitline.sw.perf.costs import ISAAC_COSTS, CostModel, layer_energy_pj, unit_area_mm2
from bitline.sw.perf.counting import LayerCounts

__all__ = ["Budget", "Placement", "Stage", "Allocation", "PipelineReport", "parse_budget",
           "allocate", "layer_placement", "variant_placement", "stages_from_report",
           "pipeline_report"]

_BUDGET_KINDS = ("xbars", "area")


@dataclass(frozen=True)
class Budget:
    """Resources the layer copies may use.

    Attributes
    ----------
    kind:
        ``"xbars"`` (crossbar units) or ``"area"`` (mm2 of crossbar units, all components of
        :func:`~bitline.sw.perf.costs.unit_area_mm2`).
    amount:
        Units, or square millimetres.
    """

    kind: str
    amount: float

    def __post_init__(self):
        if self.kind not in _BUDGET_KINDS:
            raise ValueError(f"budget kind must be one of {', '.join(_BUDGET_KINDS)}, "
                             f"not {self.kind!r}")
        if not self.amount > 0 or not math.isfinite(self.amount):
            raise ValueError(f"budget {self.kind} must be positive, not {self.amount!r}")

    def units(self, config: AcceleratorConfig, costs: CostModel = ISAAC_COSTS) -> int:
        """Return how many crossbar units of ``config`` the budget buys."""
        if self.kind == "xbars":
            return int(self.amount)
        area = sum(unit_area_mm2(config, costs).values())
        # The tolerance keeps an area computed as units * unit area buying those units.
        return int(math.floor(self.amount / area * (1 + 1e-12)))

    @property
    def label(self) -> str:
        """The budget as ``--budget`` spells it (``xbars:512``, ``area:1.25``)."""
        amount = int(self.amount) if self.kind == "xbars" else f"{self.amount:g}"
        return f"{self.kind}:{amount}"


def parse_budget(text: str) -> Budget:
    """Parse ``--budget``: ``xbars:N`` (N >= 1 units) or ``area:MM2`` (mm2 > 0).

    Raises
    ------
    ValueError
        Naming the value, when it is not of either form.
    """
    kind, sep, amount = str(text).strip().partition(":")
    kind = kind.strip().lower()
    usage = "expected xbars:N (crossbar units) or area:MM2 (square millimetres)"
    if not sep or kind not in _BUDGET_KINDS:
        raise ValueError(f"--budget {text!r}: {usage}")
    try:
        value = int(amount) if kind == "xbars" else float(amount)
    except ValueError:
        raise ValueError(f"--budget {text!r}: {amount.strip()!r} is not "
                         f"{'an integer' if kind == 'xbars' else 'a number'}; {usage}") from None
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"--budget {text!r}: the amount must be positive; {usage}")
    return Budget(kind, float(value))


@dataclass(frozen=True)
class Placement:
    """One way to place one copy of a layer: its units and its per-vector compute cycles.

    Attributes
    ----------
    name:
        ``"dense"`` (the mapper's placement) or ``"spread-<s>"`` (the same layer mapped
        with spread factor ``s``, :func:`bitline.sw.mapping.map_matrix`).
    units:
        Crossbar units one copy occupies (hollow units included: they are allocated).
    compute_cycles:
        ``C_comp`` of one input vector (:func:`bitline.hw.spec.timing.vector_compute_cycles`).
    energy_pj:
        Energy of the layer job for one image with this placement (a spread placement
        sends more partial sums to the reduction); ``None``: the stage's ``energy_pj``.
    """

    name: str
    units: int
    compute_cycles: int
    energy_pj: float | None = None


@dataclass(frozen=True)
class Stage:
    """One compute layer as a pipeline stage: its job sizes, placements and energy.

    Attributes
    ----------
    name:
        Layer name.
    n_inputs, n_outputs, n_vectors:
        ``K``, ``O`` and ``V`` of the layer job (one image).
    placements:
        The placements the allocator may choose from (at least one).
    energy_pj:
        Energy of the layer job for one image with a placement that does not state its
        own (copies do not change it).
    """

    name: str
    n_inputs: int
    n_outputs: int
    n_vectors: int
    placements: tuple[Placement, ...]
    energy_pj: float = 0.0

    def energy(self, placement: int) -> float:
        """Energy of the layer job for one image with ``placements[placement]`` (pJ)."""
        own = self.placements[placement].energy_pj
        return float(self.energy_pj if own is None else own)

    def cycles(self, config: AcceleratorConfig, placement: int, copies: int) -> int:
        """Return ``T_l(c)``: the stage's cycles with ``copies`` of ``placements[placement]``."""
        share = -(-self.n_vectors // int(copies))
        return job_cycles(config, self.n_inputs, self.n_outputs, share,
                          self.placements[placement].compute_cycles)

    def copies_for(self, config: AcceleratorConfig, placement: int, target: int) -> int | None:
        """Return the fewest copies whose stage takes at most ``target`` cycles.

        ``None`` when even ``V`` copies (one vector each) take longer. From the stage
        formula: a share of ``m`` vectors takes ``K + (m - 1) * A + B + Q`` cycles with
        ``B = C_comp + O + P`` and ``A = max(B, K)``, so the largest share that meets the
        target is ``m = floor((target - K - B - Q) / A) + 1`` and ``c = ceil(V / m)``.
        """
        one = job_cycles(config, self.n_inputs, self.n_outputs, 1,
                         self.placements[placement].compute_cycles)
        if target < one:
            return None
        vector = one - self.n_inputs - drain_latency(config)  # B
        step = max(vector, self.n_inputs)                     # A
        share = (target - one) // step + 1
        return -(-self.n_vectors // min(share, self.n_vectors))


@dataclass(frozen=True)
class Allocation:
    """The allocator's choice: per stage a placement index and a copy count.

    Attributes
    ----------
    placements, copies:
        Per stage, in stage order.
    stage_cycles:
        ``T_l`` of each stage with its choice.
    units:
        Crossbar units used (``sum_l copies_l * units of the chosen placement``).
    budget_units:
        Units the budget buys.
    """

    placements: tuple[int, ...]
    copies: tuple[int, ...]
    stage_cycles: tuple[int, ...]
    units: int
    budget_units: int

    @property
    def bottleneck_cycles(self) -> int:
        """``T_max``: the slowest stage (0 without stages)."""
        return max(self.stage_cycles, default=0)


def _cheapest(stage: Stage, config: AcceleratorConfig, target: int) -> tuple[int, int] | None:
    """Return ``(units, placement)`` of the cheapest placement meeting ``target``, or None."""
    best = None
    for index, placement in enumerate(stage.placements):
        copies = stage.copies_for(config, index, target)
        if copies is not None:
            cost = (copies * placement.units, index)
            best = cost if best is None or cost < best else best
    return best


def _cheapest_placements(stage: Stage) -> list[int]:
    """Return the indices of the placements with the fewest units per copy."""
    fewest = min(p.units for p in stage.placements)
    return [i for i, p in enumerate(stage.placements) if p.units == fewest]


def allocate(stages: list[Stage], config: AcceleratorConfig, budget_units: int) -> Allocation:
    """Give every stage a placement and copies so that ``T_max`` is as small as ``budget_units``
    crossbar units allow (module docstring); among optimal choices, the fewest units.

    Raises
    ------
    ValueError
        When one copy of every layer (its cheapest placement) needs more units than the
        budget buys; the message names both counts.
    """
    for stage in stages:
        if not stage.placements:
            raise ValueError(f"layer {stage.name}: no placement to allocate")
    if not stages:
        return Allocation((), (), (), 0, int(budget_units))
    minimum = sum(min(p.units for p in stage.placements) for stage in stages)
    if minimum > budget_units:
        raise ValueError(f"budget of {budget_units} crossbar units is below the {minimum} "
                         f"units one copy of every layer needs")

    def cost(target: int) -> int | None:
        total = 0
        for stage in stages:
            cheapest = _cheapest(stage, config, target)
            if cheapest is None:
                return None
            total += cheapest[0]
        return total

    # The fastest possible stage (one vector per copy) bounds T from below; one copy of the
    # cheapest placement is always affordable (checked above), so its T_max is feasible.
    low = max(min(stage.cycles(config, i, stage.n_vectors) for i in range(len(stage.placements)))
              for stage in stages)
    high = max(low, max(min(stage.cycles(config, i, 1)
                            for i in _cheapest_placements(stage)) for stage in stages))
    while low < high:
        middle = (low + high) // 2
        needed = cost(middle)
        if needed is not None and needed <= budget_units:
            high = middle
        else:
            low = middle + 1
    placements, copies, cycles = [], [], []
    for stage in stages:
        _, index = _cheapest(stage, config, low)
        count = stage.copies_for(config, index, low)
        placements.append(index)
        copies.append(count)
        cycles.append(stage.cycles(config, index, count))
    units = sum(c * stage.placements[i].units for stage, i, c in zip(stages, placements, copies))
    return Allocation(tuple(placements), tuple(copies), tuple(cycles), units, int(budget_units))


def layer_placement(layer, config: AcceleratorConfig, name: str = "dense") -> Placement:
    """Return the :class:`Placement` of one layer of a ``PerfReport`` (a ``LayerPerf``).

    The units of one copy, ``C_comp = max_unit_reads * conversions_per_read`` and the
    layer job's energy.
    """
    return Placement(name, layer.crossbars // layer.copies,
                     layer.max_unit_reads * config.conversions_per_read,
                     layer.total_energy_pj)


def variant_placement(layer, name: str, counts, config: AcceleratorConfig,
                      costs: CostModel = ISAAC_COSTS) -> Placement:
    """Return the :class:`Placement` of another placement of a counted layer.

    ``layer`` is the ``LayerPerf`` of the layer's dense program and ``counts`` the
    :class:`~bitline.sw.mapping.layout.PlacementCounts` of the other placement (a spread
    one, :func:`bitline.sw.mapping.spread_counts`): its units, ``C_comp`` from its busiest
    unit, and the dense energy changed by what moving segments changes -- driven rows
    summed over reads (more, partly filled OUs) and partial sums sent to the reduction
    (a channel split over more units). Every other event (reads' conversions, activated
    cells, eDRAM traffic) belongs to the placed segments, which are the same. The change
    is priced by :func:`~bitline.sw.perf.costs.layer_energy_pj` itself (its counts enter
    linearly), on two count records that differ only in those two counts.
    """
    vectors = layer.n_vectors
    zero = LayerCounts(**{item.name: 0 for item in fields(LayerCounts)})
    base = replace(zero, n_inputs=layer.n_inputs, n_outputs=layer.n_outputs,
                   n_vectors=vectors, act_bits=layer.act_bits)
    moved = replace(base,
                    dac_conversions=counts.dac_conversions - layer.dac_conversions // vectors,
                    reduction_transfers=(counts.reduction_transfers
                                         - layer.reduction_transfers // vectors))
    change = (sum(layer_energy_pj(moved, config, layer.act_bits, costs).values())
              - sum(layer_energy_pj(base, config, layer.act_bits, costs).values()))
    return Placement(name, int(counts.units),
                     int(counts.unit_reads.max(initial=0)) * config.conversions_per_read,
                     layer.total_energy_pj + change)


def stages_from_report(report, variants: dict | None = None) -> list[Stage]:
    """Return the pipeline stages of a :class:`~bitline.sw.perf.report.PerfReport`.

    One stage per layer: first the program's own placement as ``"dense"``
    (:func:`layer_placement`; a program that already has copies is allocated afresh),
    then the layer's entries of ``variants`` (layer name -> :class:`Placement` sequence:
    the spread placements of :func:`bitline.sw.flow.compile.spread_placements`).
    """
    variants = variants or {}
    return [Stage(layer.name, layer.n_inputs, layer.n_outputs, layer.n_vectors,
                  (layer_placement(layer, report.config), *variants.get(layer.name, ())),
                  layer.total_energy_pj)
            for layer in report.layers]


@dataclass
class PipelineReport:
    """The layer pipeline of one program under a budget (module docstring).

    Attributes
    ----------
    strategy:
        Mapping strategy of the program.
    config:
        Its accelerator config (clock, unit area).
    budget:
        The budget, or ``None`` when it was given as a unit count.
    stages:
        The stages, in layer order.
    allocation:
        The allocator's choice.
    unit_area_mm2:
        Area of one crossbar unit of ``config``.
    """

    strategy: str
    config: AcceleratorConfig
    budget: Budget | None
    stages: list[Stage]
    allocation: Allocation
    unit_area_mm2: float
    labels: dict = field(default_factory=dict)

    @property
    def clock_hz(self) -> float:
        return self.config.clock_mhz * 1e6

    @property
    def bottleneck_cycles(self) -> int:
        """``T_max`` (cycles per image in steady state)."""
        return self.allocation.bottleneck_cycles

    @property
    def throughput_ips(self) -> float:
        """Images per second: ``clock / T_max``."""
        cycles = self.bottleneck_cycles
        return self.clock_hz / cycles if cycles else 0.0

    @property
    def latency_cycles(self) -> int:
        """One image through every stage in sequence: ``sum_l T_l``."""
        return int(sum(self.allocation.stage_cycles))

    @property
    def pipeline_latency_s(self) -> float:
        """Single-image latency (s): :attr:`latency_cycles` at the clock."""
        return self.latency_cycles / self.clock_hz

    @property
    def energy_per_image_pj(self) -> float:
        """Energy of one image (pJ): the layers' energies with their chosen placements,
        unchanged by copies."""
        return float(sum(stage.energy(index)
                         for stage, index in zip(self.stages, self.allocation.placements)))

    @property
    def bottleneck(self) -> str | None:
        """Name of the slowest stage (the first of equals), ``None`` without stages."""
        cycles = self.allocation.stage_cycles
        return self.stages[cycles.index(max(cycles))].name if cycles else None

    @property
    def copies(self) -> dict[str, int]:
        """Copies per layer."""
        return {stage.name: count for stage, count in zip(self.stages, self.allocation.copies)}

    @property
    def placements(self) -> dict[str, str]:
        """Chosen placement per layer."""
        return {stage.name: stage.placements[index].name
                for stage, index in zip(self.stages, self.allocation.placements)}

    @property
    def units(self) -> int:
        """Crossbar units the copies use."""
        return self.allocation.units

    @property
    def area_mm2(self) -> float:
        """Area of the units the copies use (mm2)."""
        return self.units * self.unit_area_mm2

    def to_dict(self) -> dict:
        """Return the pipeline figures and the per-layer choice as a JSON-ready dict."""
        return {
            "budget": self.budget.label if self.budget else None,
            "budget_units": self.allocation.budget_units,
            "units": self.units,
            "area_mm2": self.area_mm2,
            "bottleneck": self.bottleneck,
            "bottleneck_cycles": self.bottleneck_cycles,
            "throughput_ips": self.throughput_ips,
            "pipeline_latency_s": self.pipeline_latency_s,
            "energy_per_image_pj": self.energy_per_image_pj,
            "copies": self.copies,
            "placements": self.placements,
            "layers": [{"name": stage.name, "placement": stage.placements[index].name,
                        "units_per_copy": stage.placements[index].units, "copies": count,
                        "compute_cycles": stage.placements[index].compute_cycles,
                        "stage_cycles": cycles, "energy_pj": stage.energy(index)}
                       for stage, index, count, cycles in zip(
                           self.stages, self.allocation.placements, self.allocation.copies,
                           self.allocation.stage_cycles)],
        }


def pipeline_report(report, budget: Budget | int, *, costs: CostModel | None = None,
                    variants: dict | None = None) -> PipelineReport:
    """Allocate placements and copies for the program of ``report`` (a ``PerfReport``).

    ``budget`` is a :class:`Budget` or a number of crossbar units; ``costs`` (default: the
    report's own cost model) prices the unit area of an ``area:`` budget; ``variants``
    (layer name -> placements) adds placements besides each layer's dense one
    (:func:`stages_from_report`).

    Raises
    ------
    ValueError
        When the budget cannot hold one copy of every layer (:func:`allocate`).
    """
    config = report.config
    costs = costs if costs is not None else getattr(report, "costs", ISAAC_COSTS)
    stages = stages_from_report(report, variants)
    units = budget if isinstance(budget, int) else budget.units(config, costs)
    return PipelineReport(
        strategy=report.strategy, config=config,
        budget=None if isinstance(budget, int) else budget, stages=stages,
        allocation=allocate(stages, config, units),
        unit_area_mm2=float(sum(unit_area_mm2(config, costs).values())),
        labels=dict(report.labels),
    )
