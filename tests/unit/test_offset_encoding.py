"""ISAAC's offset (biased) weight encoding: mapping, executor, validator, bundle, CLI.

The cells hold ``w + B`` (``B = 2**magnitude_bits``) in one column set per digit and the
output path subtracts ``B * sum(x)`` (docs/contract.md section 4). Every check compares with
the true integer arithmetic ``x @ W.T`` (the golden rule), never with another run of the
same code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitline.hw.spec.config import preset
from bitline.hw.spec.program import Program, ProgramError, entry_columns
from bitline.hw.spec.validate import validate_program
from bitline.sim.executor import Counters, IdealDevice, execute_layer, run_executor
from bitline.sim.golden import run_golden
from bitline.sw.bundle import (
    BundleError,
    assemble_image,
    encode_image,
    encode_sections,
    parse_image,
    read_bundle,
    write_bundle,
)
from bitline.sw.mapping import STRATEGIES, map_matrix, map_model, reconstruct_matrix
from bitline.sw.perf import analyze_layer
from bitline.sw.perf.costs import ISAAC_COSTS

from support.strategies import configs


@settings(max_examples=60, deadline=None)
@given(config=configs(acc_bits=40), n_out=st.integers(1, 20), n_in=st.integers(1, 50),
       weight_bits=st.integers(1, 8), zeros=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**32 - 1))
def test_executor_equals_integer_arithmetic_for_both_encodings(config, n_out, n_in,
                                                               weight_bits, zeros, seed):
    rng = np.random.default_rng(seed)
    top = (1 << (weight_bits - 1)) - 1
    weight = rng.integers(-top, top + 1, (n_out, n_in))
    weight[rng.random(weight.shape) < zeros] = 0
    x = rng.integers(0, 256, (5, n_in))
    for encoding in ("differential", "offset"):
        layer = map_matrix(weight, config, "isaac", act_bits=8, encoding=encoding)
        assert np.array_equal(reconstruct_matrix(layer, config), weight)
        for shortcut in (True, False):
            acc = execute_layer(layer, config, x, device=IdealDevice(config, shortcut=shortcut))
            assert np.array_equal(acc, x @ weight.T), (encoding, shortcut)
        if encoding == "offset":
            magnitude_bits = int(np.abs(weight).max(initial=0)).bit_length()
            assert layer.weight_offset == 1 << magnitude_bits
            valid = entry_columns(layer.entries, config.ou_cols)["valid"] == 1
            assert not np.any(entry_columns(layer.entries, config.ou_cols)["sign"][valid])
            # every weight is stored as w + B >= 1: at least one nonzero digit each
            assert np.count_nonzero(layer.cells) >= n_out * n_in


def test_offset_halves_the_columns_and_pins_the_read_count():
    """int8 on the bwq preset: 8 columns per channel (digits of w + 128) instead of 14."""
    config = preset("bwq")
    rng = np.random.default_rng(4)
    n_out, n_in = 20, 200
    weight = rng.integers(-127, 128, (n_out, n_in))
    weight[0, 0] = 127
    offset = map_matrix(weight, config, "isaac", act_bits=8, encoding="offset")
    differential = map_matrix(weight, config, "isaac", act_bits=8)
    chunks = -(-n_in // 9)                               # 9 exact rows per read

    def entries(columns):
        return chunks * sum(-(-min(128, columns - start) // 8)
                            for start in range(0, columns, 128))

    assert offset.weight_offset == 128
    assert len(offset.entries) == entries(8 * n_out)           # 160 columns
    assert len(differential.entries) == entries(14 * n_out)    # 280 columns
    assert offset.stats["ou_reads_per_vector"] == 8 * entries(8 * n_out)
    # the correction is priced: K input adds and O subtractions per vector, at one add each
    counts = analyze_layer(offset, config, 3)
    plain = analyze_layer(differential, config, 3)
    assert counts.ou_reads < plain.ou_reads
    add = ISAAC_COSTS.shift_add_pj
    assert plain.energy_pj["shift_add"] == pytest.approx(plain.adc_conversions * add)
    assert counts.energy_pj["shift_add"] == pytest.approx(
        (counts.adc_conversions + 3 * (n_in + n_out)) * add)
    assert counts.cycles == plain.cycles - 3 * (plain.max_unit_reads - counts.max_unit_reads)


def test_unknown_or_unsupported_encoding_is_refused():
    config = preset("bwq")
    weight = np.ones((2, 9), dtype=np.int64)
    with pytest.raises(ValueError, match="unknown weight encoding 'biased'; known encodings "
                                         "are differential, offset"):
        map_matrix(weight, config, "isaac", act_bits=8, encoding="biased")
    for strategy in STRATEGIES[1:]:
        with pytest.raises(ValueError, match=f"weight encoding 'offset' is not supported by "
                                             f"strategy '{strategy}'; it is supported by isaac"):
            map_matrix(weight, config, strategy, act_bits=8, encoding="offset")
    with pytest.raises(ValueError, match="layer fc: the offset encoding needs every input at "
                                         "act_bits"):
        map_matrix(weight, config, "isaac", act_bits=8, encoding="offset",
                   act_block_bits=np.array([4]), name="fc")


# ----------------------------------------------------------------------------- validator
def _program(config, encoding="offset", act_bits=8, n_in=20, weight=None):
    if weight is None:
        weight = np.random.default_rng(2).integers(-127, 128, (6, n_in))
    layer = map_matrix(weight, config, "isaac", act_bits=act_bits, encoding=encoding,
                       name="fc")
    return Program(config.replace(n_xbars=max(1, len(layer.xbars))), "isaac", [layer])


@pytest.mark.parametrize("value", [3, 96, 256, -128])
def test_validator_refuses_a_bad_weight_offset(value):
    program = _program(preset("bwq"))
    program.layers[0].weight_offset = value
    with pytest.raises(ProgramError, match=rf"section LAYERS record 0 \(layer 'fc'\): field "
                                           rf"weight_offset: {value} is not 0 .* power of two"):
        validate_program(program)


def test_validator_counts_the_correction_in_the_accumulator_bound():
    """Weights of -127 are stored as 1: the crossbars' sums stay small (255 per input) but
    the correction reaches 1000 inputs x 255 x 128 = 32,640,000, 26 bits with the sign."""
    config = preset("bwq").replace(acc_bits=25, max_in_features=1000)
    weight = np.full((2, 1000), -127)
    validate_program(_program(config, "differential", weight=-weight // 127))  # raw fits
    with pytest.raises(ProgramError, match=r"field bias: channel 0 can reach \|acc \+ bias\| "
                                           r"= 32640000, which overflows acc_bits = 25"):
        validate_program(_program(config, weight=weight))
    validate_program(_program(config.replace(acc_bits=27), weight=weight))


# ----------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def digits():
    from bitline.sw.datasets import load_dataset
    from bitline.sw.models import resolve_model
    from bitline.sw.quant.build import quantize_model_int

    calib, _ = load_dataset("digits", "calib")
    test, _ = load_dataset("digits", "test")
    models = {name: quantize_model_int(resolve_model(name), calib)
              for name in ("digits-cnn", "digits-resnet")}
    return models, test[:6]


@pytest.mark.parametrize("name", ["digits-cnn", "digits-resnet"])
@pytest.mark.parametrize("config_name", ["bwq", "isaac"])
def test_shipped_models_executor_equals_golden(digits, name, config_name):
    models, x = digits
    qmodel = models[name]
    golden = run_golden(qmodel, x, return_all=True)
    reads = {}
    for encoding in ("differential", "offset"):
        program = map_model(qmodel, preset(config_name), "isaac", xbars="auto",
                            encoding=encoding)
        assert program.encoding == encoding
        assert all((layer.weight_offset > 0) == (encoding == "offset")
                   for layer in program.layers)
        counters = Counters()
        result = run_executor(program, qmodel, x, counters=counters, return_all=True)
        for layer, out in golden.layers.items():
            assert np.array_equal(result.layers[layer], out), (encoding, layer)
        assert np.array_equal(result.output_int, golden.output_int)
        reads[encoding] = counters.total_reads
    assert reads["offset"] <= reads["differential"]


def test_bundle_round_trip_and_edited_bundles(tmp_path, digits):
    models, x = digits
    qmodel = models["digits-cnn"]
    program = map_model(qmodel, preset("bwq"), "isaac", xbars="auto", encoding="offset")
    out = write_bundle(tmp_path / "b", program, qmodel)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encoding"] == "offset"
    assert [region["weight_offset"] for region in manifest["program"]] == [
        layer.weight_offset for layer in program.layers]
    bundle = read_bundle(out)
    assert [layer.weight_offset for layer in bundle.program.layers] == [
        layer.weight_offset for layer in program.layers]
    result = run_executor(bundle.program, bundle.qmodel, x)
    assert np.array_equal(result.output_int, run_golden(qmodel, x).output_int)

    # an image whose LAYERS record carries a bad offset (CRCs recomputed) is refused
    config = program.config
    tables = parse_image(encode_image(program), config)
    tables.layers["weight_offset"][1] = 48
    blob = assemble_image(config, encode_sections(tables))
    with pytest.raises(BundleError, match=r"section LAYERS record 1 .*field weight_offset: 48 "
                                          r"is not 0"):
        parse_image(blob, config)

    # a manifest that disagrees with the image is refused, naming the key
    manifest["program"][0]["weight_offset"] = 0
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"program\[0\]\.weight_offset 0 disagrees with "
                                          r"image.bin section LAYERS record 0 field "
                                          r"weight_offset"):
        read_bundle(out)


# ----------------------------------------------------------------------------- CLI
def test_cli_encoding_option(tmp_path):
    from click.testing import CliRunner

    from bitline.sw.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["compile", "--help"])
    assert "--encoding [differential|offset]" in " ".join(result.output.split())
    result = runner.invoke(cli, ["compile", "digits-cnn", "-s", "isaac", "--encoding", "offset",
                                 "-o", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["encoding"] == "offset"
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["encoding"] == "offset"


@pytest.mark.parametrize("args,message", [
    (["-s", "bwq", "--encoding", "offset"],
     "error: weight encoding 'offset' is not supported by strategy 'bwq'; it is supported "
     "by isaac"),
    (["-s", "isaac", "--encoding", "biased"],
     "unknown encoding 'biased'; choose from differential, offset"),
])
def test_cli_encoding_errors_name_the_value(tmp_path, capsys, args, message):
    from bitline.sw.cli import main

    assert main(["compile", "digits-cnn", *args, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
