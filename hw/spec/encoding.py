"""Bit layouts shared by the compiler, the bundle and the RTL: the OU entry and friends.

Every width here is derived from an :class:`~bitline.hw.spec.config.AcceleratorConfig`. The
layouts are Amaranth :class:`~amaranth.lib.data.StructLayout` objects, so the RTL uses them
directly as memory shapes, and :func:`pack` / :func:`unpack` turn numpy structured arrays into
the little-endian byte records the bundle stores (and the hardware loader parses) using the
same field offsets. Fields are packed LSB first in declaration order; a record is padded to a
whole number of bytes.

OU entry (one OU read program step, see docs/contract.md):

=============  ===========================================  =================================
field          width                                        meaning
=============  ===========================================  =================================
xbar           clog2(n_xbars)                               crossbar unit
row_group      clog2(row_groups)                            rows [g*ou_rows, (g+1)*ou_rows)
col_group      clog2(col_groups)                            cols [g*ou_cols, (g+1)*ou_cols)
slice_lo       clog2(max_slices + 1)                        first input slice to issue
slice_hi       clog2(max_slices + 1)                        one past the last slice
col[j].valid   1                                            column j contributes
col[j].sign    1                                            1: subtract the code
col[j].shift   clog2(max_weight_bits)                       left shift of the code
col[j].dest    clog2(max_out_channels)                      destination output channel
=============  ===========================================  =================================

The shift-and-add rule is ``acc[dest] += (-1)**sign * code << (shift + t * dac_bits)`` for
each issued slice ``t`` in ``[slice_lo, slice_hi)``.
"""

from __future__ import annotations

import numpy as np
from amaranth.lib import data

from bitline.hw.spec.config import AcceleratorConfig, clog2

__all__ = [
    "column_layout", "entry_layout", "layer_layout", "lane_bits", "output_param_layout",
    "record_bytes", "numpy_dtype", "pack", "pack_columns", "unpack", "flatten_fields",
    "value_bits", "FieldOverflow",
]


def column_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return the per-column descriptor layout of an OU entry."""
    return data.StructLayout({
        "valid": 1,
        "sign": 1,
        "shift": clog2(config.max_weight_bits),
        "dest": clog2(config.max_out_channels),
    })


def entry_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return the OU entry layout (see the module docstring)."""
    slice_bits = clog2(config.max_slices + 1)
    return data.StructLayout({
        "xbar": clog2(config.n_xbars),
        "row_group": clog2(config.row_groups),
        "col_group": clog2(config.col_groups),
        "slice_lo": slice_bits,
        "slice_hi": slice_bits,
        "cols": data.ArrayLayout(column_layout(config), config.ou_cols),
    })


def layer_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return the layer-table record: one layer job's region and sizes.

    ``entry_start``/``entry_count`` select the layer's OU entries; ``n_inputs`` is the input
    vector length (im2col rows), ``n_outputs`` the output channels, ``act_bits`` the input
    activation width (slices issued = entry's ``[slice_lo, slice_hi)``), ``xbar_mask`` the
    crossbar units that hold the layer (the reduction skips the others), ``param_start`` the
    first output-unit parameter record, ``mode`` 0 = requantize, 1 = raw accumulator out,
    ``zero_point``/``clamp_lo``/``clamp_hi`` the output activation's zero point and clamp,
    ``weight_offset`` the ``B`` of the offset weight encoding (0: differential; else a power
    of two up to ``2**(max_weight_bits - 1)``; the output path subtracts ``B * sum(x)`` of
    the vector's raw input codes, docs/contract.md section 4), ``lanes`` the copy each unit
    of the layer belongs to (docs/contract.md section 5, "Copies"): unit ``u``'s lane is
    bits ``[u * lane_bits(config), (u + 1) * lane_bits(config))``, 0 for copy 0 and for the
    units the layer does not own; the unit reads lane ``lanes[u]`` of each ``inputs`` beat and
    its partial sums join lane ``lanes[u]``'s reduction.
    """
    entry_bits = clog2(config.max_entries + 1)
    return data.StructLayout({
        "entry_start": entry_bits,
        "entry_count": entry_bits,
        "n_inputs": clog2(config.max_in_features + 1),
        "n_outputs": clog2(config.max_out_channels + 1),
        "act_bits": clog2(config.max_act_bits + 1),
        "xbar_mask": config.n_xbars,
        "param_start": clog2(config.max_layers * config.max_out_channels + 1),
        "mode": 1,
        "zero_point": config.max_act_bits,
        "clamp_lo": config.max_act_bits,
        "clamp_hi": config.max_act_bits,
        "weight_offset": config.max_weight_bits,
        "lanes": config.n_xbars * lane_bits(config),
    })


def lane_bits(config: AcceleratorConfig) -> int:
    """Width of one unit's lane index in the layer record: ``clog2(max_copies)``."""
    return clog2(config.max_copies)


#: Width of the output unit's fixed-point multiplier (unsigned) and of its right shift.
MULT_BITS = 16
SHIFT_BITS = 6


def output_param_layout(config: AcceleratorConfig) -> data.StructLayout:
    """Return the per-output-channel output-unit record: bias, multiplier, shift.

    ``bias`` is a two's complement ``acc_bits`` integer added to the accumulator; the output
    is ``clamp(zero_point + ((acc + bias) * mult + round) >> shift, clamp_lo, clamp_hi)``
    with ``round = 1 << (shift - 1)`` (0 when ``shift == 0``), see docs/contract.md.
    """
    return data.StructLayout({
        "bias": config.acc_bits,  # two's complement bit pattern
        "mult": MULT_BITS,
        "shift": SHIFT_BITS,
    })


def record_bytes(layout: data.Layout) -> int:
    """Return the byte size of one packed record of ``layout``."""
    return -(-layout.size // 8)


def flatten_fields(layout: data.Layout, prefix: str = "", offset: int = 0):
    """Yield ``(name, offset, width)`` for every leaf field, LSB-first order.

    Array elements are named ``cols.3.dest``; offsets are bit offsets in the record.
    """
    if isinstance(layout, data.StructLayout):
        for name, field in layout:
            yield from flatten_fields(field.shape, f"{prefix}{name}.", offset + field.offset)
    elif isinstance(layout, data.ArrayLayout):
        elem = layout.elem_shape
        elem_size = data.Layout.cast(elem).size if isinstance(elem, data.Layout) else (
            elem.width if hasattr(elem, "width") else int(elem))
        for index in range(layout.length):
            yield from flatten_fields(elem, f"{prefix}{index}.", offset + index * elem_size)
    else:
        width = layout.width if hasattr(layout, "width") else int(layout)
        yield prefix.rstrip("."), offset, width


def numpy_dtype(layout: data.Layout) -> np.dtype:
    """Return a numpy structured dtype with one int64 field per leaf (dotted names)."""
    return np.dtype([(name, np.int64) for name, _, _ in flatten_fields(layout)])


class FieldOverflow(ValueError):
    """A record field's value does not fit its width (``name``, record ``index``, ``value``)."""

    def __init__(self, name: str, index: int, value: int, width: int):
        super().__init__(f"field {name} value {value} does not fit {width} bits")
        self.name, self.index, self.value, self.width = name, index, value, width


def value_bits(values, width: int) -> np.ndarray:
    """Return the two's-complement bits of int64 ``values`` as uint8 ``(N, width)``, LSB first.

    Widths beyond 64 repeat the sign bit (a 64-bit ``bias``, a wide ``xbar_mask`` word).
    """
    shifts = np.minimum(np.arange(width, dtype=np.int64), 63)
    return ((np.asarray(values, dtype=np.int64)[:, None] >> shifts) & 1).astype(np.uint8)


def pack_columns(layout: data.Layout, count: int, columns: dict) -> bytes:
    """Pack ``count`` records given field by field (leaf names of :func:`flatten_fields`).

    A column is a 1-D array of non-negative integers (checked against the field's width; a
    field of 63 bits or more only against negatives) or a ready-made 2-D ``(count, >= width)``
    bit matrix, for fields wider than an int64. Missing fields are zero. Raises
    :class:`FieldOverflow` for the first value that does not fit.
    """
    bits = np.zeros((count, record_bytes(layout) * 8), dtype=np.uint8)
    for name, offset, width in flatten_fields(layout):
        if name not in columns:
            continue
        value = np.asarray(columns[name])
        if value.ndim == 2:
            bits[:, offset:offset + width] = value[:, :width]
            continue
        value = value.astype(np.int64)
        bad = (value < 0) if width >= 63 else (value < 0) | (value >= (1 << width))
        if count and bad.any():
            index = int(np.argmax(bad))
            raise FieldOverflow(name, index, int(value[index]), width)
        bits[:, offset:offset + width] = value_bits(value, width)
    return np.packbits(bits, axis=1, bitorder="little").tobytes()


def pack(layout: data.Layout, records: np.ndarray) -> bytes:
    """Pack a structured array (dtype from :func:`numpy_dtype`) into little-endian records.

    Raises :class:`FieldOverflow` (a ``ValueError``) naming the field when a value does not
    fit its width.
    """
    return pack_columns(layout, len(records),
                        {name: records[name] for name, _, _ in flatten_fields(layout)})


def unpack(layout: data.Layout, blob: bytes) -> np.ndarray:
    """Inverse of :func:`pack`: parse ``len(blob) / record_bytes`` records."""
    nbytes = record_bytes(layout)
    if len(blob) % nbytes:
        raise ValueError(f"{len(blob)} bytes is not a whole number of {nbytes}-byte records")
    raw = np.frombuffer(blob, dtype=np.uint8).reshape(-1, nbytes)
    bits = np.unpackbits(raw, axis=1, bitorder="little").astype(np.int64)
    out = np.zeros(len(raw), dtype=numpy_dtype(layout))
    for name, offset, width in flatten_fields(layout):
        weights = np.int64(1) << np.arange(width, dtype=np.int64)
        out[name] = bits[:, offset:offset + width] @ weights
    return out
