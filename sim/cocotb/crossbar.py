"""cocotb pieces for the crossbar ports of an external accelerator: monitor, model, driver, checker.

Built like cocotb's matrix-multiplier example, with one piece per job:

* :class:`PortMonitor` -- samples every unit's crossbar port (``read.*`` and ``write.*``,
  :mod:`bitline.hw.unit.xbar_port`) in the cycles the unit uses it and turns them into
  :class:`ReadRequest` and :class:`RowWrite` transactions; the read requests of all units
  arrive in one wide harness vector (``xbar_requests``), one simulator read per cycle;
* :class:`CrossbarModel` -- the crossbars: it is programmed by the row writes the loader
  issues and answers each read with ADC codes, either from an
  :class:`~bitline.sim.analog.AnalogDevice` (``port_read``, keyed by the unit's OU read
  number so the read noise equals the executor's) or, for an ideal device, from the exact
  clipped sums (what ``AnalogDevice`` with ideal parameters returns bit for bit,
  tests/test_analog.py);
* :class:`ResultDriver` -- drives ``result.valid`` / ``result.codes`` exactly
  ``config.adc_latency`` cycles after each strobe;
* :class:`PortChecker` -- checks the port protocol (no undriven row with a nonzero DAC slice,
  phases in range, no row write during a read, writes inside the crossbar).

:class:`CrossbarBench` connects them to a :class:`~bitline.sim.cocotb.harness.BenchTop`. One
coroutine serves every unit, and it sleeps (on a value change of the harness's
``xbar_strobes`` / ``xbar_writes`` summaries) whenever no unit uses its port, so the
simulator runs load and drain phases without Python.

Speed (docs/verification.md, "Simulation speed"): while awake the coroutine wakes once per
cycle, at the *falling* clock edge, where it both samples the requests (stable since the
rising edge: the design is clocked on rising edges only) and drives the answers due in this
cycle (sampled at the next rising edge, as an answer driven right after the rising edge
would be) -- one simulator callback per cycle instead of two (``RisingEdge`` then
``ReadOnly``). Answers and protocol checks are memoized per packed request (for a chip
without read noise), so a repeated OU read costs a dictionary look-up, not a
:class:`ReadRequest`.

The bench needs ``adc_latency >= 1``: a combinational crossbar (latency 0) would need its
answer inside the cycle in which cocotb samples the request.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, First

from bitline.hw.spec.config import AcceleratorConfig
from bitline.sim.cocotb.harness import request_fields

__all__ = ["ReadRequest", "RowWrite", "PortMonitor", "CrossbarModel", "ResultDriver",
           "PortChecker", "CrossbarBench", "signal_int", "depositor"]


def signal_int(handle) -> int:
    """Return the unsigned integer value of a cocotb handle (fast path for the bench loops).

    cocotb's ``handle.value`` builds a ``LogicArray`` (several microseconds); the bench reads
    a dozen signals per simulated cycle, so it converts the simulator's bit string itself.
    Undefined bits (``x``/``z``) raise ``ValueError`` naming the signal.
    """
    text = handle._handle.get_signal_val_binstr()
    try:
        return int(text, 2)
    except ValueError:
        raise ValueError(f"signal {handle._path} has undefined bits: {text}") from None


@dataclass(frozen=True)
class ReadRequest:
    """One conversion cycle of a unit's crossbar port (the ``read`` members)."""

    unit: int
    row_group: int
    wordline_en: int      # bit k: row row_group * ou_rows + k is driven
    dac: int              # ou_rows fields of dac_bits, row 0 lowest
    col_group: int
    phase: int
    adc_en: int           # bit a: ADC a converts

    def key(self) -> tuple:
        """The request without the unit: what an ideal crossbar's answer depends on."""
        return (self.row_group, self.wordline_en, self.dac, self.col_group, self.phase,
                self.adc_en)


@dataclass(frozen=True)
class RowWrite:
    """One row write of a unit's crossbar port (``write.en`` high)."""

    unit: int
    row: int
    levels: np.ndarray    # (cols,) cell levels


class _UnitPort:
    """Handles of one unit's crossbar port."""

    def __init__(self, dut, unit: int):
        prefix = f"xbars__{unit}__"

        def get(name):
            return getattr(dut, prefix + name)

        self.strobe = get("read__strobe")
        self.row_group = get("read__row_group")
        self.wordline_en = get("read__wordline_en")
        self.dac = get("read__dac")
        self.col_group = get("read__col_group")
        self.phase = get("read__phase")
        self.adc_en = get("read__adc_en")
        self.valid = get("result__valid")
        self.codes = get("result__codes")
        self.write_en = get("write__en")
        self.write_row = get("write__row")
        self.write_levels = get("write__levels")


class PortMonitor:
    """Sample the crossbar ports of all units of a :class:`BenchTop` (external crossbars)."""

    def __init__(self, dut, config: AcceleratorConfig):
        self.dut = dut
        self.config = config
        self.ports = [_UnitPort(dut, unit) for unit in range(config.n_xbars)]
        self.strobes = dut.xbar_strobes
        self.writes = dut.xbar_writes
        self.requests = dut.xbar_requests
        self.single_phase = config.conversions_per_read == 1
        fields = request_fields(config)
        #: Bits of one unit's request in ``xbar_requests`` (after the 2 * n_xbars
        #: strobe and write bits).
        self.request_bits = sum(width for _, width in fields)
        self._fields = []
        offset = 0
        for name, width in fields:
            self._fields.append((name, offset, (1 << width) - 1))
            offset += width

    def active(self) -> tuple[int, int]:
        """Return the ``(strobes, writes)`` bit vectors of this cycle."""
        return signal_int(self.strobes), signal_int(self.writes)

    def sample(self) -> int:
        """Return ``xbar_requests`` of this cycle: strobes (bits ``0 .. n-1``), writes
        (``n .. 2n-1``), then each unit's :attr:`request_bits`-bit request."""
        return signal_int(self.requests)

    def decode(self, unit: int, bits: int) -> ReadRequest:
        """Return the :class:`ReadRequest` of unit ``unit``'s packed request ``bits``."""
        values = {name: bits >> offset & mask for name, offset, mask in self._fields}
        if self.single_phase:
            values["phase"] = 0
        return ReadRequest(unit=unit, **values)

    def read(self, unit: int) -> ReadRequest:
        """Return unit ``unit``'s read request of this cycle (call only while it strobes)."""
        port = self.ports[unit]
        return ReadRequest(
            unit=unit,
            row_group=signal_int(port.row_group),
            wordline_en=signal_int(port.wordline_en),
            dac=signal_int(port.dac),
            col_group=signal_int(port.col_group),
            phase=0 if self.single_phase else signal_int(port.phase),
            adc_en=signal_int(port.adc_en),
        )

    def write(self, unit: int) -> RowWrite:
        """Return unit ``unit``'s row write of this cycle (call only while ``write.en``)."""
        config = self.config
        port = self.ports[unit]
        value = signal_int(port.write_levels)
        width = config.cols * config.cell_bits
        raw = np.frombuffer(value.to_bytes((width + 7) // 8, "little"), dtype=np.uint8)
        bits = np.unpackbits(raw, bitorder="little")[:width].reshape(config.cols,
                                                                     config.cell_bits)
        levels = bits @ (1 << np.arange(config.cell_bits))
        return RowWrite(unit=unit, row=signal_int(port.write_row), levels=levels)


class CrossbarModel:
    """The crossbars behind the ports: programmed by row writes, answering OU reads.

    Parameters
    ----------
    config:
        The accelerator configuration.
    device:
        An :class:`~bitline.sim.analog.AnalogDevice`, or ``None`` for the ideal crossbar.
        A device whose parameters are ideal is answered by the exact path (the same codes).
        Without read noise the answers are memoized per unit and request (cleared when the
        unit is programmed): the codes then depend on nothing else.

    Attributes
    ----------
    reads:
        OU reads answered per unit (the read numbers of the next reads).
    conversions:
        Enabled ADC conversions per unit.
    """

    def __init__(self, config: AcceleratorConfig, device=None):
        self.config = config
        self.device = device
        self.exact = device is None or device.params.is_ideal
        # Without read noise a code depends only on the request and the programmed cells.
        self.memoize = self.exact or device.params.read_noise == 0
        # The cells, zero-padded to whole row groups and to one ADC group past the last
        # column group, so that every OU read is one slice (padding cells add nothing);
        # ``levels`` is the crossbar-sized view of it.
        lanes = config.adcs_per_xbar
        self._grid = np.zeros((config.n_xbars, config.row_groups * config.ou_rows,
                               config.col_groups * config.ou_cols + lanes), dtype=np.int64)
        self.levels = self._grid[:, :config.rows, :config.cols]
        self.reads = np.zeros(config.n_xbars, dtype=np.int64)
        self.conversions = np.zeros(config.n_xbars, dtype=np.int64)
        self._cache: list[dict] = [{} for _ in range(config.n_xbars)]
        self._packed: list[dict] = [{} for _ in range(config.n_xbars)]
        self._dac_shifts = np.arange(config.ou_rows) * config.dac_bits
        self._code_shifts = [a * config.adc_bits for a in range(lanes)]
        # lanes of each phase that are OU columns (a ragged last phase has fewer)
        self._phase_lanes = [sum(1 << a for a in range(lanes) if phase * lanes + a
                                 < config.ou_cols)
                             for phase in range(config.conversions_per_read)]
        self._row_inputs: dict = {}     # (wordline_en, dac) -> per-row input (0 if undriven)
        self._lane_masks: dict = {}     # enabled lanes -> 0/1 vector

    def restart_reads(self) -> None:
        """Number the next reads of every unit from 0 (a new batch, docs/analog.md 3)."""
        self.reads[:] = 0
        self.conversions[:] = 0

    def program(self, write: RowWrite) -> None:
        """Apply a row write."""
        if self.device is not None:
            self.device.program_row(write.unit, write.row, write.levels)
        self.levels[write.unit, write.row] = write.levels
        self._cache[write.unit].clear()
        self._packed[write.unit].clear()

    def answer_packed(self, unit: int, bits: int, decode) -> int:
        """Return the packed codes of unit ``unit``'s packed request ``bits`` (the
        ``xbar_requests`` slice); ``decode(unit, bits)`` gives the :class:`ReadRequest` when
        the answer is not memoized. Same counts and codes as :meth:`answer`."""
        if self.memoize:
            hit = self._packed[unit].get(bits)
            if hit is not None:
                packed, conversions, first = hit
                if first:
                    self.reads[unit] += 1
                self.conversions[unit] += conversions
                return packed
        request = decode(unit, bits)
        conversions = bin(request.adc_en).count("1")
        if request.phase == 0:
            self.reads[unit] += 1
        self.conversions[unit] += conversions
        packed = self._compute(request)
        if self.memoize:
            self._packed[unit][bits] = (packed, conversions, request.phase == 0)
        return packed

    def answer(self, request: ReadRequest) -> int:
        """Return the packed ``result.codes`` of one conversion cycle.

        The unit's read number advances on the first phase of each OU read (docs/analog.md
        section 3), which keys the analog device's read noise.
        """
        config = self.config
        unit = request.unit
        if request.phase == 0:
            self.reads[unit] += 1
        self.conversions[unit] += bin(request.adc_en).count("1")
        cache = self._cache[unit] if self.memoize else None
        if cache is not None:
            packed = cache.get(request.key())
            if packed is not None:
                return packed
        packed = self._compute(request)
        if cache is not None:
            cache[request.key()] = packed
        return packed

    def _compute(self, request: ReadRequest) -> int:
        """The packed codes of ``request`` (the read number is already counted)."""
        if self.exact:
            return self._pack(self._exact_codes(request))
        config = self.config
        dac = (request.dac >> self._dac_shifts) & config.dac_max
        enabled = (request.wordline_en >> np.arange(config.ou_rows)) & 1
        adc_en = (request.adc_en >> np.arange(config.adcs_per_xbar)) & 1
        return self._pack(self.device.port_read(
            request.unit, request.row_group, request.col_group, request.phase, dac, enabled,
            adc_en, int(self.reads[request.unit]) - 1))

    def _exact_codes(self, request: ReadRequest) -> np.ndarray:
        """``min(adc_max, sum_k input_k * level[row_k, col_a])`` for every enabled lane:
        one (ou_rows,) x (ou_rows, A) product on a slice of the padded cells."""
        config = self.config
        key = (request.wordline_en, request.dac)
        inputs = self._row_inputs.get(key)
        if inputs is None:
            driven = (request.wordline_en >> np.arange(config.ou_rows)) & 1
            inputs = ((request.dac >> self._dac_shifts) & config.dac_max) * driven
            self._row_inputs[key] = inputs
        enabled = request.adc_en & self._phase_lanes[request.phase]
        mask = self._lane_masks.get(enabled)
        if mask is None:
            mask = (enabled >> np.arange(config.adcs_per_xbar)) & 1
            self._lane_masks[enabled] = mask
        row = request.row_group * config.ou_rows
        col = request.col_group * config.ou_cols + request.phase * config.adcs_per_xbar
        block = self._grid[request.unit, row:row + config.ou_rows,
                           col:col + config.adcs_per_xbar]
        return np.minimum(inputs @ block, config.adc_max) * mask

    def _pack(self, codes) -> int:
        packed = 0
        for shift, code in zip(self._code_shifts, np.asarray(codes).tolist()):
            packed |= int(code) << shift
        return packed


def depositor(handle):
    """Return ``write(value)`` that deposits an unsigned integer on ``handle`` at once.

    cocotb's ``handle.value = x`` queues the write for the time step's ReadWrite phase (one
    more simulator callback into Python per cycle) because some simulators mishandle a write
    from an edge callback. Verilator re-evaluates after a VPI write in any phase (cocotb's
    ``verilator.cpp`` loops while ``evalNeeded``) and Icarus applies it at once; the crossbar
    bench writes only the ``result`` ports, which no other coroutine reads, in the middle of
    a cycle (the falling edge), half a period before the rising edge that samples them.
    """
    width = len(handle)
    raw = handle._handle
    if width <= 32:
        return lambda value: raw.set_signal_val_int(0, value)
    return lambda value: raw.set_signal_val_binstr(0, format(value, f"0{width}b"))


class ResultDriver:
    """Drive each unit's ``result`` port ``adc_latency`` cycles after its strobe."""

    def __init__(self, monitor: PortMonitor, latency: int):
        self.ports = monitor.ports
        self.latency = latency
        self.pending: deque = deque()     # (due cycle, unit, packed codes)
        self._valid = set()               # units whose result.valid is high
        self._codes = [depositor(port.codes) for port in self.ports]
        self._valids = [depositor(port.valid) for port in self.ports]

    def schedule(self, cycle: int, unit: int, packed: int) -> None:
        """Answer unit ``unit``'s read of ``cycle`` in cycle ``cycle + latency``."""
        self.pending.append((cycle + self.latency, unit, packed))

    def drive(self, cycle: int) -> None:
        """Set the result ports for ``cycle`` (call in the cycle, before the rising edge that
        ends it: :class:`CrossbarBench` calls it at the falling edge)."""
        due = set()
        pending = self.pending
        while pending and pending[0][0] == cycle:
            _, unit, packed = pending.popleft()
            self._codes[unit](packed)
            if unit not in self._valid:
                self._valids[unit](1)
            due.add(unit)
        if self._valid:
            for unit in self._valid - due:
                self._valids[unit](0)
        self._valid = due

    @property
    def idle(self) -> bool:
        """No result pending or being driven."""
        return not self.pending and not self._valid


class PortChecker:
    """Protocol checks of the crossbar ports; collects violations."""

    def __init__(self, config: AcceleratorConfig, log):
        self.config = config
        self.log = log
        self.violations: list[str] = []
        self._dac_mask = [((1 << config.dac_bits) - 1) << (k * config.dac_bits)
                          for k in range(config.ou_rows)]

    def _fail(self, message: str) -> None:
        if len(self.violations) < 20:
            self.log.error("crossbar port: %s", message)
        self.violations.append(message)

    def check_read(self, cycle: int, request: ReadRequest, writing: bool) -> None:
        """Check one read request."""
        config = self.config
        if writing:
            self._fail(f"cycle {cycle}: unit {request.unit} reads and writes in one cycle")
        if request.phase >= config.conversions_per_read:
            self._fail(f"cycle {cycle}: unit {request.unit} phase {request.phase} >= "
                       f"{config.conversions_per_read}")
        if request.row_group >= config.row_groups or request.col_group >= config.col_groups:
            self._fail(f"cycle {cycle}: unit {request.unit} row/col group "
                       f"{request.row_group}/{request.col_group} outside the crossbar")
        for k, mask in enumerate(self._dac_mask):
            if request.dac & mask and not request.wordline_en >> k & 1:
                self._fail(f"cycle {cycle}: unit {request.unit} row {k} undriven with a "
                           f"nonzero DAC slice")

    def check_write(self, cycle: int, write: RowWrite) -> None:
        """Check one row write."""
        if write.row >= self.config.rows:
            self._fail(f"cycle {cycle}: unit {write.unit} writes row {write.row} >= "
                       f"{self.config.rows}")


class CrossbarBench:
    """Monitor, model, driver and checker of all crossbar ports, in one coroutine."""

    def __init__(self, dut, config: AcceleratorConfig, device=None, *, log=None):
        if config.adc_latency < 1:
            raise ValueError("the cocotb crossbar model needs adc_latency >= 1, not "
                             f"{config.adc_latency}")
        self.dut = dut
        self.config = config
        self.monitor = PortMonitor(dut, config)
        self.model = CrossbarModel(config, device)
        self.driver = ResultDriver(self.monitor, config.adc_latency)
        self.checker = PortChecker(config, log or dut._log)
        self.cycle = 0
        self.active_cycles = 0
        self._task = None
        self._stopped = False
        for port in self.monitor.ports:
            port.valid.value = 0
            port.codes.value = 0

    def start(self) -> None:
        """Start serving the ports in the background."""
        self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        """Stop answering after the current cycle (cocotb ends the task with the test)."""
        self._stopped = True

    async def _run(self) -> None:
        """Serve the ports (module docstring, "Speed"): asleep until a unit strobes or
        writes, then one wake-up per cycle at the falling edge while anything is pending."""
        monitor, model, driver, checker = self.monitor, self.model, self.driver, self.checker
        falling = FallingEdge(self.dut.clk)
        units = self.config.n_xbars
        unit_mask = (1 << units) - 1
        width = monitor.request_bits
        request_mask = (1 << width) - 1
        checked: set[int] = set()          # requests whose protocol checks passed once
        decode = monitor.decode
        sleeping = True
        while not self._stopped:
            if sleeping:
                await First(monitor.strobes.value_change, monitor.writes.value_change)
            await falling
            self.cycle += 1
            driver.drive(self.cycle)
            value = monitor.sample()
            strobes = value & unit_mask
            writes = value >> units & unit_mask
            if not strobes and not writes:
                sleeping = driver.idle
                continue
            # Woken by a value change: this is a cycle like any other from here on (the
            # count only orders requests and answers, so the edges missed asleep do not matter).
            sleeping = False
            self.active_cycles += 1
            if writes:
                self._program(writes)
            requests = value >> 2 * units
            unit = 0
            while strobes:
                if strobes & 1:
                    bits = requests >> unit * width & request_mask
                    if writes >> unit & 1:
                        checker.check_read(self.cycle, decode(unit, bits), True)
                    elif bits not in checked:
                        before = len(checker.violations)
                        checker.check_read(self.cycle, decode(unit, bits), False)
                        if len(checker.violations) == before:
                            checked.add(bits)
                    driver.schedule(self.cycle, unit, model.answer_packed(unit, bits, decode))
                strobes >>= 1
                unit += 1

    def _program(self, writes: int) -> None:
        """Apply this cycle's row writes (bit ``u`` of ``writes``: unit ``u`` writes)."""
        unit = 0
        while writes:
            if writes & 1:
                write = self.monitor.write(unit)
                self.checker.check_write(self.cycle, write)
                self.model.program(write)
            writes >>= 1
            unit += 1
