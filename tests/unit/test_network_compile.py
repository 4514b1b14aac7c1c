"""compile --network: the node list, the slot allocation, the sizing, the refusals, the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.program import ProgramError
from bitline.hw.spec.validate import validate_program
from bitline.sw import api
from bitline.sw.bundle import BundleError, read_bundle, write_bundle
from bitline.sw.cli import cli
from bitline.sw.flow.compile import network_program
from bitline.sw.integer.network import network_nodes

from support.networks import mixed_ops_model, residual_dw_model

MODELS = Path(__file__).resolve().parents[2] / "sw" / "models"
RESNET, CNN = str(MODELS / "digits_resnet.onnx"), str(MODELS / "digits_cnn.onnx")
NETWORK_FIELDS = ("act_buffer_depth", "max_nodes", "max_map_channels", "max_map_height",
                  "max_map_width")


@pytest.fixture(scope="module")
def resnet():
    return api.compile(RESNET, "bwq", network=True)


@pytest.fixture(scope="module")
def cnn():
    return api.compile(CNN, "ivq-spatial", network=True)


def test_digits_resnet_nodes(resnet):
    nodes = resnet.program.nodes
    model = resnet.qmodel.model
    steps = [layer for layer in model.layers if layer.op != "flatten"]
    assert [node.name for node in nodes] == [layer.name for layer in steps]
    kinds = {"conv": NodeKind.COMPUTE, "gemm": NodeKind.COMPUTE, "add": NodeKind.ADD,
             "gap": NodeKind.POOL_AVG, "maxpool": NodeKind.POOL_MAX}
    assert [node.kind for node in nodes] == [kinds[layer.op] for layer in steps]
    # input at 0, to_host on the last node only; compute nodes name their layer record
    assert nodes[0].window.base == 0 and (nodes[0].window.channels, nodes[0].window.height,
                                          nodes[0].window.width) == model.input_shape
    assert [node.to_host for node in nodes] == [False] * (len(nodes) - 1) + [True]
    names = [layer.name for layer in resnet.program.layers]
    for node in nodes:
        if node.kind == NodeKind.COMPUTE:
            assert names[node.layer] == node.name
    # the add: both operands' slots, requantization of its layer
    add = next(node for node in nodes if node.kind == NodeKind.ADD)
    qadd = resnet.qmodel.layers[add.name]
    assert (add.mult_a, add.mult_b, add.shift) == (*qadd.mult.tolist(), qadd.shift[0])
    assert (add.zero_a, add.zero_b, add.zero_point) == (
        qadd.inputs[0].zero_point, qadd.inputs[1].zero_point, qadd.output.zero_point)
    # conv pad values are the input zero points
    for node in nodes:
        if node.kind == NodeKind.COMPUTE and node.window.kernel != (1, 1):
            assert node.window.pad_value == resnet.qmodel.layers[node.name].inputs[0].zero_point


def _live_sets(qmodel):
    """Per node, the tensors live while it runs (read later or being read/written), and their
    sizes - counted from the graph directly, without the allocator's slot table."""
    model = qmodel.model
    alias = {}
    for layer in model.layers:
        alias[layer.output] = alias.get(layer.inputs[0], layer.inputs[0]) \
            if layer.op == "flatten" else layer.output
    owner = lambda name: alias.get(name, name)           # noqa: E731
    steps = [layer for layer in model.layers if layer.op != "flatten"]
    sizes = {model.input_name: int(np.prod(model.input_shape))}
    sizes.update({layer.output: int(np.prod(layer.output_shape)) for layer in steps})
    produced = {model.input_name: -1, **{layer.output: i for i, layer in enumerate(steps)}}
    last = {}
    for index, layer in enumerate(steps):
        for name in layer.inputs:
            last[owner(name)] = index
    return [sum(sizes[t] for t in sizes if produced[t] <= i <= last.get(t, produced[t]))
            for i in range(len(steps) - 1)]


@pytest.mark.parametrize("which", ["resnet", "cnn"])
def test_slots_never_overlap_while_live(which, request):
    compiled = request.getfixturevalue(which)
    nodes = compiled.program.nodes
    model = compiled.qmodel.model
    steps = [layer for layer in model.layers if layer.op != "flatten"]
    root = {model.input_name: model.input_name}
    for layer in model.layers:
        root[layer.output] = root[layer.inputs[0]] if layer.op == "flatten" else layer.output
    # each stored tensor's slot, read back from the nodes; when it is written and last read
    slot = {model.input_name: (0, int(np.prod(model.input_shape)))}
    born = {model.input_name: -1}
    for index, (node, layer) in enumerate(zip(nodes[:-1], steps)):
        slot[layer.output] = (node.dst_base, node.dst_size)
        born[layer.output] = index
    dies = {}
    for index, layer in enumerate(steps):
        for name in layer.inputs:
            dies[root[name]] = index
    for index in range(len(steps) - 1):
        live = [t for t in slot if born[t] <= index <= dies.get(t, born[t])]
        for i, a in enumerate(live):
            for b in live[i + 1:]:
                (base_a, size_a), (base_b, size_b) = slot[a], slot[b]
                assert base_a + size_a <= base_b or base_b + size_b <= base_a, (index, a, b)
    # the depth is the peak end address and at least the peak of live codes
    config = compiled.program.config
    ends = [base + size for base, size in slot.values()]
    assert config.act_buffer_depth == max(ends)
    assert config.act_buffer_depth >= max(_live_sets(compiled.qmodel))


def test_sizing_of_the_five_fields(resnet):
    config = resnet.program.config
    plan = network_nodes(resnet.qmodel, [layer.name for layer in resnet.program.layers])
    assert {name: getattr(config, name) for name in NETWORK_FIELDS} == plan.sizes
    shapes = [resnet.qmodel.model.input_shape] + [
        layer.output_shape if len(layer.output_shape) == 3 else (layer.output_shape[0], 1, 1)
        for layer in resnet.qmodel.model.layers]
    assert plan.max_channels == max(shape[0] for shape in shapes)
    assert (plan.max_height, plan.max_width) == (max(s[1] for s in shapes),
                                                 max(s[2] for s in shapes))
    assert plan.sizes["max_nodes"] == 10
    recorded = {record.field: record.chosen for record in resnet.sizing}
    assert all(recorded[name] == getattr(config, name) for name in NETWORK_FIELDS)


def _pinned(tmp_path, **values):
    path = tmp_path / "chip.toml"
    path.write_text("[accelerator]\npreset = \"bwq\"\n"
                    + "".join(f"{key} = {value}\n" for key, value in values.items()))
    return AcceleratorConfig.load(path)


def test_pinned_fields_are_kept_or_refused(tmp_path, resnet):
    sizes = {name: getattr(resnet.program.config, name) for name in NETWORK_FIELDS}
    bigger = {name: value + 3 for name, value in sizes.items()}
    program, records = network_program(
        resnet.program.__class__(resnet.program.config.replace(
            **bigger, pinned=frozenset(bigger)), "bwq", resnet.program.layers),
        resnet.qmodel)
    assert not records and all(getattr(program.config, k) == v for k, v in bigger.items())
    config = _pinned(tmp_path, **{**bigger, "act_buffer_depth": 100})
    with pytest.raises(ValueError, match=r"the config sets act_buffer_depth = 100, but the "
                                         rf"network needs {sizes['act_buffer_depth']}"):
        api.compile(RESNET, "bwq", config=config, network=True)
    # a larger unpinned value is kept too (fields are only raised)
    unpinned = resnet.program.config.replace(**bigger)
    program, records = network_program(
        resnet.program.__class__(unpinned, "bwq", resnet.program.layers), resnet.qmodel)
    assert not records and program.config == unpinned


def test_unsupported_op_is_named():
    with pytest.raises(ValueError, match=r"layer 'r6' \(op relu6\): --network runs conv, gemm"):
        api.compile(mixed_ops_model(), "bwq", network=True)


def test_a_map_beyond_what_a_config_holds_is_named():
    """A 1 x 1 x 5000 input needs max_map_width = 5000, above the field's limit (4096):
    the error names the need, the node and the limit (it was the bare range error)."""
    from bitline.sw.frontend.ir import Layer, Model

    rng = np.random.default_rng(0)
    shape = (1, 1, 5000)
    conv = Layer("wide", "conv", ["x"], "y", shape, (2, 1, 5000),
                 attrs={"stride": (1, 1), "pads": (0, 1, 0, 1), "dilation": (1, 1),
                        "groups": 1},
                 weight=rng.normal(0, 0.3, (2, 1, 1, 3)).astype(np.float32),
                 bias=np.zeros(2, np.float32))
    model = Model("wide", "x", shape, [conv], "y")
    with pytest.raises(ValueError, match=r"^--network: the network needs max_map_width = "
                                         r"5000 \(width of the largest feature map: node "
                                         r"'wide' reads it\), but max_map_width must be "
                                         r"between 0 and 4096, not 5000; .*\(compile without "
                                         r"--network"):
        api.compile(model, "bwq", calib=rng.random((4, *shape)), network=True)
    assert api.compile(model, "bwq", calib=rng.random((4, *shape))).program.nodes is None


def test_copies_are_refused(resnet, tmp_path):
    program = resnet.program
    with pytest.raises(ValueError, match=r"layer '/stem/stem.0/Conv' has 2 copies: --network"):
        network_program(program.with_copies({program.layers[0].name: 2}), resnet.qmodel)
    result = CliRunner().invoke(cli, ["compile", RESNET, "-s", "bwq", "--network",
                                       "--budget", "xbars:60", "-o", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--network runs one copy" in result.output


def test_depthwise_residual_model_compiles():
    compiled = api.compile(residual_dw_model(), "bwq", network=True)
    kinds = [node.kind for node in compiled.program.nodes]
    assert kinds == [NodeKind.COMPUTE] * 3 + [NodeKind.ADD, NodeKind.POOL_AVG, NodeKind.COMPUTE]
    validate_program(compiled.program)


def test_bundle_round_trip_and_cli(tmp_path, resnet):
    out = write_bundle(tmp_path / "b", resnet.program, resnet.qmodel)
    bundle = read_bundle(out)
    assert bundle.program.nodes == resnet.program.nodes
    assert [node.name for node in bundle.program.nodes] == [
        node.name for node in resnet.program.nodes]
    assert bundle.program.config == resnet.program.config
    manifest = json.loads((out / "manifest.json").read_text())
    assert [item["kind"] for item in manifest["network"]] == [
        node.kind.name for node in resnet.program.nodes]
    names = [section["name"] for section in manifest["sections"]]
    assert names[-1] == "NETWORK"
    assert manifest["sections"][-1]["record_count"] == len(resnet.program.nodes)
    # the CLI flag writes the same nodes and says so in compile.json
    result = CliRunner().invoke(cli, ["compile", RESNET, "-s", "bwq", "--network",
                                       "-o", str(tmp_path / "cli"), "-q"])
    assert result.exit_code == 0, result.output
    assert read_bundle(tmp_path / "cli").program.nodes == resnet.program.nodes
    assert json.loads((tmp_path / "cli" / "compile.json").read_text())["network"] is True


def test_report_shows_the_whole_network_run(tmp_path, resnet):
    """``bitline report`` of a --network bundle adds the whole-network run: per node and
    per image; the cycles per image are the net_timing run, counted here phase by phase
    (input setup, codes, first start, node switches, every node's cycles)."""
    from bitline.hw.spec import net_timing
    from bitline.sw.perf import network_report

    out = write_bundle(tmp_path / "b", resnet.program, resnet.qmodel)
    run = network_report(resnet.program)
    nodes = resnet.program.nodes
    phases = (net_timing.INPUT_SETUP_CYCLES + nodes[0].window.size
              + net_timing.NODE_START_CYCLES + net_timing.NODE_SWITCH_CYCLES * (len(nodes) - 1)
              + sum(node.cycles for node in run.nodes))
    assert run.cycles == phases
    result = CliRunner().invoke(cli, ["report", str(out), "--json"])
    assert result.exit_code == 0, result.output
    network = json.loads(result.stdout)["network"]
    assert network["cycles_per_image"] == phases
    assert [node["name"] for node in network["nodes"]] == [node.name for node in nodes]
    assert network["images_per_second"] == pytest.approx(
        resnet.program.config.clock_mhz * 1e6 / phases)
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 0 and f"per image: {phases:,} cycles" in result.output
    result = CliRunner().invoke(cli, ["compile", RESNET, "-s", "bwq", "--network", "-o",
                                      str(tmp_path / "c")])
    assert result.exit_code == 0 and f"per image: {phases:,} cycles" in result.stdout
    plain = api.compile(RESNET, "bwq")
    result = CliRunner().invoke(cli, ["report", str(write_bundle(tmp_path / "p", plain.program,
                                                                 plain.qmodel)), "--json"])
    assert result.exit_code == 0 and "network" not in json.loads(result.stdout)


def test_per_layer_program_on_network_hardware(resnet, tmp_path):
    """A program without nodes on whole-network hardware: an empty NETWORK section."""
    program = resnet.program.__class__(resnet.program.config, "bwq", resnet.program.layers)
    tables = validate_program(program)
    assert tables.nodes == []
    bundle = read_bundle(write_bundle(tmp_path / "b", program, resnet.qmodel))
    assert bundle.program.nodes is None
    assert bundle.manifest["sections"][-1] == {**bundle.manifest["sections"][-1],
                                               "name": "NETWORK", "record_count": 0}


def test_nodes_without_network_hardware_refused(resnet):
    plain = resnet.program.config.replace(**{name: 0 for name in NETWORK_FIELDS})
    program = resnet.program.__class__(plain, "bwq", resnet.program.layers,
                                       nodes=resnet.program.nodes)
    with pytest.raises(ProgramError, match=r"section NETWORK: field record_count: the program "
                                           r"has 10 network nodes, the config has no "
                                           r"whole-network hardware"):
        validate_program(program)
    with pytest.raises(BundleError, match="no whole-network hardware"):
        write_bundle("/nonexistent/never", program, resnet.qmodel)


def test_hardware_for_a_network_bundle(resnet):
    """bitline verilog/fpga --bundle: the whole-network fields are sized by the bundle unless
    the config file sets them (then a bundle that differs is refused)."""
    from bitline.sw.flow.hardware import hardware_for_bundle

    bundle = resnet.program.config
    plain = bundle.replace(**{name: 0 for name in NETWORK_FIELDS})
    notes = hardware_for_bundle(bundle, plain, resnet.program.xbars_used)
    assert f"act_buffer_depth sized from 0 to {bundle.act_buffer_depth} by the bundle" in notes
    assert sum(note.split(" ")[0] in NETWORK_FIELDS for note in notes) == 5
    pinned = bundle.replace(act_buffer_depth=bundle.act_buffer_depth + 1,
                            pinned=frozenset({"act_buffer_depth"}))
    with pytest.raises(ValueError, match=rf"act_buffer_depth {bundle.act_buffer_depth} "
                                         r"\(hardware \d+, set by the config file\)"):
        hardware_for_bundle(bundle, pinned, resnet.program.xbars_used)


def test_unpinned_unit_count_is_sized_by_the_bundle(resnet):
    """A base config whose n_xbars comes from a preset (not set by the file) is sized up to
    the bundle's units, like the other sized fields; a pinned one that is too small is
    refused naming the need (``bitline verilog --config c.toml --bundle B``)."""
    from bitline.sw.flow.hardware import hardware_for_bundle

    bundle, used = resnet.program.config, resnet.program.xbars_used
    fewer = bundle.replace(n_xbars=used - 1)
    assert f"n_xbars sized from {used - 1} to {bundle.n_xbars} by the bundle" in (
        hardware_for_bundle(bundle, fewer, used))
    with pytest.raises(ValueError, match=rf"needs {used} crossbar units, the hardware has "
                                         rf"n_xbars = {used - 1}"):
        hardware_for_bundle(bundle, fewer.replace(pinned=frozenset({"n_xbars"})), used)
