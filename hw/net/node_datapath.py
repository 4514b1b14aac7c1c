"""The datapath of one node: reader elements to its consumer, the consumer's results out.

Shared by the sequential :class:`~bitline.hw.net.sequencer.Sequencer` and every engine of
the :class:`~bitline.hw.net.pipeline.Pipeline` (docs/network.md sections 4 and 6.8): while
``running``, the ``reader``'s elements go to the node's consumer - the scheduler's
``job_inputs`` (COMPUTE), the pool unit (POOL_MAX / POOL_AVG) or the residual add with
``reader_b`` (ADD) - and the consumer's results (the output FIFO's ``job_outputs``, the
pool's or the add's codes) come out as ``result_valid`` / ``result``; ``result_ready`` is
the host's ``ready`` for the ``to_host`` node and 1 otherwise (the buffer's write port
always takes a code).
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth import Mux, Signal, signed

from bitline.hw.net.pool import POOL_AVERAGE, POOL_MAX
from bitline.hw.spec.network import NodeKind

__all__ = ["NodeResult", "node_datapath"]


class NodeResult(NamedTuple):
    """The node's result stream (comb signals)."""

    valid: Signal
    payload: Signal
    ready: Signal


def node_datapath(m, acc_bits: int, node, running, reader, reader_b, pool, residual,
                  job_inputs, job_outputs, host_ready, base0, base1,
                  prefix: str = "") -> NodeResult:
    """Route node ``node``'s elements and results (module docstring) in ``m``.

    ``base0`` / ``base1`` are the readers' map bases (the record's ``window.base`` and
    ``src1_base``, or a pipeline engine's copy-offset bases); ``prefix`` names the result
    signals.
    """
    kind = node.kind
    compute = kind == NodeKind.COMPUTE
    pooling = (kind == NodeKind.POOL_MAX) | (kind == NodeKind.POOL_AVG)
    adding = kind == NodeKind.ADD
    m.d.comb += [
        reader.record.eq(node.window),
        reader.record.base.eq(base0),
        reader_b.record.eq(node.window),
        reader_b.record.base.eq(base1),
        pool.mode.eq(Mux(kind == NodeKind.POOL_AVG, POOL_AVERAGE, POOL_MAX)),
        pool.count_include_pad.eq(node.count_include_pad),
        residual.zero_a.eq(node.zero_a), residual.zero_b.eq(node.zero_b),
        residual.mult_a.eq(node.mult_a), residual.mult_b.eq(node.mult_b),
        residual.shift.eq(node.shift), residual.zero_point.eq(node.zero_point),
        residual.clamp_lo.eq(node.clamp_lo), residual.clamp_hi.eq(node.clamp_hi),
        job_inputs.payload.eq(reader.outputs.payload.code),
        pool.inputs.payload.eq(reader.outputs.payload),
        residual.a.payload.eq(reader.outputs.payload.code),
        residual.b.payload.eq(reader_b.outputs.payload.code),
        job_inputs.valid.eq(running & compute & reader.outputs.valid),
        pool.inputs.valid.eq(running & pooling & reader.outputs.valid),
        residual.a.valid.eq(running & adding & reader.outputs.valid),
        residual.b.valid.eq(running & adding & reader_b.outputs.valid),
        reader.outputs.ready.eq(running & Mux(compute, job_inputs.ready,
                                              Mux(pooling, pool.inputs.ready,
                                                  adding & residual.a.ready))),
        reader_b.outputs.ready.eq(running & adding & residual.b.ready),
    ]
    result = NodeResult(Signal(name=prefix + "result_valid"),
                        Signal(signed(acc_bits), name=prefix + "result"),
                        Signal(name=prefix + "result_ready"))
    m.d.comb += [
        result.valid.eq(running & Mux(compute, job_outputs.valid,
                                      Mux(pooling, pool.outputs.valid,
                                          adding & residual.outputs.valid))),
        result.payload.eq(Mux(compute, job_outputs.payload,
                              Mux(pooling, pool.outputs.payload, residual.outputs.payload))),
        result.ready.eq(Mux(node.to_host, host_ready, 1)),
        job_outputs.ready.eq(running & compute & result.ready),
        pool.outputs.ready.eq(running & pooling & result.ready),
        residual.outputs.ready.eq(running & adding & result.ready),
    ]
    return result
