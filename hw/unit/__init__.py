"""One crossbar unit: the blocks between an OU entry and a partial sum.

``xbar_port`` (the crossbar boundary signature the emulator, the analog model and board tops
plug into), ``row_driver`` (input registers, row map, DAC slices), ``ou_controller`` (walks the
unit's OU entries), ``adc_mux`` (ADC sharing), ``shift_add`` (per-column shift-and-add),
``emulator`` (a synthesizable digital crossbar) and ``crossbar_unit`` (them, joined).
"""
