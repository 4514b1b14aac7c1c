"""Benches of the whole-network units (hw/net): a map in the buffer, streamed out again.

:class:`MapBench` is an :class:`~bitline.hw.net.ActivationBuffer` whose read port an
:class:`~bitline.hw.net.Im2colReader` drives, optionally followed by a
:class:`~bitline.hw.net.PoolUnit`; :func:`write_map`, :func:`start_window` and
:func:`receive` are the testbench steps, with seeded random pauses on both streams.
"""

from __future__ import annotations

import numpy as np
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from bitline.hw.net import (
    ActivationBuffer,
    Im2colReader,
    NetGeometry,
    PoolUnit,
    WindowParams,
)

__all__ = ["MapBench", "receive", "send", "start_window", "write_map"]


class MapBench(Elaboratable):
    """Buffer -> im2col reader (-> pool unit); ``outputs`` is the last stream."""

    def __init__(self, geometry: NetGeometry, *, pool: bool = False):
        self.geometry = geometry
        self.buffer = ActivationBuffer(geometry)
        self.reader = Im2colReader(geometry)
        self.pool = PoolUnit(geometry) if pool else None
        self.outputs = (self.pool or self.reader).outputs

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = self.buffer
        m.submodules.reader = self.reader
        wiring.connect(m, self.reader.read, self.buffer.read)
        if self.pool is not None:
            m.submodules.pool = self.pool
            wiring.connect(m, self.reader.outputs, self.pool.inputs)
        return m


async def send(ctx, port, values, rng, pause: float) -> None:
    """Offer ``values`` on stream ``port`` in order, idling with probability ``pause``."""
    for value in values:
        while rng.random() < pause:
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.valid, 1)
        ctx.set(port.payload, int(value))
        while True:
            # ready sampled at the clock edge: another testbench may change what it
            # depends on (the other input of a join) later in the same cycle
            *_, taken = await ctx.tick().sample(port.ready)
            if taken:
                break
    ctx.set(port.valid, 0)


async def write_map(ctx, buffer: ActivationBuffer, codes: np.ndarray, base: int, rng,
                    *, linear: bool, pause: float = 0.3) -> None:
    """Write a ``(C, H, W)`` map at ``base``: in C order (``linear``) or producer order."""
    channels = codes.shape[0]
    ctx.set(buffer.write_base, base)
    ctx.set(buffer.write_channels, channels)
    ctx.set(buffer.write_pixels, codes[0].size)
    ctx.set(buffer.write_linear, int(linear))
    ctx.set(buffer.write_start, 1)
    await ctx.tick()
    ctx.set(buffer.write_start, 0)
    order = codes.reshape(-1) if linear else codes.reshape(channels, -1).T.reshape(-1)
    await send(ctx, buffer.write, order, rng, pause)
    assert ctx.get(buffer.write_count) == codes.size


async def start_window(ctx, reader: Im2colReader, params: WindowParams) -> None:
    """Load ``params`` into the reader's record and pulse ``start``."""
    for name, value in params.record(reader.geometry).items():
        ctx.set(getattr(reader.record, name), value)
    ctx.set(reader.start, 1)
    await ctx.tick()
    ctx.set(reader.start, 0)


async def receive(ctx, port, count: int, rng, pause: float, fields=None) -> list:
    """Take ``count`` transfers from ``port`` with ``ready`` low with probability ``pause``.

    Returns the payloads (as ints), or dicts of ``fields`` of a struct payload.
    """
    got = []
    idle = 0
    while len(got) < count:
        ready = rng.random() >= pause
        ctx.set(port.ready, int(ready))
        if ready and ctx.get(port.valid):
            if fields is None:
                got.append(int(ctx.get(port.payload)))
            else:
                got.append({name: int(ctx.get(getattr(port.payload, name)))
                            for name in fields})
            idle = 0
        else:
            idle += 1
            assert idle < 200, f"stream stalled after {len(got)} of {count} transfers"
        await ctx.tick()
    ctx.set(port.ready, 0)
    return got
