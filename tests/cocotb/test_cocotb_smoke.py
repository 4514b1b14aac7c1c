"""cocotb on generated Verilog: the runner infrastructure on the output unit.

The bench (``bitline.sim.cocotb.tb_output_unit``) checks the Verilog of
:class:`~bitline.hw.core.output_unit.OutputUnit` against :func:`bitline.sw.integer.arith.output_unit`;
the second test breaks the bench's model on purpose and requires the run to fail, so a
bench that cannot fail would be caught.
"""

from __future__ import annotations

import json

import pytest

from bitline.hw.core.output_unit import OutputUnit
from bitline.hw.spec.config import preset
from bitline.sim.cocotb.runner import BenchFailure, build_and_test, missing_tools

pytestmark = [
    pytest.mark.cocotb,
    pytest.mark.skipif(bool(missing_tools()),
                       reason=f"simulator tools not installed: {', '.join(missing_tools())}"),
]

BENCH = "bitline.sim.cocotb.tb_output_unit"
CONFIG = preset("bwq")


def run_bench(**env):
    extra = {"BITLINE_CONFIG": json.dumps(CONFIG.to_dict()), "BITLINE_TB_SEED": "3"}
    extra.update(env)
    return build_and_test(OutputUnit(CONFIG), "output_unit", BENCH, extra_env=extra)


def test_output_unit_verilog_matches_golden():
    result = run_bench()
    assert result.tests == 1 and result.failed == 0
    print(f"\n{result.simulator}: build {result.build_seconds:.1f} s "
          f"({'cached' if result.cached else 'fresh'}), run {result.test_seconds:.1f} s")


def test_checker_fails_on_a_broken_model():
    with pytest.raises(BenchFailure, match="1 of 1 cocotb tests failed") as failure:
        run_bench(BITLINE_TB_BREAK_MODEL="1")
    assert failure.value.result.failed == 1
