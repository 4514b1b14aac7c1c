"""The machine: the contract as plain Python and the Amaranth periphery (docs/architecture.md).

``spec`` describes the machine without elaboratables (config, bit layouts, image format, OU
program, register map, UART protocol, timing); ``unit`` holds the per-crossbar blocks, ``core``
the accelerator around them, ``loader`` the image loader, ``io`` the UART and its bridge,
``boards`` board tops and ``toolchain`` Verilog generation and the FPGA tool flow. Nothing here
imports ``bitline.sw`` or ``bitline.sim`` (tests/unit/test_layering.py).
"""
