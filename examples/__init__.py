"""Example input files shipped with bitline (package data, no code).

Read them through :mod:`importlib.resources`, which finds them in a source checkout (the
top-level ``examples/`` folder) and in an installed wheel alike::

    importlib.resources.files("bitline.examples") / "quant" / "bwq3.toml"

* ``analog/`` -- :class:`bitline.sim.analog_params.AnalogParams` files (``ideal``, ``typical``).
* ``fpga/`` -- accelerator configs for ``bitline fpga`` (``ulx3s-small``, ``ulx3s-bwq``).
* ``quant/`` -- per-layer quantization specs, one per shorthand of ``--quant``.
* ``rtl/`` -- the accelerator the cocotb end-to-end benches run the digits CNN on.

This file makes the folder a regular package: Python 3.11's ``importlib.resources`` cannot
read a namespace package under setuptools' editable install (its path placeholder is not a
directory), so a data-only package needs an ``__init__.py`` to be found in both layouts.
"""
