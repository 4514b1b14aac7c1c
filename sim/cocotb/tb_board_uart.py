"""cocotb bench: the FPGA board core driven through its UART, running a network end to end.

The device under test is :class:`~bitline.hw.boards.core.UARTAccelerator` -- the board top
without its PLL and pins: UART receiver and transmitter, the protocol bridge and the
accelerator with emulated crossbars. The host is the unchanged host code a real board uses
(:class:`~bitline.sw.host.uart.UARTBridgeClient`, :class:`~bitline.sw.host.uart.UARTTransport`,
the driver's :class:`~bitline.sw.host.driver.HostDriver`), run in a cocotb *bridge* thread; only
its serial port is simulated, so the protocol's framing (and, with layer copies, the lane
packing) exists once, in the host code. Pieces, after cocotb's matrix-multiplier example:

* driver and monitor -- ``cocotbext.uart.UartSource`` turns the host's bytes into 8N1 frames
  on ``rx``, ``UartSink`` decodes the frames on ``tx`` (cocotbext-uart 0.1.4 runs on cocotb
  2.1 unchanged: ``Timer(t, 'ns')``, ``FallingEdge``, ``cocotb.queue`` and the deprecated but
  working ``setimmediatevalue``; its per-byte INFO logs are turned down to WARNING). The
  sink does not check stop bits: a frame the board's transmitter got wrong shows up as an
  answer without its ACK (the host raises), and the board's own receive errors are checked
  through ``INFO.flags`` at the end of the session;
* :class:`SimulatedSerial` -- the pyserial-like link (``write`` / ``read`` with a timeout in
  simulated time) between the two and the host thread;
* model -- the integer golden model (:func:`bitline.sim.golden.run_golden`) on the same
  images, and the performance model (:func:`bitline.sw.perf.analyze_layer`, with the
  layer's copies) per job, or for a bundle compiled ``--network`` (one whole-network run
  per image: only the image's codes cross the UART, then the logits come back) the
  whole-network model (:func:`bitline.sw.perf.network_report`) per run and per node;
* checker -- the outputs of every image are bit-exact; the counters read back over the
  protocol match the performance model (OU reads, ADC conversions and reduction operands
  exactly; cycles up to the stall cycles the slow UART host causes: a stall cycle while the
  accelerator still computes is not an extra cycle, so the bound is not an equality). In a
  whole-network run the UART host can only slow the input phase and the last node, so
  every other node's counters equal the model exactly; the log gives images/s at the board
  clock (``BITLINE_BOARD_MHZ``, default 25) from the counters, with and without the
  cycles spent waiting for the UART.

Environment: ``BITLINE_BUNDLE`` (the bundle directory; the config comes from its manifest),
``BITLINE_INPUTS`` (a ``.npy`` of float inputs, one sample per row of the first axis; when
unset, the digits test images), ``BITLINE_IMAGES`` (how many samples, default 2),
``BITLINE_UART_DIVISOR`` (clock cycles
per UART bit the design was built with, default 4), ``BITLINE_CLOCK_NS`` (clock period,
default 10).
"""

from __future__ import annotations

import logging
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, Timer
from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

from bitline.hw.spec.uart_protocol import BridgeFlags
from bitline.sim.golden import run_golden
from bitline.sw.bundle import read_bundle
from bitline.sw.datasets import load_dataset
from bitline.sw.host.driver import Device, HostDriver
from bitline.sw.host.uart import UARTBridgeClient, UARTTransport
from bitline.sw.perf import analyze_layer, network_report


class SimulatedSerial:
    """A pyserial-like port on the simulated UART, for host code in a bridge thread.

    Like a serial port's driver, ``write`` returns once at most ``write_buffer`` bytes are
    still waiting to be sent; ``read(n)`` returns fewer than ``n`` bytes if they do not arrive
    within ``timeout_ns`` of simulated time (pyserial's timeout semantics).
    """

    def __init__(self, source: UartSource, sink: UartSink, *, bit_ns: int, timeout_ns: int,
                 write_buffer: int = 4096):
        self.source = source
        self.sink = sink
        self.bit_ns = bit_ns
        self.timeout_ns = timeout_ns
        self.write_buffer = write_buffer
        self.sent = 0
        self.read = resume(self._read)
        self.write = resume(self._write)

    async def _write(self, data: bytes) -> int:
        self.source.write_nowait(bytes(data))
        self.sent += len(data)
        while self.source.count() > self.write_buffer:
            waiting = self.source.count() - self.write_buffer
            await Timer(10 * self.bit_ns * waiting, unit="ns")
        return len(data)

    async def _read(self, size: int) -> bytes:
        data = bytearray()
        deadline = get_sim_time(unit="ns") + self.timeout_ns
        while len(data) < size:
            if not self.sink.empty():
                data += self.sink.read_nowait(min(size - len(data), self.sink.count()))
                continue
            remaining = int(deadline - get_sim_time(unit="ns"))
            if remaining <= 0:
                break
            await self.sink.wait(timeout=remaining, timeout_unit="ns")
        return bytes(data)


def host_session(link, bundle, images):
    """The host (blocking code, as on a real board): connect, load the bundle, run; then
    read ``INFO`` again (the bridge's flags since the first: receive errors, timeouts)."""
    client = UARTBridgeClient(link)
    info = client.connect()
    driver = HostDriver.from_bundle(bundle, Device(UARTTransport(client, bundle.program.config)))
    driver.load()
    result = driver.run(images)
    return info, result, client.info().flags


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
    baud = round(1e9 / bit_ns)
    assert round(1e9 / baud) == bit_ns, f"{bit_ns} ns per bit is not a whole baud rate"
    source = UartSource(dut.rx, baud=baud)
    sink = UartSink(dut.tx, baud=baud)
    for side in (source, sink):
        side.log.setLevel(logging.WARNING)     # they log every byte at INFO
    # the longest legitimate wait for an answer: a full write buffer and a receive window,
    # plus a whole-network run (the OUTPUTS answer waits for the last node: 347,180 cycles
    # for the digits ResNet on seven units, more than the buffers' 327,680 at 4 clocks/bit)
    run_cycles = network_report(bundle.program).cycles if bundle.program.nodes else 0
    link = SimulatedSerial(source, sink, bit_ns=bit_ns,
                           timeout_ns=(4096 + 4096) * 10 * bit_ns + run_cycles * period_ns)

    if os.environ.get("BITLINE_INPUTS"):
        images, labels = np.load(os.environ["BITLINE_INPUTS"]), None
    else:
        images, labels = load_dataset("digits", "test")
    images = images[:n_images]
    n_images = len(images)
    expected = run_golden(bundle.qmodel, images)                      # model

    start_ns = get_sim_time(unit="ns")
    info, result, flags = await bridge(host_session)(link, bundle, images)   # the host
    elapsed_ns = get_sim_time(unit="ns") - start_ns
    dut._log.info(f"bridge: protocol {info.version}, {info.lanes} lane(s), "
                  f"{info.output_bytes}-byte outputs, {info.rx_fifo_depth}-byte receive "
                  f"FIFO; {link.sent} bytes to the board, {sink.count()} left unread; "
                  f"{elapsed_ns / 1e3:.0f} us simulated ({elapsed_ns / period_ns:.0f} "
                  f"cycles), " + (f"{len(result.runs)} whole-network runs" if result.runs
                                  else f"{len(result.jobs)} jobs"))

    # checker: the board saw no framing error, overrun, timeout or bad opcode
    assert flags == BridgeFlags(0), f"bridge flags {flags!r} during the session"
    assert sink.empty(), f"{sink.count()} unexpected bytes from the board"
    # checker: outputs bit-exact, image by image
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
    if result.runs:
        check_network_runs(dut, bundle.program, result.runs,
                           float(os.environ.get("BITLINE_BOARD_MHZ", "25")))


def check_network_runs(dut, program, runs, board_mhz: float) -> None:
    """Whole-network runs against :func:`bitline.sw.perf.network_report`; log images/s."""
    model = network_report(program)
    want = model.run_counters()
    for run in runs:
        counters = run.counters
        for name in ("ou_reads", "adc_conversions", "reduction_operands"):
            assert counters[name] == want[name], (run.name, name, counters[name], want[name])
        assert model.cycles <= counters["cycles"] <= model.cycles + counters["stall_cycles"], (
            run.name, counters, model.cycles)
        # the UART can only hold the input phase and the last node's outputs
        expected_nodes = [node.counters() for node in model.nodes]
        assert run.nodes[:-1] == expected_nodes[:-1], run.name
        last, modelled = run.nodes[-1], expected_nodes[-1]
        assert (modelled["node_cycles"] <= last["node_cycles"]
                <= modelled["node_cycles"] + last["node_output_stall"]), (run.name, last)
        dut._log.info(
            f"{run.name}: {counters['cycles']} cycles ({counters['stall_cycles']} waiting "
            f"for the UART; model {model.cycles} without waits): at {board_mhz:g} MHz "
            f"{board_mhz * 1e6 / counters['cycles']:.0f} images/s over this UART, "
            f"{board_mhz * 1e6 / (counters['cycles'] - counters['stall_cycles']):.0f} "
            f"images/s without the UART waits")
