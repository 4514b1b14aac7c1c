"""The integer model: ``qmodel`` (the quantized model the quantizers produce), ``arith`` (the
integer arithmetic of docs/contract.md, sections 1-3: its one definition) and ``graph`` (the
graph walk the golden model and the host driver share).

It lives in ``sw`` rather than beside the golden model in ``sim`` because the host driver runs
part of it (pooling, residual adds, im2col between layer jobs) and ``sw`` may not import
``sim``; :mod:`bitline.sim.golden` is this arithmetic applied to a whole model.
"""
