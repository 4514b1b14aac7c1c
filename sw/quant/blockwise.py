"""BWQ-A: block-wise mixed-precision quantization on the OU grid (after the BWQ paper).

Blocks
------
A compute layer's ``(O, K)`` weight matrix in im2col order (``layer.weight_matrix``; for a
grouped / depthwise conv the block-diagonal matrix of docs/contract.md section 2) is cut
into blocks of ``ou_cols`` consecutive output channels x ``ou_rows`` consecutive inputs,
the operation unit of the :class:`~bitline.hw.spec.config.AcceleratorConfig`. Block ``(p, q)``
covers channels ``[p*ou_cols, (p+1)*ou_cols)`` and inputs ``[q*ou_rows, (q+1)*ou_rows)``;
``block_bits`` has shape ``(ceil(O/ou_cols), ceil(K/ou_rows))``, the layout of
:attr:`bitline.sw.integer.qmodel.QuantLayer.block_bits`.

Representation
--------------
Every channel ``n`` has one real scale ``s_n = max|w_n| / 127``: the channel's 8-bit
sign-magnitude grid. A block of width ``b`` (storage bits per weight, sign included) keeps
``b - 1`` *consecutive magnitude planes* ``[lsb, lsb + b - 2]`` of that grid, so its weights
are ``sign * q * 2**lsb`` with ``0 <= q <= 2**(b-1) - 1`` — still integers of the channel's
grid, relative to the channel's scale. ``lsb`` is chosen per block (the smallest that holds
the block's largest weight, or one below it when clipping that weight costs less error than
the coarser grid), and rounding is to the nearest representable value. Width 1 is a sign
bit over the single plane ``lsb`` (weights ``±2**lsb``, no zero); width 0 prunes the block
(all zero; the hardware skips it). Because all widths live on the channel's one grid,
"plane ``k``" means ``2**k * s_n`` in every block: the ``bwq`` mapper packs bits of the same
significance from different blocks and weights into one OU and gives the column the shift
``k``. ``weight.options["block_lsb"]`` records ``lsb`` per block.

Allocation
----------
Each block's error at width ``b`` is its contribution to the layer-output squared error,
``sum h[i] * s_n**2 * (r - v_b(r))**2`` over its weights (``r = |w| / s_n``), where ``h`` is
the Hessian diagonal ``E[x_i**2]`` of the inputs (calibration data), divided by the layer's
output power ``sum_n E[y_n**2]`` so that layers are comparable (``sensitivity = "weight"``
uses ``h = 1`` and ``power = sum w**2``). The cost is ``b`` times the block's weight count.
Under ``budget * (number of weights)`` bits, :func:`~bitline.sw.quant.varied.greedy_allocate`
upgrades blocks along their lower convex hulls, best error reduction per bit first.

Activation widths per row block are allocated the same way after the weights: dropping
``d`` LSBs of the input codes of row block ``r`` (docs/contract.md section 2,
``x' = (x >> d) << d``) adds the error ``sum_{i in r} Var(x_i mod 2**d) * s_in**2 *
sum_n w_q[n, i]**2`` (its mean is folded into the bias, :func:`act_bias_correction`), at a
cost of the width times the row block's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.sw.quant.tensor import QuantizedTensor
from bitline.sw.quant.varied import greedy_allocate

__all__ = [
    "GRID_BITS",
    "matrix_positions",
    "BlockPlan",
    "plan_layer",
    "allocate_blocks",
    "realize",
    "block_values",
    "act_block_errors",
    "allocate_act_blocks",
    "act_bias_correction",
    "block_histogram",
]

#: Width of the channel grid every block width refers to (sign included).
GRID_BITS = 8
_TOP = (1 << (GRID_BITS - 1)) - 1    # 127
_WIDTHS = np.arange(GRID_BITS + 1)   # 0 .. 8


def _groups(layer) -> int:
    return int(layer.attrs.get("groups", 1)) if layer.op == "conv" else 1


def matrix_positions(weight_shape: tuple[int, ...],
                     groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(row, col)`` in the ``(O, K)`` im2col matrix of every weight (C order).

    ``K = groups * prod(weight_shape[1:])``; with ``groups > 1`` the matrix is
    block-diagonal (docs/contract.md section 2): channel ``o`` of group
    ``g = o // (O / groups)`` holds its filter in columns ``[g*Kg, (g+1)*Kg)``.

    Raises
    ------
    ValueError
        If ``O`` is not divisible by ``groups``.
    """
    out_channels = int(weight_shape[0])
    per_filter = int(np.prod(weight_shape[1:]))
    if groups < 1 or out_channels % groups:
        raise ValueError(f"{out_channels} output channels not divisible by groups={groups}")
    rows = np.repeat(np.arange(out_channels), per_filter)
    group_of = rows // (out_channels // groups)
    cols = group_of * per_filter + np.tile(np.arange(per_filter), out_channels)
    return rows, cols


@dataclass
class BlockPlan:
    """Everything the allocator needs about one layer's blocks.

    Attributes
    ----------
    name:
        Layer name.
    shape:
        ``(col_blocks, row_blocks)``.
    ou_rows, ou_cols:
        Block size.
    weight_shape, groups:
        The IR weight's shape and conv groups.
    scale:
        float64 ``(O,)`` channel scales ``max|w_n| / 127``.
    errors:
        float64 ``(blocks, 9)``: error at widths 0..8 (normalized by the layer power).
    lsb:
        int64 ``(blocks, 9)``: the lowest plane used at each width.
    sizes:
        int64 ``(blocks,)``: real weights per block (0 for the empty off-diagonal blocks of a
        grouped conv).
    ratio, negative, mask:
        Padded ``(O', K')`` matrices: ``|w| / s_n``, sign, real-weight mask.
    weight_factor:
        Padded ``h[i] * s_n**2`` (the Hessian-diagonal weight of each entry).
    power:
        The layer's output power used for normalization.
    """

    name: str
    shape: tuple[int, int]
    ou_rows: int
    ou_cols: int
    weight_shape: tuple[int, ...]
    groups: int
    scale: np.ndarray
    errors: np.ndarray
    lsb: np.ndarray
    sizes: np.ndarray
    ratio: np.ndarray = field(repr=False)
    negative: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)
    weight_factor: np.ndarray = field(repr=False)
    power: float = 1.0

    def blocks4(self, matrix: np.ndarray) -> np.ndarray:
        """View a padded ``(O', K')`` matrix as ``(col_blocks, ou_cols, row_blocks, ou_rows)``."""
        cb, rb = self.shape
        return matrix.reshape(cb, self.ou_cols, rb, self.ou_rows)

    def per_block(self, matrix: np.ndarray) -> np.ndarray:
        """Sum a padded matrix over each block: ``(col_blocks, row_blocks)``."""
        return self.blocks4(matrix).sum(axis=(1, 3))

    def spread(self, block_values: np.ndarray) -> np.ndarray:
        """Broadcast ``(col_blocks, row_blocks)`` values to the padded matrix shape."""
        cb, rb = self.shape
        full = np.broadcast_to(np.asarray(block_values).reshape(cb, 1, rb, 1),
                               (cb, self.ou_cols, rb, self.ou_rows))
        return full.reshape(cb * self.ou_cols, rb * self.ou_rows)


def _bit_length(values: np.ndarray) -> np.ndarray:
    safe = np.maximum(values, 1)
    return np.where(values > 0, np.floor(np.log2(safe)).astype(np.int64) + 1, 0)


def block_values(ratio: np.ndarray, width: np.ndarray, lsb: np.ndarray) -> np.ndarray:
    """Return the integer magnitudes of ratios ``r = |w| / s_n`` at a width and plane offset.

    ``width`` and ``lsb`` broadcast against ``ratio``. Width 0 gives 0; width 1 gives
    ``2**lsb``; width ``b >= 2`` gives ``clip(rint(r / 2**lsb), 0, 2**(b-1) - 1) * 2**lsb``
    (``rint`` = half to even, as for every weight, docs/contract.md).
    """
    width = np.asarray(width, dtype=np.int64)
    lsb = np.asarray(lsb, dtype=np.int64)
    step = np.left_shift(1, lsb)
    top = np.left_shift(1, np.maximum(width - 1, 0)) - 1
    q = np.minimum(np.rint(ratio / step), top).astype(np.int64)
    magnitude = q * step
    magnitude = np.where(width == 1, step, magnitude)
    return np.where(width == 0, 0, magnitude)


def plan_layer(
    layer,
    ou_rows: int,
    ou_cols: int,
    *,
    input_power: np.ndarray | None = None,
    output_power: float | None = None,
) -> BlockPlan:
    """Compute the block grid of one compute layer and every block's error at widths 0..8.

    Parameters
    ----------
    layer:
        IR compute layer (float ``weight``).
    ou_rows, ou_cols:
        Block size (the config's OU).
    input_power:
        ``h = E[x_i**2]`` ``(K,)`` over the im2col inputs of the (block-diagonal) matrix;
        ``None`` for ones.
    output_power:
        ``sum_n E[y_n**2]``; ``None`` for ``sum h * w**2``.
    """
    weight = np.asarray(layer.weight, dtype=np.float64)
    groups = _groups(layer)
    rows, cols = matrix_positions(weight.shape, groups)
    out_channels = weight.shape[0]
    in_features = int(np.prod(weight.shape[1:])) * groups
    cb, rb = -(-out_channels // ou_cols), -(-in_features // ou_rows)
    padded = (cb * ou_cols, rb * ou_rows)
    flat = weight.reshape(-1)
    dense = np.zeros(padded)
    dense[rows, cols] = flat
    mask = np.zeros(padded, dtype=bool)
    mask[rows, cols] = True
    peak = np.abs(weight.reshape(out_channels, -1)).max(axis=1)
    scale = np.where(peak > 0, peak / _TOP, 1.0)
    scale_padded = np.ones(padded[0])
    scale_padded[:out_channels] = scale
    ratio = np.abs(dense) / scale_padded[:, None]
    h = np.ones(padded[1])
    if input_power is not None:
        h = np.zeros(padded[1])
        h[:in_features] = np.asarray(input_power, dtype=np.float64).reshape(-1)
    weight_factor = np.where(mask, h[None, :] * np.square(scale_padded)[:, None], 0.0)
    if output_power is None or not output_power > 0:
        output_power = float((weight_factor * np.square(ratio)).sum()) or 1.0

    plan = BlockPlan(
        name=layer.name, shape=(cb, rb), ou_rows=ou_rows, ou_cols=ou_cols,
        weight_shape=tuple(weight.shape), groups=groups, scale=scale,
        errors=np.zeros((cb * rb, GRID_BITS + 1)), lsb=np.zeros((cb * rb, GRID_BITS + 1),
                                                                 dtype=np.int64),
        sizes=np.zeros(cb * rb, dtype=np.int64), ratio=ratio,
        negative=dense < 0, mask=mask, weight_factor=weight_factor, power=float(output_power),
    )
    plan.sizes = plan.per_block(mask.astype(np.int64)).reshape(-1)
    ratio4 = plan.blocks4(ratio)
    factor4 = plan.blocks4(weight_factor)
    peak_code = np.rint(ratio4).max(axis=(1, 3)).astype(np.int64)   # (cb, rb), <= 127

    def block_error(width: int, lsb: np.ndarray) -> np.ndarray:
        values = block_values(ratio4, width, lsb.reshape(cb, 1, rb, 1))
        return (factor4 * np.square(ratio4 - values)).sum(axis=(1, 3))

    errors = np.zeros((cb, rb, GRID_BITS + 1))
    lsbs = np.zeros((cb, rb, GRID_BITS + 1), dtype=np.int64)
    errors[..., 0] = (factor4 * np.square(ratio4)).sum(axis=(1, 3))
    # Width 1 (sign only): the single plane whose power of two fits the block best.
    best = np.full((cb, rb), np.inf)
    best_lsb = np.zeros((cb, rb), dtype=np.int64)
    for lsb in range(GRID_BITS - 1):
        error = block_error(1, np.full((cb, rb), lsb))
        better = error < best
        best = np.where(better, error, best)
        best_lsb = np.where(better, lsb, best_lsb)
    errors[..., 1], lsbs[..., 1] = best, best_lsb
    length = _bit_length(peak_code)
    for width in range(2, GRID_BITS + 1):
        planes = width - 1
        fit = np.maximum(length - planes, 0)             # holds the block's peak unclipped
        best = block_error(width, fit)
        best_lsb = fit
        finer = np.maximum(fit - 1, 0)
        error = block_error(width, finer)
        better = (error < best) & (fit > 0)
        errors[..., width] = np.where(better, error, best)
        lsbs[..., width] = np.where(better, finer, best_lsb)
    plan.errors = errors.reshape(cb * rb, -1) / plan.power
    plan.lsb = lsbs.reshape(cb * rb, -1)
    return plan


def allocate_blocks(
    plans: list[BlockPlan],
    budget: float,
    *,
    min_bits: int = 0,
    max_bits: int = GRID_BITS,
    fixed: dict[str, int] | None = None,
    source: str = "bwq.budget",
) -> dict[str, np.ndarray]:
    """Choose every block's width so that the average weight width is at most ``budget``.

    Parameters
    ----------
    plans:
        One :class:`BlockPlan` per compute layer.
    budget:
        Average storage bits per weight (sign included) over all weights of ``plans``.
    min_bits, max_bits:
        Allowed block widths.
    fixed:
        Layer name -> width of all its blocks (e.g. keep the first layer at 8 bits).
    source:
        Names the budget in error messages.

    Returns
    -------
    dict
        Layer name -> int64 ``(col_blocks, row_blocks)`` widths; blocks without weights and
        blocks whose weights all quantize to zero get 0.

    Raises
    ------
    ValueError
        If the budget is below what ``min_bits`` and the fixed layers need.
    """
    fixed = fixed or {}
    errors, costs = [], []
    total = 0
    for plan in plans:
        allowed = (_WIDTHS >= min_bits) & (_WIDTHS <= max_bits)
        if plan.name in fixed:
            allowed = _WIDTHS == fixed[plan.name]
        error = np.where(allowed[None, :], plan.errors, np.inf)
        # Blocks without weights cost nothing at any width; keep them at 0.
        empty = plan.sizes == 0
        error[empty] = np.where(_WIDTHS == 0, 0.0, np.inf)
        errors.append(error)
        costs.append(np.outer(plan.sizes, _WIDTHS).astype(np.float64))
        total += int(plan.sizes.sum())
    errors = np.concatenate(errors)
    costs = np.concatenate(costs)
    allowed = np.isfinite(errors)
    minimum = float(np.where(allowed, costs, np.inf).min(axis=1).sum()) / total
    if budget < minimum - 1e-9:
        what = "min_bits and the fixed layers" if fixed else "min_bits"
        raise ValueError(f"{source}: {budget:g} is below the minimum {minimum:.4g} average "
                         f"bits that {what} need for this model")
    chosen = greedy_allocate(errors, costs, budget * total, what=source)
    out, start = {}, 0
    for plan in plans:
        count = plan.shape[0] * plan.shape[1]
        out[plan.name] = chosen[start:start + count].reshape(plan.shape)
        start += count
    return out


def realize(plan: BlockPlan, block_bits: np.ndarray,
            weight: np.ndarray | None = None) -> tuple[QuantizedTensor, np.ndarray]:
    """Quantize the layer at the chosen block widths.

    ``weight`` (the IR weight's shape) replaces the planned float weights, e.g. after
    fine-tuning; it is quantized on the same grid (channel scales and block plane offsets).

    Returns
    -------
    (QuantizedTensor, block_bits)
        ``values`` int64 in the IR weight's shape on the channels' 8-bit grids, ``scale``
        ``(O, 1, ...)``, ``scheme="bwq"``, ``bits=8`` (the grid), ``options["block_lsb"]``
        the plane offsets (nested lists, ``(col_blocks, row_blocks)``); and the widths with
        every all-zero block set to 0 (nothing to store or compute there).
    """
    block_bits = np.asarray(block_bits, dtype=np.int64).reshape(plan.shape)
    flat_bits = block_bits.reshape(-1)
    lsb = plan.lsb[np.arange(len(flat_bits)), flat_bits].reshape(plan.shape)
    ratio, negative = plan.ratio, plan.negative
    if weight is not None:
        rows, cols = matrix_positions(plan.weight_shape, plan.groups)
        dense = np.zeros(plan.mask.shape)
        dense[rows, cols] = np.asarray(weight, dtype=np.float64).reshape(-1)
        scale = np.ones(plan.mask.shape[0])
        scale[: len(plan.scale)] = plan.scale
        ratio, negative = np.abs(dense) / scale[:, None], dense < 0
    magnitude = block_values(ratio, plan.spread(block_bits), plan.spread(lsb))
    magnitude = np.where(plan.mask, magnitude, 0)
    values = np.where(negative, -magnitude, magnitude)
    nonzero = plan.per_block((values != 0).astype(np.int64)) > 0
    block_bits = np.where(nonzero, block_bits, 0)
    lsb = np.where(nonzero, lsb, 0)
    rows, cols = matrix_positions(plan.weight_shape, plan.groups)
    weight_values = values[rows, cols].reshape(plan.weight_shape)
    scale = plan.scale.reshape((-1,) + (1,) * (len(plan.weight_shape) - 1))
    tensor = QuantizedTensor(values=weight_values, scale=scale, scheme="bwq", bits=GRID_BITS,
                             options={"block_lsb": lsb.tolist(), "grid_bits": GRID_BITS})
    return tensor, block_bits


# --------------------------------------------------------------------------- activations
def act_block_errors(
    plan: BlockPlan,
    weight: QuantizedTensor,
    act_bits: int,
    act_scale: float,
    truncation_var: np.ndarray,
) -> np.ndarray:
    """Error of every row block at activation widths ``0..act_bits`` (``(row_blocks, a+1)``).

    ``truncation_var[d, i]`` is ``Var(x_i mod 2**d)`` of the layer's input codes
    (calibration), ``d = 0..act_bits``, over the ``K`` im2col inputs. The error of width
    ``a_r`` is ``sum_{i in r} Var_i(a - a_r) * s_in**2 * sum_n (w_q[n, i] s_n)**2``,
    normalized by the layer power like the weight errors.
    """
    rows, cols = matrix_positions(plan.weight_shape, plan.groups)
    dequantized = weight.dequantize().reshape(-1)
    column_energy = np.zeros(plan.shape[1] * plan.ou_rows)
    np.add.at(column_energy, cols, np.square(dequantized))
    var = np.zeros((act_bits + 1, column_energy.shape[0]))
    var[:, : truncation_var.shape[1]] = truncation_var
    per_input = var * column_energy[None, :] * act_scale ** 2       # (a+1, K')
    per_block = per_input.reshape(act_bits + 1, plan.shape[1], plan.ou_rows).sum(axis=2)
    # Width a_r drops d = a - a_r bits.
    return per_block[::-1].T / plan.power


def allocate_act_blocks(
    errors: list[np.ndarray],
    sizes: list[np.ndarray],
    act_bits: list[int],
    budget: float,
    *,
    min_bits: int = 2,
    source: str = "bwq.act_budget",
) -> list[np.ndarray]:
    """Choose row-block activation widths with average width at most ``budget``.

    ``errors[l]`` is ``(row_blocks, a_l + 1)`` from :func:`act_block_errors`, ``sizes[l]``
    the inputs per row block, ``act_bits[l]`` the layer's input width. Widths below
    ``min_bits`` are not used (``min(min_bits, a_l)`` for narrow layers).
    """
    width_max = max(act_bits)
    padded_errors, costs = [], []
    for error, size, bits in zip(errors, sizes, act_bits):
        table = np.full((error.shape[0], width_max + 1), np.inf)
        table[:, : bits + 1] = error
        table[:, : min(min_bits, bits)] = np.inf
        padded_errors.append(table)
        costs.append(np.outer(size, np.arange(width_max + 1)).astype(np.float64))
    errors_all = np.concatenate(padded_errors)
    costs_all = np.concatenate(costs)
    total = float(sum(int(np.sum(s)) for s in sizes))
    minimum = float(np.where(np.isfinite(errors_all), costs_all, np.inf).min(axis=1).sum()) / total
    if budget < minimum - 1e-9:
        raise ValueError(f"{source}: {budget:g} is below the minimum {minimum:.4g} average "
                         "activation bits (min_act_bits)")
    chosen = greedy_allocate(errors_all, costs_all, budget * total, what=source)
    out, start = [], 0
    for error in errors:
        out.append(chosen[start:start + error.shape[0]].astype(np.int64))
        start += error.shape[0]
    return out


def act_bias_correction(
    plan: BlockPlan,
    weight: QuantizedTensor,
    act_bits: int,
    act_scale: float,
    truncation_mean: np.ndarray,
    act_block_bits: np.ndarray,
) -> np.ndarray:
    """Real bias change ``s_in * sum_i w_q[n, i] * E[x_i mod 2**d_i]`` per channel ``(O,)``.

    Dropping LSBs floors the codes, lowering every product by its mean truncation on
    average; adding this to the layer's float bias re-centres the output (bias correction,
    as in Nagel et al., ICCV 2019).
    """
    rows, cols = matrix_positions(plan.weight_shape, plan.groups)
    dropped = np.repeat(act_bits - np.asarray(act_block_bits), plan.ou_rows)
    in_features = truncation_mean.shape[1]
    mean_drop = truncation_mean[dropped[:in_features], np.arange(in_features)]
    products = weight.dequantize().reshape(-1) * mean_drop[cols]
    return act_scale * np.bincount(rows, weights=products, minlength=plan.weight_shape[0])


def block_histogram(block_bits: dict[str, np.ndarray], plans: list[BlockPlan]) -> dict:
    """Return ``{"blocks": {width: count}, "weights": {width: count}}`` over non-empty blocks."""
    blocks: dict[int, int] = {}
    weights: dict[int, int] = {}
    for plan in plans:
        widths = np.asarray(block_bits[plan.name]).reshape(-1)
        real = plan.sizes > 0
        for width in np.unique(widths[real]):
            pick = real & (widths == width)
            blocks[int(width)] = blocks.get(int(width), 0) + int(pick.sum())
            weights[int(width)] = weights.get(int(width), 0) + int(plan.sizes[pick].sum())
    return {"blocks": dict(sorted(blocks.items())), "weights": dict(sorted(weights.items()))}
