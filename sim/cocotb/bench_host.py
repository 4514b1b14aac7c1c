"""cocotb host side of a :class:`~bitline.sim.cocotb.harness.BenchTop`: registers and streams.

:class:`BenchHost` is the driver half of the bench (the matrix-multiplier example's
"driver"): coroutines that write and read the control/status registers, fill the harness's
stream source and replay it into ``program`` or ``inputs``, and read the outputs back from
its sink. :class:`CocotbTransport` offers them to the host driver
(:class:`bitline.sw.host.driver.Transport`) as blocking calls: the driver runs in a
:func:`cocotb.task.bridge` thread and every transport call resumes the simulation
(:func:`cocotb.task.resume`) until it is done, so the same :class:`~bitline.sw.host.driver.Device` and
:class:`~bitline.sw.host.driver.HostDriver` code that talks to a board programs the simulated
accelerator.

Timing of a layer job: ``CTRL.START`` is written in the same cycle as the source is started,
so the first input code is offered in the job's first busy cycle and the sink takes every
output the cycle it appears -- the host of docs/contract.md section 5 that never stalls. A
whole-network run (``CTRL.RUN_NETWORK``) is started the same way, its input image streamed
from the source and the last node's outputs taken by the sink.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import resume
from cocotb.triggers import ClockCycles, First, ReadOnly, RisingEdge, Timer

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.registers import Ctrl, Register, Status
from bitline.sim.cocotb.crossbar import signal_int
from bitline.sim.cocotb.harness import INPUTS, PROGRAM, beat_bytes
from bitline.sw.host.driver import Transport

__all__ = ["BenchHost", "CocotbTransport", "CLOCK_PERIOD_NS"]

#: Clock period of the bench (the value only scales simulated time).
CLOCK_PERIOD_NS = 10
#: Cycles between two STATUS checks while waiting for a job's outputs.
WATCH_CYCLES = 4096


class BenchHost:
    """Coroutines driving a :class:`BenchTop`'s register bus, source and sink.

    Parameters
    ----------
    dut:
        The cocotb handle of the bench top.
    config:
        The accelerator configuration.
    harness:
        The harness parameters (``source_depth``, ``sink_depth``, ``fill_lanes``,
        ``drain_lanes``) from the design description.
    """

    def __init__(self, dut, config: AcceleratorConfig, harness: dict):
        self.dut = dut
        self.config = config
        self.source_depth = int(harness["source_depth"])
        self.sink_depth = int(harness["sink_depth"])
        self.fill_lanes = int(harness["fill_lanes"])
        self.drain_lanes = int(harness["drain_lanes"])
        self.edge = RisingEdge(dut.clk)
        #: Cycles simulated when the last host operation finished (readable from the
        #: driver's thread, which must not query the simulator itself).
        self.now = 0
        for name in ("csr__addr", "csr__w_en", "csr__w_data", "csr__r_en", "fill_en",
                     "fill_addr", "fill_data", "source_start", "source_target",
                     "source_count", "sink_start", "sink_count", "drain_addr"):
            getattr(dut, name).value = 0

    async def start(self) -> None:
        """Start the clock and reset the design (two cycles)."""
        Clock(self.dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await self.edge

    @property
    def cycles(self) -> int:
        """Clock cycles simulated so far."""
        return int(cocotb.simtime.get_sim_time("ns") // CLOCK_PERIOD_NS)

    # ---------------------------------------------------------------- registers
    async def write_register(self, register: int, value: int, *, source_start: bool = False
                             ) -> None:
        """Write a register (one cycle); optionally start the source in the same cycle."""
        dut = self.dut
        dut.csr__addr.value = int(register)
        dut.csr__w_data.value = int(value) & 0xFFFFFFFF
        dut.csr__w_en.value = 1
        if source_start:
            dut.source_start.value = 1
        await self.edge
        dut.csr__w_en.value = 0
        if source_start:
            dut.source_start.value = 0
        self.now = self.cycles

    async def read_register(self, register: int) -> int:
        """Read a register (``r_data`` arrives one cycle after ``r_en``)."""
        dut = self.dut
        dut.csr__addr.value = int(register)
        dut.csr__r_en.value = 1
        await self.edge
        dut.csr__r_en.value = 0
        await ReadOnly()
        value = signal_int(dut.csr__r_data)
        await self.edge
        self.now = self.cycles
        return value

    # ---------------------------------------------------------------- source and sink
    async def fill(self, data: bytes) -> None:
        """Write ``data`` (at most ``source_depth`` bytes) into the source from byte 0."""
        if len(data) > self.source_depth:
            raise ValueError(f"{len(data)} bytes do not fit the bench source "
                             f"({self.source_depth})")
        lanes = self.fill_lanes
        padded = bytes(data) + bytes(-len(data) % lanes)
        dut = self.dut
        dut.fill_en.value = 1
        for row in range(len(padded) // lanes):
            dut.fill_addr.value = row
            dut.fill_data.value = int.from_bytes(padded[row * lanes:(row + 1) * lanes],
                                                 "little")
            await self.edge
        dut.fill_en.value = 0

    async def replay(self, count: int, target: int) -> None:
        """Start the source on ``count`` bytes towards ``target`` (one cycle)."""
        dut = self.dut
        dut.source_count.value = int(count)
        dut.source_target.value = int(target)
        dut.source_start.value = 1
        await self.edge
        dut.source_start.value = 0

    async def wait_source(self) -> None:
        """Wait until the source has sent everything."""
        await ReadOnly()
        if signal_int(self.dut.source_busy):
            await First(self.dut.source_busy.value_change)
        await self.edge

    async def arm_sink(self, count: int) -> None:
        """Make the sink take the next ``count`` outputs (one cycle)."""
        if count > self.sink_depth:
            raise ValueError(f"{count} outputs do not fit the bench sink ({self.sink_depth})")
        dut = self.dut
        dut.sink_count.value = int(count)
        dut.sink_start.value = 1
        await self.edge
        dut.sink_start.value = 0

    async def drain(self, count: int) -> np.ndarray:
        """Read the first ``count`` outputs back from the sink (signed ``acc_bits``).

        Returns ``(count,)``, or ``(count, max_copies)`` beats when the config has copies.
        """
        width = self.config.acc_bits
        copies = self.config.max_copies
        lanes = self.drain_lanes * copies        # values per sink row
        mask = (1 << width) - 1
        values = []
        dut = self.dut
        for row in range(-(-count // self.drain_lanes)):
            dut.drain_addr.value = row
            await Timer(1, "ps")
            await ReadOnly()
            word = signal_int(dut.drain_data)
            values.extend((word >> (lane * width)) & mask for lane in range(lanes))
            await Timer(1, "ps")
        outputs = np.array(values[:count * copies], dtype=np.int64)
        outputs = np.where(outputs >> (width - 1), outputs - (1 << width), outputs)
        return outputs if copies == 1 else outputs.reshape(count, copies)

    # ---------------------------------------------------------------- operations
    async def send_image(self, image: bytes) -> None:
        """Stream ``image`` into ``program`` through the source, in source-sized pieces."""
        for start in range(0, len(image), self.source_depth):
            piece = image[start:start + self.source_depth]
            await self.fill(piece)
            await self.replay(len(piece), PROGRAM)
            await self.wait_source()
        self.now = self.cycles

    async def start_job(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        """Write CTRL.START, stream the inputs and collect ``n_outputs`` outputs.

        Returns fewer outputs if the accelerator reports an error before the job's end.
        """
        return await self._exchange(codes, n_outputs, Ctrl.START)

    async def start_network(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        """Write CTRL.RUN_NETWORK, stream the image's codes (lane 0) and collect
        ``n_outputs`` outputs (lane 0), with the timing of :meth:`start_job`.

        Returns fewer outputs if the accelerator reports an error before the run's end.
        """
        return await self._exchange(np.asarray(codes, dtype=np.int64).reshape(-1), n_outputs,
                                    Ctrl.RUN_NETWORK)

    async def _exchange(self, codes: np.ndarray, n_outputs: int, command: Ctrl) -> np.ndarray:
        """Fill the source with ``codes``, arm the sink, write ``command`` to CTRL in the
        cycle the source starts, and collect the outputs (see :meth:`start_job`)."""
        codes = np.asarray(codes, dtype=np.int64)
        copies = self.config.max_copies
        if copies == 1:
            codes = codes.reshape(-1)
            data = codes.astype(np.uint8).tobytes()
        else:
            # beats of one byte per lane, padded to beat_bytes() (harness docstring)
            lanes = codes.reshape(len(codes), -1)
            if lanes.shape[1] > copies:
                raise ValueError(f"beats of {lanes.shape[1]} lanes, the bench has "
                                 f"max_copies = {copies}")
            beats = np.zeros((len(lanes), beat_bytes(self.config)), dtype=np.uint8)
            beats[:, :lanes.shape[1]] = lanes
            data = beats.tobytes()
        if len(data) > self.source_depth:
            raise ValueError(f"{len(codes)} input beats do not fit the bench source "
                             f"({self.source_depth} bytes); run smaller jobs (max_vectors)")
        await self.fill(data)
        await self.arm_sink(n_outputs)
        self.dut.source_count.value = len(codes)
        self.dut.source_target.value = INPUTS
        await self.write_register(Register.CTRL, command, source_start=True)
        while True:
            await ReadOnly()
            if signal_int(self.dut.sink_done):
                break
            # (a Timer, not ClockCycles: that one wakes Python on every edge)
            await First(self.dut.sink_done.value_change,
                        Timer(WATCH_CYCLES * CLOCK_PERIOD_NS, "ns"))
            await ReadOnly()
            if signal_int(self.dut.sink_done):
                break
            await self.edge
            if await self.read_register(Register.STATUS) & Status.ERROR:
                break
        await self.edge
        received = signal_int(self.dut.sink_received)
        outputs = await self.drain(received)
        self.now = self.cycles
        if copies > 1 and codes.ndim == 2:
            outputs = outputs[:, :codes.shape[1]]   # the job's copies (the rest are idle)
        elif copies > 1:
            outputs = outputs[:, 0]                 # a layer without copies: lane 0
        return outputs


class CocotbTransport(Transport):
    """:class:`bitline.sw.host.driver.Transport` on a :class:`BenchHost`.

    Call its methods from a :func:`cocotb.task.bridge` thread: each one resumes the simulation
    until the coroutine it stands for is done.
    """

    def __init__(self, host: BenchHost):
        self.host = host

    def write_register(self, register: int, value: int) -> None:
        resume(self.host.write_register)(register, value)

    def read_register(self, register: int) -> int:
        return resume(self.host.read_register)(register)

    def send_image(self, image: bytes) -> None:
        resume(self.host.send_image)(image)

    def start_job(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        return resume(self.host.start_job)(codes, n_outputs)

    def start_network(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        return resume(self.host.start_network)(codes, n_outputs)
