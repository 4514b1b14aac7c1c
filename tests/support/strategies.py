"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from bitline.hw.spec.config import AcceleratorConfig

__all__ = ["configs"]


@st.composite
def configs(draw, **fields):
    """Small but varied crossbar / OU / ADC geometries (1- and 2-bit cells and DACs).

    The ADC is at least wide enough for one cell times one DAC slice; ``fields`` fix any
    other :class:`AcceleratorConfig` field (e.g. ``acc_bits=40``).
    """
    rows = draw(st.integers(4, 40))
    cols = draw(st.integers(4, 40))
    cell_bits = draw(st.integers(1, 2))
    dac_bits = draw(st.integers(1, 2))
    ou_rows = draw(st.integers(1, rows))
    ou_cols = draw(st.integers(1, cols))
    need = ((1 << cell_bits) - 1) * ((1 << dac_bits) - 1)
    adc_bits = draw(st.integers(max(1, need.bit_length()), 8))
    return AcceleratorConfig(
        rows=rows, cols=cols, cell_bits=cell_bits, dac_bits=dac_bits, ou_rows=ou_rows,
        ou_cols=ou_cols, adc_bits=adc_bits, adcs_per_xbar=draw(st.integers(1, ou_cols)),
        **fields,
    )
