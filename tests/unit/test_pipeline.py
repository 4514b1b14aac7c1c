"""The layer pipeline: the stage formula with copies, the allocator, budgets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitline.hw.spec.config import preset
from bitline.hw.spec.timing import copy_shares, drain_latency, layer_cycles, pipeline_latency
from bitline.sw.perf import unit_area_mm2
from bitline.sw.perf.pipeline import Budget, Placement, Stage, allocate, parse_budget

CONFIG = preset("bwq")          # P = 8, Q = 10, one conversion per read


def three_layers() -> list[Stage]:
    """The hand-computed case of docs/performance.md ("Pipeline")."""
    return [
        Stage("l1", 27, 16, 16, (Placement("dense", 2, 10),)),
        Stage("l2", 144, 32, 4, (Placement("dense", 3, 40),)),
        Stage("l3", 288, 10, 1, (Placement("dense", 4, 20),)),
    ]


def test_stage_formula_by_hand():
    assert pipeline_latency(CONFIG) == 8
    # l1: B = 10 + 16 + 8 = 34 > K = 27, so T(m) = 27 + (m - 1) * 34 + 34 + 10.
    assert layer_cycles(CONFIG, 27, 16, 16, [10]) == 27 + 15 * 34 + 34 + 10 == 581
    # Two copies: eight vectors each.
    assert layer_cycles(CONFIG, 27, 16, 16, [10], copies=2) == 27 + 7 * 34 + 34 + 10 == 309
    # Three copies of 16 vectors: shares 6, 6, 4; the job lasts as long as a share of 6.
    assert layer_cycles(CONFIG, 27, 16, 16, [10], copies=3) == layer_cycles(
        CONFIG, 27, 16, 6, [10])
    assert copy_shares(16, 3) == [(0, 6), (6, 12), (12, 16)]
    assert copy_shares(2, 3) == [(0, 1), (1, 2), (2, 2)]
    with pytest.raises(ValueError, match="copies must be at least 1"):
        layer_cycles(CONFIG, 27, 16, 16, [10], copies=0)


@pytest.mark.parametrize("budget, copies, cycles, units", [
    (9, (1, 1, 1), (581, 666, 336), 9),       # one copy each: l2 (K-bound) is the bottleneck
    (12, (1, 2, 1), (581, 378, 336), 12),     # l2 halves its vectors; l1 is next
    (14, (2, 2, 1), (309, 378, 336), 14),
    (17, (2, 2, 1), (309, 378, 336), 14),     # 3 copies of l2 still leave a share of 2
    (20, (2, 4, 1), (309, 234, 336), 20),     # l3 (one vector) cannot go faster
    (100, (2, 4, 1), (309, 234, 336), 20),    # the fewest units reaching that bottleneck
])
def test_allocator_three_layers_by_hand(budget, copies, cycles, units):
    allocation = allocate(three_layers(), CONFIG, budget)
    assert allocation.copies == copies
    assert allocation.stage_cycles == cycles
    assert allocation.units == units <= budget


def test_allocator_rejects_a_budget_below_one_copy_each():
    with pytest.raises(ValueError, match="budget of 8 crossbar units is below the 9 units"):
        allocate(three_layers(), CONFIG, 8)


def _brute_force(stages, budget):
    """Smallest bottleneck over every placement and copy count (1..V) within the budget."""
    best = None
    choices = [[(i, c) for i in range(len(s.placements)) for c in range(1, s.n_vectors + 1)]
               for s in stages]
    for combo in itertools.product(*choices):
        units = sum(s.placements[i].units * c for s, (i, c) in zip(stages, combo))
        if units > budget:
            continue
        worst = max(s.cycles(CONFIG, i, c) for s, (i, c) in zip(stages, combo))
        best = worst if best is None else min(best, worst)
    return best


def _random_stages(rng, n_layers, n_placements):
    stages = []
    for index in range(n_layers):
        placements = tuple(Placement(f"p{k}", int(rng.integers(1, 5)), int(rng.integers(0, 60)))
                           for k in range(n_placements))
        stages.append(Stage(f"l{index}", int(rng.integers(1, 80)), int(rng.integers(1, 20)),
                            int(rng.integers(1, 6)), placements))
    return stages


@pytest.mark.parametrize("seed", range(40))
def test_allocator_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    stages = _random_stages(rng, int(rng.integers(1, 4)), int(rng.integers(1, 3)))
    minimum = sum(min(p.units for p in s.placements) for s in stages)
    budget = minimum + int(rng.integers(0, 12))
    allocation = allocate(stages, CONFIG, budget)
    assert allocation.units <= budget
    assert allocation.bottleneck_cycles == _brute_force(stages, budget)
    # The reported stage times are the formula's for the chosen copies.
    assert allocation.stage_cycles == tuple(
        s.cycles(CONFIG, i, c)
        for s, i, c in zip(stages, allocation.placements, allocation.copies))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), extra=st.integers(0, 30))
def test_bottleneck_non_increasing_with_budget(seed, extra):
    rng = np.random.default_rng(seed)
    stages = _random_stages(rng, 3, 2)
    minimum = sum(min(p.units for p in s.placements) for s in stages)
    previous = None
    for budget in range(minimum, minimum + extra + 1):
        allocation = allocate(stages, CONFIG, budget)
        assert allocation.units <= budget
        if previous is not None:
            assert allocation.bottleneck_cycles <= previous
        previous = allocation.bottleneck_cycles


def test_parse_budget():
    assert parse_budget("xbars:512") == Budget("xbars", 512)
    assert parse_budget(" area:1.5 ") == Budget("area", 1.5)
    assert parse_budget("xbars:512").label == "xbars:512"
    for text, message in (("foo", "'foo'"), ("xbars:many", "'many' is not an integer"),
                          ("area:-1", "must be positive"), ("volume:3", "'volume:3'"),
                          ("xbars:0", "must be positive")):
        with pytest.raises(ValueError, match=message):
            parse_budget(text)


def test_area_budget_buys_whole_units():
    area = sum(unit_area_mm2(CONFIG).values())
    assert Budget("area", 10 * area).units(CONFIG) == 10
    assert Budget("area", 10.5 * area).units(CONFIG) == 10
    assert Budget("area", 0.5 * area).units(CONFIG) == 0


# ---------------------------------------------------------------- spread placements
def _fc_and_conv(conv_vectors=16):
    """A classifier (V = 1: copies cannot help) and a conv with many vectors, each with a
    dense placement and a spread one (twice the units, about half the compute)."""
    return [
        Stage("fc", 512, 10, 1, (Placement("dense", 8, 1040, 100.0),
                                 Placement("spread-2", 16, 544, 103.0)), 100.0),
        Stage("conv", 27, 4, conv_vectors, (Placement("dense", 2, 100, 50.0),
                                 Placement("spread-2", 4, 50, 51.0)), 50.0),
    ]


def test_allocator_spreads_a_one_vector_layer_when_the_budget_allows():
    stages = _fc_and_conv(conv_vectors=8)       # the fc is the bottleneck
    P, Q = pipeline_latency(CONFIG), drain_latency(CONFIG)
    # fc: T = K + B + Q whatever the copies (one vector); spread shortens B = C_comp + O + P.
    dense, spread = 512 + 1040 + 10 + P + Q, 512 + 544 + 10 + P + Q
    assert stages[0].cycles(CONFIG, 0, 5) == dense == stages[0].cycles(CONFIG, 0, 1)
    assert stages[0].cycles(CONFIG, 1, 1) == spread
    tight = allocate(stages, CONFIG, 10)              # 8 + 2: one dense copy each
    assert tight.placements == (0, 0) and tight.bottleneck_cycles == dense
    roomy = allocate(stages, CONFIG, 18)              # 16 + 2: the fc spreads
    assert roomy.placements[0] == 1 and roomy.units <= 18
    assert roomy.stage_cycles[0] == spread < tight.bottleneck_cycles
    assert roomy.bottleneck_cycles == _brute_force(stages, 18)


def test_allocator_prefers_copies_where_they_are_cheaper():
    """conv (K = 27 below both compute phases): two dense copies (4 units) take 8 vectors
    each, ``27 + 8 * (100 + 4 + P) + Q``; one spread copy (4 units) takes all 16,
    ``27 + 16 * (50 + 4 + P) + Q``: more. With the fc spread (16 units) and 4 units for the
    conv (its one dense copy is the bottleneck) the allocator copies the conv densely."""
    stages = _fc_and_conv()
    P, Q = pipeline_latency(CONFIG), drain_latency(CONFIG)
    assert stages[1].cycles(CONFIG, 0, 2) == 27 + 8 * (104 + P) + Q
    assert stages[1].cycles(CONFIG, 1, 1) == 27 + 16 * (54 + P) + Q
    assert stages[1].cycles(CONFIG, 0, 1) > stages[0].cycles(CONFIG, 1, 1)
    assert stages[1].cycles(CONFIG, 0, 2) < stages[1].cycles(CONFIG, 1, 1)
    allocation = allocate(stages, CONFIG, 20)
    assert allocation.placements == (1, 0) and allocation.copies[1] >= 2
    assert allocation.units <= 20
    assert allocation.bottleneck_cycles == _brute_force(stages, 20)


def test_energy_per_image_follows_the_chosen_placements():
    from bitline.sw.perf.pipeline import PipelineReport

    stages = _fc_and_conv()
    allocation = allocate(stages, CONFIG, 20)
    pipe = PipelineReport("bwq", CONFIG, None, stages, allocation, 1.0)
    assert pipe.placements == {"fc": "spread-2", "conv": "dense"}
    assert pipe.energy_per_image_pj == 103.0 + 50.0
    layers = pipe.to_dict()["layers"]
    assert [layer["placement"] for layer in layers] == ["spread-2", "dense"]
    assert [layer["energy_pj"] for layer in layers] == [103.0, 50.0]
    assert pipe.to_dict()["placements"] == pipe.placements
