"""cocotb: the FPGA board core (UART, bridge, accelerator) runs a network over its UART.

The bench (``bitline.sim.cocotb.tb_board_uart``) runs the unchanged host code -- UART client,
transport and host driver -- against the Verilog of
:class:`~bitline.hw.boards.core.UARTAccelerator`, with only the serial port simulated, and
checks every output against the golden model and the counters against the performance
model.

Workloads:

* ``small`` (the default suite): a seeded random CNN (conv, ReLU, pool, gemm) compiled with
  ``bwq`` onto :data:`support.configs.E2E_SMALL_CONFIG` (three 36 x 128 crossbars with shared
  ADCs) with the whole-network fields that ``small-network`` sizes, run as per-layer jobs
  (the design of ``small-network``: one Verilator build for both), two samples -- every
  piece of the UART path (framing, the bridge's commands, image load with CRCs, im2col jobs,
  output and counter read-back) in about a minute cold; its emulated crossbars (and
  ``small-network``'s) store the cells one OU per word (``emulator_ou_words``, the FPGA's
  block-RAM organization), ``small-copies``' one row per word;
* ``small-copies`` (the default suite): the same network with two copies of its first
  layer and three of its last (``Program.with_copies``: ``max_copies = 3``, three lanes on
  the board's streams and the UART protocol) -- the host sends each copy's share in its
  lane and reassembles the outputs in order, bit-exact, counters = the model with copies
  (a second Verilator build: 523 s cold, run 115 s, measured on the loaded 2-core machine;
  the one-lane ``small`` took 255 s and 46 s there);
* ``small-network`` (the default suite): the same network compiled ``--network``
  (``E2E_SMALL_CONFIG`` plus the activation buffer and node records it needs): one
  whole-network run per sample, only the sample's codes and the logits cross the UART;
  outputs bit-exact, counters of the run and of every node = ``sw/perf/network.py`` (up to
  the UART's stalls, which only the input phase and the last node can see);
* ``digits``: the digits CNN on :data:`bitline.sim.rtl.DIGITS_CONFIG` (ten 72 x 512
  crossbars), two test images -- 4.1 M simulated cycles, about 7 minutes cold (a 226 s
  Verilator build, 193 s run); opt-in with ``BITLINE_DIGITS_BOARD=1`` to keep the default
  suite short (docs/fpga.md).

The crossbars are emulated; the UART runs at 4 clock cycles per bit (the fastest the receiver
takes), and only the top-level ports are visible to cocotb (``--no-public-flat-rw``, as
``bitline.sim.rtl`` builds).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bitline.hw.boards.core import UARTAccelerator
from bitline.sim.cocotb.runner import build_and_test, default_build_root, missing_tools
from bitline.sim.rtl import DIGITS_CONFIG

from support.configs import E2E_SMALL_CONFIG
from support.networks import random_cnn_onnx

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


def digits_workload(root):
    """The digits CNN compiled (bwq, 3-bit blocks) for DIGITS_CONFIG; inputs: test images."""
    from bitline.sw.flow import calibration_inputs
    from bitline.sw.models import resolve_model

    model = resolve_model("digits-cnn")
    calib_x, _ = calibration_inputs(model, "digits")
    return model, calib_x, None, DIGITS_CONFIG


def small_workload(root):
    """A seeded random CNN for E2E_SMALL_CONFIG, with two seeded input samples."""
    rng = np.random.default_rng(7)
    model = random_cnn_onnx(root / "small.onnx", rng)
    calib_x = rng.random((16, *model.input_shape)).astype(np.float32)
    inputs = root / "inputs.npy"
    np.save(inputs, rng.random((IMAGES, *model.input_shape)).astype(np.float32))
    return model, calib_x, inputs, E2E_SMALL_CONFIG


@pytest.mark.parametrize("workload", [
    "small",
    "small-copies",
    "small-network",
    pytest.param("digits", marks=pytest.mark.skipif(
        os.environ.get("BITLINE_DIGITS_BOARD") != "1",
        reason="the digits CNN over the UART takes ~7 min cold: BITLINE_DIGITS_BOARD=1")),
])
def test_inference_through_the_uart_protocol(workload, tmp_path):
    from bitline.sw.bundle import write_bundle
    from bitline.sw.flow import compile_model

    model, calib_x, inputs, config = {"small": small_workload, "small-copies": small_workload,
                                      "small-network": small_workload,
                                      "digits": digits_workload}[workload](tmp_path)
    network = workload == "small-network"
    if workload in ("small", "small-network"):
        # their design stores the emulated cells one OU per word (block RAM on the FPGA,
        # written one column group per cycle): the image's rows arrive over the UART
        # loader into it; ``small-copies`` keeps the row banks, so both are run
        config = config.replace(emulator_ou_words=1)
    if workload == "small":
        # the one-lane per-layer run uses the design of ``small-network`` (the same units
        # plus the activation buffer and node records): layer jobs on whole-network
        # hardware, and one Verilator build less for the suite
        config = compile_model(model, "bwq", "bwq3", config, calib_x, xbars=config.n_xbars,
                               network=True).program.config
    result = compile_model(model, "bwq", "bwq3", config, calib_x, xbars=config.n_xbars,
                           network=network)
    program = result.program
    if network:
        assert program.nodes and program.config.network
        config = program.config
    assert program.config == config
    if workload == "small-copies":
        names = [layer.name for layer in program.layers]
        program = program.with_copies({names[0]: 2, names[-1]: 3})
        config = program.config
        assert config.max_copies == 3
        assert (program.layers[0].copies, program.layers[-1].copies) == (2, 3)
    bundle = write_bundle(tmp_path / "bundle", program, result.qmodel)
    env = {"BITLINE_BUNDLE": str(bundle), "BITLINE_IMAGES": str(IMAGES),
           "BITLINE_UART_DIVISOR": str(DIVISOR)}
    if inputs is not None:
        env["BITLINE_INPUTS"] = str(inputs)
    design = UARTAccelerator(config, clock_hz=CLOCK_HZ, baud=CLOCK_HZ // DIVISOR)
    result = build_and_test(design, TOPLEVEL, BENCH, extra_env=env,
                            verilator_args=["--no-public-flat-rw", str(ports_only_vlt())])
    assert result.tests == 1 and result.failed == 0
    print(f"\n{workload}: {result.simulator}: build {result.build_seconds:.0f} s "
          f"({'cached' if result.cached else 'fresh'}), run {result.test_seconds:.0f} s")
