"""AXI4-Lite bridge (hw/io/axi.py) in the Amaranth simulator, in front of the real HostInterface.

Independent AW / W arrival (either first, with gaps), a held write response, a read and a
write offered in the same cycle, and the error answers of docs/integration.md: SLVERR for a
read-only register, the write-only CTRL and a partial ``wstrb``; DECERR for unmapped
addresses; refused writes change nothing. The end-to-end check of the whole AXI top is
tests/cocotb/test_axi.py (cocotbext-axi, digits CNN).
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, connect, flipped
from amaranth.sim import Simulator

from bitline.hw.core.host_interface import HostInterface
from bitline.hw.io.axi import AXI4LiteSignature, AxiLiteBridge, AxiResp
from bitline.hw.spec.image import MAGIC_WORD
from bitline.hw.spec.registers import Register

from support.configs import small_config


class _Dut(wiring.Component):
    def __init__(self):
        self.host = HostInterface(small_config())
        super().__init__({"axil": In(AXI4LiteSignature())})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = AxiLiteBridge()
        m.submodules.host = self.host
        connect(m, flipped(self.axil), bridge.axil)
        connect(m, bridge.csr, self.host.csr)
        return m


def _run(body):
    dut = _Dut()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    log = []

    async def testbench(ctx):
        await body(ctx, dut.axil, log)

    sim.add_testbench(testbench)
    sim.run()
    return log


async def _write(ctx, bus, word, value, *, strobes=0b1111, aw_delay=0, w_delay=0,
                 b_delay=0):
    """One AXI4-Lite write: AW after ``aw_delay`` cycles, W after ``w_delay``; B taken
    ``b_delay`` cycles after it is offered. Returns bresp."""
    aw_sent = w_sent = False
    cycle = 0
    while not (aw_sent and w_sent):
        ctx.set(bus.awvalid, not aw_sent and cycle >= aw_delay)
        ctx.set(bus.awaddr, 4 * word)
        ctx.set(bus.wvalid, not w_sent and cycle >= w_delay)
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, strobes)
        aw_now = ctx.get(bus.awvalid) and ctx.get(bus.awready)
        w_now = ctx.get(bus.wvalid) and ctx.get(bus.wready)
        await ctx.tick()
        aw_sent, w_sent, cycle = aw_sent or aw_now, w_sent or w_now, cycle + 1
    ctx.set(bus.awvalid, 0)
    ctx.set(bus.wvalid, 0)
    while not ctx.get(bus.bvalid):
        await ctx.tick()
    for _ in range(b_delay):
        await ctx.tick()
        assert ctx.get(bus.bvalid)          # held until taken
    ctx.set(bus.bready, 1)
    resp = ctx.get(bus.bresp)
    await ctx.tick()
    ctx.set(bus.bready, 0)
    return AxiResp(resp)


async def _read(ctx, bus, word):
    """One AXI4-Lite read; returns (rdata, rresp)."""
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.araddr, 4 * word)
    while not ctx.get(bus.arready):
        await ctx.tick()
    await ctx.tick()
    ctx.set(bus.arvalid, 0)
    while not ctx.get(bus.rvalid):
        await ctx.tick()
    ctx.set(bus.rready, 1)
    value, resp = ctx.get(bus.rdata), ctx.get(bus.rresp)
    await ctx.tick()
    ctx.set(bus.rready, 0)
    return value, AxiResp(resp)


def test_independent_address_and_data_and_held_response():
    async def body(ctx, bus, log):
        log.append(await _write(ctx, bus, Register.LAYER, 3, aw_delay=3))   # W first
        log.append(await _read(ctx, bus, Register.LAYER))
        log.append(await _write(ctx, bus, Register.N_VECTORS, 77, w_delay=4, b_delay=3))
        log.append(await _read(ctx, bus, Register.N_VECTORS))
        log.append(await _read(ctx, bus, Register.N_SHARE))     # N_VECTORS sets N_SHARE
        log.append(await _read(ctx, bus, Register.ID))

    assert _run(body) == [AxiResp.OKAY, (3, AxiResp.OKAY), AxiResp.OKAY, (77, AxiResp.OKAY),
                          (77, AxiResp.OKAY), (MAGIC_WORD, AxiResp.OKAY)]


def test_error_responses_change_nothing():
    async def body(ctx, bus, log):
        await _write(ctx, bus, Register.N_VECTORS, 5)
        log.append(await _write(ctx, bus, Register.ID, 1))                  # read-only
        log.append(await _write(ctx, bus, 12, 1))                           # unmapped
        log.append(await _write(ctx, bus, 255, 1))
        log.append(await _write(ctx, bus, Register.N_VECTORS, 9, strobes=0b0011))
        log.append(await _write(ctx, bus, Register.N_VECTORS, 9, strobes=0))
        log.append(await _read(ctx, bus, Register.N_VECTORS))
        log.append(await _read(ctx, bus, Register.CTRL))                    # write-only
        log.append(await _read(ctx, bus, 12))
        log.append(await _read(ctx, bus, Register.ID))

    assert _run(body) == [AxiResp.SLVERR, AxiResp.DECERR, AxiResp.DECERR, AxiResp.SLVERR,
                          AxiResp.OKAY, (5, AxiResp.OKAY), (0, AxiResp.SLVERR),
                          (0, AxiResp.DECERR), (MAGIC_WORD, AxiResp.OKAY)]


def test_read_and_write_offered_in_the_same_cycle():
    async def body(ctx, bus, log):
        await _write(ctx, bus, Register.LAYER, 2)
        # AW, W and AR all valid in the same cycle: the write wins the register bus, the
        # read follows and sees the old or the new value, never a mix
        ctx.set(bus.awvalid, 1), ctx.set(bus.awaddr, 4 * Register.LAYER)
        ctx.set(bus.wvalid, 1), ctx.set(bus.wdata, 1), ctx.set(bus.wstrb, 0b1111)
        ctx.set(bus.arvalid, 1), ctx.set(bus.araddr, 4 * Register.N_VECTORS)
        ctx.set(bus.bready, 1), ctx.set(bus.rready, 1)
        got_b = got_r = None
        for _ in range(10):
            # what moves at this edge (valid and ready both high), sampled before it
            moved = {name: ctx.get(getattr(bus, name + "valid"))
                     and ctx.get(getattr(bus, name + "ready")) for name in ("aw", "w", "ar")}
            if ctx.get(bus.bvalid):
                got_b = AxiResp(ctx.get(bus.bresp))
            if ctx.get(bus.rvalid):
                got_r = (ctx.get(bus.rdata), AxiResp(ctx.get(bus.rresp)))
            await ctx.tick()
            for name, done in moved.items():
                if done:
                    ctx.set(getattr(bus, name + "valid"), 0)
        ctx.set(bus.bready, 0), ctx.set(bus.rready, 0)
        log.extend([got_b, got_r, await _read(ctx, bus, Register.LAYER)])

    assert _run(body) == [AxiResp.OKAY, (0, AxiResp.OKAY), (1, AxiResp.OKAY)]
