"""Host side of the UART protocol (:mod:`bitline.hw.io.uart_bridge`): a board as a transport.

Two layers:

* :class:`UARTBridgeClient` speaks the command set over any *link* with pyserial's
  ``write(bytes)`` / ``read(n)`` (``read`` returns fewer bytes when its timeout expires): a
  ``serial.Serial``, or the cocotb bench's simulated UART. Commands are pipelined: the client
  keeps sending while the bytes of commands whose answer is not complete fit the bridge's
  receive FIFO (``INFO.rx_fifo_depth``), and reads the answers in order, so the link's
  round-trip latency is paid once per batch of commands rather than once per command.
* :class:`UARTTransport` implements the host driver's :class:`~bitline.sw.host.driver.Transport`
  (register read and write, ``image.bin``, starting a job and exchanging its vectors) on a
  client, so
  :class:`~bitline.sw.host.driver.Device` and :class:`~bitline.sw.host.driver.HostDriver` run a whole
  network on a board unchanged.

A job's exchange is sent as ``INPUTS`` (one vector's codes), ``OUTPUTS`` (its values) per
vector, in that order: when the bridge starts a vector's ``INPUTS``, the previous vector's
values are all out, so the accelerator has room for the new vector and takes it at once --
the order that never deadlocks (docs/fpga.md).

Layer copies: a board with ``L = max_copies`` lanes (``INFO.lanes``) takes ``L`` codes per
input beat and answers ``L`` values per output beat (:mod:`bitline.hw.spec.uart_protocol`).
A "vector" of the exchange is then one beat-vector of the job's ``N_SHARE``: ``K`` beats
carrying, in lane ``k``, copy ``k``'s vector (the driver's
:func:`~bitline.sw.host.driver.lane_beats`); the transport pads the job's lanes to ``L``
with zero codes and hands back the job's lanes of every output beat.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.registers import Ctrl, Register, Status
from bitline.hw.spec.uart_protocol import (
    ACK,
    ARGUMENT_BYTES,
    INFO_BYTES,
    INFO_LAYOUT,
    NAK,
    PROTOCOL_VERSION,
    BridgeFlags,
    Opcode,
    input_beat_bytes,
    output_beat_bytes,
    output_bytes,
)
from bitline.sw.host.driver import DeviceError, Transport

__all__ = ["BridgeInfo", "UARTBridgeClient", "UARTTransport", "open_board",
           "encode_command", "decode_info", "decode_outputs"]


@dataclass(frozen=True)
class BridgeInfo:
    """The bridge's ``INFO`` answer."""

    version: int
    output_bytes: int
    flags: BridgeFlags
    act_bits: int
    rx_fifo_depth: int
    clock_hz: int
    lanes: int


def encode_command(opcode: Opcode, *arguments: int, payload: bytes = b"") -> bytes:
    """Return the bytes of one command: opcode, little-endian arguments, payload.

    ``READ`` takes ``addr``; ``WRITE`` ``addr, value``; ``PROGRAM`` / ``INPUTS`` take their
    payload (the count is its length); ``OUTPUTS`` takes ``count``.

    Raises
    ------
    ValueError
        For a wrong number of arguments, an argument that does not fit, or a payload on a
        command without one.
    """
    opcode = Opcode(opcode)
    if opcode in (Opcode.PROGRAM, Opcode.INPUTS):
        arguments = (len(payload),)
    elif payload:
        raise ValueError(f"{opcode.name} takes no payload")
    widths = {Opcode.READ: (1,), Opcode.WRITE: (1, 4)}.get(
        opcode, (4,) if ARGUMENT_BYTES[opcode] else ())
    if len(arguments) != len(widths):
        raise ValueError(f"{opcode.name} takes {len(widths)} argument(s), not {len(arguments)}")
    encoded = bytearray([opcode])
    for value, width in zip(arguments, widths):
        if not 0 <= int(value) < 1 << (8 * width):
            raise ValueError(f"{opcode.name}: argument {value} does not fit {width} byte(s)")
        encoded += int(value).to_bytes(width, "little")
    return bytes(encoded) + bytes(payload)


def decode_info(data: bytes) -> BridgeInfo:
    """Decode an ``INFO`` answer (without its ACK) with :data:`INFO_LAYOUT`."""
    value = int.from_bytes(data[:INFO_BYTES], "little")
    fields = {name: (value >> field.offset) & ((1 << field.width) - 1)
              for name, field in INFO_LAYOUT}
    return BridgeInfo(version=fields["version"], output_bytes=fields["output_bytes"],
                      flags=BridgeFlags(fields["flags"]), act_bits=fields["act_bits"],
                      rx_fifo_depth=fields["rx_fifo_depth"], clock_hz=fields["clock_hz"],
                      lanes=fields["lanes"])


def decode_outputs(data: bytes, width: int) -> np.ndarray:
    """Decode ``OUTPUTS`` data: ``width``-byte little-endian two's complement values."""
    if len(data) % width:
        raise ValueError(f"{len(data)} bytes are not a whole number of {width}-byte values")
    return np.array([int.from_bytes(data[start:start + width], "little", signed=True)
                     for start in range(0, len(data), width)], dtype=np.int64)


@dataclass
class _Pending:
    opcode: Opcode
    sent: int           # bytes of the command
    answer: int         # bytes of its answer, ACK included
    results: list       # receives the answer without its ACK


class UARTBridgeClient:
    """The bridge's command set over a serial link, pipelined.

    Parameters
    ----------
    link:
        Object with ``write(bytes)`` and ``read(n) -> bytes`` (pyserial semantics: fewer
        bytes than asked means the read timed out).
    window:
        Bytes of unanswered commands kept in flight (default: the bridge's receive FIFO,
        from ``INFO``; 16 until ``INFO`` was read).
    """

    def __init__(self, link, *, window: int | None = None):
        self.link = link
        self._window = window
        self._pending: deque[_Pending] = deque()
        self._in_flight = 0
        self.bridge: BridgeInfo | None = None

    # ------------------------------------------------------------------ pipelining
    def _window_bytes(self) -> int:
        if self._window is not None:
            return self._window
        return self.bridge.rx_fifo_depth if self.bridge else 16

    def _receive_one(self) -> None:
        pending = self._pending.popleft()
        data = bytearray()
        while len(data) < pending.answer:
            chunk = self.link.read(pending.answer - len(data))
            if not chunk:
                if data[:1] == bytes([NAK]):
                    raise DeviceError(f"the board did not understand {pending.opcode.name} "
                                      f"(NAK)")
                raise DeviceError(
                    f"no answer to {pending.opcode.name}: got {len(data)} of "
                    f"{pending.answer} bytes (is the board running the bitline bitstream, "
                    f"on this port, at this baud rate?)")
            data += chunk
        if data[-1] != ACK:
            raise DeviceError(f"{pending.opcode.name} was answered with {bytes(data).hex()}, "
                              f"which does not end with ACK ({ACK:02x}): is the board running "
                              f"the bitline bitstream, at this baud rate?")
        self._in_flight -= pending.sent
        pending.results.append(bytes(data[:-1]))

    def send(self, command: bytes, answer: int = 0) -> list:
        """Queue ``command`` whose answer has ``answer`` bytes before the ACK.

        Returns a list that receives the answer (without ACK) once it has been read
        (:meth:`flush`, or a later :meth:`send` that needs room in the window).
        """
        window = self._window_bytes()
        while self._pending and self._in_flight + len(command) > window:
            self._receive_one()
        results: list = []
        self.link.write(command)
        self._pending.append(_Pending(Opcode(command[0]), len(command), answer + 1, results))
        self._in_flight += len(command)
        return results

    def flush(self) -> None:
        """Read every outstanding answer."""
        while self._pending:
            self._receive_one()

    def call(self, command: bytes, answer: int = 0) -> bytes:
        """Send ``command`` and return its answer (without ACK) once everything is read."""
        results = self.send(command, answer)
        self.flush()
        return results[0]

    # ------------------------------------------------------------------ commands
    def ping(self) -> None:
        """Send ``PING`` and wait for its ACK."""
        self.call(encode_command(Opcode.PING))

    def info(self) -> BridgeInfo:
        """Return the bridge's ``INFO`` (reading it clears the bridge's flags)."""
        self.bridge = decode_info(self.call(encode_command(Opcode.INFO), INFO_BYTES))
        return self.bridge

    def reset_accelerator(self) -> None:
        """Reset the accelerator (an image must be loaded again, unless preloaded)."""
        self.call(encode_command(Opcode.RESET))

    def read(self, register: int) -> int:
        """Return the 32-bit value of accelerator register ``register``."""
        return int.from_bytes(self.call(encode_command(Opcode.READ, int(register)), 4),
                              "little")

    def write(self, register: int, value: int) -> None:
        """Write ``value`` to accelerator register ``register``."""
        self.call(encode_command(Opcode.WRITE, int(register), int(value) & 0xFFFFFFFF))

    def connect(self, *, settle_s: float = 0.3) -> BridgeInfo:
        """Synchronize with the bridge (``PING``) and read ``INFO``.

        A bridge left inside a command by an earlier host abandons it after its timeout
        (0.25 s by default): after a failed ``PING`` the client waits ``settle_s``, drops what
        arrived and tries once more.

        Raises
        ------
        DeviceError
            If the board does not answer, or speaks another protocol version.
        """
        self._pending.clear()
        self._in_flight = 0
        try:
            self.ping()
        except DeviceError:
            self._pending.clear()
            self._in_flight = 0
            time.sleep(settle_s)
            reset = getattr(self.link, "reset_input_buffer", None)
            if reset:
                reset()
            self.ping()
        try:
            info = self.info()
        except DeviceError as error:
            # INFO grew with the protocol (version 2 added the lanes byte)
            raise DeviceError(f"{error}; a bitstream older than UART protocol version "
                              f"{PROTOCOL_VERSION} answers INFO with fewer bytes: rebuild it "
                              f"(bitline fpga)") from None
        if info.version != PROTOCOL_VERSION:
            raise DeviceError(f"the board speaks UART protocol version {info.version}, this "
                              f"host version {PROTOCOL_VERSION}")
        return info


class UARTTransport(Transport):
    """The driver's :class:`~bitline.sw.host.driver.Transport` over the UART bridge.

    On pipeline hardware (``config.pipeline``) a whole-network run carries one image
    (:attr:`images_per_run` = 1, N_IMAGES = 1): the bridge is half-duplex and executes one
    command at a time, so a run of ``N`` images would send every image's codes (one
    ``INPUTS``) before the ``OUTPUTS`` that takes any result. The accelerator holds the last
    node's outputs while nobody takes them, its engines then wait for free copies, the input
    writer waits for its copies and the ``INPUTS`` command never completes: a deadlock as
    soon as the outputs of the images in flight exceed the output FIFO. One image per run
    has no such wait (its input phase needs no consumer to move); the images then do not
    overlap over UART (the batch's interval is a run's cycles plus the host's turnaround).

    Parameters
    ----------
    client:
        A connected :class:`UARTBridgeClient`.
    config:
        The accelerator config (input code range, output width ``ceil(acc_bits / 8)``).

    Raises
    ------
    DeviceError
        If the bridge's output width or lanes differ from the config's (another bitstream).
    """

    #: One image per pipelined whole-network run (class docstring).
    images_per_run = 1

    def __init__(self, client: UARTBridgeClient, config: AcceleratorConfig):
        if config.max_act_bits > 8:
            # INPUTS carries one byte per input code (hw/spec/uart_protocol.py)
            raise ValueError(f"the UART protocol sends one byte per input code: a board "
                             f"needs max_act_bits <= 8, not {config.max_act_bits}")
        self.client = client
        self.config = config
        self.width = output_bytes(config)
        if client.bridge is None:
            client.connect()
        if client.bridge.output_bytes != self.width:
            raise DeviceError(f"the board sends {client.bridge.output_bytes}-byte outputs, "
                              f"the config's acc_bits ({config.acc_bits}) need {self.width}: "
                              f"the board was built for another config")
        self.lanes = config.max_copies
        if client.bridge.lanes != self.lanes:
            raise DeviceError(f"the board has {client.bridge.lanes} lane(s), the config's "
                              f"max_copies is {self.lanes}: the board was built for another "
                              f"config")
        self._share: int | None = None

    def write_register(self, register: int, value: int) -> None:
        if int(register) in (Register.N_VECTORS, Register.N_SHARE):
            # the job's beat-vectors (N_SHARE; the N_VECTORS write sets it too, as in the
            # hardware) tell start_job() where one vector's beats end
            self._share = int(value)
        self.client.write(register, value)

    def read_register(self, register: int) -> int:
        return self.client.read(register)

    def send_image(self, image: bytes) -> None:
        self.client.call(encode_command(Opcode.PROGRAM, payload=bytes(image)))

    def start_job(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        """Start the job and exchange its vectors, one at a time (pipelined).

        Writes CTRL.START and reads STATUS once (a job the accelerator rejects -- bad
        layer, no image -- returns no outputs; the driver reads STATUS and raises), then
        sends ``INPUTS`` / ``OUTPUTS`` per vector. The vector count is the last value
        written to N_SHARE or N_VECTORS (the driver writes them before starting the job);
        codes and output beats must divide evenly into that many vectors. ``codes`` of
        ``(beats, c)`` (a layer with ``c`` copies) go out padded to the board's lanes and
        come back as ``(n_outputs, c)``; flat codes use lane 0 and come back flat.
        """
        codes = np.asarray(codes)
        copies = codes.shape[1] if codes.ndim == 2 else None
        if copies is not None and not 1 <= copies <= self.lanes:
            raise ValueError(f"a job of a layer with {copies} copies: the board has "
                             f"{self.lanes} lane(s) (max_copies); compile for a config "
                             f"with max_copies >= {copies}")
        beats = codes.reshape(len(codes), -1) if copies is not None else codes.reshape(-1, 1)
        vectors = self._share or 1
        if len(beats) % vectors or n_outputs % vectors:
            raise ValueError(f"{len(beats)} input beats and {n_outputs} output beats do not "
                             f"split into the job's {vectors} vectors")
        act_max = (1 << self.config.max_act_bits) - 1
        if beats.size and (beats.min() < 0 or beats.max() > act_max):
            raise ValueError(f"input codes must be in 0..{act_max} (max_act_bits "
                             f"{self.config.max_act_bits}), not {beats.min()}..{beats.max()}")
        payload = np.zeros((len(beats), input_beat_bytes(self.config)), dtype=np.uint8)
        payload[:, :beats.shape[1]] = beats    # lane k's code at byte k; idle lanes 0
        self.client.send(encode_command(Opcode.WRITE, Register.CTRL, Ctrl.START))
        status = self.client.send(encode_command(Opcode.READ, Register.STATUS), 4)
        self.client.flush()
        if int.from_bytes(status[0], "little") & Status.ERROR:
            empty = np.zeros(0, dtype=np.int64)
            return empty if copies is None else empty.reshape(0, copies)
        per_vector = n_outputs // vectors
        answers = []
        for vector in payload.reshape(vectors, -1):
            self.client.send(encode_command(Opcode.INPUTS, payload=vector.tobytes()))
            answers.append(self.client.send(encode_command(Opcode.OUTPUTS, per_vector),
                                            per_vector * output_beat_bytes(self.config)))
        self.client.flush()
        values = decode_outputs(b"".join(answer[0] for answer in answers), self.width)
        values = values.reshape(-1, self.lanes)
        return values[:, 0] if copies is None else values[:, :copies]

    def start_network(self, codes: np.ndarray, n_outputs: int) -> np.ndarray:
        """Start a whole-network run: the image's codes in, the last node's outputs out.

        Writes CTRL.RUN_NETWORK and reads STATUS once (a run the accelerator refuses --
        ``NO_NETWORK``, no image -- returns no outputs; the driver reads STATUS and
        raises), then sends every code in one ``INPUTS`` (lane 0; the input phase takes
        them all before any node runs) and takes ``n_outputs`` beats with one ``OUTPUTS``.
        """
        codes = np.asarray(codes, dtype=np.int64).reshape(-1)
        act_max = (1 << self.config.max_act_bits) - 1
        if codes.size and (codes.min() < 0 or codes.max() > act_max):
            raise ValueError(f"input codes must be in 0..{act_max} (max_act_bits "
                             f"{self.config.max_act_bits}), not {codes.min()}..{codes.max()}")
        payload = np.zeros((len(codes), input_beat_bytes(self.config)), dtype=np.uint8)
        payload[:, 0] = codes
        self.client.send(encode_command(Opcode.WRITE, Register.CTRL, Ctrl.RUN_NETWORK))
        status = self.client.send(encode_command(Opcode.READ, Register.STATUS), 4)
        self.client.flush()
        if int.from_bytes(status[0], "little") & Status.ERROR:
            return np.zeros(0, dtype=np.int64)
        self.client.send(encode_command(Opcode.INPUTS, payload=payload.tobytes()))
        answer = self.client.send(encode_command(Opcode.OUTPUTS, int(n_outputs)),
                                  int(n_outputs) * output_beat_bytes(self.config))
        self.client.flush()
        values = decode_outputs(answer[0], self.width).reshape(-1, self.lanes)
        return values[:, 0]


def open_board(port: str, config: AcceleratorConfig, *, baud: int | None = None,
               timeout: float = 2.0) -> UARTTransport:
    """Open ``port`` (a device path or a pyserial URL) and return a connected transport.

    Raises
    ------
    DeviceError
        If the board does not answer or speaks another protocol.
    OSError
        If the port cannot be opened.
    """
    import serial

    from bitline.hw.boards.core import DEFAULT_BAUD

    try:
        link = serial.serial_for_url(port, baudrate=baud or DEFAULT_BAUD, timeout=timeout)
    except serial.SerialException as error:
        raise OSError(f"cannot open serial port {port!r}: {error}") from None
    client = UARTBridgeClient(link)
    client.connect()
    return UARTTransport(client, config)
