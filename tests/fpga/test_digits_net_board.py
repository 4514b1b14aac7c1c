"""The whole-network FPGA design runs both digits networks behind its UART bridge (cocotb).

``examples/fpga/ulx3s-digits-net.toml`` is the design docs/fpga.md section 6 builds for the
ULX3S-85F. This bench compiles the digits CNN and the digits ResNet ``--network`` onto that
config as it is (one hardware for both) and runs each through the simulated board
(``bitline.sim.cocotb.tb_board_uart``: the Verilog of the board core without PLL and pins
under Verilator, the unchanged host code behind a simulated serial port): two digits test
images per network, outputs bit-exact against the golden model, every counter of every
whole-network run against :func:`bitline.sw.perf.network_report` (the bench's checks).

From the counters read back it prints the figures docs/fpga.md quotes: cycles per image
(with and without the cycles the accelerator waited for the simulated UART, which runs at 4
clock cycles per bit), images/s at the example's clock (``clock_mhz``, the clock the routed
build met), and images/s with a real serial link: the bytes one whole-network run puts on
the wire (:func:`run_wire_bytes`, the commands of
:meth:`~bitline.sw.host.uart.UARTTransport.start_network`) at the board's default 1 Mbaud
and at 115,200 baud, sent and answered one after another (a bound: the board's answer to
``OUTPUTS`` can only start when the last node is done).

Opt-in (``BITLINE_DIGITS_NET_BOARD=1``): one Verilator build of the seven-unit design
(several minutes) and about 3 M simulated cycles per network, most of them the program's
load over the UART.
"""

from __future__ import annotations

import os
import re
from importlib import resources

import numpy as np
import pytest

from bitline.hw.boards.core import DEFAULT_BAUD, UARTAccelerator
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.uart_protocol import output_beat_bytes
from bitline.sim.cocotb.runner import build_and_test, default_build_root, missing_tools
from bitline.sw.perf import network_report

BOARD_BENCH = [
    pytest.mark.cocotb,
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_tools()),
                       reason=f"simulator tools not installed: {', '.join(missing_tools())}"),
    pytest.mark.skipif(os.environ.get("BITLINE_DIGITS_NET_BOARD") != "1",
                       reason="the seven-unit design over the UART takes minutes: "
                              "BITLINE_DIGITS_NET_BOARD=1"),
]

BENCH = "bitline.sim.cocotb.tb_board_uart"
TOPLEVEL = "board_uart"
DIVISOR = 4
CLOCK_HZ = 4_000_000     # only the ratio to the baud rate matters in simulation
IMAGES = 2
PORTS = ("clk", "rst", "rx", "tx", "leds")
#: Bits on the wire per byte (8N1).
FRAME_BITS = 10
#: The bench's line per whole-network run (``check_network_runs``).
RUN_LINE = re.compile(r"(\d+) cycles \((\d+) waiting for the UART; model (\d+) without waits\)")


def example_config() -> AcceleratorConfig:
    path = resources.files("bitline.examples.fpga") / "ulx3s-digits-net.toml"
    with resources.as_file(path) as file:
        return AcceleratorConfig.load(file)


def ports_only_vlt():
    """The Verilator config making only :data:`PORTS` public (as the board UART bench)."""
    path = default_build_root() / f"{TOPLEVEL}-ports.vlt"
    text = "`verilator_config\n" + "".join(
        f'public_flat_rw -module "{TOPLEVEL}" -var "{name}"\n' for name in PORTS)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def run_wire_bytes(config: AcceleratorConfig, n_codes: int, n_outputs: int) -> int:
    """Bytes both ways of one whole-network run over the UART, counted from the protocol.

    ``WRITE CTRL`` (opcode, 1-byte address, 4-byte value; ``ACK``), ``READ STATUS`` (opcode
    and address; 4 bytes and ``ACK``), ``INPUTS`` (opcode, 4-byte count, one byte per code
    with one lane; ``ACK``), ``OUTPUTS`` (opcode, 4-byte count; ``n_outputs`` beats of
    ``output_beat_bytes`` and ``ACK``).
    """
    sent = (1 + 1 + 4) + (1 + 1) + (1 + 4 + n_codes) + (1 + 4)
    answered = 1 + (4 + 1) + 1 + (n_outputs * output_beat_bytes(config) + 1)
    return sent + answered


def test_run_wire_bytes_counts_the_transport():
    # the count equals what UARTTransport.start_network writes and expects back
    from bitline.sw.host.uart import UARTBridgeClient, UARTTransport

    config = example_config()
    counted = {"sent": 0, "answered": 0}

    class Client(UARTBridgeClient):
        def __init__(self):
            pass

        def send(self, command, answer=0):
            counted["sent"] += len(command)
            counted["answered"] += answer + 1
            return [bytes(answer)]

        def flush(self):
            pass

    transport = UARTTransport.__new__(UARTTransport)
    transport.client, transport.config, transport.lanes = Client(), config, 1
    transport.width = output_beat_bytes(config)
    transport.start_network(np.arange(64) % 256, 10)
    assert counted["sent"] + counted["answered"] == run_wire_bytes(config, 64, 10)


@pytest.mark.parametrize("name", [pytest.param(name, marks=BOARD_BENCH)
                                  for name in ("digits-cnn", "digits-resnet")])
def test_digits_network_on_the_board_design(name, tmp_path):
    from bitline.sw.bundle import write_bundle
    from bitline.sw.flow import calibration_inputs, compile_model
    from bitline.sw.models import resolve_model

    config = example_config()
    model = resolve_model(name)
    calib, _ = calibration_inputs(model, "digits")
    result = compile_model(model, "bwq", "bwq3", config, calib, xbars="auto", network=True)
    program = result.program
    assert program.config == config, f"{name}: compile sized the example config up"
    bundle = write_bundle(tmp_path / "bundle", program, result.qmodel)
    env = {"BITLINE_BUNDLE": str(bundle), "BITLINE_IMAGES": str(IMAGES),
           "BITLINE_UART_DIVISOR": str(DIVISOR), "BITLINE_BOARD_MHZ": str(config.clock_mhz)}
    design = UARTAccelerator(config, clock_hz=CLOCK_HZ, baud=CLOCK_HZ // DIVISOR)
    bench = build_and_test(design, TOPLEVEL, BENCH, extra_env=env,
                           verilator_args=["--no-public-flat-rw", str(ports_only_vlt())])
    assert bench.tests == 1 and bench.failed == 0

    # the bench's log of this run (the newest of the build folder's run logs)
    log = max(bench.build_dir.glob("run-*.log"), key=lambda path: path.stat().st_mtime)
    runs = [tuple(map(int, match)) for match in RUN_LINE.findall(log.read_text())]
    assert len(runs) == IMAGES, f"{log}: {len(runs)} whole-network runs logged"
    modelled = network_report(program).cycles
    n_codes = int(np.prod(model.input_shape))
    wire = run_wire_bytes(config, n_codes, int(np.prod(model.output_shape)))
    hz = config.clock_mhz * 1e6
    for cycles, waiting, model_cycles in runs:
        assert model_cycles == modelled
        compute = cycles - waiting
        assert modelled <= compute <= cycles
        print(f"\n{name}: {cycles} cycles per image ({waiting} waiting for the simulated "
              f"UART), {compute} without; at {config.clock_mhz:g} MHz "
              f"{hz / compute:.0f} images/s without the UART; with {wire} bytes per run "
              f"on the wire: {1 / (compute / hz + wire * FRAME_BITS / DEFAULT_BAUD):.0f} "
              f"images/s at {DEFAULT_BAUD} baud, "
              f"{1 / (compute / hz + wire * FRAME_BITS / 115_200):.0f} at 115200 baud; "
              f"Verilator build {bench.build_seconds:.0f} s, run {bench.test_seconds:.0f} s")
