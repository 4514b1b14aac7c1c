"""Cycle timing of a layer job: the one definition the RTL realizes and the models count.

The Amaranth accelerator (:mod:`bitline.hw.core.top`) runs a layer job of ``V`` input vectors as
follows (docs/contract.md section 5, docs/hardware.md "Timing"); cycles are counted while the
accelerator is busy, from the first cycle after ``start`` to the cycle the last output is
accepted, with a host that always has the next input ready and always accepts an output:

* **load** -- one input code per cycle into the row drivers' shadow bank (``K`` cycles).
* **compute** of vector ``v`` starts when its load is complete and the partial sums of
  vector ``v - 1`` have been read out: the banks swap and every unit of the layer starts its
  OU controller (``go``). The shadow bank is free from that cycle, so the load of vector
  ``v + 1`` overlaps compute and drain of ``v``. The busiest unit issues its last OU-read
  command ``C_comp`` cycles after its first, which comes :data:`ENTRY_FETCH_CYCLES` after
  ``go`` (entry memory read, entry register); each command reaches the crossbar port
  :data:`ROW_SELECT_CYCLES` later (the row drivers' row-map read, input read and drive
  register); its codes arrive ``adc_latency`` cycles after the port's strobe and are
  written :data:`ACCUMULATE_CYCLES` after that, so partial sums are complete
  ``C_comp + pipeline_latency(config)`` cycles after ``go``.
* **drain**: one output channel per cycle (``O`` cycles) enters the reduction / output-unit
  pipeline; the next vector's ``go`` may follow the last channel's read immediately. The
  reduction, the output unit and the output FIFO add :func:`drain_latency` cycles after
  the last channel, paid once per job.

Hence, with ``P = pipeline_latency(config)`` and ``Q = drain_latency(config)``::

    cycles = K + (V - 1) * max(C_comp + O + P, K) + (C_comp + O + P) + Q

**Copies.** A layer placed as ``c`` identical copies (docs/contract.md section 5, "Copies")
splits its ``V`` vectors into ``c`` contiguous shares, copy ``k`` taking vectors
``[k * ceil(V / c), min(V, (k + 1) * ceil(V / c)))``. Each copy has its own units, row
drivers and drain path and runs its share as a layer job of its own, all copies at once, so
the job (the layer's *stage* in the inter-layer pipeline) lasts as long as the largest share::

    stage_cycles = layer_cycles(K, O, ceil(V / c), unit_reads)

(:func:`layer_cycles` with ``copies=c``; ``c = 1`` is the formula above).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig

__all__ = [
    "ENTRY_FETCH_CYCLES", "ROW_SELECT_CYCLES", "ACCUMULATE_CYCLES", "DRAIN_STAGES",
    "pipeline_latency", "drain_latency", "vector_compute_cycles", "layer_cycles",
    "copy_shares", "job_cycles",
]

#: Cycles from ``go`` to a unit's first OU-read command: the entry memory's synchronous read
#: and the entry register after it (:mod:`bitline.hw.unit.ou_controller`).
ENTRY_FETCH_CYCLES = 2
#: Cycles from an OU-read command to its strobe on the crossbar port: the row drivers'
#: row-map read, input-memory read and registered drives (:mod:`bitline.hw.unit.row_driver`;
#: the ADC mux delays the port's other members alike).
ROW_SELECT_CYCLES = 3
#: Cycles from valid ADC codes to partial sums readable by the drain: the shift-and-add's
#: input register and its write stage (its read-modify-write pipeline forwards, so it never
#: stalls; :mod:`bitline.hw.unit.shift_add`). The input register cuts the FPGA's path from the
#: emulator's OU sum through the term's shift and negation (docs/fpga.md section 4).
ACCUMULATE_CYCLES = 2

#: The drain pipeline, stage by stage (each one register): partial-sum memory read,
#: per-unit lane sum in two steps (pairs, then their sum: :mod:`bitline.hw.unit.shift_add`),
#: masked inter-unit sum, the output unit's ``t = acc + bias -
#: correction``, multiply, rounding and zero point, shift and clamp
#: (:mod:`bitline.hw.core.output_unit`, one operation per stage for the FPGA's core clock),
#: output FIFO.
DRAIN_STAGES = (
    "psum_read", "lane_pairs", "lane_sum", "unit_sum",
    "ou_total", "ou_multiply", "ou_round", "ou_shift", "ou_clamp", "output_fifo",
)


def pipeline_latency(config: AcceleratorConfig) -> int:
    """Return ``P``: cycles of one vector's compute phase beyond ``C_comp``.

    ``ENTRY_FETCH_CYCLES + ROW_SELECT_CYCLES + config.adc_latency + ACCUMULATE_CYCLES``.
    This is paid once per input vector (partial sums must be complete before they are read
    out).
    """
    return ENTRY_FETCH_CYCLES + ROW_SELECT_CYCLES + config.adc_latency + ACCUMULATE_CYCLES


def drain_latency(config: AcceleratorConfig) -> int:
    """Return ``Q``: cycles from the last channel's partial-sum read to its output accepted.

    One cycle per entry of :data:`DRAIN_STAGES`; paid once per layer job, because the next
    vector's compute overlaps the previous vector's drain pipeline.
    """
    del config  # the drain pipeline's depth does not depend on the geometry
    return len(DRAIN_STAGES)


def vector_compute_cycles(config: AcceleratorConfig,
                          unit_reads: Sequence[int] | np.ndarray) -> int:
    """Return ``C_comp = max_u unit_reads[u] * conversions_per_read`` (0 without units).

    The compute cycles of *one input vector*: the busiest unit's reads for that vector, each
    taking ``conversions_per_read`` cycles. A whole job of ``V`` vectors keeps that unit busy
    ``V * C_comp`` cycles (:meth:`bitline.sim.executor.Counters.job_compute_cycles`).
    """
    reads = np.asarray(unit_reads, dtype=np.int64).reshape(-1)
    if reads.size and reads.min() < 0:
        raise ValueError(f"unit_reads must be non-negative, not {reads.min()}")
    return int(reads.max(initial=0)) * config.conversions_per_read


def copy_shares(n_vectors: int, copies: int) -> list[tuple[int, int]]:
    """Return the ``[start, stop)`` vector range of each copy (module docstring, "Copies").

    Copy ``k`` takes the contiguous share ``[k * s, min(V, (k + 1) * s))`` with
    ``s = ceil(V / c)``; copies past the last vector get an empty range.

    Raises
    ------
    ValueError
        If ``n_vectors`` or ``copies`` is below 1.
    """
    if int(n_vectors) < 1 or int(copies) < 1:
        raise ValueError(f"n_vectors and copies must be at least 1, not {n_vectors} and "
                         f"{copies}")
    share = -(-int(n_vectors) // int(copies))
    return [(min(k * share, n_vectors), min((k + 1) * share, n_vectors))
            for k in range(int(copies))]


def job_cycles(config: AcceleratorConfig, n_inputs: int, n_outputs: int, n_vectors: int,
               compute_cycles: int) -> int:
    """Return the cycles of one copy's job of ``n_vectors`` vectors, given ``C_comp``.

    The module docstring's formula with ``C_comp`` (:func:`vector_compute_cycles`) already
    known; :func:`layer_cycles` is this for the busiest copy. The pipeline allocator
    (:mod:`bitline.sw.perf.pipeline`) calls it for candidate copy counts.

    Raises
    ------
    ValueError
        If a count is out of range.
    """
    for name, value in (("n_inputs", n_inputs), ("n_outputs", n_outputs),
                        ("n_vectors", n_vectors)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")
    if int(compute_cycles) < 0:
        raise ValueError(f"compute_cycles must be non-negative, not {compute_cycles}")
    k, o, v = int(n_inputs), int(n_outputs), int(n_vectors)
    vector = int(compute_cycles) + o + pipeline_latency(config)
    return k + (v - 1) * max(vector, k) + vector + drain_latency(config)


def layer_cycles(config: AcceleratorConfig, n_inputs: int, n_outputs: int, n_vectors: int,
                 unit_reads: Sequence[int] | np.ndarray, *, copies: int = 1) -> int:
    """Return the cycles of one layer job (module docstring), as the RTL counter reports.

    Parameters
    ----------
    config:
        The accelerator configuration.
    n_inputs, n_outputs:
        ``K`` (input codes per vector) and ``O`` (output channels per vector), both >= 1.
    n_vectors:
        ``V``, input vectors in the job (>= 1).
    unit_reads:
        OU reads per vector of each crossbar unit of one copy of the layer (``sum_e
        n_slices[e]`` over the unit's entries); hollow units may be left out or given as 0.
    copies:
        ``c``, identical copies of the layer that split the ``V`` vectors (>= 1): the job
        lasts as long as the largest share, ``ceil(V / c)`` vectors (module docstring).

    Raises
    ------
    ValueError
        If a count is out of range.
    """
    if int(copies) < 1:
        raise ValueError(f"copies must be at least 1, not {copies}")
    if int(n_vectors) < 1:
        raise ValueError(f"n_vectors must be at least 1, not {n_vectors}")
    share = -(-int(n_vectors) // int(copies))
    return job_cycles(config, n_inputs, n_outputs, share,
                      vector_compute_cycles(config, unit_reads))
