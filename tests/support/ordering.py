"""The order in which the test files are handed to the pytest-xdist workers."""

__all__ = ["LONGEST_FIRST"]

#: The longest test files (Verilator builds, the bitstream, the wheel), longest first. They
#: are collected before all others, so that pytest-xdist's ``--dist loadfile`` hands them out
#: first and the short files fill the gaps (longest processing time first);
#: ``--no-loadscope-reorder`` in pyproject.toml keeps this order (xdist otherwise sorts the
#: files by their number of tests, which started the bitstream build last).
LONGEST_FIRST = (
    "cocotb/test_e2e_network.py",
    "cocotb/test_e2e_network_pipeline.py",
    "hw/test_pipeline_engines.py",
    "cocotb/test_e2e_digits.py",
    "cocotb/test_e2e_digits_copies.py",
    "cocotb/test_axi.py",
    "cocotb/test_rtl_regression.py",
    "fpga/test_bitstream.py",
    "cocotb/test_e2e_small.py",
    "cocotb/test_e2e_copies.py",
    "cocotb/test_board_uart.py",
    "cocotb/test_e2e_emulated.py",
    "hw/test_verilog.py",
    "hw/test_network_sequencer.py",
    "hw/test_network_compiled.py",
    "cocotb/test_cocotb_smoke.py",
    "e2e/test_wheel.py",
    "hw/test_model.py",
    "fpga/test_fpga.py",
)
