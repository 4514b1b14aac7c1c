"""cocotb bench of the AXI variant (``bitline verilog --bus axi``), driven by ``cocotbext-axi``.

The design is :class:`~bitline.hw.io.axi.AxiTop` (the accelerator behind AXI4-Lite and
AXI4-Stream, ports ``s_axil_*``, ``s_axis_image_*``, ``s_axis_input_*``,
``m_axis_output_*``). The bus side is the well-kept library's, not a home-made model:
:class:`cocotbext.axi.AxiLiteMaster` on the registers, :class:`cocotbext.axi.AxiStreamSource`
on the image and input streams and :class:`cocotbext.axi.AxiStreamSink` on the outputs, each
with a seeded pause generator when the run asks for backpressure (every channel: AW, W, B,
AR, R, image, input, output). The project's host driver (:class:`bitline.sw.host.driver.HostDriver`)
runs in a :func:`cocotb.task.bridge` thread on :class:`AxiTransport`, as it does on the
native bench and on a board.

Checks (the reference from the spec, never from the RTL): every layer's output equals the
integer golden model (:func:`bitline.sim.golden.run_golden`); every job's OU reads, ADC
conversions and reduction operands equal the performance model; its cycles equal the model
exactly without backpressure (``stall_cycles == 0``), and under backpressure lie in
``[model, model + stall_cycles]`` (docs/hardware.md, "Timing"); every register access
answers OKAY; every output frame ends with ``tlast`` on its last beat and has exactly the
job's beat count; the error responses of the register map (a write to a read-only register:
SLVERR, an unmapped address: DECERR, a partial ``wstrb``: SLVERR) leave the registers as
they were.

The run JSON named by ``BITLINE_RUN``: ``config`` (the design's
:class:`~bitline.hw.spec.config.AcceleratorConfig` fields), ``runs`` -- a list of ``{"bundle",
"input" (.npy), "pause" (probability of a pause cycle on every channel, 0 for none),
"seed"}`` run in order on one chip, each reloading the image -- and ``max_vectors``.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import resume
from cocotb.triggers import ClockCycles, First, Timer
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiResp, AxiStreamBus, AxiStreamFrame,
                           AxiStreamSink, AxiStreamSource)

from bitline.hw.io.axi import input_lane_bits, output_lane_bits
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.registers import Ctrl, Register, Status
from bitline.sim.cocotb.tb_accelerator import (InferenceChecker, model_counters,
                                               reference_layers)
from bitline.sw.bundle import read_bundle
from bitline.sw.host.driver import Device, HostDriver, Transport

__all__ = ["AxiHost", "AxiTransport", "pauses"]

CLOCK_PERIOD_NS = 10
#: Cycles between two STATUS checks while waiting for a job's output frame.
WATCH_CYCLES = 20000


def pauses(seed: int, probability: float):
    """Endless seeded pause pattern: ``True`` (pause this cycle) with ``probability``."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


class AxiHost:
    """The cocotbext-axi models on an :class:`~bitline.hw.io.axi.AxiTop` and the host's steps."""

    def __init__(self, dut, config: AcceleratorConfig):
        self.dut, self.config = dut, config
        clock, reset = dut.clk, dut.rst
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), clock, reset)
        # byte_size = the whole beat: tdata is one integer per beat (lanes packed in it)
        self.image = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_image"), clock,
                                     reset, byte_size=8)
        width = config.max_copies * input_lane_bits(config)
        self.inputs = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_input"), clock,
                                      reset, byte_size=width)
        width = config.max_copies * output_lane_bits(config)
        self.outputs = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_output"), clock,
                                     reset, byte_size=width)
        # the models log every transfer and frame at INFO (whole frames): that costs more
        # than the simulation of the digits design
        for model in (self.axil.write_if, self.axil.read_if, self.image, self.inputs,
                      self.outputs):
            model.log.setLevel(logging.WARNING)
        self.frames: list[int] = []          # beat count of every output frame
        self.responses: list[tuple] = []     # (kind, word, resp) of every non-OKAY answer

    async def start(self) -> None:
        """Start the clock and reset the design."""
        Clock(self.dut.clk, CLOCK_PERIOD_NS, unit="ns").start()
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    def set_pauses(self, probability: float, seed: int) -> None:
        """Random backpressure on every channel (``probability`` 0: none)."""
        channels = [self.axil.write_if.aw_channel, self.axil.write_if.w_channel,
                    self.axil.write_if.b_channel, self.axil.read_if.ar_channel,
                    self.axil.read_if.r_channel, self.image, self.inputs, self.outputs]
        for index, channel in enumerate(channels):
            if probability > 0:
                channel.set_pause_generator(pauses(seed * 101 + index, probability))
            else:
                channel.clear_pause_generator()

    @property
    def cycles(self) -> int:
        return int(cocotb.simtime.get_sim_time("ns") // CLOCK_PERIOD_NS)

    async def write_register(self, register: int, value: int) -> AxiResp:
        answer = await self.axil.write(4 * int(register),
                                       (int(value) & 0xFFFFFFFF).to_bytes(4, "little"))
        return AxiResp(answer.resp)

    async def read_register(self, register: int) -> tuple[int, AxiResp]:
        answer = await self.axil.read(4 * int(register), 4)
        return int.from_bytes(answer.data, "little"), AxiResp(answer.resp)

    async def send_image(self, image: bytes) -> None:
        await self.image.send(AxiStreamFrame(list(image)))   # tlast on the last byte
        await self.image.wait()

    async def start_job(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        """Queue the input frame, write CTRL.START, receive the output frame (tlast)."""
        config = self.config
        codes = np.asarray(codes, dtype=np.int64)
        lanes = codes.reshape(len(codes), -1) if config.max_copies > 1 else codes.reshape(-1, 1)
        lane_bits = input_lane_bits(config)
        mask = (1 << lane_bits) - 1
        beats = [sum((int(code) & mask) << (lane * lane_bits) for lane, code in enumerate(row))
                 for row in lanes]
        # queued first: the first beat is offered when the job starts (no input stall)
        self.inputs.send_nowait(AxiStreamFrame(beats))
        resp = await self.write_register(Register.CTRL, Ctrl.START)
        if resp != AxiResp.OKAY:
            raise AssertionError(f"CTRL.START answered {resp.name}")
        receive = cocotb.start_soon(self.outputs.recv(compact=False))
        while True:
            await First(receive, Timer(WATCH_CYCLES * CLOCK_PERIOD_NS, "ns"))
            if receive.done():
                break
            status, _ = await self.read_register(Register.STATUS)
            if status & Status.ERROR:
                receive.cancel()
                return np.zeros(0, dtype=np.int64)
        frame = receive.result()
        self.frames.append(len(frame.tdata))
        if len(frame.tdata) != n_outputs:
            raise AssertionError(f"output frame of {len(frame.tdata)} beats (tlast), the job "
                                 f"has {n_outputs}")
        out_bits, width = output_lane_bits(config), config.acc_bits
        words = np.array(frame.tdata, dtype=object)
        values = np.array([[(int(word) >> (lane * out_bits)) & ((1 << width) - 1)
                            for lane in range(config.max_copies)] for word in words],
                          dtype=np.int64).reshape(-1, config.max_copies)
        values = np.where(values >> (width - 1), values - (1 << width), values)
        if config.max_copies == 1:
            return values[:, 0]
        return values[:, :lanes.shape[1]] if codes.ndim == 2 else values[:, 0]


class AxiTransport(Transport):
    """:class:`bitline.sw.host.driver.Transport` on an :class:`AxiHost` (call from a
    :func:`cocotb.task.bridge` thread). A register access not answered OKAY is an error."""

    def __init__(self, host: AxiHost):
        self.host = host

    def write_register(self, register: int, value: int) -> None:
        resp = resume(self.host.write_register)(register, value)
        if resp != AxiResp.OKAY:
            raise AssertionError(f"write of {Register(register).name} answered {resp.name}")

    def read_register(self, register: int) -> int:
        value, resp = resume(self.host.read_register)(register)
        if resp != AxiResp.OKAY:
            raise AssertionError(f"read of {Register(register).name} answered {resp.name}")
        return value

    def send_image(self, image: bytes) -> None:
        resume(self.host.send_image)(image)

    def start_job(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        return resume(self.host.start_job)(codes, n_outputs)


def _load_spec() -> dict:
    path = os.environ.get("BITLINE_RUN")
    if not path:
        raise ValueError("BITLINE_RUN is not set: it must name the AXI bench's run JSON")
    return json.loads(Path(path).read_text())


async def _check_error_responses(host: AxiHost, log) -> list[str]:
    """Bad accesses answer SLVERR / DECERR and change nothing; return the failures."""
    failures = []
    before, _ = await host.read_register(Register.LAYER)
    # a hole in the register map (the first word no register uses), not a fixed number
    hole = min(set(range(max(Register) + 1)) - set(Register))
    cases = [
        ("write to read-only ID", await host.write_register(Register.ID, 5), AxiResp.SLVERR),
        (f"write to unmapped word {hole}", await host.write_register(hole, 5), AxiResp.DECERR),
        ("read of write-only CTRL", (await host.read_register(Register.CTRL))[1],
         AxiResp.SLVERR),
        ("read of unmapped word 200", (await host.read_register(200))[1], AxiResp.DECERR),
    ]
    partial = await host.axil.write(4 * Register.LAYER, bytes([before ^ 1]))  # wstrb 0b0001
    cases.append(("partial write of LAYER", AxiResp(partial.resp), AxiResp.SLVERR))
    for what, got, want in cases:
        log.info("%s: %s", what, got.name)
        if got != want:
            failures.append(f"{what}: answered {got.name}, expected {want.name}")
    after, _ = await host.read_register(Register.LAYER)
    if after != before:
        failures.append(f"LAYER changed from {before} to {after} by refused writes")
    return failures


@cocotb.test()
async def inference(dut):
    """Digits CNN through AXI: layers == golden, counters == model, with and without pauses."""
    spec = _load_spec()
    config = AcceleratorConfig.from_dict(spec["config"], source="BITLINE_RUN config")
    host = AxiHost(dut, config)
    await host.start()
    failures = await _check_error_responses(host, dut._log)
    device = Device(AxiTransport(host))
    checker = InferenceChecker(dut._log)
    for index, run in enumerate(spec["runs"]):
        bundle = read_bundle(run["bundle"])
        x = np.load(run["input"], allow_pickle=False)
        pause = float(run.get("pause", 0.0))
        host.set_pauses(pause, int(run.get("seed", 0)))
        label = f"run {index} (pause {pause})"
        driver = HostDriver.from_bundle(bundle, device, max_vectors=spec.get("max_vectors"))

        def work():
            driver.load()
            return driver.run(x, return_all=True)

        start = host.cycles
        result = await cocotb.task.bridge(work)()
        dut._log.info("%s: %d jobs, %d simulated cycles", label, len(result.jobs),
                      host.cycles - start)
        checker.compare_layers(label, result.layers,
                               reference_layers(bundle, x, "golden", None, 0))
        for job in result.jobs:
            model = model_counters(bundle.program, job)
            cycles, stalls = job.counters["cycles"], job.counters["stall_cycles"]
            exact = {name: value for name, value in model.items()
                     if name not in ("cycles", "stall_cycles")}
            if pause == 0:
                exact.update(cycles=model["cycles"], stall_cycles=0)
            elif not model["cycles"] <= cycles <= model["cycles"] + stalls:
                checker.fail(f"{label}: job {job.name}: {cycles} cycles with {stalls} stall "
                             f"cycles, the model says {model['cycles']} without stalls")
            checker.compare_counters(label, job, exact)
            dut._log.info("%s: job %s: %s (model cycles %d)", label, job.name, job.counters,
                          model["cycles"])
    host.set_pauses(0, 0)
    dut._log.info("checked %d layer outputs and %d jobs' counters; output frames %s",
                  checker.checked_layers, checker.checked_jobs, host.frames)
    assert not failures, "; ".join(failures)
    checker.check()
