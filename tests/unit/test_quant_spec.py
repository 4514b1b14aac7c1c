"""Quantization spec files and shorthands: parsing, per-layer / per-channel rules, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bitline.sw.datasets import load_dataset
from bitline.sw.models import resolve_model
from bitline.sw.quant import level_set, load_spec, quantize_model
from bitline.sw.quant.finetune import torch_available

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "quant"
CONV1 = "/features/features.0/Conv"
CONV2 = "/features/features.2/Conv"


@pytest.fixture(scope="module")
def model():
    return resolve_model("digits-cnn")


@pytest.fixture(scope="module")
def calib():
    return load_dataset("digits", "calib")[0][:64]


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_examples_parse_and_match_their_shorthand(path):
    if "finetune_epochs" in path.read_text() and not torch_available():
        # Without the optional training extra, a fine-tuning spec is refused at parse time
        # with an error that names the field (the README's install does not bring PyTorch).
        with pytest.raises(ValueError, match=r"bwq\.finetune_epochs: fine-tuning needs PyTorch"):
            load_spec(path)
        return
    spec = load_spec(path)
    assert spec.source == str(path)
    try:
        shorthand = load_spec(spec.name)
    except ValueError:
        return  # not a shorthand name (bwq3-act4, digits_cnn_mixed)
    assert shorthand.to_dict() == spec.to_dict()


@pytest.mark.parametrize(
    "text,mode,summary",
    [
        ("int8", "fixed", ("int", 8)),
        ("int4", "fixed", ("int", 4)),
        ("pot4", "fixed", ("pot", 4)),
        ("apot4", "fixed", ("apot", 4)),
        ("adaptivfloat6", "fixed", ("adaptivfloat", 6)),
        ("ternary", "fixed", ("ternary", 2)),
        ("binary", "fixed", ("binary", 1)),
        ("varied4", "varied", 4.0),
        ("bwq3", "bwq", 3.0),
        ("bwq2.5", "bwq", 2.5),
    ],
)
def test_shorthands(text, mode, summary):
    spec = load_spec(text)
    assert spec.mode == mode and spec.name == text
    if mode == "fixed":
        assert (spec.weights.scheme, spec.weights.bits) == summary
    elif mode == "varied":
        assert spec.varied.budget == summary
    else:
        assert spec.bwq.budget == summary


def test_json_equals_toml(tmp_path):
    toml_spec = load_spec(EXAMPLES / "digits_cnn_mixed.toml")
    json_path = write(tmp_path, json.dumps(toml_spec.to_dict()), "mixed.json")
    assert load_spec(json_path).to_dict() == toml_spec.to_dict()


def test_per_layer_and_per_channel_rules(model, calib):
    qmodel = quantize_model(model, EXAMPLES / "digits_cnn_mixed.toml", calib)
    conv1 = qmodel.layers[CONV1].weight
    assert conv1.scheme == "int" and conv1.bits == 8
    conv2 = qmodel.layers[CONV2].weight
    schemes = list(conv2.scheme)
    assert schemes[:8] == ["pot"] * 8 and schemes[8:11] == ["apot"] * 3
    assert set(schemes[11:]) == {"int"}
    magnitudes = np.abs(conv2.values.reshape(conv2.values.shape[0], -1))
    assert np.isin(magnitudes[:8], level_set("pot", 4)).all()
    assert np.isin(magnitudes[8:11], level_set("apot", 5)).all()
    assert magnitudes[11:].max() <= 7
    # activation_bits of conv2 sets the width of the tensor it reads.
    assert qmodel.layers[CONV2].inputs[0].bits == 6
    stats = qmodel.spec["stats"]
    assert stats["weight_bits_histogram"][8] == 144 + 640
    assert 4 < stats["avg_weight_bits"] < 5


def test_stats_of_a_uniform_spec(model, calib):
    qmodel = quantize_model(model, "int4", calib)
    stats = qmodel.spec["stats"]
    assert stats["avg_weight_bits"] == 4.0
    assert stats["avg_activation_bits"] == 8.0
    assert stats["zero_block_fraction"] == 0.0
    assert qmodel.spec["quant"]["weights"]["clip"] == "mse"


# --------------------------------------------------------------------------- errors
FIELD_ERRORS = [
    # (file text, the message must contain)
    ('[weights]\nscheme = "float"\nbits = 4\n', "weights.scheme: unknown scheme 'float'"),
    ('[weights]\nscheme = "int"\nbits = 20\n', "weights.bits: bits for scheme int must be "
                                               "between 2 and 16, not 20"),
    ('[weights]\nscheme = "apot"\nbits = 8\n', "weights.bits: bits for scheme apot"),
    ('[weights]\nscheme = "int"\n', "weights.bits: is required"),
    ('[weights]\nbits = 4\ngranularity = "row"\n', "weights.granularity: must be one of"),
    ('[weights]\nbits = 4\nclip = "p99"\n', "option clip must be one of"),
    ('[weights]\nbits = 4\nexponent_bits = 2\n', "unknown option(s) exponent_bits"),
    ('mode = "fixed"\n', "weights: a fixed-mode spec needs a [weights] table"),
    ('mode = "magic"\n[weights]\nbits = 4\n', "mode: must be one of fixed, varied, bwq"),
    ('colour = 1\n[weights]\nbits = 4\n', "unknown key(s) colour in top level"),
    ('[weights]\nbits = 4\n[activations]\nbits = 17\n',
     "activations.bits: must be between 1 and 16, not 17"),
    ('[weights]\nbits = 4\n[activations]\nrule = "entropy"\n', "activations.rule"),
    ('mode = "varied"\n[varied]\nbudget = 1\n',
     "varied.budget: 1 is below the minimum 2 (the narrowest candidate width)"),
    ('mode = "varied"\n[varied]\nbudget = 4\nschemes = ["int", "fp"]\n',
     "varied.schemes: unknown scheme 'fp'"),
    ('mode = "varied"\n', "varied: mode 'varied' needs a [varied] table"),
    ('mode = "bwq"\n[bwq]\nbudget = 1.5\nmin_bits = 2\n',
     "bwq.budget: 1.5 is below the minimum 2 (min_bits)"),
    ('mode = "bwq"\n[bwq]\nbudget = 9\n', "bwq.budget: 9 is above the maximum 8"),
    ('mode = "bwq"\n[bwq]\nbudget = 0\n', "bwq.budget: 0 is below the minimum"),
    ('mode = "bwq"\n[bwq]\n', "bwq.budget: is required"),
    ('mode = "bwq"\n[bwq]\nbudget = 3\nmax_bits = 9\n', "bwq.max_bits: must be between 1 and 8"),
    ('mode = "bwq"\n[bwq]\nbudget = 3\nact_budget = 1\n',
     "bwq.act_budget: 1 is below the minimum 2 (min_act_bits)"),
    ('mode = "bwq"\n[bwq]\nbudget = 3\nlayers = { a = 9 }\n', 'bwq.layers."a": must be a block'),
    ('[weights]\nbits = 4\n[bwq]\nbudget = 3\n', 'bwq: only allowed with mode = "bwq"'),
    ('[weights]\nbits = 4\n[[layers.x.channels]]\nscheme = "pot"\n',
     'layers."x".channels[0].index: is required'),
    ('[weights]\nbits = 4\n[[layers.x.channels]]\nindex = "5:2"\nbits = 3\n',
     'layers."x".channels[0].index: must be a list'),
    ('[weights]\nbits = 4\n[layers.x]\nactivation_bits = 0\n',
     'layers."x".activation_bits: must be between 1 and 8'),
    ('mode = "bwq"\n[bwq]\nbudget = 3\n[layers.x]\nbits = 4\n',
     'layers."x": weight overrides need mode = "fixed"'),
    ("[weights\nbits = 4\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", FIELD_ERRORS, ids=[m for _, m in FIELD_ERRORS])
def test_malformed_spec_names_the_field(tmp_path, text, message):
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(ValueError) as error:
        load_spec(path)
    assert str(error.value).startswith(f"spec {path}: ")
    assert message in str(error.value)


@pytest.mark.parametrize(
    "text,message",
    [
        ("int20", "spec int20: weights.bits: bits for scheme int must be between 2 and 16"),
        ("foo4", "spec foo4: scheme: unknown scheme 'foo'"),
        ("int4.5", "spec int4.5: bits: must be an integer"),
        ("varied", "spec varied: budget: varied needs a budget"),
        ("varied1", "spec varied1: varied.budget: 1.0 is below the minimum 2"),
        ("bwq0", "spec bwq0: bwq.budget: 0.0 is below the minimum"),
        ("int", "spec int: bits: scheme int needs a width"),
        ("no such spec!", "neither a spec file nor a shorthand"),
        ("missing.toml", "spec missing.toml: file not found"),
    ],
)
def test_malformed_shorthand(text, message):
    with pytest.raises(ValueError, match=None) as error:
        load_spec(text)
    assert message in str(error.value)


def test_model_dependent_errors(tmp_path, model, calib):
    unknown_layer = write(tmp_path, '[weights]\nbits = 4\n[layers.conv9]\nbits = 8\n')
    with pytest.raises(ValueError, match=r'layers\."conv9": model \S+ has no compute layer'):
        quantize_model(model, unknown_layer, calib)
    channel = write(tmp_path, f'[weights]\nbits = 4\n[[layers."{CONV1}".channels]]\n'
                              'index = [3, 16]\nbits = 8\n')
    with pytest.raises(ValueError, match=r'channels\[0\]\.index: channel 16 out of range: '
                                         r'layer \S+ has 16 output channels'):
        quantize_model(model, channel, calib)
    # Pinning a big layer at 8 bits raises the smallest achievable average.
    fixed = write(tmp_path, 'mode = "bwq"\n[bwq]\nbudget = 1\n[bwq.layers]\n'
                            '"/features/features.5/Conv" = 8\n')
    with pytest.raises(ValueError, match=r"bwq\.budget: 1 is below the minimum 3\.23"):
        quantize_model(model, fixed, calib)
    too_wide = write(tmp_path, '[weights]\nscheme = "adaptivfloat"\nbits = 8\n')
    with pytest.raises(ValueError, match="magnitude bit planes.*max_weight_bits = 8"):
        quantize_model(model, too_wide, calib)
