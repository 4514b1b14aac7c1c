"""The UART host protocol: a byte-command decoder in front of the accelerator.

The host sends commands, the bridge answers each one. A command is an opcode byte followed
by its fixed argument bytes (:data:`ARGUMENT_BYTES`; numbers little-endian) and, for
``PROGRAM`` and ``INPUTS``, a payload of ``count`` bytes. Every command that completes is
answered by its response data followed by :data:`ACK`; an unknown opcode is answered by
:data:`NAK` alone.

=======  ====  =====================  ==========================  ==========================
opcode   code  arguments              payload (host to board)     response (board to host)
=======  ====  =====================  ==========================  ==========================
PING     0x00  --                     --                          ACK
READ     0x01  addr u8                --                          value u32, ACK
WRITE    0x02  addr u8, value u32     --                          ACK
PROGRAM  0x03  count u32              count image bytes           ACK
INPUTS   0x04  count u32              count input codes, 1 B ea.  ACK
OUTPUTS  0x05  count u32              --                          count beats of L values,
                                                                  W B each, ACK
INFO     0x06  --                     --                          :data:`INFO_LAYOUT`, ACK
RESET    0x07  --                     --                          ACK
=======  ====  =====================  ==========================  ==========================

* ``READ`` / ``WRITE`` access the accelerator's registers (:class:`bitline.hw.core.host_interface.Register`:
  CTRL, STATUS, LAYER, N_VECTORS, the performance counters, ...).
* ``PROGRAM`` forwards bytes to the accelerator's ``program`` stream (write CTRL.LOAD
  first), ``INPUTS`` to its ``inputs`` stream, ``OUTPUTS`` takes ``count`` beats from its
  ``outputs`` stream and sends each value as ``W = ceil(acc_bits / 8)`` bytes, two's
  complement, little-endian (:func:`output_bytes`).
* Lanes: with ``L = max_copies > 1`` (layer copies, docs/hardware.md "Copies") every ``L``
  consecutive ``INPUTS`` codes form one ``inputs`` beat, lane 0 first (``count`` a multiple
  of ``L``; the bridge starts each ``INPUTS`` at lane 0), and each ``OUTPUTS`` beat is
  answered as its ``L`` values, lane 0 first. ``L = 1`` is one code / one value per beat.
* ``INFO`` reports the protocol version, ``W``, the receive FIFO depth, the core clock,
  ``L`` and the :class:`BridgeFlags` seen since the last ``INFO`` (reading clears them).
* ``RESET`` resets the accelerator (not the bridge); its memories keep their contents but it
  forgets a loaded image unless the bitstream preloaded one.

Flow control. Received bytes wait in a FIFO of ``rx_fifo_depth`` bytes until the command
being executed is done. A host never has more than ``rx_fifo_depth`` bytes of commands in
flight (sent, response not yet complete), except one command sent while nothing else is in
flight; then no byte is lost. A layer job is sent as ``INPUTS`` (one vector), ``OUTPUTS``
(its values) per vector, in that order, so the accelerator always has room for the next
vector when its ``INPUTS`` runs (see docs/fpga.md).

Recovery. A command that makes no progress (no byte received, consumed or sent, no output
taken) for ``timeout_cycles`` is abandoned without ``ACK``, and ``TIMEOUT`` is flagged; a
host that lost track waits that long, then sends ``PING``.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from bitline.hw._component import rejects_quietly
from bitline.hw.core.host_interface import CSRSignature
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.uart_protocol import (
    ACK,
    ARGUMENT_BYTES,
    INFO_BYTES,
    INFO_LAYOUT,
    NAK,
    PROTOCOL_VERSION,
    BridgeFlags,
    Opcode,
    output_bytes,
)

__all__ = ["UARTBridge"]


def _lanes(shape, lanes: int):
    """``shape`` for one lane (the version-1 ports, bit for bit), else ``lanes`` of it
    (lane ``k`` at bits ``[k * width, (k + 1) * width)``, like the accelerator's arrays)."""
    return shape if lanes == 1 else data.ArrayLayout(shape, lanes)


class UARTBridge(wiring.Component):
    """Execute host commands (see the module docstring) on an accelerator's ports.

    Parameters
    ----------
    config:
        Accelerator configuration (widths of the input codes and output values).
    clock_hz:
        Core clock, reported by ``INFO``.
    rx_fifo_depth:
        Bytes the receive FIFO holds (one EBR holds 2048).
    timeout_cycles:
        Cycles without progress after which a command is abandoned.

    Attributes
    ----------
    rx: In(stream.Signature(8))
        Bytes from the UART receiver.
    rx_framing_error, rx_overrun: In(1)
        Error pulses of the receiver.
    tx: Out(stream.Signature(8))
        Bytes to the UART transmitter.
    csr: Out(CSRSignature())
        The accelerator's register bus.
    program: Out(stream.Signature(8))
    inputs: Out(stream.Signature(max_act_bits))
    outputs: In(stream.Signature(signed(acc_bits)))
        The accelerator's streams; with ``L = max_copies > 1`` lanes ``inputs`` carries
        ``ArrayLayout(max_act_bits, L)`` and ``outputs`` ``ArrayLayout(signed(acc_bits),
        L)`` (the accelerator's lane arrays, lane 0 lowest).
    accel_reset: Out(1)
        One-cycle synchronous reset of the accelerator (``RESET``).
    flags: Out(8)
        The sticky :class:`BridgeFlags` (for a status LED).
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, *, clock_hz: int,
                 rx_fifo_depth: int = 2048, timeout_cycles: int = 1 << 20):
        for name, value, low in (("clock_hz", clock_hz, 1), ("rx_fifo_depth", rx_fifo_depth, 2),
                                 ("timeout_cycles", timeout_cycles, 2)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer of at least {low}, not {value!r}")
        if clock_hz >= 1 << 32 or rx_fifo_depth >= 1 << 32:
            raise ValueError("clock_hz and rx_fifo_depth must fit 32 bits")
        if config.max_act_bits > 8:
            # INPUTS carries one byte per input code (hw/spec/uart_protocol.py)
            raise ValueError(f"the UART protocol sends one byte per input code: a board "
                             f"needs max_act_bits <= 8, not {config.max_act_bits}")
        self.config = config
        self.clock_hz = clock_hz
        self.rx_fifo_depth = rx_fifo_depth
        self.timeout_cycles = timeout_cycles
        self.output_bytes = output_bytes(config)
        self.lanes = config.max_copies
        super().__init__({
            "rx": In(stream.Signature(8)),
            "rx_framing_error": In(1),
            "rx_overrun": In(1),
            "tx": Out(stream.Signature(8)),
            "csr": Out(CSRSignature()),
            "program": Out(stream.Signature(8)),
            "inputs": Out(stream.Signature(_lanes(config.max_act_bits, self.lanes))),
            "outputs": In(stream.Signature(_lanes(signed(config.acc_bits), self.lanes))),
            "accel_reset": Out(1),
            "flags": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        width = self.output_bytes
        m.submodules.rx_fifo = fifo = SyncFIFOBuffered(width=8, depth=self.rx_fifo_depth)
        m.d.comb += [
            fifo.w_data.eq(self.rx.payload),
            fifo.w_en.eq(self.rx.valid),
            self.rx.ready.eq(fifo.w_rdy),
        ]
        # The FIFO's read data (an EBR read) goes into a register before any logic: the
        # opcode decode, the argument shifter and the accelerator's input stream all start
        # at a flip-flop (docs/fpga.md section 4). ``take`` (a command consumes ``byte``)
        # refills the register in the same cycle, so a byte per cycle still flows.
        byte = Signal(8)
        have_byte = Signal()
        take = Signal()
        m.d.comb += fifo.r_en.eq(~have_byte | take)
        with m.If(fifo.r_rdy & fifo.r_en):
            m.d.sync += [byte.eq(fifo.r_data), have_byte.eq(1)]
        with m.Elif(take):
            m.d.sync += have_byte.eq(0)

        opcode = Signal(8)
        args = Signal(8 * max(ARGUMENT_BYTES.values()))
        arg_index = Signal(range(max(ARGUMENT_BYTES.values())))
        last_arg = Signal(range(max(ARGUMENT_BYTES.values())))
        remaining = Signal(32)
        # ``remaining == 0``, registered wherever ``remaining`` is: the streams' ``valid``
        # and the FIFO's ``r_en`` then start at a flip-flop, not at a 32-bit compare
        remaining_zero = Signal()
        reply_bits = 8 * max(INFO_BYTES + 1, 5, width * self.lanes)
        reply = Signal(reply_bits)
        reply_count = Signal(range(reply_bits // 8 + 1))
        reply_then_outputs = Signal()
        flags = Signal(8)
        watchdog = Signal(range(self.timeout_cycles + 1))
        progress = Signal()

        info = self._info(m, flags)

        def send(m, value, count, *, then_outputs=False):
            m.d.sync += [reply.eq(value), reply_count.eq(count),
                         reply_then_outputs.eq(then_outputs)]
            m.next = "REPLY"

        # a stalled command is abandoned: every state but IDLE ends with abandon()
        timed_out = Signal()
        m.d.comb += timed_out.eq(watchdog == self.timeout_cycles)

        def abandon(m):
            with m.If(timed_out):
                m.next = "IDLE"

        with m.Switch(opcode):
            for code, count in ARGUMENT_BYTES.items():
                with m.Case(code):
                    m.d.comb += last_arg.eq(max(count - 1, 0))

        bad_opcode = Signal()
        clear_flags = Signal()
        # INPUTS with lanes: the lane of the next code, the codes of lanes 0 .. L-2 (none
        # with one lane: no zero-width signals in the Verilog)
        lane = Signal(range(self.lanes)) if self.lanes > 1 else None
        codes = Signal(self.config.max_act_bits * (self.lanes - 1)) if self.lanes > 1 else None
        regs = SimpleNamespace(take=take, byte=byte, have_byte=have_byte, opcode=opcode,
                               args=args, remaining=remaining, remaining_zero=remaining_zero,
                               progress=progress, info=info, clear_flags=clear_flags,
                               lane=lane, codes=codes)

        # register-bus strobes are registered (one-cycle pulses): no combinational path
        # from the bridge's FSM into the accelerator
        m.d.sync += [self.csr.w_en.eq(0), self.csr.r_en.eq(0)]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += take.eq(have_byte)
                with m.If(have_byte):
                    m.d.sync += [opcode.eq(byte), arg_index.eq(0)]
                    with m.Switch(byte):
                        for code, count in ARGUMENT_BYTES.items():
                            with m.Case(code):
                                m.next = "ARGS" if count else "EXECUTE"
                        with m.Default():
                            m.d.comb += bad_opcode.eq(1)
                            send(m, NAK, 1)

            with m.State("ARGS"):
                m.d.comb += take.eq(have_byte)
                with m.If(have_byte):
                    m.d.comb += progress.eq(1)
                    m.d.sync += [args.word_select(arg_index, 8).eq(byte),
                                 arg_index.eq(arg_index + 1)]
                    with m.If(arg_index == last_arg):
                        m.next = "EXECUTE"
                abandon(m)

            with m.State("EXECUTE"):
                self._execute(m, regs, send)

            with m.State("READ_WAIT"):
                m.next = "READ_DATA"  # the register bus answers the cycle after r_en

            with m.State("READ_DATA"):
                send(m, self.csr.r_data | (ACK << 32), 5)

            self._stream_states(m, regs, send, abandon)

            with m.State("REPLY"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(reply[:8])]
                with m.If(self.tx.ready):
                    m.d.comb += progress.eq(1)
                    m.d.sync += [reply.eq(reply >> 8), reply_count.eq(reply_count - 1)]
                    with m.If(reply_count == 1):
                        with m.If(reply_then_outputs):
                            m.next = "OUTPUTS"
                        with m.Else():
                            m.next = "IDLE"
                abandon(m)

        with m.If(progress | fsm.ongoing("IDLE") | timed_out):
            m.d.sync += watchdog.eq(0)
        with m.Else():
            m.d.sync += watchdog.eq(watchdog + 1)

        self._update_flags(m, flags, bad_opcode=bad_opcode, timed_out=timed_out,
                           clear_flags=clear_flags)
        return m

    def _info(self, m, flags):
        """Return the INFO reply's fields (:data:`INFO_LAYOUT`); drive ``self.flags``."""
        info = Signal(INFO_LAYOUT)
        m.d.comb += [
            info.version.eq(PROTOCOL_VERSION),
            info.output_bytes.eq(self.output_bytes),
            info.flags.eq(flags),
            info.act_bits.eq(self.config.max_act_bits),
            info.rx_fifo_depth.eq(self.rx_fifo_depth),
            info.clock_hz.eq(self.clock_hz),
            info.lanes.eq(self.lanes),
            self.flags.eq(flags),
        ]
        return info

    def _execute(self, m, regs, send):
        """EXECUTE: start the command in ``regs.opcode`` with its arguments ``regs.args``."""
        with m.Switch(regs.opcode):
            with m.Case(Opcode.PING):
                send(m, ACK, 1)
            with m.Case(Opcode.READ):
                m.d.sync += [self.csr.addr.eq(regs.args[:8]), self.csr.r_en.eq(1)]
                m.next = "READ_WAIT"
            with m.Case(Opcode.WRITE):
                m.d.sync += [self.csr.addr.eq(regs.args[:8]),
                             self.csr.w_data.eq(regs.args[8:40]), self.csr.w_en.eq(1)]
                send(m, ACK, 1)
            with m.Case(Opcode.PROGRAM):
                m.d.sync += [regs.remaining.eq(regs.args[:32]),
                             regs.remaining_zero.eq(regs.args[:32] == 0)]
                m.next = "PROGRAM"
            with m.Case(Opcode.INPUTS):
                m.d.sync += [regs.remaining.eq(regs.args[:32]),
                             regs.remaining_zero.eq(regs.args[:32] == 0)]
                if self.lanes > 1:
                    m.d.sync += regs.lane.eq(0)
                m.next = "INPUTS"
            with m.Case(Opcode.OUTPUTS):
                m.d.sync += [regs.remaining.eq(regs.args[:32]),
                             regs.remaining_zero.eq(regs.args[:32] == 0)]
                m.next = "OUTPUTS"
            with m.Case(Opcode.INFO):
                # the reply holds this cycle's flags; clearing them keeps new events
                m.d.comb += regs.clear_flags.eq(1)
                send(m, regs.info.as_value() | (ACK << INFO_LAYOUT.size), INFO_BYTES + 1)
            with m.Case(Opcode.RESET):
                m.d.comb += self.accel_reset.eq(1)
                send(m, ACK, 1)

    def _stream_states(self, m, regs, send, abandon):
        """The PROGRAM / INPUTS (FIFO to a stream) and OUTPUTS (a stream to the host) states."""
        with m.State("PROGRAM"):
            self._forward(m, regs, send, abandon, self.program, Const(1), regs.byte)

        with m.State("INPUTS"):
            if self.lanes == 1:
                self._forward(m, regs, send, abandon, self.inputs, Const(1),
                              regs.byte[:self.config.max_act_bits])
            else:
                # codes of lanes 0 .. L-2 wait in ``codes``; the lane L-1 code completes
                # the beat straight from the FIFO (no extra cycle per beat)
                width = self.config.max_act_bits
                last = regs.lane == self.lanes - 1
                self._forward(m, regs, send, abandon, self.inputs, last,
                              Cat(regs.codes, regs.byte[:width]))
                with m.If(~regs.remaining_zero & regs.have_byte):
                    with m.If(~last):
                        m.d.sync += [regs.codes.word_select(regs.lane, width).eq(regs.byte),
                                     regs.lane.eq(regs.lane + 1)]
                    with m.Elif(self.inputs.ready):
                        m.d.sync += regs.lane.eq(0)

        with m.State("OUTPUTS"):
            with m.If(regs.remaining_zero):
                send(m, ACK, 1)
            with m.Else():
                m.d.comb += self.outputs.ready.eq(1)
                with m.If(self.outputs.valid):
                    m.d.comb += regs.progress.eq(1)
                    m.d.sync += [regs.remaining.eq(regs.remaining - 1),
                                 regs.remaining_zero.eq(regs.remaining == 1)]
                    # each signed value sign-extends to its W bytes; lane 0 goes out first
                    send(m, self._output_beat(m), self.output_bytes * self.lanes,
                         then_outputs=True)
            abandon(m)

    def _forward(self, m, regs, send, abandon, target, last, payload):
        """Move ``remaining`` FIFO bytes to ``target``: a byte is taken when ``target`` takes
        a beat (``last``: the byte completes a beat, ``payload``) or, if not ``last``, at
        once (the caller stores it); ACK when none remain."""
        with m.If(regs.remaining_zero):
            send(m, ACK, 1)
        with m.Else():
            m.d.comb += [
                target.valid.eq(regs.have_byte & last),
                target.payload.eq(payload),
                regs.take.eq(regs.have_byte & Mux(last, target.ready, 1)),
            ]
            with m.If(regs.have_byte & (~last | target.ready)):
                m.d.comb += regs.progress.eq(1)
                m.d.sync += [regs.remaining.eq(regs.remaining - 1),
                             regs.remaining_zero.eq(regs.remaining == 1)]
        abandon(m)

    def _output_beat(self, m):
        """Return the reply bits of one ``outputs`` beat: each lane sign-extended to ``W``
        bytes, lane 0 lowest."""
        if self.lanes == 1:
            return self.outputs.payload
        extended = []
        for lane in range(self.lanes):
            value = Signal(signed(8 * self.output_bytes), name=f"out_lane{lane}")
            m.d.comb += value.eq(self.outputs.payload[lane])
            extended.append(value)
        return Cat(*extended)

    def _update_flags(self, m, flags, *, bad_opcode, timed_out, clear_flags):
        """Collect this cycle's events into the sticky ``flags`` (INFO's read clears them)."""
        events = Signal(8)
        m.d.comb += events.eq(self.rx_framing_error * BridgeFlags.FRAMING
                              | self.rx_overrun * BridgeFlags.OVERRUN
                              | bad_opcode * BridgeFlags.BAD_OPCODE
                              | timed_out * BridgeFlags.TIMEOUT)
        with m.If(clear_flags):
            m.d.sync += flags.eq(events)
        with m.Else():
            m.d.sync += flags.eq(flags | events)
