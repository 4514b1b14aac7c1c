"""The hw/net units as Verilog: Verilator lint (-Wall with the project's waivers); the
inter-layer pipeline's engines (``Pipeline``) on a small 2-engine config."""

import pytest
from amaranth.back import verilog
from bitline.hw.net import (
    ActivationBuffer,
    Im2colReader,
    NetGeometry,
    Pipeline,
    PoolUnit,
    ResidualAdd,
)
from bitline.hw.toolchain.tools import verilator_lint

#: A small geometry (the digits geometry of docs/network.md lints the same way, slower).
GEOMETRY = NetGeometry(act_bits=8, depth=512, max_channels=8, max_height=8, max_width=8)


@pytest.mark.parametrize("unit", [ActivationBuffer, Im2colReader, PoolUnit, ResidualAdd])
def test_unit_passes_verilator_lint(unit, tmp_path):
    path = tmp_path / f"{unit.__name__}.v"
    path.write_text(verilog.convert(unit(GEOMETRY), name=unit.__name__))
    result = verilator_lint([path], unit.__name__)
    assert result.ok, result.log[-3000:]
    assert result.warnings == {}


def test_pipeline_passes_verilator_lint(tmp_path):
    from support.configs import small_config
    from support.network_bench import PIPELINE_CONFIG

    config = small_config(**dict(PIPELINE_CONFIG, pipeline_stages=2))
    path = tmp_path / "Pipeline.v"
    path.write_text(verilog.convert(Pipeline(config), name="Pipeline"))
    result = verilator_lint([path], "Pipeline")
    assert result.ok, result.log[-3000:]
    assert result.warnings == {}
