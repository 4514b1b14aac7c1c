"""The host driver's whole-network mode (bitline.sw.host.driver) against a recording transport.

The fake transport keeps the registers of the contract (docs/network.md: CTRL.RUN_NETWORK,
N_NODES, NODE, the NODE_* counters, NO_NETWORK) and answers a run with outputs prepared by
the test from the golden model -- reordered into producer order by plain loops, a second
way next to the driver's :func:`producer_to_map` -- so these tests pin what the driver
sends (the quantized input image, once per image), how it reads the outputs back (reorder,
dequantize) and every counter, and its errors; the cocotb bench
(tests/cocotb/test_e2e_network.py) runs the same driver on the RTL.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bitline.hw.spec.image import FORMAT_VERSION, MAGIC_WORD, config_digest_bytes
from bitline.hw.spec.network import NodeKind, NodeProgram, WindowParams
from bitline.hw.spec.registers import (
    COUNTERS, NODE_COUNTERS, Ctrl, ErrorCode, Register, Status,
)
from bitline.sim.golden import run_golden
from bitline.sw.flow import compile_model
from bitline.sw.frontend.ir import Model
from bitline.sw.host.driver import (
    Device, DeviceError, HostDriver, NetworkRun, Transport, producer_to_map, resolve_mode,
)
from bitline.sw.integer import arith
from bitline.sw.integer.graph import spec_ou_rows

from support.configs import small_config
from support.networks import conv_layer

IMAGE = b"fake image"


def producer_order(output: np.ndarray) -> np.ndarray:
    """One sample's ``(C, ...)`` output in producer order, by loops: pixel, then channel."""
    channels = output.shape[0]
    flat = output.reshape(channels, -1)
    return np.array([flat[c, p] for p in range(flat.shape[1]) for c in range(channels)],
                    dtype=np.int64)


class NetworkFake(Transport):
    """Registers and streams of an accelerator with the whole-network mode.

    ``answers`` maps an input image's codes (bytes of the int64 array) to the outputs a run
    sends; a run sets CYCLES to ``1000 + run number`` and node ``i``'s NODE_CYCLES to
    ``10 * (i + 1) + run number`` (recognizable values). ``network=False`` is hardware
    without the mode (NO_NETWORK); ``short`` makes a run stop after that many outputs.
    Layer jobs are computed with ``arith`` as in tests/unit/test_driver.py.
    """

    def __init__(self, program, qmodel, answers, *, network=True, short=None,
                 n_nodes=None):
        self.program, self.qmodel, self.answers = program, qmodel, answers
        self.network, self.short = network, short
        self.n_nodes = len(program.nodes or ()) if n_nodes is None else n_nodes
        self.registers = {int(Register.ID): MAGIC_WORD, int(Register.VERSION): FORMAT_VERSION}
        digest = config_digest_bytes(program.config)
        for word in range(4):
            self.registers[int(Register.DIGEST0) + word] = int.from_bytes(
                digest[4 * word:4 * word + 4], "little")
        self.programmed = self.done = False
        self.error = 0
        self.runs = 0
        self.node_values = {}
        self.log = []

    def write_register(self, register, value):
        self.log.append(("write", Register(register).name, int(value)))
        if register == Register.CTRL:
            if value & Ctrl.LOAD:
                self.programmed, self.error = False, 0
            if value & Ctrl.CLEAR_ERROR:
                self.error = 0
        else:
            self.registers[int(register)] = int(value)

    def read_register(self, register):
        self.log.append(("read", Register(register).name))
        if register == Register.STATUS:
            flags = (self.done * Status.DONE | self.programmed * Status.PROGRAMMED
                     | bool(self.error) * Status.ERROR)
            return int(flags) | self.error << 8
        if register == Register.N_LAYERS:
            return len(self.program.layers) if self.programmed else 0
        if register == Register.N_NODES:
            return self.n_nodes if self.programmed and self.network else 0
        node = self.registers.get(int(Register.NODE), 0)
        for index, (_, low) in enumerate(NODE_COUNTERS):
            if register in (low, low + 1):
                value = self.node_values.get((node, index), 0)
                return value & 0xFFFFFFFF if register == low else value >> 32
        return self.registers.get(int(register), 0)

    def send_image(self, image):
        self.log.append(("image", len(image)))
        self.programmed = image == IMAGE
        if not self.programmed:
            self.error = ErrorCode.SECTION_CRC

    def start_network(self, codes, n_outputs):
        self.log.append(("network", np.asarray(codes).copy(), n_outputs))
        if not (self.network and self.programmed and self.n_nodes):
            self.error = ErrorCode.NO_NETWORK
            return np.zeros(0, dtype=np.int64)
        values = self.answers[np.asarray(codes, dtype=np.int64).tobytes()]
        assert len(values) == n_outputs
        self.runs += 1
        self.done = True
        for name, low in COUNTERS:
            value = (1000 if name == "cycles" else 7) + self.runs
            self.registers[int(low)], self.registers[int(low) + 1] = value, 0
        for node in range(self.n_nodes):
            for index in range(len(NODE_COUNTERS)):
                # above 32 bits for the cycles: both halves are read
                self.node_values[node, index] = (10 * (node + 1) + self.runs
                                                 + (index == 0) * (5 << 32))
        return values[:self.short] if self.short is not None else values

    def start_job(self, codes, n_outputs):
        self.log.append(("job", self.registers[int(Register.LAYER)]))
        layer = self.program.layers[self.registers[int(Register.LAYER)]]
        qlayer = self.qmodel.layers[layer.name]
        vectors = np.asarray(codes).reshape(self.registers[int(Register.N_VECTORS)], -1)
        acc = arith.compute_acc(qlayer, vectors, ou_rows=spec_ou_rows(self.qmodel))
        out = qlayer.output
        self.done = True
        return arith.output_unit(acc, qlayer.bias, qlayer.mult, qlayer.shift,
                                 out.zero_point if out is not None else 0, qlayer.clamp_lo,
                                 qlayer.clamp_hi, qlayer.mode).reshape(-1)[:n_outputs]


def with_nodes(program, qmodel):
    """``program`` with a node per compute / pool layer (windows of its IR layers); the
    last one ``to_host``. The driver reads only the node count and the last node's
    ``dst_channels`` (the records themselves are the compiler's and the RTL's business)."""
    nodes = []
    index = {layer.name: i for i, layer in enumerate(program.layers)}
    for layer in qmodel.model.layers:
        shape = tuple(layer.input_shape) + (1,) * (3 - len(layer.input_shape))
        if layer.op == "conv":
            window = WindowParams(*shape, kernel=(3, 3), pads=layer.attrs["pads"])
            kind = NodeKind.COMPUTE
        elif layer.op == "gemm":
            window, kind = WindowParams.flatten(*shape), NodeKind.COMPUTE
        elif layer.op == "maxpool":
            window = WindowParams(*shape, kernel=layer.attrs["kernel"],
                                  stride=layer.attrs["stride"])
            kind = NodeKind.POOL_MAX
        else:
            continue
        nodes.append(NodeProgram(kind, window, 0, layer.output_shape[0],
                                 layer=index.get(layer.name, 0), name=layer.name))
    nodes[-1] = replace(nodes[-1], to_host=True)
    return replace(program, nodes=nodes)


def compiled_network(model, rng, batch):
    config = small_config(rows=32, cols=64, n_xbars=4, max_act_bits=8, max_weight_bits=8,
                          max_out_channels=16, max_in_features=96)
    calib = rng.random((16, *model.input_shape)).astype(np.float32)
    result = compile_model(model, "bwq", "bwq3", config, calib, xbars="auto")
    program = with_nodes(result.program, result.qmodel)
    x = rng.random((batch, *model.input_shape)).astype(np.float32)
    return program, result.qmodel, x


def conv_output_model():
    """Two convs, the model output the second's 5 x 4 x 4 map (P = 16 pixels, C = 5)."""
    rng = np.random.default_rng(11)
    layers = [conv_layer("c1", "x", "t1", rng, (2, 4, 4), 3, activation="relu"),
              conv_layer("c2", "t1", "y", rng, (3, 4, 4), 5)]
    return Model("conv-out", "x", (2, 4, 4), layers, "y")


@pytest.fixture(scope="module", params=["gemm output", "conv output"])
def network(request, tmp_path_factory, random_cnn):
    rng = np.random.default_rng(5)
    if request.param == "gemm output":
        model = random_cnn(tmp_path_factory.mktemp("net") / "model.onnx", rng)
    else:
        model = conv_output_model()
    program, qmodel, x = compiled_network(model, rng, 3)
    golden = run_golden(qmodel, x)
    codes = arith.quantize_input(x, qmodel.input)
    answers = {sample.reshape(-1).tobytes(): producer_order(output)
               for sample, output in zip(codes, golden.output_int)}
    return program, qmodel, x, golden, codes, answers


def test_network_mode_sends_the_image_and_reads_the_outputs(network):
    program, qmodel, x, golden, codes, answers = network
    fake = NetworkFake(program, qmodel, answers)
    seen = []
    driver = HostDriver(program, qmodel, Device(fake), image=IMAGE,
                        progress=lambda run, done, total: seen.append((run.name, done, total)))
    assert driver.mode == "network"
    driver.load()
    result = driver.run(x, return_all=True)
    assert result.mode == "network" and not result.jobs
    assert np.array_equal(result.output_int, golden.output_int)
    assert np.allclose(result.output, golden.output)
    # only the output layer leaves the chip
    assert list(result.layers) == [qmodel.model.layers[-1].name]
    # one run per image, the image's codes in C order, the output count of the model
    runs = [entry for entry in fake.log if entry[0] == "network"]
    assert len(runs) == len(x)
    for (_, sent, n_outputs), sample in zip(runs, codes):
        assert np.array_equal(sent, sample.reshape(-1))
        assert n_outputs == int(np.prod(qmodel.model.output_shape))
    assert not any(entry[0] == "job" for entry in fake.log)
    # counters: the run's, then every node's (NODE written before its NODE_* reads)
    assert [run.counters["cycles"] for run in result.runs] == [1001, 1002, 1003]
    assert [run.counters["ou_reads"] for run in result.runs] == [8, 9, 10]
    assert result.counters()["cycles"] == 3006
    for number, run in enumerate(result.runs, start=1):
        assert isinstance(run, NetworkRun) and run.image == number - 1
        assert len(run.nodes) == len(program.nodes)
        for node, values in enumerate(run.nodes):
            assert values == {"node_cycles": 10 * (node + 1) + number + (5 << 32),
                              "node_input_stall": 10 * (node + 1) + number,
                              "node_output_stall": 10 * (node + 1) + number}
    writes = [entry[2] for entry in fake.log if entry[:2] == ("write", "NODE")]
    assert writes == list(range(len(program.nodes))) * len(x)
    assert seen == [(f"image {i}", i + 1, len(x)) for i in range(len(x))]


def test_layers_mode_runs_layer_jobs_on_a_network_program(network):
    program, qmodel, x, golden, _, answers = network
    fake = NetworkFake(program, qmodel, answers)
    driver = HostDriver(program, qmodel, Device(fake), image=IMAGE, mode="layers")
    driver.load()
    result = driver.run(x, return_all=True)
    assert result.mode == "layers" and not result.runs
    assert not any(entry[0] == "network" for entry in fake.log)
    assert [entry[1] for entry in fake.log if entry[0] == "job"] == list(
        range(len(program.layers)))
    assert np.array_equal(result.output_int, golden.output_int)
    # and the mode can be chosen per batch
    again = driver.run(x[:1], mode="network")
    assert again.mode == "network"
    assert np.array_equal(again.output_int, golden.output_int[:1])


def test_producer_to_map_is_the_inverse_of_producer_order():
    rng = np.random.default_rng(0)
    for shape in [(4,), (3, 2, 5), (1, 3, 3), (6, 1, 1)]:
        tensor = rng.integers(-50, 50, shape)
        assert np.array_equal(producer_to_map(producer_order(tensor), shape[0]),
                              tensor.reshape(-1))
    with pytest.raises(ValueError, match="not a whole number of pixels of 4 channels"):
        producer_to_map(np.arange(6), 4)


def test_network_errors_are_device_errors(network):
    program, qmodel, x, _, _, answers = network
    # hardware without the mode (N_NODES reads 0, so load() already refuses it; skip it)
    fake = NetworkFake(program, qmodel, answers, network=False)
    driver = HostDriver(program, qmodel, Device(fake), image=IMAGE)
    with pytest.raises(DeviceError, match="loaded 0 node records"):
        driver.load()
    fake.programmed = True
    with pytest.raises(DeviceError, match="NO_NETWORK") as error:
        driver.run(x[:1])
    assert error.value.code == ErrorCode.NO_NETWORK
    # outputs stopping short
    fake = NetworkFake(program, qmodel, answers, short=1)
    driver = HostDriver(program, qmodel, Device(fake), image=IMAGE)
    driver.load()
    n_outputs = int(np.prod(qmodel.model.output_shape))
    with pytest.raises(DeviceError, match=f"1 outputs, expected {n_outputs}"):
        driver.run(x[:1])
    # the device loaded another node count than the image holds
    fake = NetworkFake(program, qmodel, answers, n_nodes=len(program.nodes) - 1)
    driver = HostDriver(program, qmodel, Device(fake), image=IMAGE)
    with pytest.raises(DeviceError, match=f"loaded {len(program.nodes) - 1} node records, "
                                          f"the image holds {len(program.nodes)}"):
        driver.load()


def test_modes_are_checked(network):
    program, qmodel, _, _, _, answers = network
    layers_only = replace(program, nodes=None)
    assert resolve_mode(layers_only, None) == "layers"
    assert resolve_mode(program, None) == "network"
    with pytest.raises(ValueError, match="needs a program with node records"):
        HostDriver(layers_only, qmodel, Device(NetworkFake(program, qmodel, answers)),
                   image=IMAGE, mode="network")
    with pytest.raises(ValueError, match="mode must be one of network, layers, not 'pipe'"):
        resolve_mode(program, "pipe")


def test_a_transport_without_network_runs_says_so(network):
    program, qmodel, x, _, _, answers = network

    class LayersOnly(NetworkFake):
        start_network = Transport.start_network

    fake = LayersOnly(program, qmodel, answers)
    driver = HostDriver(program, qmodel, Device(fake), image=IMAGE)
    driver.load()
    with pytest.raises(DeviceError, match="LayersOnly cannot start a whole-network run.*"
                                          "--layer-jobs"):
        driver.run(x[:1])


def test_rtl_backend_options_for_network_bundles(tmp_path, random_cnn):
    """Refused before any simulator starts: all_layers of a whole-network run, layer_jobs
    of a bundle without nodes, a clock that is not a positive number."""
    from bitline.sim.backends import BackendError, network_summary, run_backend
    from bitline.sw.bundle import write_bundle
    from bitline.sw.flow import Target

    rng = np.random.default_rng(9)
    model = random_cnn(tmp_path / "model.onnx", rng)
    config = small_config(rows=32, cols=64, n_xbars=4, max_act_bits=8, max_weight_bits=8,
                          max_out_channels=16, max_in_features=96)
    calib = rng.random((16, *model.input_shape)).astype(np.float32)
    x = rng.random((1, *model.input_shape)).astype(np.float32)
    bundles = {}
    for network in (True, False):
        result = compile_model(model, "bwq", "bwq3", config, calib, xbars="auto",
                               network=network)
        folder = write_bundle(tmp_path / f"bundle-{network}", result.program, result.qmodel)
        bundles[network] = Target(str(folder), bundle=folder)
    with pytest.raises(BackendError, match="all_layers needs per-layer jobs"):
        run_backend("rtl", bundles[True], x, {"all_layers": "1"})
    with pytest.raises(BackendError, match="layer_jobs is for a bundle compiled with "
                                           "--network"):
        run_backend("rtl", bundles[False], x, {"layer_jobs": "1"})
    with pytest.raises(BackendError, match="clock_mhz must be positive, not -5.0"):
        run_backend("rtl", bundles[True], x, {"clock_mhz": "-5"})
    with pytest.raises(BackendError, match="option clock_mhz must be float, not 'fast'"):
        run_backend("rtl", bundles[True], x, {"clock_mhz": "fast"})
    # the summary line: cycles per image, latency and images/s at the clock
    line = network_summary([1000, 3000], 25.0)
    assert "2 image(s), cycles per image 1,000, 3,000" in line
    assert "at 25 MHz 80.00 us per image, 12,500 images/s" in line


def test_a_last_node_of_another_size_is_named(network):
    program, qmodel, x, _, _, answers = network
    last = program.nodes[-1]
    broken = replace(program, nodes=program.nodes[:-1] + [
        replace(last, dst_channels=last.dst_channels + 1)])
    driver = HostDriver(broken, qmodel, Device(NetworkFake(broken, qmodel, answers)),
                        image=IMAGE)
    driver.load()
    with pytest.raises(ValueError, match=f"last node {len(program.nodes) - 1} .* sends "
                                         f"{last.dst_size + last.out_pixels} values"):
        driver.run(x[:1])


# ---------------------------------------------------------------- the inter-layer pipeline
def pipelined(program):
    """``program`` on pipeline hardware (docs/network.md section 6): one stage engine per
    node. The driver reads only ``config.pipeline``, the node count and the last node."""
    config = program.config.replace(act_buffer_depth=4096, max_nodes=8, max_map_channels=16,
                                    max_map_height=8, max_map_width=8,
                                    pipeline_stages=len(program.nodes))
    return replace(program, config=config)


class PipelineFake(NetworkFake):
    """:class:`NetworkFake` on pipeline hardware: a run carries N_IMAGES images (0 counts
    as 1), image after image in and out; LATENCY is ``(3 << 32) + 500 + run number`` (both
    halves read) and INTERVAL ``100 + run number``."""

    def start_network(self, codes, n_outputs):
        codes = np.asarray(codes, dtype=np.int64)
        images = self.registers.get(int(Register.N_IMAGES), 0) or 1
        self.log.append(("network", codes.copy(), n_outputs, images))
        assert len(codes) % images == 0 and n_outputs % images == 0
        values = np.concatenate([self.answers[piece.tobytes()]
                                 for piece in codes.reshape(images, -1)])
        assert len(values) == n_outputs
        self.runs += 1
        self.done = True
        for name, low in COUNTERS:
            value = (1000 if name == "cycles" else 7) + self.runs
            self.registers[int(low)], self.registers[int(low) + 1] = value, 0
        latency = (3 << 32) + 500 + self.runs
        self.registers[int(Register.LATENCY_LO)] = latency & 0xFFFFFFFF
        self.registers[int(Register.LATENCY_HI)] = latency >> 32
        self.registers[int(Register.INTERVAL_LO)] = 100 + self.runs
        self.registers[int(Register.INTERVAL_HI)] = 0
        for node in range(self.n_nodes):
            for index in range(len(NODE_COUNTERS)):
                self.node_values[node, index] = 10 * (node + 1) + self.runs
        return values


@pytest.mark.parametrize("cap, sizes", [(None, [3]), (2, [2, 1]), (1, [1, 1, 1])])
def test_pipeline_runs_the_batch_in_runs_of_n_images(network, cap, sizes):
    from bitline.sw.host.driver import PipelinedRun

    program, qmodel, x, golden, codes, answers = network
    program = pipelined(program)
    fake = PipelineFake(program, qmodel, answers)
    seen = []
    driver = HostDriver(program, qmodel, Device(fake), image=IMAGE, images_per_run=cap,
                        progress=lambda run, done, total: seen.append((run.name, done, total)))
    driver.load()
    assert driver.run_sizes(len(x)) == sizes
    result = driver.run(x, return_all=True)
    assert np.array_equal(result.output_int, golden.output_int)
    assert np.allclose(result.output, golden.output)
    # N_IMAGES written before each RUN_NETWORK, every image's codes in one stream
    runs = [entry for entry in fake.log if entry[0] == "network"]
    assert [entry[3] for entry in runs] == sizes
    n_outputs = int(np.prod(qmodel.model.output_shape))
    first = 0
    for (_, sent, outputs, images), size in zip(runs, sizes):
        assert np.array_equal(sent, codes[first:first + size].reshape(-1))
        assert outputs == size * n_outputs
        first += size
    order = [entry[2] if entry[0] == "write" else "run" for entry in fake.log
             if entry[:2] == ("write", "N_IMAGES") or entry[0] == "network"]
    assert order == [step for size in sizes for step in (size, "run")]
    # one PipelinedRun per run: the counters, LATENCY / INTERVAL (64 bits), every node's
    assert [type(run) for run in result.runs] == [PipelinedRun] * len(sizes)
    assert [(run.image, run.n_images) for run in result.runs] == list(
        zip(np.cumsum([0] + sizes[:-1]).tolist(), sizes))
    for number, run in enumerate(result.runs, start=1):
        assert run.counters["cycles"] == 1000 + number
        assert run.latency == (3 << 32) + 500 + number and run.interval == 100 + number
        assert run.nodes == [{name: 10 * (node + 1) + number for name, _ in NODE_COUNTERS}
                             for node in range(len(program.nodes))]
    # the batch's sums hold only the summable counters
    assert result.counters() == {name: sum((1000 if name == "cycles" else 7) + number
                                           for number in range(1, len(sizes) + 1))
                                 for name, _ in COUNTERS}
    names = [f"image {first}" if size == 1 else f"images {first}-{first + size - 1}"
             for first, size in zip(np.cumsum([0] + sizes[:-1]).tolist(), sizes)]
    assert seen == [(name, done, len(x)) for name, done in zip(names, np.cumsum(sizes))]


def test_sequential_hardware_never_writes_n_images(network):
    program, qmodel, x, _, _, answers = network
    fake = NetworkFake(program, qmodel, answers)
    driver = HostDriver(program, qmodel, Device(fake), image=IMAGE, images_per_run=2)
    driver.load()
    assert driver.run_sizes(len(x)) == [1] * len(x)
    result = driver.run(x)
    assert not any(entry[:2] == ("write", "N_IMAGES") for entry in fake.log)
    assert [type(run) for run in result.runs] == [NetworkRun] * len(x)
    assert not any(entry[0] == "read" and entry[1].startswith(("LATENCY", "INTERVAL"))
                   for entry in fake.log)


def test_pipelined_run_arguments_are_checked(network):
    program, qmodel, _, _, _, answers = network
    device = Device(PipelineFake(pipelined(program), qmodel, answers))
    with pytest.raises(ValueError, match="a pipelined run of 2 images: 5 codes"):
        device.run_network(np.arange(5), 4, n_images=2)
    with pytest.raises(ValueError, match="a pipelined run of 0 images"):
        device.run_network(np.arange(4), 4, n_images=0)
    with pytest.raises(ValueError, match="images_per_run must be at least 1, not 0"):
        HostDriver(pipelined(program), qmodel, device, image=IMAGE, images_per_run=0)


class UartLink:
    """A pyserial-like link to a byte-level model of the UART bridge in front of a
    :class:`PipelineFake`: WRITE / READ reach its registers, PROGRAM its image, and a
    whole-network run is the INPUTS (the codes) then the OUTPUTS (the count) that
    :class:`~bitline.sw.host.uart.UARTTransport` sends after CTRL.RUN_NETWORK."""

    def __init__(self, fake, config):
        self.fake, self.config = fake, config
        self.out = bytearray()
        self.codes = None

    def write(self, data):
        from bitline.hw.spec.uart_protocol import (
            ACK, INFO_BYTES, PROTOCOL_VERSION, Opcode, output_bytes,
        )

        data, width = bytes(data), output_bytes(self.config)
        while data:
            opcode = Opcode(data[0])
            argument = int.from_bytes(data[1:5], "little")
            if opcode == Opcode.PING:
                data = data[1:]
            elif opcode == Opcode.INFO:
                info = (PROTOCOL_VERSION | width << 8 | self.config.max_act_bits << 24
                        | 64 << 32 | 25_000_000 << 64 | 1 << 96)
                self.out += info.to_bytes(INFO_BYTES, "little")
                data = data[1:]
            elif opcode == Opcode.WRITE:
                self.fake.write_register(data[1], int.from_bytes(data[2:6], "little"))
                data = data[6:]
            elif opcode == Opcode.READ:
                self.out += self.fake.read_register(data[1]).to_bytes(4, "little")
                data = data[2:]
            elif opcode == Opcode.PROGRAM:
                self.fake.send_image(data[5:5 + argument])
                data = data[5 + argument:]
            elif opcode == Opcode.INPUTS:
                self.codes = np.frombuffer(data[5:5 + argument], dtype=np.uint8)
                data = data[5 + argument:]
            elif opcode == Opcode.OUTPUTS:
                values = self.fake.start_network(self.codes.astype(np.int64), argument)
                self.out += b"".join(int(v).to_bytes(width, "little", signed=True)
                                     for v in values)
                data = data[5:]
            else:
                raise AssertionError(f"unexpected opcode {opcode}")
            self.out.append(ACK)
        return len(data)

    def read(self, size):
        data, self.out[:size] = bytes(self.out[:size]), b""
        return data


def test_uart_runs_one_image_per_pipelined_run(network):
    """Over the half-duplex UART bridge a pipelined run carries one image (N_IMAGES = 1):
    the INPUTS of several images would wait for outputs nobody takes yet."""
    from bitline.sw.host.driver import PipelinedRun
    from bitline.sw.host.uart import UARTBridgeClient, UARTTransport

    program, qmodel, x, golden, codes, answers = network
    program = pipelined(program)
    fake = PipelineFake(program, qmodel, answers)
    transport = UARTTransport(UARTBridgeClient(UartLink(fake, program.config)),
                              program.config)
    assert transport.images_per_run == 1
    driver = HostDriver(program, qmodel, Device(transport), image=IMAGE)
    driver.load()
    result = driver.run(x)
    assert np.array_equal(result.output_int, golden.output_int)
    assert [(run.image, run.n_images) for run in result.runs] == [(i, 1) for i in range(len(x))]
    assert all(isinstance(run, PipelinedRun) for run in result.runs)
    runs = [entry for entry in fake.log if entry[0] == "network"]
    assert [entry[3] for entry in runs] == [1] * len(x)
    for (_, sent, _, _), sample in zip(runs, codes):
        assert np.array_equal(sent, sample.reshape(-1))


def test_a_pipelined_result_survives_the_bench_file(tmp_path):
    """The bench's result file (tb_accelerator._save_result) keeps a PipelinedRun's images,
    latency, interval and nodes; the RTL result sums only the summable counters."""
    from bitline.sim.cocotb.tb_accelerator import _save_result
    from bitline.sim.cocotb.tb_network import read_runs
    from bitline.sim.rtl import RtlResult
    from bitline.sw.host.driver import DriverResult, PipelinedRun

    counters = [{"cycles": 900 + k, "ou_reads": 40, "adc_conversions": 80,
                 "stall_cycles": 0, "reduction_operands": 5, "latency": 600 + k,
                 "interval": 100 + k} for k in range(2)]
    nodes = [[{"node_cycles": 10 * node + k, "node_input_stall": 3,
               "node_output_stall": k} for node in range(3)] for k in range(2)]
    runs = [PipelinedRun(2 * k, counters[k], nodes[k], 0.5, 2) for k in range(2)]
    output = np.zeros((4, 10))
    result = DriverResult(output=output, output_int=output.astype(np.int64), runs=runs)
    _save_result(str(tmp_path / "result.npz"), result, 5000, 1.0, 1.0)
    back = read_runs(tmp_path / "result.npz")
    assert back.runs == [dict(counters[k], n_images=2) for k in range(2)]
    assert back.nodes == nodes
    summed = RtlResult(output, output, {}, [], 5000, 1.0, 1.0, 0.0, 0.0, 0.0, "verilator",
                       None, runs=[dict(run, nodes=n) for run, n in zip(back.runs, nodes)])
    assert summed.pipelined
    assert summed.counters() == {"cycles": 1801, "ou_reads": 80, "adc_conversions": 160,
                                 "stall_cycles": 0, "reduction_operands": 10}
    assert result.counters() == summed.counters()


def test_pipeline_summary_sets_the_rtl_beside_the_model(tmp_path, random_cnn):
    """`bitline run --backend rtl`'s line for a pipelined bundle: the RTL's latency,
    interval and images/s, each beside pipeline_schedule's for as many images."""
    from bitline.hw.spec.net_timing import pipeline_schedule
    from bitline.sim.rtl import pipeline_summary

    rng = np.random.default_rng(9)
    model = random_cnn(tmp_path / "model.onnx", rng)
    config = small_config(rows=32, cols=64, n_xbars=4, max_act_bits=8, max_weight_bits=8,
                          max_out_channels=16, max_in_features=96)
    calib = rng.random((16, *model.input_shape)).astype(np.float32)
    program = compile_model(model, "bwq", "bwq3", config, calib, xbars="auto", network=True,
                            pipeline=True).program
    schedule = pipeline_schedule(program.config, program, 3)
    assert schedule.interval > 0
    # an RTL run one cycle slower than the model in each figure
    run = {"n_images": 3, "cycles": schedule.cycles + 1, "latency": schedule.latency + 1,
           "interval": schedule.interval + 1}
    line = pipeline_summary([run], program, 25.0)
    engines = program.config.pipeline_stages
    assert f"pipelined ({engines} stage engines): 3 image(s) in 1 run(s)" in line
    assert (f"latency {schedule.latency + 1:,} cycles (model {schedule.latency:,}), "
            f"interval {schedule.interval + 1:,} (model {schedule.interval:,}), run "
            f"{schedule.cycles + 1:,} (model {schedule.cycles:,})") in line
    assert f"at 25 MHz {(schedule.latency + 1) / 25:,.2f} us latency" in line
    assert (f"{25e6 / (schedule.interval + 1):,.0f} images/s (model "
            f"{25e6 / schedule.interval:,.0f}; clock / interval)") in line
    assert f"batch {3 * 25e6 / (schedule.cycles + 1):,.0f} images/s" in line
    with pytest.raises(ValueError, match="clock_mhz must be positive"):
        pipeline_summary([run], program, 0)
    with pytest.raises(ValueError, match="needs pipelined runs"):
        pipeline_summary([{"cycles": 5}], program, 25.0)
