"""The shared simulator set-up (tests/support/simulation.py) stops hung testbenches."""

import gc

import pytest
from amaranth.hdl import Module, Signal

from support.simulation import CLOCK_PERIOD, simulate


def counter():
    m = Module()
    m.count = Signal(8)
    m.d.sync += m.count.eq(m.count + 1)
    return m


def test_testbenches_run_in_order_until_they_return():
    dut = counter()
    seen = []

    async def first(ctx):
        await ctx.tick().repeat(3)
        seen.append(("first", ctx.get(dut.count)))

    async def second(ctx):
        await ctx.tick().repeat(5)
        seen.append(("second", ctx.get(dut.count)))

    simulate(dut, first, second)
    assert seen == [("first", 3), ("second", 5)]


# The hung testbench's coroutine stays suspended inside Amaranth's scheduler; closing it at
# garbage collection raises a harmless "aclose(): already running" report.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_deadline_names_the_hung_testbench():
    dut = counter()

    async def waits_for_ever(ctx):
        await ctx.tick().until(dut.count == 300)  # an 8-bit counter never gets there

    with pytest.raises(TimeoutError, match="waits_for_ever still running"):
        simulate(dut, waits_for_ever, deadline=1000 * CLOCK_PERIOD)
    gc.collect()  # close the suspended coroutine here, under this test's warning filter


def test_a_failing_assertion_propagates():
    dut = counter()

    async def fails(ctx):
        await ctx.tick()
        assert ctx.get(dut.count) == 2, "count after one tick"

    with pytest.raises(AssertionError, match="count after one tick"):
        simulate(dut, fails)
