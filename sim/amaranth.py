"""Drive an accelerator and its blocks in the Amaranth simulator (async testbench helpers).

A library module for anyone who simulates the generated hardware in Python: testbenches
written as ``async def tb(ctx)`` (Amaranth 0.5) call these helpers on the simulator context.
``stream_put`` / ``stream_get`` follow the ``lib.stream`` rules; ``csr_write`` /
``csr_read`` drive :class:`~bitline.hw.core.host_interface.CSRSignature`; :func:`load_image`
streams a program image into the loader; :func:`run_job` runs one layer job on an
:class:`~bitline.hw.core.top.Accelerator` with a host that sends one input code per cycle
and takes every output at once (the timing of :mod:`bitline.hw.spec.timing`), or with gaps.
Test fixtures (small configs, the simulator set-up) are in the repository's ``tests/support``.
"""

from __future__ import annotations

import numpy as np

from bitline.hw.spec.registers import COUNTERS, Register, Status
from bitline.sw.host.driver import lane_beats, lane_outputs

__all__ = ["stream_put", "stream_get", "csr_write", "csr_read", "read_counters",
           "run_job", "load_image", "lane_beats", "lane_outputs"]


async def stream_put(ctx, stream, payload) -> None:
    """Send one payload on ``stream`` (waits for ``ready``)."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Receive one payload from ``stream``."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def csr_write(ctx, csr, register: int, value: int) -> None:
    """Write ``value`` to ``register`` (one cycle)."""
    ctx.set(csr.addr, int(register))
    ctx.set(csr.w_data, int(value) & 0xFFFFFFFF)
    ctx.set(csr.w_en, 1)
    await ctx.tick()
    ctx.set(csr.w_en, 0)


async def csr_read(ctx, csr, register: int) -> int:
    """Return the value of ``register`` (two cycles)."""
    ctx.set(csr.addr, int(register))
    ctx.set(csr.r_en, 1)
    await ctx.tick()
    ctx.set(csr.r_en, 0)
    return ctx.get(csr.r_data)


async def read_counters(ctx, csr) -> dict[str, int]:
    """Return the performance counters by name."""
    values = {}
    for name, low in COUNTERS:
        values[name] = (await csr_read(ctx, csr, low)) | (await csr_read(ctx, csr, low + 1)) << 32
    return values


async def load_image(ctx, dut, image: bytes, *, gap_every: int = 0) -> int:
    """Stream ``image`` into the loader (after a CTRL.LOAD); return the final STATUS.

    ``gap_every`` > 0 leaves ``valid`` low for one cycle after every that many bytes.
    """
    await csr_write(ctx, dut.csr, Register.CTRL, 2)
    position = 0
    sent = 0
    while position < len(image):
        if gap_every and sent and sent % gap_every == 0:
            ctx.set(dut.program.valid, 0)
            await ctx.tick()
            sent += 1
            continue
        ctx.set(dut.program.valid, 1)
        ctx.set(dut.program.payload, image[position])
        ready = ctx.get(dut.program.ready)
        await ctx.tick()
        if ready:
            position += 1
            sent += 1
    ctx.set(dut.program.valid, 0)
    for _ in range(4):
        await ctx.tick()
    return await csr_read(ctx, dut.csr, Register.STATUS)


async def run_job(ctx, dut, layer: int, vectors: np.ndarray, n_outputs: int, *,
                  copies: int = 1, input_gaps: set[int] | None = None,
                  output_stalls: set[int] | None = None,
                  max_cycles: int = 100_000) -> tuple[np.ndarray, dict[str, int], int]:
    """Run one layer job; return ``(outputs (V, O), counters, status)``.

    The host offers the next input beat every cycle and takes every output at once, except
    in the cycles (counted from the first busy cycle) listed in ``input_gaps`` /
    ``output_stalls``. With ``copies`` > 1 (the layer's copies) the vectors are split into
    the copies' shares, one lane each (:func:`lane_beats`; N_VECTORS = V, N_SHARE = the
    share).
    """
    vectors = np.asarray(vectors, dtype=np.int64)
    lanes = dut.config.max_copies
    beats = lane_beats(vectors, copies, lanes)   # (copies = 1: one lane, the vectors' codes)
    share = -(-len(vectors) // copies)
    expected = share * n_outputs
    input_gaps = input_gaps or set()
    output_stalls = output_stalls or set()
    await csr_write(ctx, dut.csr, Register.LAYER, layer)
    await csr_write(ctx, dut.csr, Register.N_VECTORS, len(vectors))
    if copies > 1:
        await csr_write(ctx, dut.csr, Register.N_SHARE, share)
    await csr_write(ctx, dut.csr, Register.CTRL, 1)
    sent = 0
    outputs: list[list[int]] = []
    idle = [0] * lanes
    for cycle in range(max_cycles):
        offer = sent < len(beats) and cycle not in input_gaps
        ctx.set(dut.inputs.valid, int(offer))
        ctx.set(dut.inputs.payload, [int(code) for code in beats[sent]] if offer else idle)
        ctx.set(dut.outputs.ready, int(cycle not in output_stalls))
        taken_in = offer and ctx.get(dut.inputs.ready)
        taken_out = ctx.get(dut.outputs.valid) and cycle not in output_stalls
        value = ctx.get(dut.outputs.payload)
        await ctx.tick()
        if taken_in:
            sent += 1
        if taken_out:
            outputs.append([int(value[lane]) for lane in range(lanes)])
            if len(outputs) == expected:
                break
    else:
        raise TimeoutError(f"job did not finish in {max_cycles} cycles "
                           f"({sent} inputs sent, {len(outputs)} outputs)")
    ctx.set(dut.inputs.valid, 0)
    ctx.set(dut.outputs.ready, 0)
    await ctx.tick()
    status = await csr_read(ctx, dut.csr, Register.STATUS)
    counters = await read_counters(ctx, dut.csr)
    if status & Status.BUSY:
        raise AssertionError("accelerator still busy after its last output")
    result = lane_outputs(np.array(outputs, dtype=np.int64).reshape(-1, lanes), len(vectors),
                          copies, n_outputs)
    return result, counters, status
