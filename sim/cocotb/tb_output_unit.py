"""cocotb bench: the generated Verilog of :class:`~bitline.hw.core.output_unit.OutputUnit`.

Built like cocotb's matrix-multiplier example, in four separate pieces:

* :class:`InputDriver` -- puts seeded random ``(acc, bias, mult, shift)`` transactions on the
  ``inputs`` stream, with random idle cycles;
* :class:`OutputMonitor` -- samples the ``outputs`` stream every clock;
* :class:`OutputUnitModel` -- the golden rule, :func:`bitline.sw.integer.arith.output_unit`
  (docs/contract.md section 2), applied to what the driver sent (written from the spec, it
  never looks at the RTL);
* :class:`Checker` -- compares what the monitor saw with the model, in order.

The configuration comes from the environment, never from constants: ``BITLINE_CONFIG``
(JSON of the :class:`~bitline.hw.spec.config.AcceleratorConfig` fields; default the ``bwq``
preset), ``BITLINE_TB_SEED`` (default 1), ``BITLINE_TB_COUNT`` (transactions per layer
setting, default 200). ``BITLINE_TB_BREAK_MODEL=1`` makes the model wrong on every 7th
transaction: the pytest suite runs the bench that way once to prove the checker fails.
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from bitline.hw.core.output_unit import output_input_layout
from bitline.hw.spec.config import AcceleratorConfig, preset
from bitline.hw.spec.encoding import MULT_BITS, SHIFT_BITS
from bitline.hw.spec.program import OutputMode
from bitline.sw.integer import arith


def bench_config() -> AcceleratorConfig:
    """Return the config named by ``BITLINE_CONFIG`` (JSON fields) or the ``bwq`` preset."""
    text = os.environ.get("BITLINE_CONFIG")
    if not text:
        return preset("bwq")
    return AcceleratorConfig.from_dict(json.loads(text), source="BITLINE_CONFIG")


class InputDriver:
    """Drive ``inputs`` (an ``always_ready`` stream): one transaction per valid cycle."""

    def __init__(self, dut, config: AcceleratorConfig):
        self.dut = dut
        self.layout = output_input_layout(config)
        self.bias_mask = (1 << config.acc_bits) - 1   # bias travels as a bit pattern
        dut.inputs__valid.value = 0
        dut.inputs__payload.value = 0

    async def send(self, transaction: dict) -> None:
        """Present ``transaction`` for one clock cycle."""
        self.dut.inputs__payload.value = self.layout.const({
            "acc": transaction["acc"],
            "param": {"bias": transaction["bias"] & self.bias_mask,
                      "mult": transaction["mult"], "shift": transaction["shift"]},
        }).as_bits()
        self.dut.inputs__valid.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.inputs__valid.value = 0

    async def idle(self, cycles: int) -> None:
        """Keep ``inputs.valid`` low for ``cycles`` clocks."""
        self.dut.inputs__valid.value = 0
        if cycles:
            await ClockCycles(self.dut.clk, cycles)


class OutputMonitor:
    """Record every ``outputs`` transfer (``always_ready``: valid alone marks one)."""

    def __init__(self, dut):
        self.dut = dut
        self.values: list[int] = []
        self._task = None

    def start(self) -> None:
        """Start sampling in the background."""
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        while True:
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            if self.dut.outputs__valid.value == 1:
                self.values.append(self.dut.outputs__payload.value.to_signed())


class OutputUnitModel:
    """Expected outputs from the golden rule; ``broken`` adds 1 to every 7th (self-test)."""

    def __init__(self, broken: bool = False):
        self.broken = broken
        self.count = 0

    def expected(self, transaction: dict, layer: dict) -> int:
        """Return the output of one transaction under the layer fields ``layer``."""
        value = int(arith.output_unit(
            np.array([transaction["acc"]]), np.array([transaction["bias"]]),
            np.array([transaction["mult"]]), np.array([transaction["shift"]]),
            layer["zero_point"], layer["clamp_lo"], layer["clamp_hi"], layer["mode"],
        )[0])
        self.count += 1
        if self.broken and self.count % 7 == 0:
            value += 1
        return value


class Checker:
    """Compare observed and expected outputs in order; collect mismatches."""

    def __init__(self, log):
        self.log = log
        self.expected: list[int] = []
        self.mismatches: list[str] = []

    def check(self, observed: list[int]) -> None:
        """Compare ``observed`` with the expectations; raise ``AssertionError`` on a difference."""
        if len(observed) != len(self.expected):
            self.mismatches.append(f"{len(observed)} outputs, expected {len(self.expected)}")
        for index, (got, want) in enumerate(zip(observed, self.expected)):
            if got != want:
                self.mismatches.append(f"output {index}: got {got}, expected {want}")
        for line in self.mismatches[:10]:
            self.log.error(line)
        assert not self.mismatches, f"{len(self.mismatches)} mismatches, first: " \
            f"{self.mismatches[0]}"


def random_transactions(rng, config: AcceleratorConfig, count: int) -> list[dict]:
    """Return ``count`` random channels whose sum ``acc + bias`` fits ``acc_bits``.

    Most shifts are chosen so that ``(acc + bias) * mult >> shift`` lands near the output
    range (the interesting, unclamped case); one in ten is uniform over ``0 .. 63``.
    """
    half = 1 << (config.acc_bits - 2)
    # accumulators and biases of every magnitude, so small and large shifts both matter
    magnitude = 1 << rng.integers(1, config.acc_bits - 2, size=count)
    acc = rng.integers(-magnitude, magnitude)
    bias = rng.integers(-half, half, size=count) >> rng.integers(0, config.acc_bits - 1,
                                                                 size=count)
    mult = rng.integers(0, 1 << (MULT_BITS - 1), size=count)
    product_bits = np.array([int(abs(int(a) + int(b)) * int(m)).bit_length()
                             for a, b, m in zip(acc, bias, mult)])
    near = product_bits - rng.integers(-1, config.max_act_bits + 2, size=count)
    shift = np.where(rng.random(count) < 0.1, rng.integers(0, 1 << SHIFT_BITS, size=count),
                     np.clip(near, 0, (1 << SHIFT_BITS) - 1))
    return [{"acc": int(a), "bias": int(b), "mult": int(m), "shift": int(s)}
            for a, b, m, s in zip(acc, bias, mult, shift)]


def layer_settings(rng, config: AcceleratorConfig) -> list[dict]:
    """Return the layer-record fields of the phases: ReLU, no ReLU, ReLU6-like, raw."""
    top = (1 << config.max_act_bits) - 1
    zero = int(rng.integers(0, top + 1))
    return [
        {"mode": "requant", "zero_point": 0, "clamp_lo": 0, "clamp_hi": top},
        {"mode": "requant", "zero_point": zero, "clamp_lo": 0, "clamp_hi": top},
        {"mode": "requant", "zero_point": zero, "clamp_lo": zero,
         "clamp_hi": int(rng.integers((zero + top) // 2, top + 1))},
        {"mode": "raw", "zero_point": 0, "clamp_lo": 0, "clamp_hi": 0},
    ]


@cocotb.test()
async def output_unit_matches_golden(dut):
    """Random channels under four layer settings equal arith.output_unit, in order."""
    config = bench_config()
    seed = int(os.environ.get("BITLINE_TB_SEED", "1"))
    count = int(os.environ.get("BITLINE_TB_COUNT", "200"))
    rng = np.random.default_rng(seed)
    Clock(dut.clk, 10, unit="ns").start()
    driver = InputDriver(dut, config)
    monitor = OutputMonitor(dut)
    model = OutputUnitModel(broken=os.environ.get("BITLINE_TB_BREAK_MODEL") == "1")
    checker = Checker(dut._log)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    monitor.start()
    for layer in layer_settings(rng, config):
        # Layer fields change only while the pipeline is empty, as the scheduler does.
        dut.mode.value = int(OutputMode.parse(layer["mode"]))
        dut.zero_point.value = layer["zero_point"]
        dut.clamp_lo.value = layer["clamp_lo"]
        dut.clamp_hi.value = layer["clamp_hi"]
        for transaction in random_transactions(rng, config, count):
            checker.expected.append(model.expected(transaction, layer))
            await driver.send(transaction)
            await driver.idle(int(rng.integers(0, 3)) if rng.random() < 0.3 else 0)
        await driver.idle(6)
    checker.check(monitor.values)
    dut._log.info("%d outputs checked against arith.output_unit", len(monitor.values))
