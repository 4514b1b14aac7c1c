"""Pieces shared by the loader's components: the error-code shape and restartable FSM states."""

from __future__ import annotations

from contextlib import contextmanager

from amaranth import unsigned
from amaranth.lib import stream

__all__ = ["ERROR_SHAPE", "error_signature", "restartable_state"]

#: Shape of an :class:`~bitline.hw.spec.registers.ErrorCode` (STATUS bits 8..15).
ERROR_SHAPE = unsigned(8)


def error_signature() -> stream.Signature:
    """Return the signature of an error report: ``valid`` for one cycle, the code as payload.

    A component raises it in the cycle a check fails and stops; the first report of an image
    is the one :class:`~bitline.hw.loader.loader.Loader` keeps.
    """
    return stream.Signature(ERROR_SHAPE, always_ready=True)


@contextmanager
def restartable_state(m, name: str, start, restart_state: str):
    """Open FSM state ``name`` whose body runs only while ``start`` is low.

    ``start`` (the loader's registered restart) wins over everything a state does: the FSM
    goes to ``restart_state`` and no output of the state is asserted in that cycle.
    """
    with m.State(name):
        with m.If(start):
            m.next = restart_state
        with m.Else():
            yield
