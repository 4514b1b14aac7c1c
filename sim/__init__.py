"""Models that check the hardware and the compiler (docs/verification.md).

``golden`` (the integer model of a whole network), ``executor`` (runs an OU program on cell
images, ideal or analog), ``analog`` (the behavioral non-ideal crossbar), ``rtl`` (a bundle on
the generated Verilog under cocotb), ``amaranth`` (Amaranth-simulator helpers) and
``cocotb/`` (benches, runner and the crossbar model at the external ports).
"""
