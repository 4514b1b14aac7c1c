"""The UART host protocol: opcodes, framing bytes and the INFO record (one definition).

The bridge that executes it is :class:`bitline.hw.io.uart_bridge.UARTBridge` (its docstring
describes the commands); the host side is :mod:`bitline.sw.host.uart`.

Lanes (layer copies, docs/hardware.md "Copies"). A board built with ``max_copies = L``
carries ``L`` lanes per stream beat; ``INFO.lanes`` reports ``L``. ``INPUTS`` payload bytes
are codes, ``L`` consecutive codes one beat (lane 0 first: :func:`input_beat_bytes`);
``OUTPUTS`` counts beats and answers ``L`` values per beat, lane 0 first, ``W`` bytes each
(:func:`output_beat_bytes`). With ``L = 1`` this is the one-lane framing of version 1.
"""

from __future__ import annotations

import enum

from amaranth.lib import data

from bitline.hw.spec.config import AcceleratorConfig

__all__ = [
    "Opcode", "ARGUMENT_BYTES", "ACK", "NAK", "PROTOCOL_VERSION", "BridgeFlags",
    "INFO_LAYOUT", "INFO_BYTES", "output_bytes", "input_beat_bytes", "output_beat_bytes",
]

#: Version of the command set, reported by ``INFO`` (2: lanes, ``INFO.lanes``).
PROTOCOL_VERSION = 2

#: Acknowledge: the last byte of every completed command's response (ASCII ACK).
ACK = 0x06
#: Not acknowledged: the whole response to an unknown opcode (ASCII NAK).
NAK = 0x15


class Opcode(enum.IntEnum):
    """First byte of a command."""

    PING = 0x00
    READ = 0x01
    WRITE = 0x02
    PROGRAM = 0x03
    INPUTS = 0x04
    OUTPUTS = 0x05
    INFO = 0x06
    RESET = 0x07


#: Argument bytes that follow each opcode.
ARGUMENT_BYTES: dict[Opcode, int] = {
    Opcode.PING: 0,
    Opcode.READ: 1,
    Opcode.WRITE: 5,
    Opcode.PROGRAM: 4,
    Opcode.INPUTS: 4,
    Opcode.OUTPUTS: 4,
    Opcode.INFO: 0,
    Opcode.RESET: 0,
}


class BridgeFlags(enum.IntFlag):
    """Events the bridge reports in ``INFO`` (sticky until read)."""

    FRAMING = 1      # a received byte had a low stop bit (dropped)
    OVERRUN = 2      # a byte arrived with the receive FIFO full (dropped)
    TIMEOUT = 4      # a command made no progress for timeout_cycles and was abandoned
    BAD_OPCODE = 8   # an unknown opcode was answered with NAK


#: The ``INFO`` response before its ACK (little-endian, fields from byte 0 on).
INFO_LAYOUT = data.StructLayout({
    "version": 8,
    "output_bytes": 8,
    "flags": 8,
    "act_bits": 8,
    "rx_fifo_depth": 32,
    "clock_hz": 32,
    "lanes": 8,          # max_copies: codes per INPUTS beat, values per OUTPUTS beat
})

#: Bytes of the ``INFO`` response before its ACK.
INFO_BYTES = INFO_LAYOUT.size // 8


def output_bytes(config: AcceleratorConfig) -> int:
    """Return ``W``, the bytes per output value on the wire: ``ceil(acc_bits / 8)``."""
    return -(-config.acc_bits // 8)


def input_beat_bytes(config: AcceleratorConfig) -> int:
    """Return the ``INPUTS`` payload bytes of one input beat: ``max_copies`` codes of one
    byte, lane 0 first."""
    return config.max_copies


def output_beat_bytes(config: AcceleratorConfig) -> int:
    """Return the ``OUTPUTS`` answer bytes of one output beat: ``max_copies`` values of
    :func:`output_bytes` bytes, lane 0 first."""
    return config.max_copies * output_bytes(config)
