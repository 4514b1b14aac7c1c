"""cocotb: the FPGA board core (UART, bridge, accelerator) classifies digits over its UART.

The bench (``bitline.sim.cocotb.tb_board_uart``) runs the unchanged host code -- UART client,
transport and host driver -- against the Verilog of
:class:`~bitline.hw.boards.core.UARTAccelerator`, with only the serial port simulated, and
checks every output against the golden model and the counters against the performance
model.

Sizes: the accelerator is :data:`bitline.sim.rtl.DIGITS_CONFIG` (ten 72 x 512 crossbars,
the smallest design the digits CNN maps onto, shared with the end-to-end bench) with emulated
crossbars; the UART runs at 4 clock cycles per bit (the fastest the receiver takes), and only
the top-level ports are visible to cocotb (``--no-public-flat-rw``, as ``bitline.sim.rtl``
builds), so the Verilator build stays in minutes and loading the image plus two images' layer
jobs (about 2.5 M cycles) in a few minutes more.
"""

from __future__ import annotations

import pytest

from bitline.hw.boards.core import UARTAccelerator
from bitline.sim.cocotb.runner import build_and_test, default_build_root, missing_tools
from bitline.sim.rtl import DIGITS_CONFIG

pytestmark = [
    pytest.mark.cocotb,
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_tools()),
                       reason=f"simulator tools not installed: {', '.join(missing_tools())}"),
]

BENCH = "bitline.sim.cocotb.tb_board_uart"
TOPLEVEL = "board_uart"
DIVISOR = 4
CLOCK_HZ = 4_000_000     # only the ratio to the baud rate matters in simulation
IMAGES = 2
#: The ports the bench touches (Verilog names of UARTAccelerator's signature, plus clock
#: and reset): the only signals Verilator makes visible.
PORTS = ("clk", "rst", "rx", "tx", "leds")


def ports_only_vlt():
    """Write (once) and return a Verilator config file making only :data:`PORTS` public."""
    path = default_build_root() / f"{TOPLEVEL}-ports.vlt"
    text = "`verilator_config\n" + "".join(
        f'public_flat_rw -module "{TOPLEVEL}" -var "{name}"\n' for name in PORTS)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    """The digits CNN compiled (bwq, 3-bit blocks) for DIGITS_CONFIG, as a bundle."""
    from bitline.sw.bundle import write_bundle
    from bitline.sw.flow import calibration_inputs, compile_model
    from bitline.sw.models import resolve_model

    model = resolve_model("digits-cnn")
    calib_x, _ = calibration_inputs(model, "digits")
    result = compile_model(model, "bwq", "bwq3", DIGITS_CONFIG, calib_x,
                           xbars=DIGITS_CONFIG.n_xbars)
    assert result.program.config == DIGITS_CONFIG
    out = tmp_path_factory.mktemp("digits-bundle")
    write_bundle(out, result.program, result.qmodel)
    return out


def test_digits_inference_through_the_uart_protocol(digits_bundle):
    design = UARTAccelerator(DIGITS_CONFIG, clock_hz=CLOCK_HZ, baud=CLOCK_HZ // DIVISOR)
    result = build_and_test(design, TOPLEVEL, BENCH, extra_env={
        "BITLINE_BUNDLE": str(digits_bundle),
        "BITLINE_IMAGES": str(IMAGES),
        "BITLINE_UART_DIVISOR": str(DIVISOR),
    }, verilator_args=["--no-public-flat-rw", str(ports_only_vlt())])
    assert result.tests == 1 and result.failed == 0
    print(f"\n{result.simulator}: build {result.build_seconds:.0f} s "
          f"({'cached' if result.cached else 'fresh'}), run {result.test_seconds:.0f} s")
