"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit: "8N1").

Both are clocked by the ``sync`` domain and time bits with a *divisor*: one bit lasts
``divisor`` clock cycles, ``divisor = round(clock_hz / baud)`` (:func:`baud_divisor`).
Bits go least significant first, framed by a start bit (0) and a stop bit (1); the line idles
at 1.

The receiver synchronizes ``rx`` with two flip-flops, waits ``divisor // 2`` cycles after the
falling edge of a start bit to reach its middle (a start bit that is high there was a
glitch), then samples every ``divisor`` cycles: 8 data bits and the stop bit. A byte whose
stop bit is 0 is dropped and counts as a framing error. The byte is offered on a stream; a
byte that arrives while the previous one has not been taken is dropped (overrun): put a FIFO
behind the receiver if the consumer can stall.
"""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from bitline.hw._component import rejects_quietly

__all__ = ["baud_divisor", "MIN_DIVISOR", "MAX_BAUD_ERROR", "UARTReceiver", "UARTTransmitter"]

#: Smallest divisor the receiver handles: it samples a bit ``divisor // 2`` cycles after
#: its (two-flip-flop synchronized) edge, which needs a few cycles of margin on each side.
MIN_DIVISOR = 4

#: Largest relative baud error :func:`baud_divisor` accepts. An 8N1 frame is sampled ten
#: times from one start edge, so the sender's and receiver's bit clocks may differ by at
#: most about half a bit over ten bits (5%) between both ends; 2% leaves room for the
#: other end's own error.
MAX_BAUD_ERROR = 0.02


def baud_divisor(clock_hz: float, baud: int) -> int:
    """Return the clock cycles per bit, ``round(clock_hz / baud)``.

    Parameters
    ----------
    clock_hz:
        Frequency of the clock the UART runs on, in Hz.
    baud:
        Bit rate in bits per second.

    Raises
    ------
    ValueError
        If ``baud`` or ``clock_hz`` is not positive, the divisor is below
        :data:`MIN_DIVISOR`, or the achieved rate ``clock_hz / divisor`` is more than
        :data:`MAX_BAUD_ERROR` away from ``baud``.
    """
    if not baud > 0:
        raise ValueError(f"baud must be positive, not {baud!r}")
    if not clock_hz > 0:
        raise ValueError(f"clock_hz must be positive, not {clock_hz!r}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clock_hz / 1e6:g} MHz clock: "
                         f"{clock_hz / baud:.2f} cycles per bit, the UART needs at least "
                         f"{MIN_DIVISOR}")
    error = abs(clock_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud {baud} cannot be made from a {clock_hz / 1e6:g} MHz clock: "
                         f"divisor {divisor} gives {clock_hz / divisor:.0f} baud, "
                         f"{error:.1%} off (at most {MAX_BAUD_ERROR:.0%})")
    return divisor


def _check_divisor(divisor: int) -> None:
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer of at least {MIN_DIVISOR}, "
                         f"not {divisor!r}")


class UARTReceiver(wiring.Component):
    """8N1 UART receiver.

    Parameters
    ----------
    divisor:
        Clock cycles per bit (at least :data:`MIN_DIVISOR`).

    Attributes
    ----------
    rx: In(1)
        The serial line (asynchronous; idles high).
    o: Out(stream.Signature(8))
        Received bytes. ``valid`` stays high until ``ready``.
    framing_error: Out(1)
        One-cycle pulse: a byte's stop bit was 0 (the byte is dropped).
    overrun: Out(1)
        One-cycle pulse: a byte arrived while ``o`` still held the previous one (dropped).
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    framing_error: Out(1)
    overrun: Out(1)

    @rejects_quietly
    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self.divisor))
        bit_index = Signal(range(9))
        shift = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # the falling edge of a start bit: go to its middle
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"  # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(self.divisor - 1), bit_index.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [
                        timer.eq(self.divisor - 1),
                        shift.eq((shift >> 1) | (rx << 7)),
                        bit_index.eq(bit_index + 1),
                    ]
                    with m.If(bit_index == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    # middle of the stop bit: the rest of it overlaps the wait for the next
                    # start bit, so a sender up to half a bit faster still lines up
                    with m.If(~rx):
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
                    with m.Else():
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):
                # a stop bit was low: wait for the line to return high before the next frame
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 UART transmitter.

    Parameters
    ----------
    divisor:
        Clock cycles per bit (at least :data:`MIN_DIVISOR`).

    Attributes
    ----------
    i: In(stream.Signature(8))
        Bytes to send; ``ready`` is high while the transmitter is idle.
    tx: Out(1)
        The serial line (idles high).
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    @rejects_quietly
    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        # stop bit, 8 data bits, start bit: shifted out LSB first
        frame = Signal(10, init=0x3FF)
        bits_left = Signal(range(11))

        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq(bits_left == 0)]
        with m.If(bits_left == 0):
            with m.If(self.i.valid):
                m.d.sync += [
                    frame.eq((1 << 9) | (self.i.payload << 1)),
                    bits_left.eq(10),
                    timer.eq(self.divisor - 1),
                ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [
                    frame.eq((frame >> 1) | (1 << 9)),
                    bits_left.eq(bits_left - 1),
                    timer.eq(self.divisor - 1),
                ]
        return m
