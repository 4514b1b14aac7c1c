"""The board-independent core of an FPGA prototype: UART, host-protocol bridge, accelerator.

::

    rx ──► UARTReceiver ──► UARTBridge ──csr, program, inputs──► Accelerator (emulated
    tx ◄── UARTTransmitter ◄──┘   ▲ └──────── reset ────────────►  crossbars)
                                   └──────────── outputs ─────────────┘

Everything runs in one clock domain (``sync``). A board top (:mod:`bitline.hw.boards.ulx3s`)
adds the clock (PLL), the reset and the pins; the cocotb bench runs this core directly.
"""

from amaranth import Module, Signal, Value
from amaranth.hdl import ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from bitline.hw._component import rejects_quietly
from bitline.hw.core.top import Accelerator
from bitline.hw.io.uart import UARTReceiver, UARTTransmitter, baud_divisor
from bitline.hw.io.uart_bridge import UARTBridge
from bitline.hw.spec.config import AcceleratorConfig

__all__ = ["UARTAccelerator", "DEFAULT_BAUD", "DEFAULT_TIMEOUT_S", "LEDS"]

#: Default UART bit rate: exact on the FTDI FT231X of the ULX3S (3 MHz / 3) and on a
#: 25 MHz or 100 MHz core clock (divisor 25 or 100).
DEFAULT_BAUD = 1_000_000

#: Default time without progress after which the bridge abandons a command, in seconds.
DEFAULT_TIMEOUT_S = 0.25

#: Meaning of the ``leds`` bits.
LEDS = ("heartbeat (clock running, out of reset)", "receiving", "sending",
        "bridge flags set (framing, overrun, timeout or bad opcode since the last INFO)")


class UARTAccelerator(wiring.Component):
    """An accelerator behind a UART running the protocol of :mod:`bitline.hw.io.uart_bridge`.

    Parameters
    ----------
    config:
        Accelerator configuration.
    clock_hz:
        Frequency of the ``sync`` clock in Hz (an integer: the bridge reports it).
    baud:
        UART bit rate; ``clock_hz / baud`` must round to a divisor within 2%
        (:func:`~bitline.hw.io.uart.baud_divisor`).
    memories, unit_entries:
        Passed to :class:`~bitline.hw.core.top.Accelerator` (a preloaded program, entry depth).
    rx_fifo_depth:
        Receive FIFO of the bridge, in bytes.
    timeout_cycles:
        Cycles without progress after which the bridge abandons a command (default
        :data:`DEFAULT_TIMEOUT_S` of the clock); at least 20 bit times.

    Attributes
    ----------
    rx: In(1)
        Serial input (idles high).
    tx: Out(1)
        Serial output (idles high).
    leds: Out(4)
        Status lights, see :data:`LEDS`.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    leds: Out(len(LEDS))

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, *, clock_hz: int, baud: int = DEFAULT_BAUD,
                 memories=None, unit_entries: int | None = None, rx_fifo_depth: int = 2048,
                 timeout_cycles: int | None = None):
        if not isinstance(clock_hz, int) or isinstance(clock_hz, bool) or clock_hz < 1:
            raise ValueError(f"clock_hz must be a positive integer, not {clock_hz!r}")
        self.config = config
        self.clock_hz = clock_hz
        self.baud = baud
        self.divisor = baud_divisor(clock_hz, baud)
        if timeout_cycles is None:
            timeout_cycles = max(round(clock_hz * DEFAULT_TIMEOUT_S), 20 * self.divisor)
        if timeout_cycles < 20 * self.divisor:
            raise ValueError(f"timeout_cycles must be at least 20 bit times "
                             f"({20 * self.divisor} cycles), not {timeout_cycles}")
        self.timeout_cycles = timeout_cycles
        self.rx_fifo_depth = rx_fifo_depth
        self.accelerator = Accelerator(config, "emulated", memories=memories,
                                       unit_entries=unit_entries)
        self.bridge = UARTBridge(config, clock_hz=clock_hz, rx_fifo_depth=rx_fifo_depth,
                                 timeout_cycles=timeout_cycles)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = receiver = UARTReceiver(self.divisor)
        m.submodules.uart_tx = transmitter = UARTTransmitter(self.divisor)
        m.submodules.bridge = bridge = self.bridge
        accelerator = self.accelerator
        # RESET reaches the accelerator one cycle after the bridge decodes it, from a
        # flip-flop: the reset net fans out to every flip-flop of the accelerator, and the
        # bridge's opcode decode in front of it was the 1-unit build's longest path at
        # 66.9 MHz (docs/fpga.md section 4). The ACK leaves long after.
        accel_reset = Signal()
        m.d.sync += accel_reset.eq(bridge.accel_reset)
        m.submodules.accelerator = ResetInserter({"sync": accel_reset})(accelerator)

        m.d.comb += [
            receiver.rx.eq(self.rx),
            self.tx.eq(transmitter.tx),
            bridge.rx_framing_error.eq(receiver.framing_error),
            bridge.rx_overrun.eq(receiver.overrun),
        ]
        connect(m, receiver.o, bridge.rx)
        connect(m, bridge.tx, transmitter.i)
        connect(m, bridge.csr, accelerator.csr)
        connect(m, bridge.program, accelerator.program)
        # the bridge's lanes are the accelerator's (max_copies of them, lane 0 lowest; one
        # lane is a plain word on the bridge and a one-element array on the accelerator)
        m.d.comb += [
            accelerator.inputs.valid.eq(bridge.inputs.valid),
            accelerator.inputs.payload.eq(Value.cast(bridge.inputs.payload)),
            bridge.inputs.ready.eq(accelerator.inputs.ready),
            bridge.outputs.valid.eq(accelerator.outputs.valid),
            bridge.outputs.payload.eq(Value.cast(accelerator.outputs.payload)),
            accelerator.outputs.ready.eq(bridge.outputs.ready),
        ]

        # about 1 Hz heartbeat; activity lights follow the (active-low) serial lines
        heartbeat = Signal(max(1, (self.clock_hz // 2).bit_length()))
        m.d.sync += heartbeat.eq(heartbeat + 1)
        m.d.comb += self.leds.eq(
            heartbeat[-1] | (~self.rx << 1) | (~self.tx << 2) | ((bridge.flags != 0) << 3))
        return m
