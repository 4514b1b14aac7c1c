"""Randomized RTL regression: random jobs, backpressure on every stream, resets, a watchdog.

Issue 15 item 6 (docs/reliability.md, "Randomized RTL regression"). From a seed, job
``index`` of build ``b = BUILDS[index % len(BUILDS)]`` is drawn by :func:`draw_job` (its own
generator, ``default_rng([seed, index])``, so ``--only SEED:IDX`` redraws it exactly):

* one image of one or two layers, each a ``fc`` (``V`` vectors of ``K`` inputs) or a
  ``conv`` (the im2col columns of a random ``C x H x W`` input through a ``k x k`` kernel,
  stride 1 or 2), mapped by one of the build's strategies with random weight widths
  (sparsity, per-block widths and pruned blocks for ``bwq``), activation widths (BWQ row
  blocks too), the offset encoding for some ``isaac`` layers, a spread placement, output
  mode ``requant`` / ``raw`` and, where the build has lanes, copies of a layer;
* backpressure: seeded pause generators in the hardware (:class:`Throttle`, no Python per
  cycle) hold ``valid`` of ``program`` and ``inputs`` low and ``ready`` of ``outputs``
  low for random stretches (a rate and a maximum length per stream, drawn per job; about a
  quarter of the jobs run without any, where counters must equal the model exactly);
* resets: in about a third of the jobs ``rst`` is raised for ``adc_latency + 1 .. 12``
  cycles at a random cycle of the image load or of a layer job. The host then recovers as
  docs/hardware.md ("Reset and recovery") says a host must: STATUS must read idle and
  unprogrammed, the image is loaded again and the interrupted layer job is run again.

Every output is compared with the integer golden arithmetic of the layer (``x @ W.T``
through the output unit, from the weights, never from the mapping or the RTL) and every
counter with the performance model (:func:`bitline.sw.perf.analyze_layer`) and a second,
independent count: the crossbar executor's reads and conversions of the same vectors and
:func:`bitline.hw.spec.timing.layer_cycles` of its per-unit reads. Without pauses the
cycle counter must equal the model and the stall counter be 0; with pauses ``cycles -
stall_cycles <= model <= cycles``. A watchdog per phase (4x the formula's cycles, plus 4x
the transfers times the pause rate's expected wait, plus 2,000) turns a hang into a
reported failure naming the seed and job; the bench then resets the design and goes on.

The bench top (:class:`RegressionTop`) is the harness's
:class:`~bitline.sim.cocotb.harness.BenchTop` (source, sink; :class:`BenchHost` drives them)
with a :class:`Throttle` between it and the accelerator. Its ports: BenchTop's, plus
``throttle_seed`` / ``throttle_load`` (seed the pause generators), ``*_rate`` (pause starts
per 256 cycles), ``*_mask`` (pause lengths ``1 .. mask + 1``) and ``outputs_hold`` (ready
never rises: the watchdog's self-test).

Run description (``BITLINE_RUN`` JSON, :func:`run_regression` writes it): ``build``,
``seed``, ``jobs`` (indices), ``results`` (the JSON this bench writes: one record per job),
``faults`` (self-tests: ``{"corrupt_output": [idx], "wrong_counter": [idx], "stuck_ready":
[idx]}``).

Why one module over 600 lines: the bench top, the job generator, the cocotb host and the
runner are one unit (the generator and the bench must agree on every field of a job and
the runner on the bench's files); split, each part would import the others' internals.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cocotb
import numpy as np
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, connect, flipped

from bitline.hw.spec.config import AcceleratorConfig

__all__ = ["BUILDS", "Throttle", "RegressionTop", "Job", "draw_job", "regression_design",
           "run_regression", "RegressionReport"]

#: The regression's builds: (config, crossbar). Each costs one Verilator build (~25-60 s).
#: ``bwq2``: a BWQ geometry (1-bit cells and DACs, 9 x 8 OUs, one ADC per column) with two
#: lanes (copies); ``isaac``: ISAAC-like 2-bit cells and DACs, two conversions per read, a
#: 2-cycle ADC; ``external``: the crossbar ports at the top, answered by the Python crossbar
#: model (:mod:`bitline.sim.cocotb.crossbar`), ADCs shared four ways.
BUILDS: dict[str, tuple[AcceleratorConfig, str]] = {
    "bwq2": (AcceleratorConfig(
        rows=36, cols=32, cell_bits=1, dac_bits=1, ou_rows=9, ou_cols=8, adc_bits=4,
        adcs_per_xbar=8, n_xbars=6, acc_bits=26, max_act_bits=8, max_weight_bits=8,
        max_out_channels=16, max_in_features=72, max_layers=2, max_entries=256,
        adc_latency=1, max_copies=2), "emulated"),
    "isaac": (AcceleratorConfig(
        rows=32, cols=32, cell_bits=2, dac_bits=2, ou_rows=8, ou_cols=8, adc_bits=7,
        adcs_per_xbar=4, n_xbars=6, acc_bits=28, max_act_bits=8, max_weight_bits=8,
        max_out_channels=16, max_in_features=64, max_layers=2, max_entries=256,
        adc_latency=2), "emulated"),
    "external": (AcceleratorConfig(
        rows=36, cols=64, cell_bits=1, dac_bits=1, ou_rows=9, ou_cols=8, adc_bits=4,
        adcs_per_xbar=2, n_xbars=4, acc_bits=26, max_act_bits=8, max_weight_bits=8,
        max_out_channels=16, max_in_features=72, max_layers=2, max_entries=256,
        adc_latency=2), "external"),
}

#: The bench module (cocotb imports it by this name) and the top-level module name.
MODULE = "bitline.sim.cocotb.tb_regression"
TOPLEVEL = "bitline_regression"
#: Streams with a pause generator: (stream, which handshake signal it holds low).
STREAMS = ("program", "inputs", "outputs")
_SALT = {"program": 0x9E3779B9, "inputs": 0x85EBCA6B, "outputs": 0xC2B2AE35}


# ====================================================================== hardware side
class Throttle(wiring.Component):
    """The accelerator behind seeded pause generators on its three streams.

    Same signature as the :class:`~bitline.hw.core.top.Accelerator` it wraps, so the harness
    uses it in its place. Per stream a 32-bit xorshift generator (reset-less: pauses go on
    across resets) starts a pause in a cycle with probability ``rate / 256``, of ``1 ..
    mask + 1`` cycles; a paused ``program`` / ``inputs`` shows the accelerator ``valid`` low
    (and the source ``ready`` low), a paused ``outputs`` ``ready`` low (and the sink
    ``valid`` low). Controls (plain signals, driven by :class:`RegressionTop`): ``seed``,
    ``load``, ``rate[s]``, ``mask[s]``, ``hold`` (outputs never ready).
    """

    def __init__(self, accelerator):
        self.accelerator = accelerator
        self.config = accelerator.config
        self.unit_entries = accelerator.unit_entries
        self.seed = Signal(32)
        self.load = Signal()
        self.rate = {name: Signal(8, name=f"{name}_rate") for name in STREAMS}
        self.mask = {name: Signal(8, name=f"{name}_mask") for name in STREAMS}
        self.hold = Signal()
        super().__init__(dict(accelerator.signature.members))

    def _pause(self, m: Module, name: str) -> Signal:
        state = Signal(32, init=_SALT[name], reset_less=True, name=f"{name}_lfsr")
        left = Signal(9, reset_less=True, name=f"{name}_left")
        x1 = state ^ (state << 13)[:32]
        x2 = x1 ^ (x1 >> 17)
        x3 = (x2 ^ (x2 << 5))[:32]
        with m.If(self.load):
            m.d.sync += [state.eq(self.seed ^ _SALT[name]), left.eq(0)]
        with m.Else():
            m.d.sync += state.eq(x3)
            with m.If(left != 0):
                m.d.sync += left.eq(left - 1)
            with m.Elif(state[:8] < self.rate[name]):
                m.d.sync += left.eq((state[8:16] & self.mask[name]) + 1)
        return left != 0

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = acc = self.accelerator
        connect(m, flipped(self.csr), acc.csr)
        if self.accelerator.crossbar == "external":
            for unit in range(self.config.n_xbars):
                connect(m, acc.xbars[unit], flipped(self.xbars[unit]))
        for name in ("program", "inputs"):
            paused = self._pause(m, name)
            outer, inner = getattr(self, name), getattr(acc, name)
            m.d.comb += [inner.payload.eq(outer.payload),
                         inner.valid.eq(outer.valid & ~paused),
                         outer.ready.eq(inner.ready & ~paused)]
        paused = self._pause(m, "outputs") | self.hold
        m.d.comb += [self.outputs.payload.eq(acc.outputs.payload),
                     self.outputs.valid.eq(acc.outputs.valid & ~paused),
                     acc.outputs.ready.eq(self.outputs.ready & ~paused)]
        return m


def _controls() -> dict:
    controls = {"throttle_seed": In(32), "throttle_load": In(1), "outputs_hold": In(1)}
    for name in STREAMS:
        controls[f"{name}_rate"] = In(8)
        controls[f"{name}_mask"] = In(8)
    return controls


class RegressionTop(wiring.Component):
    """:class:`~bitline.sim.cocotb.harness.BenchTop` with a :class:`Throttle` inside.

    Ports: every BenchTop port under the same name, plus the throttle controls (module
    docstring).
    """

    def __init__(self, config: AcceleratorConfig, crossbar: str, *, unit_entries=None):
        from bitline.sim.cocotb.harness import BenchTop

        self.bench = BenchTop(config, crossbar, unit_entries=unit_entries)
        self.throttle = Throttle(self.bench.accelerator)
        self.bench.accelerator = self.throttle      # the harness elaborates this one
        self.config, self.crossbar = config, crossbar
        self.source_depth, self.sink_depth = self.bench.source_depth, self.bench.sink_depth
        self.fill_lanes, self.drain_lanes = self.bench.fill_lanes, self.bench.drain_lanes
        super().__init__({**self.bench.signature.members, **_controls()})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bench = bench = self.bench
        throttle = self.throttle
        for name, member in bench.signature.members.items():
            if name == "xbars":
                for unit in range(self.config.n_xbars):
                    connect(m, bench.xbars[unit], flipped(self.xbars[unit]))
            elif name == "csr":
                connect(m, flipped(self.csr), bench.csr)
            elif member.flow == In:
                m.d.comb += getattr(bench, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(bench, name))
        m.d.comb += [throttle.seed.eq(self.throttle_seed), throttle.load.eq(self.throttle_load),
                     throttle.hold.eq(self.outputs_hold)]
        for name in STREAMS:
            m.d.comb += [throttle.rate[name].eq(getattr(self, f"{name}_rate")),
                         throttle.mask[name].eq(getattr(self, f"{name}_mask"))]
        return m


# ====================================================================== jobs
@dataclass
class LayerJob:
    """One layer job of a :class:`Job`: ``vectors`` (V, K) codes through layer ``layer``."""

    layer: int
    kind: str                      # "fc" or "conv"
    vectors: np.ndarray
    expected: np.ndarray           # (V, O) golden outputs


@dataclass
class Job:
    """One regression job: an image, its layer jobs, the pauses and the resets.

    ``resets`` are ``(phase, cycle, length)``: phase ``-1`` the image load, ``k`` layer job
    ``k``; ``cycle`` counts from the phase's start.
    """

    seed: int
    index: int
    build: str
    program: object
    weights: list
    layer_jobs: list[LayerJob]
    throttle: dict = field(default_factory=dict)
    resets: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.seed}:{self.index}"

    def describe(self) -> str:
        layers = ", ".join(f"{layer.name} {layer.n_outputs}x{layer.n_inputs}"
                           + (f" x{layer.copies}" if layer.copies > 1 else "")
                           for layer in self.program.layers)
        return (f"job {self.name} on {self.build}: {self.program.strategy} [{layers}], "
                f"{sum(len(j.vectors) for j in self.layer_jobs)} vectors, "
                f"pauses {self.throttle.get('rate', {})}, resets {self.resets}")


def build_strategies(config: AcceleratorConfig) -> list[str]:
    """The strategies the geometry can run: all five except ``bwq`` with multi-bit cells
    (BWQ's per-block widths slice weights into 1-bit cells)."""
    from bitline.hw.spec.program import STRATEGIES

    return [s for s in STRATEGIES if not (s == "bwq" and config.cell_bits > 1)]


def _weights(rng, n_out: int, n_in: int, bits: int, strategy: str, config):
    """Random sign-magnitude weights of at most ``bits`` bits, some zeros; for ``bwq``
    per-block widths (``ou_cols x ou_rows`` blocks, 0 = pruned) and the blocks cut to them."""
    top = (1 << (bits - 1)) - 1
    weight = rng.integers(-top, top + 1, (n_out, n_in))
    weight[rng.random(weight.shape) < rng.uniform(0.0, 0.5)] = 0
    if strategy != "bwq":
        return weight, None
    rows, cols = config.ou_rows, config.ou_cols
    blocks = rng.integers(0, bits + 1, (-(-n_out // cols), -(-n_in // rows)))
    block_bits = np.repeat(np.repeat(blocks, cols, 0), rows, 1)[:n_out, :n_in]
    limit = np.where(block_bits > 0, (1 << np.maximum(block_bits - 1, 0)) - 1, 0)
    return np.clip(weight, -limit, limit), blocks


def _layer(rng, config, strategy: str, name: str, offset: int, *, max_in=None):
    """Draw and map one layer; return ``(LayerProgram, weight, kind, vectors)``."""
    from bitline.sw.integer.arith import apply_act_block_bits
    from bitline.sw.mapping import map_matrix

    act_bits = int(rng.integers(1, config.max_act_bits + 1))
    n_out = int(rng.integers(1, config.max_out_channels + 1))
    max_in = max_in or config.max_in_features
    if rng.random() < 0.5:
        kind, channels, kernel = "conv", int(rng.integers(1, 5)), int(rng.choice([1, 2, 3]))
        channels = max(1, min(channels, max_in // kernel ** 2))
        size, stride = int(rng.integers(kernel, kernel + 5)), int(rng.choice([1, 2]))
        image = rng.integers(0, 1 << act_bits, (channels, size, size))
        windows = np.lib.stride_tricks.sliding_window_view(image, (kernel, kernel), (1, 2))
        windows = windows[:, ::stride, ::stride]          # (C, H', W', k, k)
        vectors = windows.transpose(1, 2, 0, 3, 4).reshape(-1, channels * kernel ** 2)
    else:
        kind, n_in = "fc", int(rng.integers(1, max_in + 1))
        vectors = rng.integers(0, 1 << act_bits, (int(rng.integers(1, 9)), n_in))
    n_in = vectors.shape[1]
    weight, blocks = _weights(rng, n_out, n_in, int(rng.integers(2, config.max_weight_bits + 1)),
                              strategy, config)
    act_block_bits = None
    if strategy == "bwq" and rng.random() < 0.6:
        act_block_bits = rng.integers(0, act_bits + 1, -(-n_in // config.ou_rows))
    encoding = "offset" if strategy == "isaac" and rng.random() < 0.3 else "differential"
    layer = map_matrix(weight, config, strategy, act_bits=act_bits, act_block_bits=act_block_bits,
                       block_bits=blocks, name=name, xbar_offset=offset, encoding=encoding,
                       spread=int(rng.choice([1, 1, 2])))
    layer.mode = "raw" if rng.random() < 0.25 else "requant"
    layer.bias = rng.integers(-60, 61, n_out)
    layer.mult = rng.integers(1 << 14, 1 << 15, n_out)
    layer.shift = rng.integers(12, 19, n_out)
    layer.zero_point = int(rng.integers(0, 4))
    layer.clamp_lo, layer.clamp_hi = 0, (1 << config.max_act_bits) - 1
    cut = (vectors if act_block_bits is None else
           apply_act_block_bits(vectors, act_block_bits, act_bits, config.ou_rows))
    return layer, weight, kind, vectors, cut


def _golden(layer, weight, cut) -> np.ndarray:
    """The integer golden arithmetic of a layer: the output unit of ``x @ W.T``
    (docs/contract.md section 2; the offset encoding's correction cancels exactly)."""
    from bitline.sw.integer.arith import output_unit

    acc = np.asarray(cut, dtype=np.int64) @ np.asarray(weight, dtype=np.int64).T
    return output_unit(acc, layer.bias, layer.mult, layer.shift, layer.zero_point,
                       layer.clamp_lo, layer.clamp_hi, mode=layer.mode)


def _program(rng, config, strategy: str):
    """One or two layers on disjoint units, maybe copies; ``None`` if they do not fit."""
    from bitline.hw.core.memories import default_unit_entries, required_unit_entries
    from bitline.hw.spec.program import Program, ProgramError
    from bitline.hw.spec.validate import validate_program

    layers, weights, drawn = [], [], []
    offset = 0
    for position in range(int(rng.integers(1, config.max_layers + 1))):
        try:
            layer, weight, kind, vectors, cut = _layer(rng, config, strategy, f"l{position}",
                                                       offset)
        except ValueError:
            return None
        offset = int(np.max(layer.all_xbars, initial=offset - 1)) + 1
        layers.append(layer)
        weights.append(weight)
        drawn.append((kind, vectors, cut))
    program = Program(config=config, strategy=strategy, layers=layers)
    if config.max_copies > 1 and rng.random() < 0.6:
        target = layers[int(rng.integers(0, len(layers)))].name
        program = program.with_copies({target: int(rng.integers(2, config.max_copies + 1))})
    if program.config != config or offset > config.n_xbars:
        return None
    if required_unit_entries(config, program.layers) > default_unit_entries(config):
        return None
    try:
        validate_program(program)
    except (ProgramError, ValueError):
        return None
    return program, weights, drawn


def draw_job(build: str, seed: int, index: int) -> Job:
    """Draw job ``index`` of ``seed`` for ``build`` (module docstring); deterministic."""
    config, _ = BUILDS[build]
    rng = np.random.default_rng([seed, index])
    strategies = build_strategies(config)
    for _ in range(100):
        drawn = _program(rng, config, strategies[int(rng.integers(0, len(strategies)))])
        if drawn is not None:
            break
    else:
        raise ValueError(f"job {seed}:{index}: no program fits build {build} in 100 draws")
    program, weights, inputs = drawn
    layer_jobs = []
    for position, (layer, weight, (kind, vectors, cut)) in enumerate(
            zip(program.layers, weights, inputs)):
        layer_jobs.append(LayerJob(position, kind, vectors, _golden(layer, weight, cut)))
    throttle = {"seed": int(rng.integers(0, 1 << 32)), "rate": {}, "mask": {}}
    if rng.random() < 0.75:
        for name in STREAMS:
            throttle["rate"][name] = int(rng.choice([0, 8, 32, 96, 200]))
            throttle["mask"][name] = int(rng.choice([0, 1, 3, 7, 15, 63]))
    resets = []
    phases = [-1] + list(range(len(layer_jobs)))
    while rng.random() < (0.35 if not resets else 0.25):
        phase = int(rng.choice(phases))
        if phase < 0:
            span = 12 + len(_image(program))
        else:
            span = _model_cycles(program, layer_jobs[phase])
        resets.append((phase, int(rng.integers(1, span + 1)),
                       int(rng.integers(config.adc_latency + 1, 13))))
    return Job(seed, index, build, program, weights, layer_jobs, throttle, resets)


def _image(program) -> bytes:
    from bitline.sw.bundle import encode_image

    return encode_image(program)


def _model_cycles(program, layer_job: LayerJob) -> int:
    from bitline.sw.perf import analyze_layer

    return analyze_layer(program.layers[layer_job.layer], program.config,
                         len(layer_job.vectors)).cycles


def expected_counters(program, layer_job: LayerJob) -> tuple[dict, dict]:
    """Return the performance model's counters of a layer job and the executor's count.

    The second: the crossbar executor's OU reads and conversions of the same vectors, and
    :func:`~bitline.hw.spec.timing.layer_cycles` of its per-unit reads.
    """
    from bitline.hw.spec.timing import layer_cycles
    from bitline.sim.executor import Counters, IdealDevice, LayerExecutor
    from bitline.sw.perf import analyze_layer

    layer, config = program.layers[layer_job.layer], program.config
    vectors = np.asarray(layer_job.vectors, dtype=np.int64)
    perf = analyze_layer(layer, config, len(vectors))
    model = {"cycles": perf.cycles, "ou_reads": perf.ou_reads,
             "adc_conversions": perf.adc_conversions,
             "reduction_operands": perf.reduction_transfers}
    runner = LayerExecutor(layer, config, check=False)
    runner.run(vectors, IdealDevice(config))
    counts = Counters()
    counts.record(runner, len(vectors))
    executed = {"cycles": layer_cycles(config, layer.n_inputs, layer.n_outputs, len(vectors),
                                       runner.unit_reads, copies=layer.copies),
                "ou_reads": counts.total_reads, "adc_conversions": counts.total_conversions}
    return model, executed


# ====================================================================== the bench
def _expected_wait(throttle: dict, stream: str) -> float:
    """Expected pause cycles per transfer of ``stream`` (a generous approximation)."""
    rate = throttle.get("rate", {}).get(stream, 0) / 256
    mask = throttle.get("mask", {}).get(stream, 0)
    return rate * (mask / 2 + 1) / (1 - rate)


def watchdog_cycles(model_cycles: int, transfers: dict[str, int], throttle: dict) -> int:
    """A phase's cycle limit: 4x the formula's cycles, 4x every transfer with its expected
    pause, plus 2,000 (register traffic, loader checks)."""
    held = sum(count * (1 + _expected_wait(throttle, stream))
               for stream, count in transfers.items())
    return int(4 * model_cycles + 4 * held + 2000)


class _Host:
    """The regression's host: a :class:`BenchHost` plus pauses, resets and watchdogs."""

    def __init__(self, dut, config, harness):
        from bitline.sim.cocotb.bench_host import BenchHost

        self.dut, self.config = dut, config
        self.bench = BenchHost(dut, config, harness)
        for name in _controls():
            getattr(dut, name).value = 0
        self.resets = 0
        self.cut = 0            # resets that cut a phase short (not after its end)

    @property
    def cycles(self) -> int:
        return self.bench.cycles

    async def throttle(self, settings: dict) -> None:
        dut = self.dut
        dut.throttle_seed.value = settings.get("seed", 0)
        for name in STREAMS:
            getattr(dut, f"{name}_rate").value = settings.get("rate", {}).get(name, 0)
            getattr(dut, f"{name}_mask").value = settings.get("mask", {}).get(name, 0)
        dut.throttle_load.value = 1
        await self.bench.edge
        dut.throttle_load.value = 0

    async def reset(self, length: int) -> None:
        """Hold ``rst`` for ``length`` cycles (synchronous, active high)."""
        self.dut.rst.value = 1
        for _ in range(length):
            await self.bench.edge
        self.dut.rst.value = 0
        await self.bench.edge
        self.resets += 1

    async def wait_for(self, handle, want: int, until: int) -> bool:
        """Wait until ``handle`` reads ``want`` (True) or cycle ``until`` (False); returns
        on a rising edge (the host may drive signals next)."""
        from cocotb.triggers import First, ReadOnly, Timer

        from bitline.sim.cocotb.bench_host import CLOCK_PERIOD_NS
        from bitline.sim.cocotb.crossbar import signal_int

        while True:
            await ReadOnly()
            if signal_int(handle) == want:
                await self.bench.edge
                return True
            left = until - self.cycles
            if left <= 0:
                await self.bench.edge
                return False
            await First(handle.value_change, Timer(left * CLOCK_PERIOD_NS, "ns"))

    async def poll(self, finished, until: int) -> tuple[bool, int]:
        """Read STATUS until ``finished(status)`` or an error; (finished, status)."""
        from bitline.hw.spec.registers import Register, Status

        while True:
            status = await self.bench.read_register(Register.STATUS)
            if status & Status.ERROR or finished(status):
                return bool(finished(status)) and not status & Status.ERROR, status
            if self.cycles >= until:
                return False, status

    async def phase(self, handle, want: int, limit: int, reset) -> str:
        """Wait for a phase's end (``handle`` reads ``want``) under a watchdog of ``limit``
        cycles, or until the ``(cycle, length)`` reset (then "reset", also when the phase
        ended first: a reset of an idle accelerator); "done", "reset" or "hang"."""
        start = self.cycles
        if reset is not None:
            if not await self.wait_for(handle, want, start + min(reset[0], limit)):
                self.cut += 1
            await self.reset(reset[1])
            return "reset"
        return "done" if await self.wait_for(handle, want, start + limit) else "hang"


def _beats(config, layer, vectors) -> tuple[bytes, int, int]:
    """Source bytes of a layer job, its input beats and vectors per lane (``N_SHARE``)."""
    from bitline.sim.cocotb.harness import beat_bytes
    from bitline.sw.host.driver import lane_beats

    share = -(-len(vectors) // layer.copies)
    if config.max_copies == 1:
        return np.asarray(vectors, np.uint8).tobytes(), vectors.size, share
    lanes = lane_beats(vectors, layer.copies, config.max_copies)
    beats = np.zeros((len(lanes), beat_bytes(config)), dtype=np.uint8)
    beats[:, :config.max_copies] = lanes
    return beats.tobytes(), len(lanes), share


def _compare_counters(job: Job, position: int, got: dict, model: dict, executed: dict,
                      throttled: bool) -> list[str]:
    """Mismatches of one layer job's counters against the model and the executor."""
    where = f"job {job.name} layer job {position}"
    wrong = []
    for name, want in model.items():
        if name != "cycles" and got[name] != want:
            wrong.append(f"{where}: counter {name} = {got[name]}, the model says {want}")
    for name, want in executed.items():
        if name != "cycles" and got[name] != want:
            wrong.append(f"{where}: counter {name} = {got[name]}, the executor counts {want}")
    if executed["cycles"] != model["cycles"]:
        wrong.append(f"{where}: layer_cycles gives {executed['cycles']}, the model "
                     f"{model['cycles']}")
    cycles, stalls = got["cycles"], got["stall_cycles"]
    if not throttled and (cycles != model["cycles"] or stalls):
        wrong.append(f"{where}: no pauses, but cycles = {cycles} (model {model['cycles']}), "
                     f"stall_cycles = {stalls}")
    if throttled and not cycles - stalls <= model["cycles"] <= cycles:
        wrong.append(f"{where}: cycles = {cycles}, stall_cycles = {stalls}: the model's "
                     f"{model['cycles']} is not in [cycles - stalls, cycles]")
    return wrong


class _Runner:
    """Runs jobs on the bench: load, layer jobs, resets and recovery, checks."""

    def __init__(self, dut, host: _Host, crossbars, faults: dict):
        self.dut, self.host, self.crossbars = dut, host, crossbars
        self.faults = {name: set(indices) for name, indices in faults.items()}

    def _fault(self, name: str, job: Job) -> bool:
        return job.index in self.faults.get(name, ())

    async def load(self, job: Job, image: bytes, reset) -> tuple[str, str]:
        """Load ``image``; ("done" | "reset" | "hang" | "error", detail)."""
        from bitline.hw.spec.registers import Ctrl, Register, Status
        from bitline.sim.cocotb.harness import PROGRAM

        bench = self.host.bench
        await bench.fill(image)
        await bench.write_register(Register.CTRL, Ctrl.LOAD)
        await bench.replay(len(image), PROGRAM)
        limit = watchdog_cycles(len(image) + 64, {"program": len(image)}, job.throttle)
        outcome = await self.host.phase(self.dut.source_busy, 0, limit, reset)
        if outcome != "done":
            return outcome, f"image load ({len(image)} bytes, limit {limit} cycles)"
        ok, status = await self.host.poll(
            lambda s: not s & Status.LOADING and bool(s & Status.PROGRAMMED),
            self.host.cycles + 200)
        return ("done", "") if ok else ("error", f"image load: STATUS=0x{status:04x}")

    async def layer_job(self, job: Job, position: int, reset) -> tuple[str, list[str]]:
        """Run layer job ``position``; ("done" | "reset" | "hang" | "error", messages)."""
        from bitline.hw.spec.registers import COUNTERS, Ctrl, Register, Status
        from bitline.sim.cocotb.harness import INPUTS
        from bitline.sw.host.driver import lane_outputs

        dut, host, bench = self.dut, self.host, self.host.bench
        config, lj = job.program.config, job.layer_jobs[position]
        layer = job.program.layers[lj.layer]
        vectors = np.asarray(lj.vectors, dtype=np.int64)
        data, beats, share = _beats(config, layer, vectors)
        expected_beats = share * layer.n_outputs
        model, executed = expected_counters(job.program, lj)
        await bench.fill(data)
        await bench.write_register(Register.LAYER, lj.layer)
        await bench.write_register(Register.N_VECTORS, len(vectors))
        if layer.copies > 1:
            await bench.write_register(Register.N_SHARE, share)
        await bench.arm_sink(expected_beats)
        reads_before = (int(self.crossbars.model.reads.sum())
                        if self.crossbars is not None else 0)
        dut.source_count.value = beats
        dut.source_target.value = INPUTS
        dut.outputs_hold.value = int(self._fault("stuck_ready", job))
        await bench.write_register(Register.CTRL, Ctrl.START, source_start=True)
        limit = watchdog_cycles(model["cycles"], {"inputs": beats, "outputs": expected_beats},
                                job.throttle)
        outcome = await host.phase(dut.sink_done, 1, limit, reset)
        dut.outputs_hold.value = 0
        where = f"job {job.name} layer job {position}"
        if outcome == "hang":
            return outcome, [(f"{where}: no end after {limit} cycles (watchdog; model "
                              f"{model['cycles']} cycles)")]
        if outcome != "done":
            return outcome, []
        ok, status = await host.poll(lambda s: bool(s & Status.DONE) and not s & Status.BUSY,
                                     host.cycles + 200)
        if not ok:
            return "error", [f"{where}: STATUS=0x{status:04x} after the last output"]
        got = {}
        for name, low in COUNTERS:
            got[name] = (await bench.read_register(low)) | (
                await bench.read_register(low + 1)) << 32
        outputs = await bench.drain(expected_beats)
        if config.max_copies > 1:
            outputs = lane_outputs(outputs, len(vectors), layer.copies, layer.n_outputs)
        outputs = np.asarray(outputs).reshape(len(vectors), layer.n_outputs)
        expected = lj.expected.copy()
        if self._fault("corrupt_output", job) and position == 0:
            outputs = outputs.copy()
            outputs.reshape(-1)[0] += 1     # the bench corrupts one output it read back
        if self._fault("wrong_counter", job) and position == 0:
            model = dict(model, ou_reads=model["ou_reads"] + 1)
        wrong = []
        differ = np.argwhere(outputs != expected)
        if len(differ):
            first = tuple(int(i) for i in differ[0])
            wrong.append(f"{where}: {len(differ)} of {expected.size} outputs differ, first "
                         f"at {first}: got {int(outputs[first])}, golden {int(expected[first])}")
        throttled = any(job.throttle.get("rate", {}).values())
        wrong += _compare_counters(job, position, got, model, executed, throttled)
        if self.crossbars is not None:
            seen = int(self.crossbars.model.reads.sum()) - reads_before
            if seen != got["ou_reads"]:
                wrong.append(f"{where}: the crossbar ports saw {seen} OU reads, OU_READS "
                             f"says {got['ou_reads']}")
        return "done", wrong

    async def after_reset(self, job: Job) -> list[str]:
        """STATUS after a reset must read 0: idle, not done, unprogrammed, no error."""
        from bitline.hw.spec.registers import Register

        status = await self.host.bench.read_register(Register.STATUS)
        if status == 0:
            return []
        return [(f"job {job.name}: STATUS=0x{status:04x} after a reset, expected 0 (idle, "
                 "unprogrammed)")]

    async def run(self, job: Job) -> dict:
        """Run ``job`` to its end, recovering from its resets; return its record."""
        host = self.host
        start, resets_before, cut_before = host.cycles, host.resets, host.cut
        pending = list(job.resets)

        def take(phase):
            for item in pending:
                if item[0] == phase:
                    pending.remove(item)
                    return item[1:]
            return None

        await host.throttle(job.throttle)
        image = _image(job.program)
        messages, status, loaded, position = [], "ok", False, 0
        while position < len(job.layer_jobs):
            if not loaded:
                outcome, detail = await self.load(job, image, take(-1))
                wrong = [f"job {job.name}: {detail}"] if outcome in ("hang", "error") else []
            else:
                outcome, wrong = await self.layer_job(job, position, take(position))
            messages += wrong
            if outcome == "reset":
                messages += await self.after_reset(job)
                loaded = False              # a reset forgets the image: load it again
                continue
            if outcome in ("hang", "error"):
                status = outcome
                await host.reset(8)         # recover for the next job
                break
            if loaded:
                position += 1
            loaded = True
        if self.crossbars is not None and self.crossbars.checker.violations:
            messages += [f"job {job.name}: crossbar port: {text}"
                         for text in self.crossbars.checker.violations]
            self.crossbars.checker.violations.clear()
        if status == "ok" and messages:
            status = "mismatch"
        return {"job": job.name, "index": job.index, "build": job.build, "status": status,
                "messages": messages[:5], "resets": host.resets - resets_before,
                "cut": host.cut - cut_before,
                "cycles": host.cycles - start, "strategy": job.program.strategy,
                "describe": job.describe()}


def _load_spec() -> dict:
    from bitline.sim.cocotb.tb_accelerator import load_spec

    return load_spec()


@cocotb.test()
async def regression(dut):
    """Run the spec's jobs (module docstring); fail if any job did not pass."""
    from bitline.sim.cocotb.crossbar import CrossbarBench

    spec = _load_spec()
    config, crossbar = BUILDS[spec["build"]]
    host = _Host(dut, config, spec["harness"])
    crossbars = None
    if crossbar == "external":
        crossbars = CrossbarBench(dut, config)
        crossbars.start()
    await host.bench.start()
    runner = _Runner(dut, host, crossbars, spec.get("faults", {}))
    results = Path(spec["results"])
    failed = []
    wall, cpu = time.perf_counter(), time.process_time()
    with results.open("w") as out:
        for index in spec["jobs"]:
            job = draw_job(spec["build"], int(spec["seed"]), int(index))
            record = await runner.run(job)
            out.write(json.dumps(record) + "\n")
            out.flush()
            if record["status"] != "ok":
                failed.append(record)
                dut._log.error("%s: %s: %s", record["status"], record["describe"],
                               "; ".join(record["messages"]))
        out.write(json.dumps({"summary": True, "cycles": host.cycles,
                              "wall": time.perf_counter() - wall,
                              "cpu": time.process_time() - cpu}) + "\n")
    if crossbars is not None:
        crossbars.stop()
    assert not failed, (f"{len(failed)} of {len(spec['jobs'])} jobs failed, first: "
                        f"{failed[0]['job']} {failed[0]['status']}: "
                        f"{'; '.join(failed[0]['messages'])}")


# ====================================================================== the runner
@dataclass
class RegressionReport:
    """What :func:`run_regression` measured: one record per job and the run's figures.

    ``records`` as the bench writes them (``status`` ``ok`` / ``mismatch`` / ``hang`` /
    ``error``, ``messages``, ``resets``, ``cut`` (resets inside a load or job), ``cycles``); ``cycles``, ``wall``, ``cpu`` of the
    simulation (inside the simulator process), ``build_seconds`` / ``build_cpu`` of the
    Verilator build (0 when cached), ``failure`` the bench's message if it failed.
    """

    build: str
    records: list[dict]
    cycles: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    build_seconds: float = 0.0
    build_cpu: float = 0.0
    failure: str = ""

    def count(self, status: str) -> int:
        return sum(record["status"] == status for record in self.records)

    @property
    def resets(self) -> int:
        return sum(record["resets"] for record in self.records)


def regression_design(build: str, root: str | Path | None = None) -> tuple[Path, Path, dict]:
    """Generate (or reuse) the Verilog of ``build``'s :class:`RegressionTop`.

    Returns ``(verilog, vlt, harness)``: the Verilog file, the Verilator file making only
    the top-level ports public, and the harness parameters. Cached under ``<root>/regression-
    <digest>/`` (default: the bench designs' folder, :mod:`bitline.sim.rtl`), the digest
    covering the config, every hardware source and this module's hardware side
    (:class:`Throttle`, :class:`RegressionTop`), so editing the job generator or the host
    does not cost a Verilator build.
    """
    import hashlib
    import inspect

    from bitline.hw.toolchain.verilog import port_table
    from bitline.sim import rtl
    from bitline.sim.cocotb.runner import component_verilog, write_texts

    config, crossbar = BUILDS[build]
    key = json.dumps({"config": config.to_dict(), "crossbar": crossbar, "top": TOPLEVEL,
                      "hardware": rtl._hardware_digest(),
                      "bench": hashlib.sha256("".join(inspect.getsource(item) for item in (
                          Throttle, RegressionTop, _controls)).encode()
                          + repr((STREAMS, _SALT)).encode()).hexdigest()},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = (Path(root) if root is not None else rtl._design_root()) / f"regression-{digest}"
    verilog, vlt = folder / f"{TOPLEVEL}.v", folder / f"{TOPLEVEL}-{digest}.vlt"
    harness = folder / "harness.json"
    if not (verilog.is_file() and vlt.is_file() and harness.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        top = RegressionTop(config, crossbar)
        names = ["clk", "rst"] + [port["name"] for port in port_table(top)]
        texts = {
            vlt: "`verilator_config\n" + "".join(
                f'public_flat_rw -module "{TOPLEVEL}" -var "{name}"\n' for name in names),
            harness: json.dumps({"source_depth": top.source_depth,
                                 "sink_depth": top.sink_depth, "fill_lanes": top.fill_lanes,
                                 "drain_lanes": top.drain_lanes}),
            verilog: component_verilog(top, TOPLEVEL),
        }
        write_texts(texts)                   # atomically: parallel runs share the folder
    return verilog, vlt, json.loads(harness.read_text())


def run_regression(build: str, seed: int, jobs, work_dir: str | Path, *,
                   faults: dict | None = None) -> RegressionReport:
    """Build ``build``'s bench (cached) and run job indices ``jobs`` of ``seed`` on it.

    A failing bench is not an exception here: its records say which jobs failed
    (``failure`` holds the bench's message); a bench that wrote no records at all (a build
    or simulator failure) raises :class:`~bitline.sim.cocotb.runner.BenchFailure`.
    """
    from bitline.sim.cocotb.runner import BenchFailure, build_and_test

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    verilog, vlt, harness = regression_design(build)
    results = work / f"results-{build}-{seed}.jsonl"
    results.unlink(missing_ok=True)
    spec = {"build": build, "seed": int(seed), "jobs": [int(i) for i in jobs],
            "harness": harness, "results": str(results), "faults": faults or {}}
    spec_path = work / f"run-{build}-{seed}.json"
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    report = RegressionReport(build, [])
    try:
        outcome = build_and_test(verilog, TOPLEVEL, MODULE,
                                 extra_env={"BITLINE_RUN": str(spec_path)},
                                 test_filter=r"(^|\.)regression$",
                                 verilator_args=["--no-public-flat-rw", str(vlt)])
        report.build_seconds, report.build_cpu = outcome.build_seconds, outcome.build_cpu_seconds
    except BenchFailure as failure:
        if not results.is_file():
            raise
        report.failure = str(failure)
        if failure.result is not None:
            report.build_seconds = failure.result.build_seconds
    for line in results.read_text().splitlines() if results.is_file() else []:
        record = json.loads(line)
        if record.get("summary"):
            report.cycles, report.wall, report.cpu = record["cycles"], record["wall"], record["cpu"]
        else:
            report.records.append(record)
    if not report.records and jobs:
        raise BenchFailure(f"regression bench of {build} wrote no results: {report.failure}")
    return report
