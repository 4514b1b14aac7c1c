"""compile --network --pipeline (docs/network.md section 6): stages, copies, the buffer
layout, the validator's pipeline checks, the interpreter's copies and the pipelined run.

The compiled records are checked a second way each time: the producers from the IR graph
(not the compiler's ``producers``), the regions by marking buffer addresses (not the
allocator's cursor), the stage partition against every partition enumerated, the pipelined
run against the golden model image by image; and every checker is shown to fail on a
broken input (a record with one copy too few gives a wrong image and a named error).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.net_timing import node_timing
from bitline.hw.spec.network import NodeKind
from bitline.hw.spec.program import ProgramError
from bitline.hw.spec.validate import validate_program
from bitline.sim.golden import run_golden
from bitline.sw import api
from bitline.sw.bundle import BundleError, read_bundle, write_bundle
from bitline.sw.cli import cli, main
from bitline.sw.flow.compile import compile_bundle, network_program
from bitline.sw.integer import arith
from bitline.sw.integer.network import (
    NetworkPlan, partition_stages, pipeline_plan, run_nodes, run_pipelined,
)

from test_network_validate import edit_node

MODELS = Path(__file__).resolve().parents[2] / "sw" / "models"
RESNET, CNN = str(MODELS / "digits_resnet.onnx"), str(MODELS / "digits_cnn.onnx")
IMAGES = 4


@pytest.fixture(scope="module")
def resnet():
    return api.compile(RESNET, "bwq", network=True, pipeline=True)


@pytest.fixture(scope="module")
def cnn():
    return api.compile(CNN, "bwq", network=True, pipeline=True)


@pytest.fixture(scope="module")
def digits():
    x, _ = api.dataset("digits", "test")
    return x[:IMAGES]


def _pinned(tmp_path, **values):
    path = tmp_path / "chip.toml"
    path.write_text("[accelerator]\npreset = \"bwq\"\n"
                    + "".join(f"{key} = {value}\n" for key, value in values.items()))
    return AcceleratorConfig.load(path)


def _pinned_network(tmp_path, **values):
    """A config file that sets the five whole-network fields (a file sets all or none;
    ``pipeline_stages`` needs them) with room for the digits ResNet, and ``values``."""
    fields = dict(act_buffer_depth=20000, max_nodes=10, max_map_channels=32,
                  max_map_height=8, max_map_width=8)
    return _pinned(tmp_path, **{**fields, **values})


def _regions_end(nodes) -> int:
    """Codes the records' regions take: the input's copies and every map's copies."""
    return (nodes[0].input_copies * nodes[0].window.size
            + sum(node.copies * node.dst_size for node in nodes if not node.to_host))


def graph_producers(qmodel) -> list[tuple[int, ...]]:
    """Per node (non-flatten layer), its sources' producers from the IR graph: 0 the
    network input, ``j + 1`` node ``j`` (a flatten passes its input's producer on)."""
    model = qmodel.model
    producer = {model.input_name: 0}
    steps = []
    for layer in model.layers:
        if layer.op == "flatten":
            producer[layer.output] = producer[layer.inputs[0]]
            continue
        steps.append(tuple(producer[name] for name in layer.inputs))
        producer[layer.output] = len(steps)
    return steps


def with_nodes(program, changes: dict[int, dict]):
    nodes = list(program.nodes)
    for index, change in changes.items():
        change = dict(change)
        window = change.pop("window", None)
        if window:
            change["window"] = replace(nodes[index].window, **window)
        nodes[index] = replace(nodes[index], **change)
    return replace(program, nodes=nodes)


def golden_codes(compiled, x):
    return (run_golden(compiled.qmodel, x).output_int,
            arith.quantize_input(x, compiled.qmodel.input))


# ------------------------------------------------------------------- compiled records
@pytest.mark.parametrize("which", ["resnet", "cnn"])
def test_records_follow_the_contract(which, request):
    compiled = request.getfixturevalue(which)
    program = compiled.program
    config, nodes = program.config, program.nodes
    validate_program(program)
    # one engine per node, in node order
    assert config.pipeline_stages == len(nodes) == config.max_nodes
    assert [node.stage for node in nodes] == list(range(len(nodes)))
    # the sources are the IR graph's producers
    graph = graph_producers(compiled.qmodel)
    for index, node in enumerate(nodes):
        refs = (node.src0_node, node.src1_node) if node.kind == NodeKind.ADD \
            else (node.src0_node,)
        assert refs == graph[index], node.name
        for ref, base in zip(refs, (node.window.base, node.src1_base)):
            assert base == (0 if ref == 0 else nodes[ref - 1].dst_base)
    # copies rule from the graph: a consumer d stages later needs d + 1 copies
    for index, node in enumerate(nodes):
        consumers = [c for c, refs in enumerate(graph) if index + 1 in refs]
        need = max([1] + [nodes[c].stage - node.stage + 1 for c in consumers])
        assert node.copies == need, node.name
    input_readers = [c for c, refs in enumerate(graph) if 0 in refs]
    assert nodes[0].input_copies == max(nodes[c].stage for c in input_readers) + 2
    assert all(node.input_copies == 0 for node in nodes[1:])
    # regions: every address of every copy marked once, inside the buffer, no gap
    marks = np.zeros(config.act_buffer_depth, dtype=np.int64)
    marks[:nodes[0].input_copies * nodes[0].window.size] += 1
    for node in nodes:
        if not node.to_host:
            marks[node.dst_base:node.dst_base + node.copies * node.dst_size] += 1
    assert marks.max() == 1 and marks.min() == 1
    assert nodes[-1].to_host and nodes[-1].copies == 1 and nodes[-1].dst_base == 0


def test_resnet_layout_by_hand(resnet):
    """The digits ResNet's copies, worked out from the graph (docs/network.md 6.9)."""
    nodes = resnet.program.nodes
    assert [node.copies for node in nodes] == [4, 2, 2, 4, 2, 3, 2, 2, 2, 1]
    assert nodes[0].input_copies == 2
    # 2 x 64 input + 4 x 1024 stem + 2 x 1024 x 2 + 4 x 1024 add + 2 x 512 + 3 x 512
    # + 2 x 512 x 2 + 2 x 32
    assert resnet.program.config.act_buffer_depth == \
        128 + 4096 + 4096 + 4096 + 1024 + 1536 + 2048 + 64 == 17088


@pytest.mark.parametrize("which", ["resnet", "cnn"])
def test_pipelined_run_equals_golden(which, request, digits):
    compiled = request.getfixturevalue(which)
    golden, codes = golden_codes(compiled, digits)
    assert len({bytes(row) for row in golden.astype(np.int64)}) == IMAGES   # images differ
    np.testing.assert_array_equal(run_pipelined(compiled.program, compiled.qmodel, codes),
                                  golden)
    for image in range(IMAGES):
        np.testing.assert_array_equal(
            run_nodes(compiled.program, compiled.qmodel, codes, image=image), golden)


def test_one_copy_too_few_gives_a_wrong_image_and_a_named_error(resnet, digits):
    program, qmodel = resnet.program, resnet.qmodel
    golden, codes = golden_codes(resnet, digits)
    lowered = [(i, {"copies": node.copies - 1}) for i, node in enumerate(program.nodes)
               if node.copies > 1]
    lowered.append((0, {"input_copies": program.nodes[0].input_copies - 1}))
    assert len(lowered) == 10
    for index, change in lowered:
        broken = with_nodes(program, {index: change})
        out = run_pipelined(broken, qmodel, codes)
        assert not all(np.array_equal(out[n], golden[n]) for n in range(IMAGES)), change
        field = next(iter(change))
        with pytest.raises(ProgramError, match=rf"record {index} .*: field {field}: "
                                               rf"{change[field]}: .*needs at least "
                                               rf"{change[field] + 1}"):
            validate_program(broken)


# ----------------------------------------------------------------------------- grouped
def test_partition_is_the_best_contiguous_one():
    rng = np.random.default_rng(18)
    for _ in range(40):
        count = int(rng.integers(1, 8))
        times = rng.integers(1, 50, count).tolist()
        for engines in range(1, count + 1):
            stages = partition_stages(times, engines)
            assert stages[0] == 0 and stages[-1] == engines - 1
            assert all(b - a in (0, 1) for a, b in zip(stages, stages[1:]))
            worst = max(sum(t for t, s in zip(times, stages) if s == e)
                        for e in range(engines))
            best = min(max(sum(times[a:b]) for a, b in zip((0, *cuts), (*cuts, count)))
                       for cuts in itertools.combinations(range(1, count), engines - 1))
            assert worst == best
    assert partition_stages([5, 1, 1, 5], 2) == [0, 0, 1, 1]
    for engines in (0, 5):
        with pytest.raises(ValueError, match=rf"pipeline_stages = {engines}: the pipeline "
                                             r"needs 1 \.\. 4 engines for 4 nodes"):
            partition_stages([1, 2, 3, 4], engines)


def test_pinned_engine_count_groups_the_nodes(tmp_path, resnet, digits):
    config = _pinned_network(tmp_path, pipeline_stages=3)
    grouped = api.compile(RESNET, "bwq", config=config, network=True, pipeline=True)
    program = grouped.program
    assert program.config.pipeline_stages == 3
    validate_program(program)
    stages = [node.stage for node in program.nodes]
    times = [node_timing(program.config, node, program.layers[node.layer]
                         if node.kind == NodeKind.COMPUTE else None).cycles
             for node in program.nodes]
    assert stages == partition_stages(times, 3) and sorted(set(stages)) == [0, 1, 2]
    golden, codes = golden_codes(grouped, digits)
    np.testing.assert_array_equal(run_pipelined(program, grouped.qmodel, codes), golden)
    # fewer engines, fewer copies: the buffer is smaller than one engine per node's
    assert _regions_end(program.nodes) < _regions_end(resnet.program.nodes) == 17088
    single = api.compile(RESNET, "bwq", config=_pinned_network(tmp_path, pipeline_stages=1),
                         network=True, pipeline=True)
    assert {node.copies for node in single.program.nodes} == {1}
    assert single.program.nodes[0].input_copies == 2


# ---------------------------------------------------------------------------- refusals
def test_refusals_name_the_flag_or_field(tmp_path, resnet):
    with pytest.raises(ValueError, match=r"--pipeline .* needs --network"):
        api.compile(RESNET, "bwq", pipeline=True)
    # --pipeline --budget gives replicas (section 7.3, test_network_replicas.py); an area
    # budget is not one
    with pytest.raises(ValueError, match=r"--pipeline --budget area:1.*crossbar-unit budget"):
        compile_bundle(RESNET, "bwq", None, AcceleratorConfig(), tmp_path / "b",
                       budget="area:1", network=True, pipeline=True)
    with pytest.raises(ValueError, match=r"the config sets pipeline_stages = 11, but the "
                                         r"network has 10 nodes"):
        api.compile(RESNET, "bwq", config=_pinned_network(tmp_path, max_nodes=12,
                                                          pipeline_stages=11),
                    network=True, pipeline=True)
    with pytest.raises(ValueError, match=r"the config sets pipeline_stages = 0, but the "
                                         r"network has 10 nodes"):
        api.compile(RESNET, "bwq", config=_pinned(tmp_path, pipeline_stages=0),
                    network=True, pipeline=True)
    with pytest.raises(ValueError, match=r"the config sets pipeline_stages = 3 .* compile "
                                         r"with --pipeline"):
        api.compile(RESNET, "bwq", config=_pinned_network(tmp_path, pipeline_stages=3),
                    network=True)
    with pytest.raises(ValueError, match=r"--pipeline: the config sets max_copies = 2"):
        api.compile(RESNET, "bwq", config=_pinned(tmp_path, max_copies=2), network=True,
                    pipeline=True)
    with pytest.raises(ValueError, match=r"the config sets act_buffer_depth = 3136, but the "
                                         r"network needs 17088 \(--pipeline: every feature "
                                         r"map's copies"):
        api.compile(RESNET, "bwq", config=_pinned_network(tmp_path, act_buffer_depth=3136),
                    network=True, pipeline=True)
    # a layer with copies (what --budget makes) is refused by name as for --network
    program = replace(resnet.program, nodes=None,
                      config=resnet.program.config.replace(pipeline_stages=0))
    with pytest.raises(ValueError, match=r"layer '/stem/stem.0/Conv' has 2 copies"):
        network_program(program.with_copies({program.layers[0].name: 2}), resnet.qmodel,
                        pipeline=True)


def test_a_map_needing_more_copies_than_the_field_holds(resnet):
    """A skip over 15 stages needs 16 copies: refused naming both nodes."""
    plan = NetworkPlan(list(resnet.program.nodes), 0, 32, 8, 8,
                       producers=((0,), (1,), (2,), (3, 1), (4,), (5,), (4,), (6, 7), (8,),
                                  (9,)))
    stages = list(range(10))
    pipeline_plan(plan, stages)                     # 4 copies of the stem's map: fine
    far = replace(plan, producers=plan.producers[:3] + ((3, 1),) + plan.producers[4:])
    with pytest.raises(ValueError, match=r"stages \[0, 2"):
        pipeline_plan(far, [0, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    long = NetworkPlan([resnet.program.nodes[1]] * 17, 0, 16, 8, 8,
                       producers=((0,),) + tuple((i,) for i in range(1, 16)) + ((1,),))
    with pytest.raises(ValueError, match=r"node 0 \('/block1_a/block1_a.0/Conv'\): its "
                                         r"consumer node 16 .* runs 16 stages later, so the "
                                         r"map needs 17 copies, more than the record's 4-bit"):
        pipeline_plan(long, list(range(17)))


# ------------------------------------------------------------------ validator, bundle
@pytest.mark.parametrize(("change", "message"), [
    ({3: {"stage": 1}}, r"record 3 .*: field stage: 1 after node 2's stage 2: stages are "
                        r"non-decreasing"),
    ({3: {"stage": 5}}, r"record 3 .*: field stage: 5 after node 2's stage 2: engine 3 runs "
                        r"no node"),
    ({9: {"stage": 8}}, r"record 9 .*: field stage: 8 on the last node: engines 9 \.\. 9 "),
    ({2: {"src0_node": 3}}, r"record 2 .*: field src0_node: 3: names node 2, not an earlier"),
    ({2: {"src0_node": 1}}, r"record 2 .*: field window.base: 4224: src0_node = 1 is node "
                            r"0's output, whose map \(copy 0\) is at 128"),
    ({3: {"src1_node": 2}}, r"record 3 .*: field src1_base: 128: src1_node = 2 is node 1's "
                            r"output"),
    ({6: {"src0_node": 6}}, r"record 6 .*: field src0_node: 6: node 5's output is a "
                            r"32x4x4 map, the node reads 16x8x8"),
    ({1: {"window": {"base": 129}}}, r"record 1 .*: field window.base: 129: src0_node = 1"),
    ({1: {"input_copies": 2}}, r"record 1 .*: field input_copies: 2 on node 1 \(node 0 "
                               r"only"),
    ({9: {"copies": 2}}, r"record 9 .*: field copies: 2 on the to_host node"),
    ({8: {"copies": 3}}, r"record 8 .*: field copies: 3: node 8's copies \[17024, 17120\) "
                         r"end beyond act_buffer_depth \(17088\)"),
    ({2: {"dst_base": 4300}, 3: {"window": {"base": 4300}}},
     r"record 2 .*: field dst_base: 4300: node 2's copies overlap node 1's copies "
     r"\[4224, 6272\)"),
    ({2: {"layer": 1}}, r"record 2 .*: field layer: 1: its layer's units include unit \d+, "
                        r"which node 1's layer drives too"),
])
def test_each_pipeline_check_names_node_field_and_value(resnet, change, message):
    validate_program(resnet.program)
    with pytest.raises(ProgramError, match=r"program: section NETWORK " + message):
        validate_program(with_nodes(resnet.program, change))


def test_bundle_round_trip_and_edited_records(tmp_path, resnet, capsys):
    out = write_bundle(tmp_path / "b", resnet.program, resnet.qmodel)
    bundle = read_bundle(out)
    assert bundle.program.config == resnet.program.config
    assert bundle.program.config.pipeline_stages == 10
    assert bundle.program.nodes == resnet.program.nodes
    image = (out / "image.bin").read_bytes()
    config = resnet.program.config
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8)))
    for index, field, value, message in (
            (0, "copies", 3, r"record 0 .*: field copies: 3: its consumer node 3 runs 3 "
                             r"stages later, so it needs at least 4"),
            (0, "input_copies", 1, r"record 0 .*: field input_copies: 1: .*needs at least 2"),
            (4, "stage", 2, r"record 4 .*: field stage: 2 after node 3's stage 3"),
            (7, "src1_node", 5, r"record 7 .*: field src1_base: 14976: src1_node = 5 is "
                                r"node 4's output, whose map \(copy 0\) is at 12416")):
        (out / "image.bin").write_bytes(edit_node(image, config, index, field, value))
        with pytest.raises(BundleError, match=r"section NETWORK " + message):
            read_bundle(out)
        assert main(["report", str(out)]) == 2
        assert "error: " in capsys.readouterr().err


def test_cli_flag(tmp_path):
    runner = CliRunner()
    out = tmp_path / "pipe"
    result = runner.invoke(cli, ["compile", CNN, "-s", "bwq", "--network", "--pipeline",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "pipeline_stages raised from 0 to 7 (--pipeline: one stage engine per node)" \
        in result.output
    sidecar = json.loads((out / "compile.json").read_text())
    assert sidecar["network"] is True and sidecar["pipeline_stages"] == 7
    bundle = read_bundle(out)
    assert [node.stage for node in bundle.program.nodes] == list(range(7))
    refused = runner.invoke(cli, ["compile", CNN, "-s", "bwq", "--pipeline", "-o",
                                  str(tmp_path / "x")])
    assert refused.exit_code == 2 and "--pipeline" in refused.output \
        and "needs --network" in refused.output
    refused = runner.invoke(cli, ["compile", CNN, "-s", "bwq", "--network", "--replicate",
                                  "/features/features.2/Conv=2", "-o", str(tmp_path / "y")])
    assert refused.exit_code == 2 and "--replicate" in refused.output \
        and "needs --network --pipeline" in refused.output


# ---------------------------------------------------------------------------- the model
@pytest.mark.parametrize("which", ["resnet", "cnn"])
def test_pipelined_report_counted_a_second_way(which, request):
    """The report's figures (from net_timing.pipeline_schedule) against the per-node times:
    with one node per engine and the input writer faster than every engine, an image costs
    the slowest engine its node's cycles plus FETCH, LOAD, SETUP and START (the schedule's
    docstring), every image after the first comes one INTERVAL after the one before, and
    each node runs N times its cycles."""
    from bitline.hw.spec.net_timing import NODE_SWITCH_CYCLES, READER_START_CYCLES
    from bitline.sw.perf.network import (
        PIPELINE_BATCH, format_pipelined_report, network_report, pipelined_report,
    )

    program = request.getfixturevalue(which).program
    piped = pipelined_report(program)
    run = network_report(program)                       # node cycles from node_timing
    times = [node.cycles for node in run.nodes]
    assert piped.n_images == PIPELINE_BATCH
    assert program.nodes[0].window.size < max(times)
    assert piped.interval == max(times) + NODE_SWITCH_CYCLES
    assert piped.cycles == piped.latency + (piped.n_images - 1) * piped.interval
    assert [c[0] for c in piped.node_counters] == [piped.n_images * t for t in times]
    # the stage model: T_max is the slowest compute layer's T_l = its node's cycles less
    # the reader's start; the deviation is that start plus the node's switch
    compute = [t for t, node in zip(times, run.nodes) if node.kind == NodeKind.COMPUTE]
    assert piped.stage_model.bottleneck_cycles == max(compute) - READER_START_CYCLES
    assert piped.deviation_cycles == READER_START_CYCLES + NODE_SWITCH_CYCLES
    clock = program.config.clock_mhz
    assert piped.images_per_second() == pytest.approx(clock * 1e6 / piped.interval)
    assert piped.batch_images_per_second() == pytest.approx(
        PIPELINE_BATCH * clock * 1e6 / piped.cycles)
    assert piped.latency_us() == pytest.approx(piped.latency / clock)
    text = format_pipelined_report(run, piped)
    for figure in (piped.latency, piped.interval, piped.cycles, run.cycles,
                   piped.stage_model.bottleneck_cycles):
        assert f"{figure:,}" in text
    assert f"INTERVAL - T_max = +{READER_START_CYCLES + NODE_SWITCH_CYCLES} cycles" in text
    slowest = times.index(max(times))
    assert f"engine {slowest} ({run.nodes[slowest].name})" in text


def test_grouped_engines_interval(tmp_path):
    """With 3 engines an image costs an engine the sum of its nodes' cycles and switches."""
    from bitline.hw.spec.net_timing import NODE_SWITCH_CYCLES
    from bitline.sw.perf.network import network_report, pipelined_report

    program = api.compile(RESNET, "bwq", config=_pinned_network(tmp_path, pipeline_stages=3),
                          network=True, pipeline=True).program
    times = [node.cycles for node in network_report(program).nodes]
    per_engine = [sum(t + NODE_SWITCH_CYCLES for t, node in zip(times, program.nodes)
                      if node.stage == engine) for engine in range(3)]
    piped = pipelined_report(program, n_images=6)
    assert piped.engine_cycles() == per_engine
    assert piped.interval == max(per_engine)
    assert piped.cycles == piped.latency + 5 * piped.interval


def test_pipelined_report_refusals(resnet):
    from bitline.sw.perf.network import pipelined_report

    sequential = replace(resnet.program, config=resnet.program.config.replace(
        pipeline_stages=0), nodes=[replace(node, stage=0, copies=1, input_copies=0,
                                           src0_node=0, src1_node=0)
                                   for node in resnet.program.nodes])
    with pytest.raises(ValueError, match=r"the program is not pipelined \(compile with "
                                         r"--network --pipeline\)"):
        pipelined_report(sequential)
    with pytest.raises(ValueError, match=r"n_images must be at least 1, not 0"):
        pipelined_report(resnet.program, 0)


def test_compile_and_report_print_the_pipelined_run(tmp_path):
    from bitline.sw.perf.network import pipelined_report

    runner = CliRunner()
    out = tmp_path / "pipe"
    result = runner.invoke(cli, ["compile", RESNET, "-s", "bwq", "--network", "--pipeline",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Pipelined whole-network run of 8 images" in result.output
    piped = pipelined_report(read_bundle(out).program)
    assert f"one image per {piped.interval:,} cycles (INTERVAL)" in result.output
    report = runner.invoke(cli, ["report", str(out)])
    assert report.exit_code == 0 and f"latency (image 0): {piped.latency:,}" in report.output
    data = json.loads(runner.invoke(cli, ["report", str(out), "--json"]).output)
    figures = data["network"]["pipeline"]
    assert (figures["interval"], figures["latency"], figures["cycles"]) == \
        (piped.interval, piped.latency, piped.cycles)
    assert [node["engine"] for node in data["network"]["nodes"]] == list(range(10))


def test_a_per_layer_program_on_pipeline_hardware_is_valid(resnet):
    """No node records (per-layer jobs on the pipelined design): nothing to check, no error."""
    validate_program(replace(resnet.program, nodes=[]))
    validate_program(replace(resnet.program, nodes=None))
