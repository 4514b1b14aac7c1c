"""cocotb: the FPGA board core (UART, bridge, accelerator) classifies digits over its UART.

The bench (``bitline.sim.cocotb.tb_board_uart``) runs the unchanged host code -- UART client,
transport and host driver -- against the Verilog of
:class:`~bitline.hw.boards.core.UARTAccelerator`, with only the serial port simulated, and
checks every output against the golden model and the counters against the performance
model. The UART runs at 4 clock cycles per bit (the fastest the receiver takes) so that
loading the 41 KB image and two images' layer jobs stay within a few minutes.
"""

from __future__ import annotations

import pytest

from bitline.hw.boards.core import UARTAccelerator
from bitline.sim.cocotb.runner import build_and_test, missing_tools

pytestmark = [
    pytest.mark.cocotb,
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_tools()),
                       reason=f"simulator tools not installed: {', '.join(missing_tools())}"),
]

BENCH = "bitline.sim.cocotb.tb_board_uart"
CONFIG_FILE = "examples/fpga/ulx3s-bwq.toml"
DIVISOR = 4
CLOCK_HZ = 4_000_000     # only the ratio to the baud rate matters in simulation
IMAGES = 2


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    """The digits CNN compiled (bwq, 3-bit blocks) for the FPGA config, as a bundle."""
    from pathlib import Path

    from bitline.sw.bundle import write_bundle
    from bitline.sw.cli_compile import calibration_inputs, compile_model, load_config
    from bitline.sw.models import resolve_model

    root = Path(__file__).resolve().parents[2]
    config = load_config(root / CONFIG_FILE)
    model = resolve_model("digits-cnn")
    calib_x, _ = calibration_inputs(model, model_name="digits-cnn")
    result = compile_model(model, "bwq", "bwq3", config, calib_x)
    out = tmp_path_factory.mktemp("digits-bundle")
    write_bundle(out, result.program, result.qmodel)
    return out, result.program.config


def test_digits_inference_through_the_uart_protocol(digits_bundle):
    bundle_dir, config = digits_bundle
    design = UARTAccelerator(config, clock_hz=CLOCK_HZ, baud=CLOCK_HZ // DIVISOR)
    result = build_and_test(design, "board_uart", BENCH, extra_env={
        "BITLINE_BUNDLE": str(bundle_dir),
        "BITLINE_IMAGES": str(IMAGES),
        "BITLINE_UART_DIVISOR": str(DIVISOR),
    })
    assert result.tests == 1 and result.failed == 0
    print(f"\n{result.simulator}: {config.n_xbars} units, build {result.build_seconds:.0f} s "
          f"({'cached' if result.cached else 'fresh'}), run {result.test_seconds:.0f} s")
