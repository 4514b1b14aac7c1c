"""One Amaranth simulator set-up for every test: a ``sync`` clock and async testbenches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Awaitable, Callable

from amaranth.sim import Simulator

__all__ = ["simulate", "CLOCK_PERIOD"]

#: Period of the ``sync`` clock in seconds (100 MHz; only the cycle count matters).
CLOCK_PERIOD = 1e-8

Testbench = Callable[..., Awaitable[None]]


def simulate(dut, *testbenches: Testbench, deadline: float | None = None,
             vcd: str | Path | None = None) -> None:
    """Run ``testbenches`` (``async def tb(ctx)``) on ``dut`` until every one returns.

    Parameters
    ----------
    dut:
        The elaboratable under test; its ``sync`` domain gets a clock of
        :data:`CLOCK_PERIOD`.
    testbenches:
        Async testbench functions, added in order with ``Simulator.add_testbench``; an
        exception in one propagates out of this call.
    deadline:
        Simulated time in seconds after which the run stops; ``TimeoutError`` if a testbench
        has not returned by then (a hung handshake fails instead of running forever).
        ``None`` runs until the testbenches return.
    vcd:
        Write a waveform to this path; without it, the environment variable ``WAVES=1``
        writes ``build/waves/<dut class>.vcd`` (as cocotb's ``WAVES``).
    """
    if not testbenches:
        raise ValueError("simulate() needs at least one testbench")
    sim = Simulator(dut)
    sim.add_clock(CLOCK_PERIOD)
    finished = [False] * len(testbenches)

    def tracked(index: int, testbench: Testbench) -> Testbench:
        async def run(ctx):
            await testbench(ctx)
            finished[index] = True
        return run

    for index, testbench in enumerate(testbenches):
        sim.add_testbench(tracked(index, testbench))
    if vcd is None and os.environ.get("WAVES") == "1":
        vcd = Path("build") / "waves" / f"{type(dut).__name__}.vcd"
    if vcd is not None:
        Path(vcd).parent.mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(vcd)):
            _run(sim, deadline)
    else:
        _run(sim, deadline)
    if not all(finished):
        waiting = [tb.__name__ for tb, done in zip(testbenches, finished) if not done]
        raise TimeoutError(f"testbench {', '.join(waiting)} still running at the deadline "
                           f"({deadline} s of simulated time)")


def _run(sim: Simulator, deadline: float | None) -> None:
    if deadline is None:
        sim.run()
    else:
        sim.run_until(deadline)
