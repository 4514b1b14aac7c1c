"""The host driver (bitline.sw.host.driver) against a software accelerator behind its transport.

The fake transport implements the register protocol of bitline.hw.core.host_interface (CTRL, STATUS with
error codes, LAYER, N_VECTORS, DIGEST, counters) and computes a job's outputs with the
integer arithmetic of bitline.sw.integer.arith, so these tests pin the driver's register sequence,
its error handling and its graph traversal (host-side layers, reshapes, job splitting)
without a simulator; the cocotb suite runs the same driver on the RTL.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.spec.image import FORMAT_VERSION, MAGIC_WORD, config_digest_bytes
from bitline.hw.spec.registers import COUNTERS, Ctrl, ErrorCode, Register, Status
from bitline.sim.golden import run_golden
from bitline.sw.bundle import encode_image
from bitline.sw.flow import compile_model
from bitline.sw.host.driver import (
    Device,
    DeviceError,
    HostDriver,
    Transport,
    decode_status,
)
from bitline.sw.integer import arith
from bitline.sw.integer.graph import spec_ou_rows

from support.configs import small_config


class SoftAccelerator(Transport):
    """Registers and streams of an accelerator that computes jobs with ``intops``."""

    def __init__(self, program, qmodel, *, config=None):
        self.program = program
        self.qmodel = qmodel
        self.config = config or program.config
        self.image = encode_image(program)
        self.registers = {int(Register.ID): MAGIC_WORD, int(Register.VERSION): FORMAT_VERSION}
        digest = config_digest_bytes(self.config)
        for word in range(4):
            self.registers[int(Register.DIGEST0) + word] = int.from_bytes(
                digest[4 * word:4 * word + 4], "little")
        self.programmed = False
        self.loading = False
        self.error = 0
        self.done = False
        self.log = []

    def write_register(self, register, value):
        self.log.append(("write", Register(register).name, value))
        if register == Register.CTRL:
            if value & Ctrl.LOAD:
                self.loading, self.programmed, self.error = True, False, 0
            if value & Ctrl.CLEAR_ERROR:
                self.error = 0
        else:
            self.registers[int(register)] = int(value)

    def read_register(self, register):
        if register == Register.STATUS:
            flags = (self.done * Status.DONE | self.loading * Status.LOADING
                     | self.programmed * Status.PROGRAMMED | bool(self.error) * Status.ERROR)
            return int(flags) | self.error << 8
        if register == Register.N_LAYERS:
            return len(self.program.layers) if self.programmed else 0
        return self.registers.get(int(register), 0)

    def send_image(self, image):
        self.loading = False
        if image[:4] != self.image[:4]:
            self.error = ErrorCode.BAD_MAGIC
        elif image != self.image:
            self.error = ErrorCode.SECTION_CRC
        else:
            self.programmed = True

    def start_job(self, codes, n_outputs):
        self.log.append(("job", self.registers[int(Register.LAYER)],
                         self.registers[int(Register.N_VECTORS)]))
        if not self.programmed:
            self.error = ErrorCode.NOT_PROGRAMMED
            return np.zeros(0, dtype=np.int64)
        layer = self.program.layers[self.registers[int(Register.LAYER)]]
        qlayer = self.qmodel.layers[layer.name]
        vectors = np.asarray(codes).reshape(self.registers[int(Register.N_VECTORS)], -1)
        acc = arith.compute_acc(qlayer, vectors, ou_rows=spec_ou_rows(self.qmodel))
        out = qlayer.output
        y = arith.output_unit(acc, qlayer.bias, qlayer.mult, qlayer.shift,
                               out.zero_point if out is not None else 0, qlayer.clamp_lo,
                               qlayer.clamp_hi, qlayer.mode)
        self.done = True
        for name, low in COUNTERS:
            self.registers[int(low)] = len(vectors)    # a recognizable "counter"
            self.registers[int(low) + 1] = 0
        return y.reshape(-1)[:n_outputs]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, random_cnn):
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("driver") / "model.onnx"
    model = random_cnn(path, rng)
    config = small_config(rows=32, cols=64, n_xbars=3, max_act_bits=8, max_weight_bits=8,
                          max_out_channels=16, max_in_features=96)
    result = compile_model(model, "bwq", "bwq3", config,
                           rng.random((16, *model.input_shape)).astype(np.float32),
                           xbars=config.n_xbars)
    x = rng.random((3, *model.input_shape)).astype(np.float32)
    return result.program, result.qmodel, x


@pytest.mark.parametrize("max_vectors", [None, 5])
def test_driver_equals_golden_on_every_layer(compiled, max_vectors):
    program, qmodel, x = compiled
    soft = SoftAccelerator(program, qmodel)
    events = []
    driver = HostDriver(program, qmodel, Device(soft), max_vectors=max_vectors,
                        progress=lambda job, done, total: events.append((job.name, done,
                                                                         total)))
    status = driver.load()
    assert status & Status.PROGRAMMED
    result = driver.run(x, return_all=True)
    golden = run_golden(qmodel, x, return_all=True)
    assert set(result.layers) == set(golden.layers)
    for name, value in golden.layers.items():
        assert np.array_equal(result.layers[name], value), name
    assert np.array_equal(result.output_int, golden.output_int)
    assert np.allclose(result.output, golden.output)
    vectors = [job.n_vectors for job in result.jobs]
    total = driver.total_vectors(len(x))
    assert sum(vectors) == total == events[-1][1] == events[-1][2]
    if max_vectors:
        assert max(vectors) <= max_vectors and len(result.jobs) > len(program.layers)
    assert result.counters()["cycles"] == total
    # the register sequence of a job: LAYER, N_VECTORS, then the transport's start
    writes = [entry for entry in soft.log if entry[0] == "write"]
    assert ("write", "CTRL", Ctrl.LOAD) in writes
    assert writes[-2][1] == "LAYER" and writes[-1][1] == "N_VECTORS"


def test_load_errors_raise_device_error_with_the_code(compiled):
    program, qmodel, x = compiled
    soft = SoftAccelerator(program, qmodel)
    device = Device(soft)
    corrupted = bytearray(soft.image)
    corrupted[-5] ^= 1
    with pytest.raises(DeviceError, match="SECTION_CRC") as error:
        device.program(bytes(corrupted))
    assert error.value.code == ErrorCode.SECTION_CRC
    assert decode_status(error.value.status)[1] == ErrorCode.SECTION_CRC
    device.clear_error()
    with pytest.raises(DeviceError, match="NOT_PROGRAMMED") as refused:
        device.run_layer_job(0, np.zeros((1, program.layers[0].n_inputs), np.int64),
                             program.layers[0].n_outputs)
    assert refused.value.code == ErrorCode.NOT_PROGRAMMED
    device.program(soft.image)
    out = device.run_layer_job(0, np.zeros((2, program.layers[0].n_inputs), np.int64),
                               program.layers[0].n_outputs)
    assert out.shape == (2, program.layers[0].n_outputs)


def test_hardware_for_another_config_is_named(compiled):
    program, qmodel, _ = compiled
    other = program.config.replace(clock_mhz=1.0)
    driver = HostDriver(program, qmodel, Device(SoftAccelerator(program, qmodel,
                                                                config=other)))
    with pytest.raises(ValueError, match="config digest"):
        driver.load()


def test_bad_batches_and_job_shapes_are_rejected(compiled):
    program, qmodel, x = compiled
    driver = HostDriver(program, qmodel, Device(SoftAccelerator(program, qmodel)))
    with pytest.raises(ValueError, match="x must be a batch"):
        driver.run(x[:, :1])
    with pytest.raises(ValueError, match="vectors must be"):
        driver.device.run_layer_job(0, np.zeros(4, np.int64), 2)
    with pytest.raises(ValueError, match="max_vectors"):
        HostDriver(program, qmodel, driver.device, max_vectors=0)
