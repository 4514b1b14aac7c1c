"""The contract as plain Python: what the compiler, the golden models and the RTL share.

No elaboratables live here. ``config`` (the accelerator parameters and presets), ``encoding``
(bit layouts of records and their packing), ``image`` (the ``image.bin`` format and its CRC),
``program`` (the OU program types and their one validator), ``registers`` (the register map),
``uart_protocol`` (the board protocol) and ``timing`` (the one cycle formula the RTL counters
and the performance model share).
"""
