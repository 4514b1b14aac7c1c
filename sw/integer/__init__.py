"""The integer model: ``qmodel`` (the quantized model the quantizers produce), ``arith`` and
``tensor_ops`` (the integer arithmetic of docs/contract.md, sections 1-3, its one definition:
activation codes, the output unit and the compute layers; pooling, residual add, ReLU,
flatten) and ``graph`` (the per-layer dispatch and the graph walk the golden model and the
host driver share).

It lives in ``sw`` rather than beside the golden model in ``sim`` because the host driver runs
part of it (pooling, residual adds, im2col between layer jobs) and ``sw`` may not import
``sim``; :mod:`bitline.sim.golden` is this arithmetic applied to a whole model.
"""
