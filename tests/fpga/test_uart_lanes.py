"""The UART bridge with lanes (layer copies): INPUTS codes packed into beats, OUTPUTS beats
answered lane by lane, INFO.lanes; the host transport pads and unpacks the lanes.

Amaranth simulation of :class:`~bitline.hw.io.uart_bridge.UARTBridge` with a model of the
accelerator's streams (seeded random ``ready`` / ``valid`` pauses), and the host's
:class:`~bitline.sw.host.uart.UARTTransport` against a byte-level model of the bridge.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.spec.registers import Register, Status
from bitline.hw.spec.uart_protocol import (
    ACK, INFO_BYTES, INFO_LAYOUT, PROTOCOL_VERSION, Opcode, output_bytes,
)
from bitline.sw.host.driver import Device, lane_beats
from bitline.sw.host.uart import UARTBridgeClient, UARTTransport, decode_info, encode_command

from support.bridge import run_bridge
from support.configs import small_config


@pytest.mark.parametrize("lanes", [2, 3])
def test_bridge_packs_input_lanes_and_answers_output_lanes(lanes):
    config = small_config(max_copies=lanes)
    width = output_bytes(config)
    rng = np.random.default_rng(lanes)
    codes = rng.integers(0, 1 << config.max_act_bits, (5, lanes))
    values = rng.integers(-(1 << 20), 1 << 20, (4, lanes))
    host = (encode_command(Opcode.INPUTS, payload=codes.astype(np.uint8).tobytes())
            + encode_command(Opcode.OUTPUTS, len(values))
            + encode_command(Opcode.INFO))
    answer, _, beats, _ = run_bridge(config, host, outputs=values.tolist(), rx_fifo_depth=64,
                                     timeout_cycles=500, cycles=3000, pause_seed=lanes)
    assert beats == codes.tolist()                  # lane k of beat b = code b * L + k
    expected = bytes([ACK]) + b"".join(int(v).to_bytes(width, "little", signed=True)
                                       for v in values.reshape(-1)) + bytes([ACK])
    assert answer[:len(expected)] == expected       # beat by beat, lane 0 first
    info = decode_info(answer[len(expected):len(expected) + INFO_BYTES])
    assert answer[len(expected) + INFO_BYTES:] == bytes([ACK])
    assert (info.version, info.lanes, info.output_bytes) == (PROTOCOL_VERSION, lanes, width)


def test_info_layout_has_the_lanes_byte_last():
    # version 1 fields keep their offsets; lanes is the byte after clock_hz
    assert INFO_LAYOUT["lanes"].offset == 12 * 8 and INFO_BYTES == 13


class BridgeModel:
    """A pyserial-like link to a byte-level model of the bridge and an accelerator with
    ``L`` lanes whose output channel ``n`` of a vector is the sum of the lane's codes + n
    (enough to check the transport's packing, lane order and vector splitting)."""

    def __init__(self, config):
        self.config = config
        self.lanes = config.max_copies
        self.registers = {int(Register.STATUS): int(Status.DONE)}
        self.out = bytearray()
        self.inputs: list[np.ndarray] = []
        self.queued: list[int] = []

    def write(self, data):
        data, width = bytes(data), output_bytes(self.config)
        while data:
            opcode = Opcode(data[0])
            if opcode == Opcode.INFO:
                info = (PROTOCOL_VERSION | width << 8 | self.config.max_act_bits << 24
                        | 64 << 32 | 25_000_000 << 64 | self.lanes << 96)
                self.out += info.to_bytes(INFO_BYTES, "little") + bytes([ACK])
                data = data[1:]
            elif opcode == Opcode.PING:
                self.out.append(ACK)
                data = data[1:]
            elif opcode == Opcode.WRITE:
                self.registers[data[1]] = int.from_bytes(data[2:6], "little")
                self.out.append(ACK)
                data = data[6:]
            elif opcode == Opcode.READ:
                self.out += self.registers.get(data[1], 0).to_bytes(4, "little") + bytes([ACK])
                data = data[2:]
            elif opcode == Opcode.INPUTS:
                count = int.from_bytes(data[1:5], "little")
                codes = np.frombuffer(data[5:5 + count], dtype=np.uint8).reshape(-1, self.lanes)
                self.inputs.append(codes)
                sums = codes.astype(np.int64).sum(axis=0)
                self.queued = [int(sums[k]) - 7 + n for n in range(64) for k in range(self.lanes)]
                self.out.append(ACK)
                data = data[5 + count:]
            elif opcode == Opcode.OUTPUTS:
                count = int.from_bytes(data[1:5], "little")
                values, self.queued = self.queued[:count * self.lanes], []
                self.out += b"".join(v.to_bytes(width, "little", signed=True) for v in values)
                self.out.append(ACK)
                data = data[5:]
            else:
                raise AssertionError(f"unexpected opcode {opcode}")
        return len(data)

    def read(self, size):
        data, self.out[:size] = bytes(self.out[:size]), b""
        return data


@pytest.mark.parametrize("lanes, copies, vectors", [(3, 3, 7), (3, 2, 5), (2, 1, 4)])
def test_transport_pads_lanes_and_reassembles_copies(lanes, copies, vectors):
    """Device.run_layer_job(copies=c) over the UART transport: every copy's share goes out
    in its lane (idle lanes 0), outputs come back in vector order."""
    config = small_config(max_copies=lanes)
    link = BridgeModel(config)
    device = Device(UARTTransport(UARTBridgeClient(link), config))
    rng = np.random.default_rng(vectors)
    x = rng.integers(0, 1 << config.max_act_bits, (vectors, 6))
    outputs = device.run_layer_job(0, x, 3, copies=copies)
    share = -(-vectors // copies)
    assert len(link.inputs) == share
    sent = np.concatenate(link.inputs)
    assert np.array_equal(sent, np.pad(lane_beats(x, copies),
                                       ((0, 0), (0, lanes - copies))))
    assert np.array_equal(outputs, x.sum(axis=1)[:, None] - 7 + np.arange(3))
    assert link.registers[int(Register.N_SHARE if copies > 1 else Register.N_VECTORS)] == (
        share if copies > 1 else vectors)


def test_transport_refuses_more_copies_than_lanes_and_other_lanes():
    config = small_config(max_copies=2)
    transport = UARTTransport(UARTBridgeClient(BridgeModel(config)), config)
    with pytest.raises(ValueError, match="3 copies: the board has 2 lane"):
        transport.start_job(np.zeros((4, 3), dtype=np.int64), 4)
    from bitline.sw.host.driver import DeviceError

    with pytest.raises(DeviceError, match="the board has 2 lane.*max_copies is 1"):
        UARTTransport(UARTBridgeClient(BridgeModel(config)), small_config())
