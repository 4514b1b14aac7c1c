"""The integer golden model: a whole :class:`~bitline.sw.integer.qmodel.QuantizedModel` in numpy.

Step 2 of the verification ladder (docs/contract.md, docs/verification.md). The graph walk is
:func:`bitline.sw.integer.graph.walk` (shared with the host driver, :mod:`bitline.sw.host.driver`); every
piece of arithmetic comes from :mod:`bitline.sw.integer.arith` (docs/contract.md sections 1-3), the
same functions the host driver uses. The crossbar-level executor reuses :func:`run_golden` by
passing its own ``compute`` hook, so only the accumulation of compute layers differs
between the two and everything else (im2col with the zero-point padding, output unit,
pooling, add) is shared.

The ``compute`` hook contract
-----------------------------
``compute(qlayer, cols) -> acc``:

* ``qlayer`` is the :class:`~bitline.sw.integer.qmodel.QuantLayer` of a ``conv`` or ``gemm``;
* ``cols`` is int64 ``(M, K)``: the *raw* input codes of the layer's ``M = N * P`` input
  vectors in im2col order (:func:`~bitline.sw.integer.arith.layer_columns`, padding = ``z_in``).
  BWQ slice dropping (``qlayer.act_block_bits``) is **not** applied to them; a crossbar
  executor drops the slices by issuing only ``[slice_lo, slice_hi)``;
* ``acc`` must be int64 ``(M, O)`` and, in ideal mode, equal
  :func:`bitline.sw.integer.arith.compute_acc` (which applies ``apply_act_block_bits`` itself,
  with ``ou_rows = qmodel.spec["ou_rows"]``). The bias is *not* part of ``acc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bitline.sw.integer import arith, graph
from bitline.sw.integer.qmodel import QuantizedModel

__all__ = ["GoldenResult", "run_golden", "golden_accuracy"]


@dataclass
class GoldenResult:
    """What :func:`run_golden` returns.

    Attributes
    ----------
    output:
        float64 ``(N, *output_shape)``: the dequantized model output. Raw mode:
        ``(acc + bias) * s_in * s_w[n]``; otherwise ``scale * (q - zero_point)``.
    output_int:
        int64 ``(N, *output_shape)``: the output codes, or ``acc + bias`` in raw mode.
    layers:
        Layer name -> int64 ``(N, *layer.output_shape)`` output (filled with
        ``return_all=True``, else empty).
    """

    output: np.ndarray
    output_int: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)


def run_golden(
    qmodel: QuantizedModel,
    x: np.ndarray,
    *,
    compute: arith.ComputeHook | None = None,
    return_all: bool = False,
) -> GoldenResult:
    """Run the quantized model on a float batch with integer arithmetic only.

    Parameters
    ----------
    qmodel:
        The quantized model.
    x:
        Float batch ``(N, *model.input_shape)``, quantized with ``qmodel.input``
        (:func:`~bitline.sw.integer.arith.quantize_input`).
    compute:
        Accumulator hook of compute layers (see the module docstring); default
        :func:`~bitline.sw.integer.arith.compute_acc`, exact.
    return_all:
        Keep every layer's integer output in :attr:`GoldenResult.layers`.

    Returns
    -------
    GoldenResult

    Raises
    ------
    ValueError
        If ``x`` has the wrong shape, a layer is missing from ``qmodel.layers``, or a layer's
        computation fails (the message names the layer).
    """
    x = graph.check_input(qmodel, x)
    ou_rows = graph.spec_ou_rows(qmodel)

    def forward(qlayer, inputs):
        return graph.layer_forward(qlayer, inputs, compute=compute, ou_rows=ou_rows)

    codes = arith.quantize_input(x, qmodel.input)
    output_int, kept = graph.walk(qmodel, codes, forward, return_all=return_all)
    output = graph.model_output(qmodel, output_int)
    return GoldenResult(output=output, output_int=output_int, layers=kept)


def golden_accuracy(
    qmodel: QuantizedModel, x: np.ndarray, y: np.ndarray, *, batch_size: int = 512
) -> float:
    """Return the top-1 accuracy of the golden model on ``(x, y)``.

    The prediction is the argmax over the flattened output of each sample; ``x`` is run in
    batches of ``batch_size``.
    """
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels")
    if len(y) == 0:
        raise ValueError("golden_accuracy needs at least one sample")
    correct = 0
    for start in range(0, len(y), batch_size):
        result = run_golden(qmodel, x[start:start + batch_size])
        predicted = result.output.reshape(len(result.output), -1).argmax(axis=1)
        correct += int(np.sum(predicted == y[start:start + batch_size]))
    return correct / len(y)
