"""The rtl backend's pieces that need no Verilog simulator.

The bench harness (:class:`bitline.sim.cocotb.harness.BenchTop`) in the Amaranth simulator:
an image through its stream source into the loader, a layer job whose first input code is
offered in the job's first busy cycle, outputs into the sink -- counters equal to the
performance model with no stall cycles. The design cache, the example config and the
backend's option checks. The cocotb runs are in tests/cocotb/test_e2e_*.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import Program
from bitline.hw.spec.registers import Register, Status
from bitline.sim.amaranth import csr_read, csr_write, read_counters
from bitline.sim.cocotb.harness import INPUTS, PROGRAM, BenchTop
from bitline.sim.backends import run_backend
from bitline.sim.rtl import DIGITS_CONFIG, bench_design, job_capacity
from bitline.sw.bundle import encode_image
from bitline.sw.flow import Target
from bitline.sw.integer.arith import output_unit
from bitline.sw.mapping import map_matrix
from bitline.sw.perf import analyze_layer

from support.configs import small_config
from support.simulation import simulate


def small_program(config, strategy, rng, n_outputs=5, n_inputs=11):
    weight = rng.integers(-7, 8, (n_outputs, n_inputs))
    weight[rng.random(weight.shape) < 0.3] = 0
    layer = map_matrix(weight, config, strategy, act_bits=4, name="layer")
    layer.bias = rng.integers(-60, 60, n_outputs)
    layer.mult = rng.integers(1 << 14, 1 << 15, n_outputs)
    layer.shift = rng.integers(15, 19, n_outputs)
    layer.mode, layer.zero_point, layer.clamp_lo, layer.clamp_hi = "requant", 0, 0, 15
    return Program(config, strategy, [layer]), weight


@pytest.mark.parametrize("strategy", ["bwq", "isaac"])
def test_harness_loads_the_image_and_runs_a_job_without_stalls(strategy):
    config = small_config(n_xbars=2)
    rng = np.random.default_rng(1)
    program, weight = small_program(config, strategy, rng)
    layer = program.layers[0]
    image = encode_image(program)
    vectors = rng.integers(0, 16, (3, layer.n_inputs))
    expected = output_unit(vectors @ weight.T, layer.bias, layer.mult, layer.shift, 0, 0, 15)
    dut = BenchTop(config, source_depth=1 << 12, sink_depth=64, fill_lanes=8, drain_lanes=4)
    seen = {}

    async def fill(ctx, data):
        lanes = dut.fill_lanes
        data = bytes(data) + bytes(-len(data) % lanes)
        ctx.set(dut.fill_en, 1)
        for row in range(len(data) // lanes):
            ctx.set(dut.fill_addr, row)
            ctx.set(dut.fill_data, int.from_bytes(data[row * lanes:(row + 1) * lanes],
                                                  "little"))
            await ctx.tick()
        ctx.set(dut.fill_en, 0)

    async def pulse(ctx, signal):
        ctx.set(signal, 1)
        await ctx.tick()
        ctx.set(signal, 0)

    async def testbench(ctx):
        await fill(ctx, image)
        await csr_write(ctx, dut.csr, Register.CTRL, 2)
        ctx.set(dut.source_count, len(image))
        ctx.set(dut.source_target, PROGRAM)
        await pulse(ctx, dut.source_start)
        await ctx.tick().until(~dut.source_busy)
        await ctx.tick().repeat(4)
        seen["status"] = await csr_read(ctx, dut.csr, Register.STATUS)
        await fill(ctx, vectors.reshape(-1).astype(np.uint8).tobytes())
        ctx.set(dut.sink_count, vectors.shape[0] * layer.n_outputs)
        await pulse(ctx, dut.sink_start)
        await csr_write(ctx, dut.csr, Register.LAYER, 0)
        await csr_write(ctx, dut.csr, Register.N_VECTORS, len(vectors))
        ctx.set(dut.source_count, vectors.size)
        ctx.set(dut.source_target, INPUTS)
        ctx.set(dut.source_start, 1)          # in the cycle of the CTRL.START write
        await csr_write(ctx, dut.csr, Register.CTRL, 1)
        ctx.set(dut.source_start, 0)
        await ctx.tick().until(dut.sink_done)
        values = []
        for row in range(4):
            ctx.set(dut.drain_addr, row)
            word = ctx.get(dut.drain_data)
            for lane in range(4):
                value = (word >> (config.acc_bits * lane)) & ((1 << config.acc_bits) - 1)
                values.append(value - (1 << config.acc_bits) if value >> (config.acc_bits - 1)
                              else value)
        seen["outputs"] = np.array(values[:expected.size]).reshape(expected.shape)
        await ctx.tick().repeat(2)
        seen["counters"] = await read_counters(ctx, dut.csr)
        seen["final"] = await csr_read(ctx, dut.csr, Register.STATUS)

    simulate(dut, testbench)
    assert seen["status"] & Status.PROGRAMMED and not seen["status"] & Status.ERROR
    assert np.array_equal(seen["outputs"], expected)
    perf = analyze_layer(layer, config, len(vectors))
    counters = seen["counters"]
    assert counters["cycles"] == perf.cycles and counters["stall_cycles"] == 0
    assert counters["ou_reads"] == perf.ou_reads
    assert counters["adc_conversions"] == perf.adc_conversions
    assert seen["final"] & Status.DONE and not seen["final"] & Status.BUSY


def test_harness_parameters_are_checked():
    with pytest.raises(ValueError, match="power of two"):
        BenchTop(small_config(), source_depth=1000)


def test_bench_design_is_cached_and_exposes_only_ports(tmp_path):
    config = small_config(n_xbars=2)
    design = bench_design(config, "external", root=tmp_path)
    again = bench_design(config, "external", root=tmp_path)
    assert again.verilog == design.verilog
    assert design.verilog.stat().st_mtime == again.verilog.stat().st_mtime
    info = design.info
    names = {port["name"] for port in info["ports"]}
    assert {"xbar_strobes", "xbars__1__result__codes", "fill_data", "csr__r_data",
            "xbar_requests"} <= names
    # the packed requests: strobes, writes, then each unit's read fields (crossbar.py
    # unpacks them with the same field list); widths add up to the read ports' widths
    from bitline.sim.cocotb.harness import request_fields

    widths = {port["name"]: port["width"] for port in info["ports"]}
    fields = request_fields(config)
    assert [name for name, _ in fields] == ["row_group", "wordline_en", "dac", "col_group",
                                            "phase", "adc_en"]
    assert all(widths[f"xbars__1__read__{name}"] == width for name, width in fields)
    assert widths["xbar_requests"] == 2 * 2 + 2 * sum(width for _, width in fields)
    vlt = design.vlt.read_text()
    assert vlt.startswith("`verilator_config")
    assert vlt.count("public_flat_rw") == len(names) + 2      # + clk, rst
    assert design.verilator_args == ["--no-public-flat-rw", str(design.vlt)]
    emulated = bench_design(config, "emulated", root=tmp_path)
    assert emulated.verilog != design.verilog
    assert "xbar_strobes" not in {port["name"] for port in emulated.info["ports"]}
    program, _ = small_program(config, "bwq", np.random.default_rng(0))
    assert job_capacity(design, program) == min(info["harness"]["source_depth"] // 11,
                                                info["harness"]["sink_depth"] // 5)


def test_digits_config_example_is_the_suite_config():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "rtl" / "digits.toml"
    assert AcceleratorConfig.load(example) == DIGITS_CONFIG


def test_rtl_backend_rejects_bad_options(tmp_path):
    target = Target(str(tmp_path), bundle=tmp_path)
    with pytest.raises(ValueError, match="unknown option"):
        run_backend("rtl", target, np.zeros((1, 1)), {"speed": "1"})
    with pytest.raises(ValueError, match="check must be 0 or 1"):
        run_backend("rtl", target, np.zeros((1, 1)), {"check": "maybe"})
    with pytest.raises(ValueError, match="seed must be int"):
        run_backend("rtl", target, np.zeros((1, 1)), {"seed": "x"})


def test_design_cache_key_covers_every_hardware_source(monkeypatch, tmp_path):
    """An edit in any hw subpackage (hw/spec/image.py holds the image format version) must
    give a new design folder: the cache key hashes every source under bitline/hw."""
    from pathlib import Path

    import bitline.hw
    from bitline.sim import rtl

    hw_root = Path(bitline.hw.__file__).parent
    sources = rtl.hardware_sources()
    assert set(hw_root.rglob("*.py")) <= set(sources)
    assert hw_root / "spec" / "image.py" in sources and hw_root / "core" / "top.py" in sources
    before = rtl._hardware_digest()
    image = hw_root / "spec" / "image.py"
    text = image.read_bytes()
    edited = tmp_path / "image.py"
    edited.write_bytes(text + b"\n# edited\n")
    original_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes",
                        lambda self: original_read(edited if self == image else self))
    assert rtl._hardware_digest() != before


def test_design_root_is_inside_the_build_dir(monkeypatch, tmp_path):
    from bitline.sim import rtl

    monkeypatch.setenv("BITLINE_BUILD_DIR", str(tmp_path / "b"))
    assert rtl._design_root() == tmp_path / "b" / "rtl"


def test_build_cache_defaults_to_the_user_cache(monkeypatch, tmp_path):
    """Not the source checkout: $XDG_CACHE_HOME/bitline, else ~/.cache/bitline; a relative
    XDG_CACHE_HOME is ignored (XDG spec); BITLINE_BUILD_DIR wins over both."""
    from pathlib import Path

    from bitline.sim import rtl
    from bitline.sim.cocotb.runner import default_build_root

    monkeypatch.delenv("BITLINE_BUILD_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_build_root() == tmp_path / "xdg" / "bitline" / "cocotb"
    assert default_build_root().is_dir()
    assert rtl._design_root() == tmp_path / "xdg" / "bitline" / "cocotb" / "rtl"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_build_root() == tmp_path / "home" / ".cache" / "bitline" / "cocotb"
    checkout = Path(rtl.__file__).resolve().parents[1]
    assert not default_build_root().is_relative_to(checkout)
    monkeypatch.setenv("BITLINE_BUILD_DIR", str(tmp_path / "mine"))
    assert default_build_root() == tmp_path / "mine"


@pytest.mark.parametrize("geometry", ["full-adc", "ragged-2bit", "shared-adc"])
def test_crossbar_model_codes_equal_a_per_cell_sum(geometry):
    """The cocotb crossbar model (one product per read on padded cells, memoized by packed
    request) against a per-cell loop written from the port's definition: ragged crossbars,
    partial last phases, gated ADCs, undriven rows, reprogrammed rows."""
    from bitline.hw.spec.config import clog2
    from bitline.sim.cocotb.crossbar import CrossbarModel, ReadRequest, RowWrite
    from bitline.sim.cocotb.harness import request_fields
    from support.configs import TEST_CONFIGS

    config = small_config(**TEST_CONFIGS[geometry])
    rng = np.random.default_rng(3)
    model = CrossbarModel(config)
    levels = rng.integers(0, 1 << config.cell_bits, (config.n_xbars, config.rows, config.cols))

    def program(unit, row):
        model.program(RowWrite(unit, row, levels[unit, row].copy()))

    for unit in range(config.n_xbars):
        for row in range(config.rows):
            program(unit, row)

    def expected(request):
        codes = []
        for lane in range(config.adcs_per_xbar):
            ou_column = request.phase * config.adcs_per_xbar + lane
            col = request.col_group * config.ou_cols + ou_column
            total = 0
            if (ou_column < config.ou_cols and col < config.cols
                    and request.adc_en >> lane & 1):
                for k in range(config.ou_rows):
                    row = request.row_group * config.ou_rows + k
                    if request.wordline_en >> k & 1 and row < config.rows:
                        slice_ = request.dac >> (k * config.dac_bits) & config.dac_max
                        total += slice_ * int(levels[request.unit, row, col])
            codes.append(min(total, config.adc_max))
        return codes

    widths = dict(request_fields(config))
    offsets = np.cumsum([0] + list(widths.values()))[:-1]
    shifts = dict(zip(widths, offsets.tolist()))
    requests = []
    for _ in range(300):
        request = ReadRequest(
            unit=int(rng.integers(config.n_xbars)),
            row_group=int(rng.integers(config.row_groups)),
            wordline_en=int(rng.integers(1 << config.ou_rows)),
            dac=int(rng.integers(1 << (config.ou_rows * config.dac_bits))),
            col_group=int(rng.integers(config.col_groups)),
            phase=int(rng.integers(config.conversions_per_read)),
            adc_en=int(rng.integers(1 << config.adcs_per_xbar)))
        # an undriven row has a zero DAC slice (the port protocol)
        driven = sum(config.dac_max << (k * config.dac_bits) for k in range(config.ou_rows)
                     if request.wordline_en >> k & 1)
        requests.append(ReadRequest(**{**request.__dict__, "dac": request.dac & driven}))
    reads = np.zeros(config.n_xbars, dtype=int)
    for rounds in range(2):
        if rounds:      # reprogram every row: no memoized answer may survive
            levels[:] = rng.integers(0, 1 << config.cell_bits, levels.shape)
            for unit in range(config.n_xbars):
                for row in range(config.rows):
                    program(unit, row)
        for index, request in enumerate(requests):
            bits = sum(getattr(request, name) << shifts[name] for name in widths)
            decode = lambda unit, bits, request=request: request  # noqa: E731
            # the same request twice: the second answer comes from the memo
            for _ in range(2):
                packed = model.answer_packed(request.unit, bits, decode)
                got = [packed >> (lane * config.adc_bits) & config.adc_max
                       for lane in range(config.adcs_per_xbar)]
                assert got == expected(request), (rounds, index, request)
                reads[request.unit] += request.phase == 0
    assert np.array_equal(model.reads, reads)
    assert clog2(config.conversions_per_read) <= widths["phase"]
