"""Shared test helpers (importable as ``support`` through pytest's ``pythonpath``).

* :mod:`support.configs` -- the small accelerator configs the block and simulator tests use.
* :mod:`support.simulation` -- one Amaranth simulator set-up (:func:`~support.simulation.simulate`).
* :mod:`support.networks` -- the small test networks (IR models and ONNX files).

These are test fixtures, not library code, so they live outside the ``bitline`` package;
the Amaranth helpers that drive an accelerator (``run_job``, ``load_image``, ...) stay in
:mod:`bitline.sim.amaranth` for library users.
"""
