"""The pipelined bench's and table script's replica helpers (docs/network.md section 7),
without a simulator: :func:`bitline.sim.cocotb.tb_network.node_images` against counting
the images ``n mod R == phase`` one by one, :func:`~bitline.sim.cocotb.tb_network.bottleneck_layer`
on the digits CNN against the longest node of the pipeline schedule, and
``scripts/network_table.py``'s ``--replicate`` parsing and refusals."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _table_script():
    spec = importlib.util.spec_from_file_location("network_table_script",
                                                  ROOT / "scripts" / "network_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_node_images_counts_the_images_of_a_replicas_phase():
    from bitline.sim.cocotb.tb_network import node_images

    for log2 in range(4):
        replicas = 1 << log2
        for phase in range(replicas):
            node = SimpleNamespace(replicas_log2=log2, phase=phase)
            for n_images in range(12):
                expected = sum(1 for n in range(n_images) if n % replicas == phase)
                assert node_images(node, n_images) == expected, (log2, phase, n_images)
    # every image runs on exactly one replica of a group
    group = [SimpleNamespace(replicas_log2=2, phase=phase) for phase in range(4)]
    assert sum(node_images(node, 7) for node in group) == 7


def test_bottleneck_layer_is_the_node_with_the_longest_job():
    from bitline.hw.spec.net_timing import pipeline_schedule
    from bitline.sim.cocotb.tb_network import bottleneck_layer
    from bitline.sim.rtl import DIGITS_CONFIG
    from bitline.sw.flow import calibration_inputs, compile_model
    from bitline.sw.models import resolve_model

    model = resolve_model("digits-cnn")
    base = DIGITS_CONFIG.replace(act_buffer_depth=1, max_nodes=1, max_map_channels=1,
                                 max_map_height=1, max_map_width=1)
    program = compile_model(model, "bwq", "bwq3", base,
                            calibration_inputs(model, "digits")[0], xbars="auto",
                            network=True, pipeline=True).program
    # a second way: the node whose one-image NODE_CYCLES is largest in the schedule
    schedule = pipeline_schedule(program.config, program, 1)
    longest = max(range(len(program.nodes)), key=lambda i: schedule.nodes[i].cycles)
    assert bottleneck_layer(program) == program.layers[program.nodes[longest].layer].name
    assert bottleneck_layer(program) == program.layers[1].name      # the second conv
    with pytest.raises(ValueError, match="no compute nodes"):
        bottleneck_layer(SimpleNamespace(nodes=[], layers=[], config=program.config))


def test_table_script_parses_and_refuses_replicate_items():
    module = _table_script()
    assert module.parse_replicate("bottleneck=2") == {"bottleneck": 2}
    assert module.parse_replicate("/a/Conv=2, b=4") == {"/a/Conv": 2, "b": 4}
    for text, match in (("conv", "is not NAME=R"), ("=2", "is not NAME=R"),
                        ("a=two", "not an integer"), ("a=2,a=4", "twice")):
        with pytest.raises(ValueError, match=match):
            module.parse_replicate(text)
    with pytest.raises(SystemExit):
        module.main(["--replicate", "bottleneck=2"])          # without --pipeline
