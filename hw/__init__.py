"""The machine: accelerator config, encodings and the Amaranth periphery (docs/hardware.md).

``config``, ``encoding``, ``bundle_format`` and ``timing`` describe the machine as plain
Python; ``xbar_port``, ``emulator``, ``row_driver``, ``ou_controller``, ``adc_mux``,
``shift_add``, ``unit``, ``scheduler``, ``reduction``, ``output_unit``, ``loader``, ``host``
and ``top`` are its Amaranth components; ``memories`` computes their contents from a mapped
program; ``generate`` and ``tools`` write and check the Verilog. Nothing here imports
``bitline.sw`` or ``bitline.sim``.
"""
