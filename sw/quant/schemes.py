"""Weight quantization schemes, all reduced to sign-magnitude integers times a real scale.

One public entry point, :func:`quantize`, turns a float weight tensor into a
:class:`~bitline.sw.quant.tensor.QuantizedTensor` whose ``values`` are signed integers and
whose ``scale`` is per output channel (``axis=0``) or per tensor (``axis=None``). Every scheme
is described by a fixed set of non-negative *integer magnitudes* (its level set, see
:func:`level_set`) and a rule choosing the real scale; a weight becomes
``sign(w) * level`` with ``level`` the magnitude nearest to ``|w| / scale``. Because the
level sets are integers, ``|values| = sum_k bit_k 2**k`` holds for every scheme and the bit
planes (``QuantizedTensor.bit_planes``) are what the mappers consume (docs/contract.md).

``bits`` is always the *storage* width of one weight, sign included:

============  ======  ===============================================  ==================
scheme        bits    integer magnitudes (level set)                   scale per channel
============  ======  ===============================================  ==================
int           2..16   ``0 .. 2**(b-1) - 1``                            ``max|w| / qmax``
pot           2..8    ``0, 2**0 .. 2**(L-1)``, ``L = min(2**(b-1)-1,``  ``max|w| / 2**(L-1)``
                      ``max_planes)``
apot          3..6    sums of powers of two (Li et al., ICLR 2020)     ``max|w| / max level``
adaptivfloat  3..10   ``2**j * (2**m + f)``, ``0`` replaces the         ``2**(exp_bias - m)``
                      smallest code (Tambe et al., DAC 2020)
ternary       2       ``0, 1`` (TWN threshold ``0.7 * mean|w|``)        ``mean |w| > thr``
binary        1       ``1`` (``sign(w)``, zero counts as ``+``)         ``mean |w|``
============  ======  ===============================================  ==================

All functions are vectorized over the whole tensor; quantizing ~11M weights takes well under
a second per scheme (``scripts/bench_quantize.py``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from bitline.sw.quant.tensor import QuantizedTensor

__all__ = [
    "SCHEMES",
    "BIT_RANGES",
    "quantize",
    "level_set",
    "default_options",
    "check_scheme",
]

#: Scheme names known to :func:`quantize`.
SCHEMES = ("int", "pot", "apot", "adaptivfloat", "ternary", "binary")

#: Allowed storage widths (sign included) of each scheme, inclusive.
BIT_RANGES: dict[str, tuple[int, int]] = {
    "int": (2, 16),
    "pot": (2, 8),
    "apot": (3, 6),
    "adaptivfloat": (3, 10),
    "ternary": (2, 2),
    "binary": (1, 1),
}

#: Options each scheme accepts, with defaults (``None`` = derived from ``bits``).
_OPTIONS: dict[str, dict[str, object]] = {
    "int": {"clip": "max"},
    "pot": {"max_planes": 7, "clip": "max"},
    "apot": {"clip": "max"},
    "adaptivfloat": {"exponent_bits": None},
    "ternary": {"threshold": 0.7},
    "binary": {},
}

_CLIP_RULES = ("max", "mse")
# Clipping ratios tried by clip="mse": the scale is chosen so that max level = ratio * max|w|.
_MSE_RATIOS = np.linspace(0.30, 1.0, 36)
# clip="mse" evaluates the error of a scale group on at most this many of its weights
# (a fixed, seeded subset of positions; all weights when the group is smaller), and on at
# least _MSE_TOTAL_SAMPLES / groups, so a ResNet-18 layer costs as little as a small one.
_MSE_GROUP_SAMPLES = 1024
_MSE_TOTAL_SAMPLES = 1 << 20
# Values per row block of the clip="mse" search (256 KB of float32: one core's L2).
_MSE_BLOCK = 1 << 16

# APoT magnitude level sets of Li et al. (ICLR 2020, reference code ``build_power_value``)
# for B = bits - 1 magnitude bits, written as integers (multiplied by the smallest power).
# Each level is a sum of one element of every additive term's power-of-two set.
_APOT_TERMS: dict[int, tuple[tuple[int, ...], ...]] = {
    2: ((0, 4, 2, 1),),                                   # {0, 2^-1, 2^-2, 2^-3} * 8
    3: ((0, 8, 4, 1), (0, 2)),                            # {0,2^-1,2^-2,2^-4} + {0,2^-3}
    4: ((0, 32, 8, 2), (0, 16, 4, 1)),                    # * 64
    5: ((0, 64, 16, 2), (0, 32, 8, 1), (0, 4)),           # * 128
}


def check_scheme(scheme: str, bits: int, *, where: str = "quantize") -> None:
    """Raise ``ValueError`` (prefixed by ``where``) unless ``scheme``/``bits`` are supported."""
    if scheme not in SCHEMES:
        raise ValueError(
            f"{where}: unknown scheme {scheme!r}; known schemes are {', '.join(SCHEMES)}"
        )
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"{where}: bits must be an integer, not {bits!r}")
    low, high = BIT_RANGES[scheme]
    if not low <= bits <= high:
        span = f"{low}" if low == high else f"between {low} and {high}"
        raise ValueError(f"{where}: bits for scheme {scheme} must be {span}, not {bits}")


def default_options(scheme: str, bits: int, **options) -> dict:
    """Return the full option dict of ``scheme`` at ``bits`` (defaults filled in, checked)."""
    known = _OPTIONS[scheme]
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for scheme {scheme}; allowed: {allowed}"
        )
    full = dict(known)
    full.update(options)
    if "clip" in full and full["clip"] not in _CLIP_RULES:
        raise ValueError(
            f"option clip must be one of {', '.join(_CLIP_RULES)}, not {full['clip']!r}"
        )
    if scheme == "adaptivfloat":
        exponent_bits = full["exponent_bits"]
        if exponent_bits is None:
            # 2 exponent bits keep n <= 6 within 7 magnitude planes (8-bit hardware).
            exponent_bits = min(2 if bits <= 6 else 3, bits - 2)
        if isinstance(exponent_bits, bool) or not isinstance(exponent_bits, (int, np.integer)) \
                or not 1 <= exponent_bits <= bits - 2:
            raise ValueError(
                f"option exponent_bits for adaptivfloat{bits} must be between 1 and "
                f"{bits - 2}, not {exponent_bits!r}"
            )
        full["exponent_bits"] = int(exponent_bits)
    if scheme == "pot":
        planes = full["max_planes"]
        if isinstance(planes, bool) or not isinstance(planes, (int, np.integer)) \
                or not 1 <= planes <= 15:
            raise ValueError(f"option max_planes must be between 1 and 15, not {planes!r}")
        full["max_planes"] = int(planes)
    if scheme == "ternary":
        threshold = full["threshold"]
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 2.0:
            raise ValueError(f"option threshold must be in [0, 2), not {threshold!r}")
        full["threshold"] = float(threshold)
    return full


def level_set(scheme: str, bits: int, **options) -> np.ndarray:
    """Return the sorted non-negative integer magnitudes ``scheme`` at ``bits`` may produce.

    Values of a quantized tensor satisfy ``|values| in level_set(...)``; the signs are free
    (``binary``'s only magnitude is 1, so it never produces 0).
    """
    check_scheme(scheme, bits, where="level_set")
    full = default_options(scheme, bits, **options)
    return _levels(scheme, int(bits), tuple(sorted(full.items())))


@lru_cache(maxsize=None)
def _levels(scheme: str, bits: int, option_items: tuple) -> np.ndarray:
    options = dict(option_items)
    if scheme == "int":
        levels = np.arange(1 << (bits - 1), dtype=np.int64)
    elif scheme == "pot":
        count = min((1 << (bits - 1)) - 1, options["max_planes"])
        levels = np.concatenate([[0], np.int64(1) << np.arange(count, dtype=np.int64)])
    elif scheme == "apot":
        terms = _APOT_TERMS[bits - 1]
        sums = np.zeros(1, dtype=np.int64)
        for term in terms:
            sums = (sums[:, None] + np.asarray(term, dtype=np.int64)[None, :]).reshape(-1)
        levels = np.unique(sums)
    elif scheme == "adaptivfloat":
        exponent_bits = options["exponent_bits"]
        mantissa_bits = bits - 1 - exponent_bits
        exps = np.arange(1 << exponent_bits, dtype=np.int64)[:, None]
        mantissas = np.arange(1 << mantissa_bits, dtype=np.int64)[None, :]
        levels = ((np.int64(1) << exps) * ((1 << mantissa_bits) + mantissas)).reshape(-1)
        # AdaptivFloat gives up the smallest code (+-2^exp_bias) to represent zero.
        levels = np.unique(np.concatenate([[0], levels[1:]]))
    elif scheme == "ternary":
        levels = np.array([0, 1], dtype=np.int64)
    else:  # binary
        levels = np.array([1], dtype=np.int64)
    levels = np.asarray(levels, dtype=np.int64)
    levels.setflags(write=False)
    return levels


def _channel_view(weights: np.ndarray, axis: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """Return ``(matrix (G, N), scale shape)``: one row per scale group."""
    if axis is None:
        return weights.reshape(1, -1), (1,) * weights.ndim
    moved = np.moveaxis(weights, axis, 0)
    shape = [1] * weights.ndim
    shape[axis] = weights.shape[axis]
    return moved.reshape(moved.shape[0], -1), tuple(shape)


def _restore(matrix: np.ndarray, weights_shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    if axis is None:
        return matrix.reshape(weights_shape)
    moved_shape = (weights_shape[axis],) + tuple(
        size for index, size in enumerate(weights_shape) if index != axis
    )
    return np.moveaxis(matrix.reshape(moved_shape), 0, axis)


@lru_cache(maxsize=None)
def _level_index_table(levels_bytes: bytes) -> np.ndarray:
    """Lookup table ``t -> index of the nearest level`` for ``t = floor(2 * ratio)``.

    The midpoints between integer levels are multiples of 1/2, so whether ``ratio`` lies at
    or above a midpoint ``m`` depends only on ``floor(2 * ratio) >= 2 * m``: the table is
    exact (equal to ``searchsorted(midpoints, ratio, side="right")``).
    """
    levels = np.frombuffer(levels_bytes, dtype=np.int64)
    doubled_midpoints = levels[:-1] + levels[1:]
    table = np.searchsorted(doubled_midpoints, np.arange(2 * int(levels[-1]) + 1), side="right")
    table.setflags(write=False)
    return table


def _nearest_level(ratio: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the level nearest to each non-negative ``ratio`` (ties go up)."""
    if len(levels) == 1:
        return np.zeros(ratio.shape, dtype=np.int64)
    table = _level_index_table(np.ascontiguousarray(levels, dtype=np.int64).tobytes())
    doubled = np.minimum(np.floor(2.0 * ratio), len(table) - 1).astype(np.int64)
    return table[doubled]


def _round_to_levels(magnitude: np.ndarray, scale: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Integer magnitudes: the level nearest to ``magnitude / scale`` (row-wise scales)."""
    if np.array_equal(levels, np.arange(len(levels))):
        # Uniform grid: rint (half to even, as docs/contract.md fixes for weights) and clip.
        return np.minimum(np.rint(magnitude / scale), levels[-1]).astype(np.int64)
    return levels[_nearest_level(magnitude / scale, levels)]


def _max_scale(peak: np.ndarray, top: int) -> np.ndarray:
    """Scale putting the largest level at ``peak``; all-zero groups get scale 1."""
    return np.where(peak > 0, peak / top, 1.0)


def _mse_scale(magnitude: np.ndarray, peak: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per-row scale among ``_MSE_RATIOS * peak / top`` with the least squared error."""
    top = int(levels[-1])
    samples = max(_MSE_GROUP_SAMPLES, _MSE_TOTAL_SAMPLES // magnitude.shape[0])
    if magnitude.shape[1] > samples:
        columns = np.sort(np.random.default_rng(0).choice(magnitude.shape[1], samples,
                                                          replace=False))
        magnitude = magnitude[:, columns]
    # The search runs in float32 on the (sampled) magnitudes, in grid units: error of a
    # candidate = scale**2 * sum (level - |w| / scale)**2. Only the choice of the scale comes
    # from here; the weights are then quantized in float64 by the caller.
    magnitude = magnitude.astype(np.float32)
    uniform = np.array_equal(levels, np.arange(len(levels)))
    if not uniform:
        table = _level_index_table(np.ascontiguousarray(levels, dtype=np.int64).tobytes())
        value_table = levels.astype(np.float32)[table]
    scales = _max_scale(peak[None, :, :] * _MSE_RATIOS[:, None, None], top)   # (R, n, 1)
    # 1/scale overflows float32 for weights near its smallest normal (1e-38); capped,
    # 0 * inverse stays 0 instead of NaN (which no index table holds).
    inverses = np.minimum(1.0 / scales, np.finfo(np.float32).max).astype(np.float32)
    errors = np.empty(scales.shape)
    # Row blocks of about _MSE_BLOCK values stay in cache over all ratios, and the
    # products are written into two reused buffers (25-35 % less time than whole-matrix
    # temporaries per ratio; the same float32 operations per row, so the same choice).
    step = max(1, _MSE_BLOCK // max(magnitude.shape[1], 1))
    for start in range(0, magnitude.shape[0], step):
        rows = slice(start, start + step)
        block = magnitude[rows]
        ratios = np.empty_like(block)
        rounded = np.empty_like(block)
        for index in range(len(_MSE_RATIOS)):
            np.multiply(block, inverses[index, rows], out=ratios)
            if uniform:
                np.rint(ratios, out=rounded)
                np.minimum(rounded, np.float32(top), out=rounded)
            else:
                doubled = np.minimum(2.0 * ratios, np.float32(len(table) - 1)).astype(np.int32)
                rounded = value_table[doubled]
            rounded -= ratios
            errors[index, rows] = np.einsum("ij,ij->i", rounded, rounded)[:, None]
    errors *= np.square(scales)
    best_scale = _max_scale(peak, top)
    best_error = np.full(peak.shape, np.inf)
    for index in range(len(_MSE_RATIOS)):       # the first ratio wins ties, as before
        better = errors[index] < best_error
        best_error = np.where(better, errors[index], best_error)
        best_scale = np.where(better, scales[index], best_scale)
    return best_scale


def quantize(
    weights: np.ndarray,
    scheme: str,
    bits: int,
    *,
    axis: int | None = 0,
    **options,
) -> QuantizedTensor:
    """Quantize ``weights`` with one scheme; return integers and per-channel scales.

    Parameters
    ----------
    weights:
        Float array (any shape; conv ``(O, C, KH, KW)`` or gemm ``(O, F)``).
    scheme:
        One of :data:`SCHEMES`.
    bits:
        Storage bits per weight, sign included (range per scheme in :data:`BIT_RANGES`).
    axis:
        Axis of the output channels (one scale per index along it), or ``None`` for one
        scale for the whole tensor.
    **options:
        ``clip`` (``"max"`` or ``"mse"``; int, pot, apot): scale from the largest magnitude,
        or the clipping ratio in ``[0.3, 1]`` (36 steps) with the least squared error per
        channel (measured on at most 1024 seeded positions of a large channel).
        ``max_planes`` (pot, default 7): at most this many powers of two (magnitude planes).
        ``exponent_bits`` (adaptivfloat; default 2 for ``bits <= 6``, else 3; 1 for 3 bits).
        ``threshold`` (ternary, default 0.7): TWN threshold as a multiple of ``mean|w|``.

    Returns
    -------
    QuantizedTensor
        ``values`` int64 of ``weights.shape``, ``scale`` float64 broadcastable against it
        (size ``weights.shape[axis]`` along ``axis``), ``dequantize() == values * scale``.

    Raises
    ------
    ValueError
        Unknown scheme, bits out of range, unknown or invalid option, non-finite weights,
        bad axis.
    """
    check_scheme(scheme, bits)
    bits = int(bits)
    full = default_options(scheme, bits, **options)
    weights = np.asarray(weights)
    if weights.ndim == 0 or weights.size == 0:
        raise ValueError(f"quantize: weights must be a non-empty array, got shape {weights.shape}")
    weights = weights.astype(np.float64, copy=False)
    if not np.all(np.isfinite(weights)):
        raise ValueError("quantize: weights contain NaN or infinity")
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) \
                or not -weights.ndim <= axis < weights.ndim:
            raise ValueError(f"quantize: axis must be None or in [0, {weights.ndim}), not {axis!r}")
        axis = int(axis) % weights.ndim

    matrix, scale_shape = _channel_view(weights, axis)
    magnitude = np.abs(matrix)
    negative = matrix < 0
    peak = magnitude.max(axis=1, keepdims=True)
    levels = level_set(scheme, bits, **full)

    if scheme in ("int", "pot", "apot"):
        if full["clip"] == "mse":
            scale = _mse_scale(magnitude, peak, levels)
        else:
            scale = _max_scale(peak, int(levels[-1]))
        integers = _round_to_levels(magnitude, scale, levels)
    elif scheme == "adaptivfloat":
        exponent_bits = full["exponent_bits"]
        mantissa_bits = bits - 1 - exponent_bits
        # exp_max = floor(log2 max|w|); exp_bias = exp_max - (2^e - 1) (Tambe et al.).
        safe_peak = np.where(peak > 0, peak, 1.0)
        exp_max = np.floor(np.log2(safe_peak))
        exp_bias = exp_max - ((1 << exponent_bits) - 1)
        scale = np.exp2(exp_bias - mantissa_bits)
        integers = _round_to_levels(magnitude, scale, levels)
    elif scheme == "ternary":
        threshold = full["threshold"] * magnitude.mean(axis=1, keepdims=True)
        keep = magnitude > threshold
        count = keep.sum(axis=1, keepdims=True)
        alpha = np.where(keep, magnitude, 0.0).sum(axis=1, keepdims=True) / np.maximum(count, 1)
        scale = np.where(count > 0, alpha, 1.0)
        integers = keep.astype(np.int64)
    else:  # binary
        mean = magnitude.mean(axis=1, keepdims=True)
        scale = np.where(mean > 0, mean, 1.0)
        integers = np.ones(matrix.shape, dtype=np.int64)

    values = np.where(negative, -integers, integers)
    values = _restore(values, weights.shape, axis)
    scale = np.asarray(scale, dtype=np.float64).reshape(scale_shape)
    return QuantizedTensor(
        values=values.astype(np.int64, copy=False),
        scale=scale,
        scheme=scheme,
        bits=bits,
        options=full,
    )
