"""The AXI wrapper (hw/io/axi.py) in the Amaranth simulator.

AXI4-Lite bridge in front of the real HostInterface:

Independent AW / W arrival (either first, with gaps), a held write response, a read and a
write offered in the same cycle, and the error answers of docs/integration.md: SLVERR for a
read-only register, the write-only CTRL and a partial ``wstrb``; DECERR for unmapped
addresses; refused writes change nothing. The whole AxiAccelerator on two layer jobs (one
simulation): outputs equal to the integer arithmetic, ``tlast`` on each job's last output
beat only, counters (read over AXI4-Lite) equal to the performance model without
backpressure and within ``[model, model + stall_cycles]`` with random pauses on both
streams. The end-to-end check of the whole AXI top is
tests/cocotb/test_axi.py (cocotbext-axi, digits CNN).
"""

from __future__ import annotations

import numpy as np
import pytest
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
        log.append(await _write(ctx, bus, 15, 1))                           # unmapped
        log.append(await _write(ctx, bus, 255, 1))
        log.append(await _write(ctx, bus, Register.N_VECTORS, 9, strobes=0b0011))
        log.append(await _write(ctx, bus, Register.N_VECTORS, 9, strobes=0))
        log.append(await _read(ctx, bus, Register.N_VECTORS))
        log.append(await _read(ctx, bus, Register.CTRL))                    # write-only
        log.append(await _read(ctx, bus, 15))
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


# ----------------------------------------------------------------------------- streams
#: The two jobs of :func:`stream_jobs`: (probability of a pause cycle on both streams, seed).
JOBS = ((0.0, 5), (0.4, 6))


@pytest.fixture(scope="module")
def stream_jobs():
    """Two layer jobs on one AxiAccelerator (preloaded programs), through AXI only.

    Job ``j`` runs layer ``j`` with :data:`JOBS` ``[j]``: the input beats are offered from
    before CTRL.START (as a DMA would queue them); with a pause probability above 0
    ``s_axis_input.tvalid`` and ``m_axis_output.tready`` drop at random (seeded). One
    simulation for both (the accelerator's elaboration is most of the time). Returns
    ``(config, [(layer, weight, vectors, beats [(value, tlast)], counters)])``.
    """
    from bitline.hw.core.memories import program_memories
    from bitline.hw.io.axi import AxiAccelerator, output_lane_bits
    from bitline.hw.spec.registers import COUNTERS, Ctrl, Status

    from support.accelerator import make_layer
    from support.simulation import simulate

    config = small_config()
    jobs = []
    for index, (pause, seed) in enumerate(JOBS):
        # one unit per layer (2 outputs of 4-bit differential weights fill 16 columns)
        rng = np.random.default_rng(seed)
        layer, weight = make_layer(config, "ivq-naive", rng, n_outputs=2, n_inputs=11,
                                   xbar_offset=index, name=f"layer{index}")
        jobs.append((layer, weight, rng.integers(0, 1 << layer.act_bits, (6, 11)), [], {}))
    dut = AxiAccelerator(config, memories=program_memories(config, [job[0] for job in jobs]))
    width = output_lane_bits(config)
    started = [False] * len(jobs)

    async def control(ctx):
        bus = dut.s_axil
        for index, (_, _, vectors, _, counters) in enumerate(jobs):
            await _write(ctx, bus, Register.LAYER, index)
            await _write(ctx, bus, Register.N_VECTORS, len(vectors))
            started[index] = True       # the feeder offers its beats from here on
            await _write(ctx, bus, Register.CTRL, Ctrl.START)
            while True:
                status, _ = await _read(ctx, bus, Register.STATUS)
                if status & Status.DONE and not status & Status.BUSY:
                    break
            for name, low in COUNTERS:
                counters[name] = ((await _read(ctx, bus, low))[0]
                                  | (await _read(ctx, bus, low + 1))[0] << 32)

    async def feed(ctx):
        stream = dut.s_axis_input
        for index, ((pause, seed), (_, _, vectors, _, _)) in enumerate(zip(JOBS, jobs)):
            pauses, codes, position = np.random.default_rng(seed + 1), vectors.reshape(-1), 0
            while not started[index]:
                await ctx.tick()
            while position < len(codes):
                offer = not (pause and pauses.random() < pause)
                ctx.set(stream.tvalid, offer)
                ctx.set(stream.tdata, int(codes[position]))
                ctx.set(stream.tlast, position == len(codes) - 1)
                moved = offer and ctx.get(stream.tready)
                await ctx.tick()
                position += bool(moved)
            ctx.set(stream.tvalid, 0)

    async def take(ctx):
        stream = dut.m_axis_output
        for (pause, seed), (layer, _, vectors, beats, _) in zip(JOBS, jobs):
            pauses = np.random.default_rng(seed + 2)
            while len(beats) < len(vectors) * layer.n_outputs:
                ready = not (pause and pauses.random() < pause)
                ctx.set(stream.tready, ready)
                if ready and ctx.get(stream.tvalid):
                    raw = ctx.get(stream.tdata) & ((1 << width) - 1)
                    beats.append((raw - (raw >> (width - 1) << width),
                                  ctx.get(stream.tlast)))
                await ctx.tick()
        ctx.set(stream.tready, 0)

    simulate(dut, control, feed, take, deadline=1e-3)
    return config, jobs


def _check_outputs(config, layer, weight, vectors, beats):
    from support.accelerator import expected_outputs

    want = expected_outputs(config, layer, weight, vectors).reshape(-1)
    assert [value for value, _ in beats] == want.tolist()
    assert [last for _, last in beats] == [0] * (len(want) - 1) + [1]   # tlast: job's end


@pytest.mark.slow   # one Amaranth simulation of the whole accelerator: ~25 s CPU
def test_stream_job_bit_exact_tlast_and_counters(stream_jobs):
    from support.accelerator import assert_counters_match_model

    config, jobs = stream_jobs
    layer, weight, vectors, beats, counters = jobs[0]
    _check_outputs(config, layer, weight, vectors, beats)
    assert_counters_match_model(config, layer, len(vectors), counters)


@pytest.mark.slow
def test_stream_job_under_random_backpressure(stream_jobs):
    from bitline.sw.perf import analyze_layer

    config, jobs = stream_jobs
    layer, weight, vectors, beats, counters = jobs[1]
    _check_outputs(config, layer, weight, vectors, beats)
    perf = analyze_layer(layer, config, len(vectors))
    assert (counters["ou_reads"], counters["adc_conversions"],
            counters["reduction_operands"]) == (perf.ou_reads, perf.adc_conversions,
                                                perf.reduction_transfers)
    assert counters["stall_cycles"] > 0
    assert perf.cycles <= counters["cycles"] <= perf.cycles + counters["stall_cycles"]
