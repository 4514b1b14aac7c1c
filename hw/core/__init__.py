"""The accelerator around the units: ``top`` (:class:`~bitline.hw.core.top.Accelerator`),
``scheduler`` (input vectors, temporal schedule, drains), ``reduction`` (partial sums across
units with hollow exemption), ``output_unit`` (bias, requantization, clamp), ``host_interface``
(registers and counters) and ``memories`` (memory contents computed from an OU program).
"""
