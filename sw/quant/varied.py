"""Varied quantization: per output channel, the scheme and width with the least error.

Every output channel ``n`` of every compute layer is quantized with every candidate
``(scheme, bits)`` (default: int, pot, apot and adaptivfloat at the widths 2..8 where each
is defined). A candidate's *error* is the channel's contribution to the layer-output error,

    err[n] = sum_i h[i] * (w[n, i] - w_q[n, i])**2 / power,

where ``h[i] = E[x_i**2]`` is the Hessian diagonal of the layer-output squared error with
respect to the weights of input ``i`` (second moment of the input activation, in im2col
order, from calibration data) and ``power = sum_n E[y_n**2]`` normalizes every layer to a
relative (noise-to-signal) error, so errors of different layers are comparable. Without
calibration data ``h = 1`` and ``power = sum w**2``.

A candidate's *cost* is its storage: ``bits * K`` for a channel of ``K`` weights, where
``bits`` counts the sign (``int4`` costs 4 bits per weight, ``binary`` 1). The choice is a
multiple-choice knapsack — minimize the summed error under
``sum cost <= budget * (number of weights)`` — solved greedily by :func:`greedy_allocate`
(marginal error reduction per bit on each channel's lower convex hull), the same allocator
BWQ uses for its blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitline.sw.quant.schemes import quantize
from bitline.sw.quant.tensor import QuantizedTensor

__all__ = ["greedy_allocate", "channel_errors", "VariedResult", "assign_varied"]


def _lower_hull_steps(errors: np.ndarray, costs: np.ndarray, start: np.ndarray):
    """Walk every group's lower convex hull from ``start``; return the steps.

    Returns ``(group, to_option, d_cost, d_error, step)`` arrays of all hull steps, where
    ``step`` counts a group's steps from 0. Steps with no error reduction are dropped.
    """
    groups = np.arange(errors.shape[0])
    current = start.copy()
    active = np.ones(errors.shape[0], dtype=bool)
    out = [[], [], [], [], []]
    step = 0
    while np.any(active):
        rows = groups[active]
        cur = current[rows]
        d_cost = costs[rows] - costs[rows, cur][:, None]
        d_error = errors[rows, cur][:, None] - errors[rows]
        valid = (d_cost > 0) & np.isfinite(errors[rows])
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where(valid, d_error / np.where(valid, d_cost, 1.0), -np.inf)
        best = np.argmax(slope, axis=1)
        best_slope = slope[np.arange(len(rows)), best]
        improves = best_slope > 0
        take = rows[improves]
        nxt = best[improves]
        out[0].append(take)
        out[1].append(nxt)
        out[2].append(d_cost[improves, nxt])
        out[3].append(d_error[improves, nxt])
        out[4].append(np.full(len(take), step))
        current[take] = nxt
        active[:] = False
        active[take] = True
        step += 1
    return [np.concatenate(part) if part else np.zeros(0) for part in out]


def greedy_allocate(
    errors: np.ndarray, costs: np.ndarray, budget: float, *, what: str = "budget"
) -> np.ndarray:
    """Pick one option per group, minimizing total error with total cost within ``budget``.

    Each group starts at its cheapest option (ties: the smaller error) and is upgraded along
    its lower convex hull of (cost, error); upgrades of all groups are taken in order of
    error reduction per unit cost (the greedy marginal-gain rule) while they fit.

    Parameters
    ----------
    errors:
        float ``(G, C)``: error of option ``c`` for group ``g`` (``inf`` = not allowed).
    costs:
        float ``(G, C)``: cost of each option (>= 0).
    budget:
        Largest allowed total cost.
    what:
        Name of the budget in the error message.

    Returns
    -------
    np.ndarray
        int64 ``(G,)``: the chosen option of each group.

    Raises
    ------
    ValueError
        If even the cheapest options exceed ``budget``, or a group has no allowed option.
    """
    errors = np.asarray(errors, dtype=np.float64)
    costs = np.asarray(costs, dtype=np.float64)
    allowed = np.isfinite(errors)
    if not np.all(allowed.any(axis=1)):
        raise ValueError(f"{what}: a group has no allowed option")
    # Cheapest allowed option, ties broken by the smaller error.
    key_cost = np.where(allowed, costs, np.inf)
    cheapest = key_cost.min(axis=1, keepdims=True)
    start = np.argmin(np.where(key_cost == cheapest, errors, np.inf), axis=1)
    minimum = float(cheapest.sum())
    if minimum > budget * (1 + 1e-12) + 1e-9:
        raise ValueError(f"{what}: the cheapest choice costs {minimum:g}, above the budget "
                         f"{budget:g}")
    group, to_option, d_cost, d_error, step = _lower_hull_steps(errors, costs, start)
    choice = start.copy()
    if len(group) == 0:
        return choice
    slope = d_error / d_cost
    order = np.lexsort((step, -slope))   # best gain per cost first; a group's steps in order
    remaining = budget - minimum
    # Fast path: the longest prefix that fits; then fill the rest step by step, skipping the
    # groups whose next step no longer fits (their later steps must not jump the queue).
    cumulative = np.cumsum(d_cost[order])
    prefix = int(np.searchsorted(cumulative, remaining * (1 + 1e-12), side="right"))
    taken = order[:prefix]
    if prefix:
        remaining -= float(cumulative[prefix - 1])
    blocked = np.zeros(errors.shape[0], dtype=bool)
    rest = order[prefix:]
    last_taken = {}
    for index in rest.tolist():
        g = int(group[index])
        if blocked[g]:
            continue
        if d_cost[index] <= remaining * (1 + 1e-12):
            remaining -= float(d_cost[index])
            last_taken[g] = int(to_option[index])
        else:
            blocked[g] = True
        if remaining <= 0:
            break
    # Apply the prefix in hull order (later steps of a group overwrite earlier ones).
    if len(taken):
        ordered = taken[np.lexsort((step[taken], group[taken]))]
        choice[group[ordered]] = to_option[ordered]
    for g, option in last_taken.items():
        choice[g] = option
    return choice.astype(np.int64)


def channel_errors(
    weights: np.ndarray, quantized: np.ndarray, input_power: np.ndarray | None
) -> np.ndarray:
    """Return the per-channel error ``sum_i h[i] * (w - w_q)**2`` (``(O,)``).

    ``weights``/``quantized`` are ``(O, K)`` matrices in im2col order; ``input_power`` is
    ``h`` of shape ``(K,)``, or ``(O, K)`` when channels see different inputs (grouped
    convs), or ``None`` (all ones).
    """
    squared = np.square(weights - quantized)
    if input_power is None:
        return squared.sum(axis=1)
    input_power = np.asarray(input_power, dtype=np.float64)
    if input_power.ndim == 2:
        return (squared * input_power).sum(axis=1)
    return squared @ input_power


@dataclass
class VariedResult:
    """Outcome of :func:`assign_varied`: per layer weights and the choice statistics."""

    weights: dict[str, QuantizedTensor]
    choices: dict[str, list[tuple[str, int]]]
    avg_bits: float
    scheme_histogram: dict[str, int]
    bits_histogram: dict[int, int]


def _narrow(values: np.ndarray) -> np.ndarray:
    """``values`` in the narrowest signed integer type that holds them (same numbers)."""
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for kind in (np.int8, np.int16, np.int32):
        info = np.iinfo(kind)
        if info.min <= low and high <= info.max:
            return values.astype(kind)
    return values


def _merge_channels(layer_weight: np.ndarray, tensors: list[tuple[np.ndarray, np.ndarray]],
                    chosen: np.ndarray, candidates) -> QuantizedTensor:
    """Stack channel ``n`` of candidate ``chosen[n]`` into one per-channel QuantizedTensor.

    ``tensors`` holds ``(values, scale)`` of every candidate (values in any integer type).
    """
    out_channels = layer_weight.shape[0]
    rows = np.arange(out_channels)
    values = np.stack([v.reshape(out_channels, -1) for v, _ in tensors])[chosen, rows]
    values = values.astype(np.int64)
    scales = np.stack([scale.reshape(out_channels) for _, scale in tensors])[chosen, rows]
    schemes = np.array([candidates[c][0] for c in chosen], dtype=object)
    bits = np.array([candidates[c][1] for c in chosen], dtype=np.int64)
    scale_shape = (out_channels,) + (1,) * (layer_weight.ndim - 1)
    options = {"candidates": [f"{s}{b}" for s, b in candidates]}
    return QuantizedTensor(values=values.reshape(layer_weight.shape),
                           scale=scales.reshape(scale_shape), scheme=schemes, bits=bits,
                           options=options)


def assign_varied(
    layers: list,
    budget: float,
    candidates: list[tuple[str, int]],
    *,
    input_power: dict[str, np.ndarray] | None = None,
    output_power: dict[str, float] | None = None,
    fixed: dict[str, QuantizedTensor] | None = None,
    source: str = "varied",
) -> VariedResult:
    """Choose a ``(scheme, bits)`` candidate for every output channel under a bit budget.

    Parameters
    ----------
    layers:
        IR compute layers (their float ``weight`` is quantized; matrices in im2col order).
    budget:
        Average storage bits per weight (sign included) over all weights of ``layers``.
    candidates:
        ``(scheme, bits)`` pairs, each quantized per output channel with default options
        (``clip="mse"`` for int, pot and apot at 6 bits or fewer).
    input_power:
        Layer name -> ``h = E[x_i**2]`` of the layer's im2col input (calibration), ``(K,)``
        with ``K`` one filter's size, or ``(O, K)`` for grouped convs (each channel's own
        inputs); missing layers use ``h = 1``.
    output_power:
        Layer name -> ``sum_n E[y_n**2]``; missing layers use ``sum h * w**2``.
    fixed:
        Layers whose weights are given (not chosen); their bits count in the budget.
    source:
        Prefix of error messages (e.g. ``spec varied4: varied.budget``).

    Returns
    -------
    VariedResult

    Raises
    ------
    ValueError
        If the budget is below the cheapest candidate (plus the fixed layers' bits).
    """
    input_power = input_power or {}
    output_power = output_power or {}
    fixed = fixed or {}
    free = [layer for layer in layers if layer.name not in fixed]
    total_weights = sum(int(layer.weight.size) for layer in layers)
    fixed_cost = sum(float(np.sum(np.broadcast_to(np.asarray(fixed[l.name].bits),
                                                  (l.weight.shape[0],)))
                           * np.prod(l.weight.shape[1:]))
                     for l in layers if l.name in fixed)
    all_errors, all_costs, all_tensors = [], [], []
    for layer in free:
        weight = np.asarray(layer.weight, dtype=np.float64)
        matrix = weight.reshape(weight.shape[0], -1)
        h = input_power.get(layer.name)
        power = output_power.get(layer.name)
        if power is None or not power > 0:
            power = float(channel_errors(matrix, np.zeros_like(matrix), h).sum()) or 1.0
        tensors, errors = [], []
        for scheme, bits in candidates:
            options = {"clip": "mse"} if scheme in ("int", "pot", "apot") and bits <= 6 else {}
            q = quantize(weight, scheme, bits, axis=0, **options)
            # Only the values and scales of the chosen channels are kept in the end; every
            # candidate's are held until the global choice, in the narrowest integer type
            # (int8 for <= 8-bit schemes: 2.5 GB -> 0.3 GB for varied4 on ResNet-18).
            tensors.append((_narrow(q.values), q.scale))
            errors.append(channel_errors(matrix, q.dequantize().reshape(matrix.shape), h) / power)
        all_tensors.append(tensors)
        all_errors.append(np.stack(errors, axis=1))
        all_costs.append(np.outer(np.full(matrix.shape[0], matrix.shape[1]),
                                  [bits for _, bits in candidates]).astype(np.float64))
    choices: dict[str, list[tuple[str, int]]] = {}
    weights: dict[str, QuantizedTensor] = dict(fixed)
    if free:
        errors = np.concatenate(all_errors)
        costs = np.concatenate(all_costs)
        try:
            chosen = greedy_allocate(errors, costs, budget * total_weights - fixed_cost,
                                     what=source)
        except ValueError:
            cheapest = min(bits for _, bits in candidates)
            minimum = (cheapest * sum(int(l.weight.size) for l in free) + fixed_cost) \
                / total_weights
            raise ValueError(f"{source}: {budget:g} is below the minimum {minimum:.4g} "
                             "average bits this model and candidate set need") from None
        start = 0
        for layer, tensors in zip(free, all_tensors):
            count = layer.weight.shape[0]
            picked = chosen[start:start + count]
            start += count
            weights[layer.name] = _merge_channels(layer.weight, tensors, picked, candidates)
            choices[layer.name] = [candidates[c] for c in picked]
    bits_total = 0.0
    scheme_histogram: dict[str, int] = {}
    bits_histogram: dict[int, int] = {}
    for layer in layers:
        q = weights[layer.name]
        per_channel = np.broadcast_to(np.asarray(q.bits), (layer.weight.shape[0],))
        schemes = np.broadcast_to(np.asarray(q.scheme, dtype=object), (layer.weight.shape[0],))
        channel_size = int(np.prod(layer.weight.shape[1:]))
        bits_total += float(per_channel.sum()) * channel_size
        for scheme, bits in zip(schemes, per_channel):
            scheme_histogram[str(scheme)] = scheme_histogram.get(str(scheme), 0) + 1
            bits_histogram[int(bits)] = bits_histogram.get(int(bits), 0) + 1
    return VariedResult(weights=weights, choices=choices, avg_bits=bits_total / total_weights,
                        scheme_histogram=scheme_histogram,
                        bits_histogram=dict(sorted(bits_histogram.items())))
