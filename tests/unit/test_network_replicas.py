"""Layer replicas in the pipeline (docs/network.md section 7): ``compile --pipeline
--replicate NAME=R`` / ``--budget xbars:N``, the validator's group checks, the interpreter
by phase and the pipelined report.

Checked a second way each time: the replicas' records against the original's arrays and
the units the program had before; the copies rule recomputed from the IR graph's
producers and the groups' stages; ``run_pipelined`` against the golden model image by
image; a corrupted replica's layer changes exactly its phase's images; the budget's
choice against a brute-force search of the doubling rule; every checker shown to fail on
a broken input, naming node, field and value.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.hw.spec.net_timing import node_timing
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.program import ProgramError
from bitline.hw.spec.validate import validate_program
from bitline.sw import api
from bitline.sw.bundle import BundleError, read_bundle, write_bundle
from bitline.sw.cli import cli, main
from bitline.sw.flow.compile import compile_bundle, replica_counts
from bitline.sw.integer.network import NetworkPlan, pipeline_plan, run_nodes, run_pipelined
from bitline.sw.perf.network import node_images, pipelined_report

from test_network_pipeline import golden_codes, graph_producers, with_nodes
from test_network_validate import edit_node

MODELS = Path(__file__).resolve().parents[2] / "sw" / "models"
RESNET, CNN = str(MODELS / "digits_resnet.onnx"), str(MODELS / "digits_cnn.onnx")
CONV2 = "/features/features.2/Conv"            # the digits CNN's bottleneck (69 % of sum T_l)


@pytest.fixture(scope="module")
def plain():
    return api.compile(CNN, "bwq", network=True, pipeline=True)


@pytest.fixture(scope="module")
def cnn():
    return api.compile(CNN, "bwq", network=True, pipeline=True, replicate={CONV2: 2})


@pytest.fixture(scope="module")
def resnet():
    return api.compile(RESNET, "bwq", network=True, pipeline=True, budget="xbars:40")


@pytest.fixture(scope="module")
def digits():
    x, _ = api.dataset("digits", "test")
    return x[:4]


def _groups(nodes) -> list[list[int]]:
    """The replica groups by their records alone: a phase-0 node and the next R - 1."""
    groups, index = [], 0
    while index < len(nodes):
        count = 1 << int(nodes[index].replicas_log2)
        groups.append(list(range(index, index + count)))
        index += count
    return groups


# ------------------------------------------------------------------- compiled records
def test_replica_records_follow_the_contract(cnn, plain):
    program, nodes = cnn.program, cnn.program.nodes
    validate_program(program)
    base = plain.program
    # the group: conv2 and its replica, consecutive, phases 0 and 1, one engine each
    assert [node.name for node in nodes] == [base.nodes[0].name, CONV2, CONV2] + \
        [node.name for node in base.nodes[2:]]
    assert [(n.replicas_log2, n.phase) for n in nodes[1:3]] == [(1, 0), (1, 1)]
    assert all((n.replicas_log2, n.phase) == (0, 0) for n in nodes[:1] + nodes[3:])
    assert [n.stage for n in nodes] == list(range(program.config.pipeline_stages)) == \
        list(range(8))
    one, two = nodes[1], nodes[2]
    for name in ("window", "dst_base", "dst_channels", "copies", "src0_node"):
        assert getattr(one, name) == getattr(two, name)
    # the replica's record: the same layer on fresh units after every unit the program had
    original, replica = program.layers[one.layer], program.layers[two.layer]
    assert one.layer != two.layer and original.name == replica.name == CONV2
    highest = max(int(np.max(layer.xbars)) for layer in base.layers)
    assert np.asarray(replica.xbars).tolist() == list(range(highest + 1,
                                                            highest + 1 + len(original.xbars)))
    assert not set(np.asarray(replica.xbars).tolist()) & set(
        np.concatenate([layer.xbars for layer in base.layers]).tolist())
    for name in ("cells", "row_maps", "bias", "mult", "shift"):
        assert np.array_equal(getattr(original, name), getattr(replica, name))
    position = {int(u): k for k, u in enumerate(original.xbars)}
    moved = [int(replica.xbars[position[int(u)]]) for u in original.entries["xbar"]]
    assert replica.entries["xbar"].tolist() == moved
    assert program.xbars_used == base.xbars_used + len(original.xbars)
    grown = [s for s in cnn.sizing if s.field == "n_xbars" and "--replicate" in s.reason]
    assert grown and grown[0].chosen == program.config.n_xbars == program.xbars_used
    # sources name the groups' first nodes (the graph's producers, renumbered)
    first = {0: 0}
    for number, group in enumerate(_groups(nodes)):
        first[number + 1] = group[0] + 1
    graph = graph_producers(cnn.qmodel)
    expected = [tuple(first[ref] for ref in graph[number])
                for number, group in enumerate(_groups(nodes)) for _ in group]
    assert [(int(n.src0_node),) for n in nodes] == expected
    # copies rule 7.3 recomputed: max consumer stage minus the group's smallest + 1
    for group in _groups(nodes):
        readers = [c for c, n in enumerate(nodes) if n.src0_node == group[0] + 1
                   or (n.kind == NodeKind.ADD and n.src1_node == group[0] + 1)]
        need = max([nodes[c].stage for c in readers], default=0) - nodes[group[0]].stage + 1
        assert all(nodes[i].copies == max(1, need) for i in group)
    assert nodes[1].copies == 3 and nodes[0].copies == 3    # conv2's reader 2 stages on
    # one shared region per group: the depth is the input's and each group's copies
    depth = nodes[0].input_copies * nodes[0].window.size + sum(
        nodes[g[0]].copies * nodes[g[0]].dst_size for g in _groups(nodes)
        if not nodes[g[0]].to_host)
    assert program.config.act_buffer_depth == depth


@pytest.mark.parametrize("count", [4, 3])
def test_run_pipelined_equals_golden(cnn, digits, count):
    golden, codes = golden_codes(cnn, digits[:count])
    assert np.array_equal(run_pipelined(cnn.program, cnn.qmodel, codes), golden)
    for image in range(count):
        out = run_nodes(cnn.program, cnn.qmodel, codes[image:image + 1], image=image)
        assert np.array_equal(out[0], golden[image])


def test_the_replicas_layer_is_really_used(cnn, digits):
    """Corrupt the replica's layer record (its bias): exactly the odd images change."""
    golden, codes = golden_codes(cnn, digits)
    program = cnn.program
    layer = program.nodes[2].layer
    layers = list(program.layers)
    layers[layer] = replace(layers[layer], bias=np.asarray(layers[layer].bias) + 300)
    broken = replace(program, layers=layers)
    out = run_pipelined(broken, cnn.qmodel, codes)
    wrong = [not np.array_equal(out[n], golden[n]) for n in range(len(codes))]
    assert wrong == [False, True, False, True]
    # and the validator names it (the replicas' output parameters differ)
    with pytest.raises(ProgramError, match=r"record 2 .*field layer: 2: its output "
                                           r"parameters \(bias, mult, shift\) differ"):
        validate_program(broken)


def test_one_copy_too_few_gives_a_wrong_image(cnn, digits):
    golden, codes = golden_codes(cnn, digits)
    for index in (0, 1):               # conv1's map (read 1 and 2 stages on), conv2's group
        group = [i for i, n in enumerate(cnn.program.nodes)
                 if n.src0_node == cnn.program.nodes[index].src0_node
                 and n.name == cnn.program.nodes[index].name]
        fewer = with_nodes(cnn.program, {i: {"copies": cnn.program.nodes[i].copies - 1}
                                         for i in group})
        out = run_pipelined(fewer, cnn.qmodel, codes)
        assert not np.array_equal(out, golden)
        with pytest.raises(ProgramError, match=rf"record {index} .*field copies: "):
            validate_program(fewer)


# ------------------------------------------------------------------------ the budget
def test_budget_doubles_the_bottleneck(resnet, digits):
    program = resnet.program
    validate_program(program)
    counts = replica_counts(program)
    assert counts == {"/block1_a/block1_a.0/Conv": 4, "/block1_b/block1_b.0/Conv": 4}
    assert program.xbars_used <= 40
    # a second way: the doubling rule run on the plain compile's node times
    plain = api.compile(RESNET, "bwq", network=True, pipeline=True)
    base = plain.program
    times = {n.name: node_timing(base.config, n, base.layers[n.layer]
                                 if n.kind == NodeKind.COMPUTE else None).cycles
             for n in base.nodes}
    units = {layer.name: len(layer.xbars) for layer in base.layers}
    replicas: dict[str, int] = {}
    while True:
        name = max(times, key=lambda key: times[key] / replicas.get(key, 1))
        count = replicas.get(name, 1)
        extra = sum((r - 1) * units[k] for k, r in {**replicas, name: 2 * count}.items())
        if name not in units or count == 8 or base.xbars_used + extra > 40:
            break
        replicas[name] = 2 * count
    assert replicas == counts
    golden, codes = golden_codes(resnet, digits)
    assert np.array_equal(run_pipelined(program, resnet.qmodel, codes), golden)
    golden3, codes3 = golden_codes(resnet, digits[:3])
    assert np.array_equal(run_pipelined(program, resnet.qmodel, codes3), golden3)
    # the add reads the stem's map and block1_b's group: the group's first node
    add = next(i for i, n in enumerate(program.nodes) if n.kind == NodeKind.ADD)
    refs = {int(program.nodes[add].src0_node), int(program.nodes[add].src1_node)}
    assert all(program.nodes[ref - 1].phase == 0 for ref in refs if ref)


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(("replicate", "message"), [
    ({CONV2: 3}, rf"--replicate {CONV2}=3: 3 replicas; a layer has 1, 2, 4 or 8"),
    ({CONV2: 16}, rf"--replicate {CONV2}=16: 16 replicas"),
    ({"conv9": 2}, r"--replicate conv9=2: 'conv9' is no compute layer of the network"),
    ({"/features/features.4/MaxPool": 2}, r"'/features/features.4/MaxPool' is a POOL_MAX "
                                          r"node; only COMPUTE nodes are replicated"),
    ({"/classifier/classifier.2/Gemm": 2}, r"'/classifier/classifier.2/Gemm' is the last "
                                           r"node, which sends its outputs to the host"),
])
def test_replicate_refusals(replicate, message):
    with pytest.raises(ValueError, match=message):
        api.compile(CNN, "bwq", network=True, pipeline=True, replicate=replicate)


def test_refusals_of_the_flags_and_pinned_fields(tmp_path, cnn):
    with pytest.raises(ValueError, match=r"--replicate .* needs --network --pipeline"):
        api.compile(CNN, "bwq", network=True, replicate={CONV2: 2})
    with pytest.raises(ValueError, match=r"--replicate .* needs --network --pipeline"):
        compile_bundle(CNN, "bwq", None, None, tmp_path / "b", replicate={CONV2: 2},
                       network=True)
    with pytest.raises(ValueError, match=r"--pipeline --budget xbars:10: the network's "
                                         r"layers .* use 22 crossbar units"):
        api.compile(CNN, "bwq", network=True, pipeline=True, budget="xbars:10")
    with pytest.raises(ValueError, match=r"--xbars 24: the network needs 26 crossbar units "
                                         r"\(--replicate: the replicas of "):
        api.compile(CNN, "bwq", xbars=24, network=True, pipeline=True, replicate={CONV2: 2})
    assert api.compile(CNN, "bwq", xbars=26, network=True, pipeline=True,
                       replicate={CONV2: 2}).program.config.n_xbars == 26
    path = tmp_path / "chip.toml"
    path.write_text("[accelerator]\npreset = \"bwq\"\nn_xbars = 22\n")
    with pytest.raises(ValueError, match=r"the config sets n_xbars = 22, but the network "
                                         r"needs 26 \(--replicate: the replicas of "):
        api.compile(CNN, "bwq", config=str(path), network=True, pipeline=True,
                    replicate={CONV2: 2})
    # a pinned engine count whose partition puts the stem's two replicas on one engine
    path.write_text("[accelerator]\npreset = \"bwq\"\nact_buffer_depth = 40000\n"
                    "max_nodes = 11\nmax_map_channels = 32\nmax_map_height = 8\n"
                    "max_map_width = 8\npipeline_stages = 3\n")
    with pytest.raises(ValueError, match=r"pipeline_stages = 3 puts replicas 0 and 1 of layer "
                                         r"'/stem/stem.0/Conv' on engine 0"):
        api.compile(RESNET, "bwq", config=str(path), network=True, pipeline=True,
                    replicate={"/stem/stem.0/Conv": 2})
    # 4 engines, block1_a x2: the replicas apart, but replica 0 beside the stem
    path.write_text(path.read_text().replace("pipeline_stages = 3", "pipeline_stages = 4"))
    with pytest.raises(ValueError, match=r"pipeline_stages = 4 puts replica 0 of layer "
                                         r"'/block1_a/block1_a.0/Conv' on engine 0 with node 0 "
                                         r".*every replica runs alone on its engine"):
        api.compile(RESNET, "bwq", config=str(path), network=True, pipeline=True,
                    replicate={"/block1_a/block1_a.0/Conv": 2})
    # replicas on one engine: refused naming the node (a pinned count's partition of the
    # times / R never does it for this network, so the plan is given the stages)
    plan = NetworkPlan(list(cnn.program.nodes), 0, 64, 8, 8,
                       producers=tuple((int(n.src0_node),) for n in cnn.program.nodes))
    pipeline_plan(plan, list(range(8)))
    with pytest.raises(ValueError, match=rf"node 2 \('{CONV2}'\): replica 1 of its group "
                                         r"shares engine 1 with node 1"):
        pipeline_plan(plan, [0, 1, 1, 2, 3, 4, 5, 6])


# -------------------------------------------------------------------------- validator
@pytest.mark.parametrize(("change", "message"), [
    ({2: {"phase": 0}}, r"record 2 .*: field phase: 0: node 2 is replica 1 of node 1's group"),
    ({4: {"phase": 1, "replicas_log2": 1}}, r"record 4 .*: field phase: 1: no group starts"),
    ({2: {"replicas_log2": 2, "phase": 1}},
     r"record 2 .*: field replicas_log2: 2: replica 1 of node 1's group of 2"),
    ({2: {"dst_base": 0}}, r"record 2 .*: field dst_base: 0: replica 1 of node 1's group, "
                           r"whose dst_base is 3200"),
    ({2: {"copies": 4}}, r"record 2 .*: field copies: 4: replica 1 of node 1's group"),
    ({2: {"layer": 1}}, r"record 2 .*: field layer: 1: replica 1 of node 1's group on the "
                        r"same layer record"),
    ({3: {"src0_node": 3, "window": {"base": 3200}}},
     r"record 3 .*: field src0_node: 3: node 2 is replica 1 of the group of node 1"),
])
def test_validator_names_each_group_rule(cnn, change, message):
    validate_program(cnn.program)
    with pytest.raises(ProgramError, match=r"program: section NETWORK " + message):
        validate_program(with_nodes(cnn.program, change))


def test_validator_replica_records_equal(cnn):
    layers = list(cnn.program.layers)
    replica = cnn.program.nodes[2].layer
    layers[replica] = replace(layers[replica], zero_point=layers[replica].zero_point + 1)
    with pytest.raises(ProgramError, match=rf"record 2 .*: field layer: {replica}: its "
                                           r"record's zero_point \d+ differs from layer 1's"):
        validate_program(replace(cnn.program, layers=layers))


@pytest.mark.parametrize(("what", "message"), [
    ("cells", r"unit (\d+)'s cells differ from unit \d+'s of layer 1"),
    ("row_maps", r"unit (\d+)'s row map differs from unit \d+'s of layer 1"),
    ("entries", r"its OU entries differ from layer 1's \(with the units renumbered\)"),
])
def test_validator_replica_arrays_equal(cnn, what, message):
    """A replica record whose cells, row map or entries are not the original's (units
    paired in ascending order): named by record, field and the unit."""
    layers = list(cnn.program.layers)
    replica = cnn.program.nodes[2].layer
    layer = layers[replica]
    if what == "cells":
        cells = np.array(layer.cells, copy=True)
        cells[-1, 0, 0] = 1 - min(int(cells[-1, 0, 0]), 1)
        layers[replica] = replace(layer, cells=cells)
    elif what == "row_maps":
        rows = np.array(layer.row_maps, copy=True)
        rows[0, 0] = -1 if rows[0, 0] >= 0 else 0
        layers[replica] = replace(layer, row_maps=rows)
    else:
        entries = np.array(layer.entries, copy=True)
        entries["xbar"][0] = entries["xbar"][-1] if entries["xbar"][0] != \
            entries["xbar"][-1] else layer.xbars[1]
        layers[replica] = replace(layer, entries=entries)
    validate_program(cnn.program)
    with pytest.raises(ProgramError, match=rf"record 2 .*field layer: {replica}: " + message):
        validate_program(replace(cnn.program, layers=layers))


def test_validator_replicas_on_one_engine(cnn):
    """7 engines, the replicas both on engine 1: each engine still runs a node."""
    program = replace(cnn.program, config=cnn.program.config.replace(pipeline_stages=7))
    stages = [0, 1, 1, 2, 3, 4, 5, 6]
    edited = with_nodes(program, {i: {"stage": stage} for i, stage in enumerate(stages)})
    with pytest.raises(ProgramError, match=r"record 2 .*: field stage: 1: replica 1 of node "
                                           r"1's group after node 1's stage 1 \(the replicas "
                                           r"of a layer run on distinct engines\)"):
        validate_program(edited)


def test_bundle_round_trip_and_edited_records(tmp_path, cnn, capsys):
    out = write_bundle(tmp_path / "b", cnn.program, cnn.qmodel)
    bundle = read_bundle(out)
    assert bundle.program.nodes == cnn.program.nodes
    assert [layer.name for layer in bundle.program.layers].count(CONV2) == 2
    image = (out / "image.bin").read_bytes()
    config = cnn.program.config
    for index, field, value, message in (
            (2, "phase", 0, r"record 2 .*: field phase: 0: node 2 is replica 1"),
            (2, "copies", 4, r"record 2 .*: field copies: 4: replica 1 of node 1's group"),
            (2, "layer", 1, r"record 2 .*: field layer: 1: replica 1 .* same layer record")):
        (out / "image.bin").write_bytes(edit_node(image, config, index, field, value))
        with pytest.raises(BundleError, match=r"section NETWORK " + message):
            read_bundle(out)
        assert main(["report", str(out)]) == 2
        assert "error: " in capsys.readouterr().err


# ----------------------------------------------------------------------- CLI and model
def test_cli_flag(tmp_path):
    runner = CliRunner()
    out = tmp_path / "rep"
    result = runner.invoke(cli, ["compile", CNN, "-s", "bwq", "--network", "--pipeline",
                                 "--replicate", f"{CONV2}=2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "n_xbars raised from 22 to 26 (--replicate: the replicas of" in result.output
    sidecar = json.loads((out / "compile.json").read_text())
    assert sidecar["replicas"] == {CONV2: 2} and sidecar["pipeline_stages"] == 8
    assert replica_counts(read_bundle(out).program) == {CONV2: 2}
    bad = runner.invoke(cli, ["compile", CNN, "-s", "bwq", "--network", "--pipeline",
                              "--replicate", f"{CONV2}:2", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "is not NAME=R" in bad.output


def test_node_images_counted_a_second_way():
    """``ceil((N - phase) / R)`` against counting the images ``n`` with ``n mod R == k``."""
    from bitline.hw.spec.network import NodeProgram, WindowParams

    window = WindowParams(1, 1, 1)
    for log2 in range(4):
        for phase in range(1 << log2):
            node = NodeProgram(NodeKind.COMPUTE, window, 0, 1, replicas_log2=log2,
                               phase=phase)
            for count in range(12):
                expect = sum(1 for n in range(count) if n % (1 << log2) == phase)
                assert node_images(node, count) == expect


def test_pipelined_report_with_replicas(cnn, plain, monkeypatch):
    """The report on the schedule with replicas, counted a second way: a replica's
    NODE_CYCLES are its own images', the steady state is the mean of the last R outputs
    (from the schedule's ends), the stage model's T_max is conv2 with 2 copies (a program
    given them by ``with_copies``), and the latency is not shortened."""
    from bitline.hw.spec import net_timing
    from bitline.sw.perf.network import pipeline_comparison
    from bitline.sw.perf.report import analyze_layer

    program, nodes = cnn.program, cnn.program.nodes
    piped = pipelined_report(program, n_images=8)
    for index, node in enumerate(nodes):
        assert piped.node_counters[index][0] == node_images(node, 8) * piped.node_cycles[index]
    assert piped.node_counters[1][0] == piped.node_counters[2][0] == 4 * piped.node_cycles[1]
    schedule = net_timing.pipeline_schedule(program.config, program, 8)
    ends = schedule.end[len(nodes) - 1]
    assert piped.steady_cycles == round((int(ends[7]) - int(ends[5])) / 2)
    assert piped.steady_cycles != piped.interval          # the bursts: not the last two
    base = pipelined_report(plain.program, n_images=8)
    assert 1.9 < base.steady_cycles / piped.steady_cycles < 2.001
    assert piped.latency >= base.latency                  # images split, not vectors
    # the largest engine share: conv2's (T + 4) / 2, the interval within the overheads
    assert max(piped.engine_cycles()) == -(-(piped.node_cycles[1] + 4) // 2)
    assert abs(piped.steady_cycles - max(piped.engine_cycles())) <= 8
    layer = plain.program.layer(CONV2)           # a second copy on the replica's units
    layer = replace(layer, copy_xbars=np.asarray(program.layers[nodes[2].layer].xbars)[None])
    t_l = analyze_layer(layer, program.config, nodes[1].out_pixels).cycles
    assert t_l < analyze_layer(plain.program.layer(CONV2), program.config,
                               nodes[1].out_pixels).cycles * 0.51
    assert piped.stage_model.bottleneck_cycles == max(
        t_l, *(analyze_layer(program.layers[n.layer], program.config, n.out_pixels).cycles
               for n in nodes if n.kind == NodeKind.COMPUTE and n.name != CONV2))
    assert pipeline_comparison(program).latency_cycles < base.stage_model.latency_cycles
    # the sequential line counts conv2 once
    assert piped.sequential_cycles == base.sequential_cycles == 143505

    # a schedule that runs every node on every image is refused, naming the replica
    def every_image(config, prog, count):
        flat = replace(prog, nodes=[replace(n, replicas_log2=0, phase=0) for n in prog.nodes])
        return original(config, flat, count)

    original = net_timing.pipeline_schedule
    monkeypatch.setattr(net_timing, "pipeline_schedule", every_image)
    with pytest.raises(ValueError, match=rf"node 1 \('{CONV2}'\), replica 0 of 2: "
                                         r".* does not model layer replicas"):
        pipelined_report(program, n_images=8)


def test_cli_report_states_the_deviation(tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(cli, ["compile", CNN, "-s", "bwq", "--network", "--pipeline",
                                      "--replicate", f"{CONV2}=2", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(CliRunner().invoke(cli, ["report", str(out), "--json"]).output)
    pipe = summary["network"]["pipeline"]
    assert [item["replicas"] for item in summary["network"]["nodes"]][:3] == [1, 2, 2]
    assert pipe["steady_cycles"] < pipe["t_max"] * 1.01 and pipe["interval"] != \
        pipe["steady_cycles"]
    text = CliRunner().invoke(cli, ["report", str(out)]).output
    assert "split the images" in text and "latency keeps the whole T_l" in text


def test_pinned_engines_with_replicas(tmp_path, digits):
    """4 engines for the CNN's 8 nodes with conv2 x2: the partition on node_timing / R
    keeps the replicas apart; the records validate and the run is golden."""
    path = tmp_path / "chip.toml"
    path.write_text("[accelerator]\npreset = \"bwq\"\nact_buffer_depth = 20000\n"
                    "max_nodes = 8\nmax_map_channels = 64\nmax_map_height = 8\n"
                    "max_map_width = 8\npipeline_stages = 4\n")
    compiled = api.compile(CNN, "bwq", config=str(path), network=True, pipeline=True,
                           replicate={CONV2: 2})
    nodes = compiled.program.nodes
    validate_program(compiled.program)
    assert max(n.stage for n in nodes) == 3 and nodes[1].stage < nodes[2].stage
    golden, codes = golden_codes(compiled, digits)
    assert np.array_equal(run_pipelined(compiled.program, compiled.qmodel, codes), golden)
    # no engine waits forever: the schedule runs the batch and the replicas split it
    piped = pipelined_report(compiled.program, n_images=4)
    assert piped.node_counters[1][0] == piped.node_counters[2][0] == 2 * piped.node_cycles[1]


def test_budget_stops_at_the_records_and_the_largest_group(digits):
    """A budget with room for everything: the CNN's conv2 stops at 8 replicas (the
    field's most) and the steady state is its eighth (the schedule of 32 images); the
    ResNet's block1_b stops at 4 because 8 would need more than 15 copies of the stem's
    map (the doubling refused by --replicate, naming the nodes)."""
    cnn = api.compile(CNN, "bwq", network=True, pipeline=True, budget="xbars:1000")
    counts = replica_counts(cnn.program)
    assert counts[CONV2] == 8
    piped = pipelined_report(cnn.program)
    conv2 = next(i for i, n in enumerate(cnn.program.nodes) if n.name == CONV2)
    assert abs(piped.steady_cycles - (piped.node_cycles[conv2] + 4) / 8) <= 8
    resnet = api.compile(RESNET, "bwq", network=True, pipeline=True, budget="xbars:1000")
    counts = replica_counts(resnet.program)
    assert counts["/block1_b/block1_b.0/Conv"] == 4
    with pytest.raises(ValueError, match=r"node 0 \('/stem/stem.0/Conv'\): its consumer .* "
                                         r"needs \d+ copies, more than the record's 4-bit"):
        api.compile(RESNET, "bwq", network=True, pipeline=True,
                    replicate={**counts, "/block1_b/block1_b.0/Conv": 8})
    golden, codes = golden_codes(resnet, digits)
    assert np.array_equal(run_pipelined(resnet.program, resnet.qmodel, codes), golden)


def test_per_layer_report_counts_a_group_once(tmp_path, plain):
    """`bitline report` of a replicated bundle: the per-image figures (energy, cycles per
    layer) are the unreplicated program's (an image runs on one replica), the used area
    holds every replica's units."""
    runner = CliRunner()
    out, base = tmp_path / "rep", tmp_path / "plain"
    for path, extra in ((out, ["--replicate", f"{CONV2}=2"]), (base, [])):
        result = runner.invoke(cli, ["compile", CNN, "-s", "bwq", "--network", "--pipeline",
                                     *extra, "-o", str(path), "-q"])
        assert result.exit_code == 0, result.output
    rep = json.loads(runner.invoke(cli, ["report", str(out), "--json"]).output)
    ref = json.loads(runner.invoke(cli, ["report", str(base), "--json"]).output)
    assert [layer["name"] for layer in rep["layers"]] == \
        [layer["name"] for layer in ref["layers"]]
    # the lower bound is the configured machine's (26 units against 22): left out
    def per_image(layers):
        return [{key: value for key, value in layer.items()
                 if key not in ("bound_cycles", "cycle_efficiency")} for layer in layers]

    assert per_image(rep["layers"]) == per_image(ref["layers"])
    used = sum(rep["used_area_mm2"].values()) / sum(ref["used_area_mm2"].values())
    assert used == pytest.approx(26 / 22)
