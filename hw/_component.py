"""Small helpers shared by the Amaranth components."""

from __future__ import annotations

import functools

__all__ = ["rejects_quietly"]


def rejects_quietly(init):
    """Decorate a component ``__init__`` so a rejected construction raises cleanly.

    Amaranth warns about every elaboratable that is created and never elaborated; a
    component whose constructor raises ``ValueError`` on a bad parameter was never meant
    to be used, so the warning is silenced (Amaranth's own ``MustUse`` switch).
    """
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except Exception:
            self._MustUse__silence = True
            raise
    return wrapper
