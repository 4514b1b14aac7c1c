"""cocotb bench: the FPGA board core driven through its UART, running a network end to end.

The device under test is :class:`~bitline.hw.boards.core.UARTAccelerator` -- the board top
without its PLL and pins: UART receiver and transmitter, the protocol bridge and the
accelerator with emulated crossbars. The host is the unchanged host code a real board uses
(:class:`~bitline.sw.host.uart.UARTBridgeClient`, :class:`~bitline.sw.host.uart.UARTTransport`,
the driver's :class:`~bitline.sw.host.driver.HostDriver`), run in a cocotb *bridge* thread; only
its serial port is simulated. Pieces, after cocotb's matrix-multiplier example:

* :class:`UARTSource` (driver) -- turns the host's bytes into 8N1 frames on ``rx``;
* :class:`UARTSink` (monitor) -- decodes the frames on ``tx`` into bytes (and checks their
  stop bits);
* :class:`SimulatedSerial` -- the pyserial-like link (``write`` / ``read`` with a timeout in
  simulated time) between the two and the host thread;
* model -- the integer golden model (:func:`bitline.sim.golden.run_golden`) on the same
  images, and the performance model (:func:`bitline.sw.perf.analyze_layer`) per job;
* checker -- the outputs of every image are bit-exact; the counters read back over the
  protocol match the performance model (OU reads, ADC conversions and reduction operands
  exactly; cycles up to the stall cycles the slow UART host causes).

Environment: ``BITLINE_BUNDLE`` (the bundle directory; the config comes from its manifest),
``BITLINE_INPUTS`` (a ``.npy`` of float inputs, one sample per row of the first axis; when
unset, the digits test images), ``BITLINE_IMAGES`` (how many samples, default 2),
``BITLINE_UART_DIVISOR`` (clock cycles
per UART bit the design was built with, default 4), ``BITLINE_CLOCK_NS`` (clock period,
default 10).
"""

from __future__ import annotations

import os
from collections import deque

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, Timer
from cocotb.utils import get_sim_time

from bitline.sim.golden import run_golden
from bitline.sw.bundle import read_bundle
from bitline.sw.datasets import load_dataset
from bitline.sw.host.driver import Device, HostDriver
from bitline.sw.host.uart import UARTBridgeClient, UARTTransport
from bitline.sw.perf import analyze_layer


class UARTSource:
    """Drive 8N1 frames of queued bytes onto ``line`` (LSB first), back to back."""

    def __init__(self, line, bit_ns: int):
        self.line = line
        self.bit_ns = bit_ns
        self.queue: deque[int] = deque()
        self.sent = 0
        self._wake = Event()
        line.value = 1
        cocotb.start_soon(self._run())

    def write(self, data: bytes) -> None:
        self.queue.extend(data)
        self._wake.set()

    async def _run(self):
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            byte = self.queue.popleft()
            for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                self.line.value = bit
                await Timer(self.bit_ns, unit="ns")
            self.sent += 1


class UARTSink:
    """Decode 8N1 frames on ``line`` into :attr:`buffer`, sampling each bit in its middle."""

    def __init__(self, line, bit_ns: int):
        self.line = line
        self.bit_ns = bit_ns
        self.buffer = bytearray()
        self.framing_errors = 0
        self.arrived = Event()
        cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await FallingEdge(self.line)
            await Timer(self.bit_ns // 2, unit="ns")
            if int(self.line.value) != 0:
                continue  # a glitch, not a start bit
            byte = 0
            for k in range(8):
                await Timer(self.bit_ns, unit="ns")
                byte |= int(self.line.value) << k
            await Timer(self.bit_ns, unit="ns")
            if int(self.line.value) != 1:
                self.framing_errors += 1
                continue
            self.buffer.append(byte)
            self.arrived.set()


class SimulatedSerial:
    """A pyserial-like port on the simulated UART, for host code in a bridge thread.

    Like a serial port's driver, ``write`` returns once at most ``write_buffer`` bytes are
    still waiting to be sent; ``read(n)`` returns fewer than ``n`` bytes if they do not arrive
    within ``timeout_ns`` of simulated time (pyserial's timeout semantics).
    """

    def __init__(self, source: UARTSource, sink: UARTSink, *, timeout_ns: int,
                 write_buffer: int = 4096):
        self.source = source
        self.sink = sink
        self.timeout_ns = timeout_ns
        self.write_buffer = write_buffer
        self.read = resume(self._read)
        self.write = resume(self._write)

    async def _write(self, data: bytes) -> int:
        self.source.write(bytes(data))
        queue = self.source.queue
        while len(queue) > self.write_buffer:
            await Timer(10 * self.source.bit_ns * (len(queue) - self.write_buffer), unit="ns")
        return len(data)

    async def _read(self, size: int) -> bytes:
        buffer = self.sink.buffer
        deadline = get_sim_time(unit="ns") + self.timeout_ns
        while len(buffer) < size:
            remaining = deadline - get_sim_time(unit="ns")
            if remaining <= 0:
                break
            self.sink.arrived.clear()
            await First(self.sink.arrived.wait(), Timer(remaining, unit="ns"))
        data = bytes(buffer[:size])
        del buffer[:size]
        return data


def host_session(link, bundle, images):
    """The host (blocking code, as on a real board): connect, load the bundle, run."""
    client = UARTBridgeClient(link)
    info = client.connect()
    driver = HostDriver.from_bundle(bundle, Device(UARTTransport(client, bundle.program.config)))
    driver.load()
    return info, driver.run(images)


@cocotb.test()
async def inference_over_uart(dut):
    """Program the bundle and run its samples through the UART protocol; check every output."""
    bundle = read_bundle(os.environ["BITLINE_BUNDLE"])
    n_images = int(os.environ.get("BITLINE_IMAGES", "2"))
    divisor = int(os.environ.get("BITLINE_UART_DIVISOR", "4"))
    period_ns = int(os.environ.get("BITLINE_CLOCK_NS", "10"))
    config = bundle.program.config

    cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)

    bit_ns = divisor * period_ns
    source = UARTSource(dut.rx, bit_ns)
    sink = UARTSink(dut.tx, bit_ns)
    # the longest legitimate wait for an answer: a full write buffer and a receive window
    link = SimulatedSerial(source, sink, timeout_ns=(4096 + 4096) * 10 * bit_ns)

    if os.environ.get("BITLINE_INPUTS"):
        images, labels = np.load(os.environ["BITLINE_INPUTS"]), None
    else:
        images, labels = load_dataset("digits", "test")
    images = images[:n_images]
    n_images = len(images)
    expected = run_golden(bundle.qmodel, images)                      # model

    start_ns = get_sim_time(unit="ns")
    info, result = await bridge(host_session)(link, bundle, images)   # the host
    elapsed_ns = get_sim_time(unit="ns") - start_ns
    dut._log.info(f"bridge: protocol {info.version}, {info.output_bytes}-byte outputs, "
                  f"{info.rx_fifo_depth}-byte receive FIFO; {source.sent} bytes to the "
                  f"board, {len(sink.buffer)} left unread; {elapsed_ns / 1e3:.0f} us "
                  f"simulated ({elapsed_ns / period_ns:.0f} cycles), {len(result.jobs)} jobs")

    # checker: outputs bit-exact, image by image
    assert sink.framing_errors == 0, f"{sink.framing_errors} frames with a low stop bit"
    for index in range(n_images):
        assert np.array_equal(result.output_int[index], expected.output_int[index]), (
            f"image {index}: board {result.output_int[index].tolist()} != golden "
            f"{expected.output_int[index].tolist()}")
    predicted = np.argmax(result.output_int.reshape(n_images, -1), axis=1)
    if labels is not None:
        dut._log.info(f"predicted {predicted.tolist()}, labels {labels[:n_images].tolist()}")

    # checker: counters read back over the protocol against the performance model
    for job in result.jobs:
        layer = bundle.program.layers[job.layer]
        model = analyze_layer(layer, config, job.n_vectors)
        counters = job.counters
        assert counters["ou_reads"] == model.ou_reads, job
        assert counters["adc_conversions"] == model.adc_conversions, job
        assert counters["reduction_operands"] == model.reduction_transfers, job
        assert model.cycles <= counters["cycles"] <= model.cycles + counters["stall_cycles"], (
            job, model.cycles)
