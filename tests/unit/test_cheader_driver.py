"""The generated C header and the example driver (examples/c/) compiled and run.

``cc`` compiles ``bitline_driver.c`` and the fake register file ``fake_device.c`` against a
header from :func:`bitline.hw.toolchain.cheader.c_header` with ``-Wall -Wextra -Werror
-pedantic``; the program's register log is compared with the sequence the register map
asks for, written here from :mod:`bitline.hw.spec.registers` (not from the header), and the
macros it prints with the Python definitions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.image import FORMAT_VERSION, MAGIC_WORD, config_digest_bytes
from bitline.hw.spec.registers import COUNTERS, Ctrl, ErrorCode, Register, Status
from bitline.hw.toolchain.cheader import c_header, register_access

from support.configs import small_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "c"
CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc / gcc) on PATH")


def _build_and_run(config: AcceleratorConfig, folder: Path) -> list[str]:
    (folder / "bitline_top_regs.h").write_text(c_header(config, "bitline_top"))
    program = folder / "fake_device"
    subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1",
                    "-I", str(folder), "-I", str(EXAMPLES), str(EXAMPLES / "bitline_driver.c"),
                    str(EXAMPLES / "fake_device.c"), "-o", str(program)],
                   check=True, capture_output=True, text=True)
    run = subprocess.run([str(program)], check=True, capture_output=True, text=True,
                         timeout=30)
    return run.stdout.splitlines()


def _accesses(lines: list[str]) -> list[tuple]:
    """Register accesses, consecutive STATUS reads (polling) collapsed into one."""
    seen = []
    for line in lines:
        if not line.startswith(("R ", "W ")):
            continue
        kind, offset, value = line.split()
        access = (kind, Register(int(offset, 16) // 4).name, int(value, 16))
        if kind == "R" and access[1] == "STATUS":
            access = ("R", "STATUS")
            if seen and seen[-1] == access:
                continue
        seen.append(access)
    return seen


def _expected_sequence() -> list[tuple]:
    def job(layer, vectors, share=None):
        steps = [("W", "LAYER", layer), ("W", "N_VECTORS", vectors)]
        if share is not None:
            steps.append(("W", "N_SHARE", share))
        return steps + [("W", "CTRL", int(Ctrl.START)), ("R", "STATUS")]

    identify = [("R", "ID", MAGIC_WORD), ("R", "VERSION", FORMAT_VERSION)]
    counters = []
    for index, (_, low) in enumerate(COUNTERS):
        counters += [("R", Register(low).name, 1000 + index),
                     ("R", Register(low + 1).name, index + 1)]
    return (identify + ["digest"] * 4 + [("W", "CTRL", int(Ctrl.LOAD)), ("R", "STATUS")]
            + job(2, 3) + counters + job(1, 5, 3) + job(9, 1)
            + [("W", "CTRL", int(Ctrl.CLEAR_ERROR))])


@needs_cc
@pytest.mark.parametrize("copies", [1, 2])
def test_driver_register_sequence_against_fake_register_file(tmp_path, copies):
    config = small_config().replace(max_copies=copies)
    lines = _build_and_run(config, tmp_path)
    accesses = _accesses(lines)
    expected = _expected_sequence()
    # the four DIGEST reads: names in order, values the config's digest words
    digest = config_digest_bytes(config)
    for word in range(4):
        expected[2 + word] = ("R", f"DIGEST{word}",
                              int.from_bytes(digest[4 * word:4 * word + 4], "little"))
    assert accesses == expected

    results = {line.split()[0]: line.split()[1:] for line in lines
               if not line.startswith(("R ", "W "))}
    assert results["IDENTIFY"] == ["rc", "0"]
    assert results["LOAD"] == ["rc", "0", "bytes", "100", "sum",
                               str(sum(7 * i for i in range(100)) % 256)]
    jobs = [line.split() for line in lines if line.startswith("JOB ")]
    assert jobs[0][:4] == ["JOB", "2", "rc", "0"]
    assert [int(v) for v in jobs[0][5:]] == [3 * i - 7 for i in range(3 * 5)]
    assert [int(v) for v in jobs[1][5:]] == [3 * i - 7 for i in range(3 * 3)]
    assert jobs[2][:4] == ["JOB", "9", "rc", str(int(ErrorCode.BAD_LAYER))]
    assert [int(v) for v in results["COUNTERS"]] == [
        (index + 1) << 32 | (1000 + index) for index in range(len(COUNTERS))]
    beat_bytes = -(-config.max_act_bits // 8) * copies
    # jobs 1 and 2 push all their beats; job 3's first push moves nothing (the fake's every
    # third call) and STATUS then shows BAD_LAYER, so the driver stops
    pushed = [bytes(range(1, 1 + n * beat_bytes)) for n in (3 * 4, 3 * 2)]
    assert int(results["INPUT"][1]) == sum(map(sum, pushed)) % 256


@needs_cc
def test_header_macros_equal_the_python_definitions(tmp_path):
    lines = _build_and_run(small_config(), tmp_path)
    macros = next(line.split()[1:] for line in lines if line.startswith("MACRO"))
    values = dict(zip(macros[::2], map(int, macros[1::2])))
    assert values == {
        "REG_STATUS": 4 * Register.STATUS, "REG_N_SHARE": 4 * Register.N_SHARE,
        "REG_CYCLES_LO": 4 * Register.CYCLES_LO, "CTRL_LOAD": int(Ctrl.LOAD),
        "STATUS_PROGRAMMED": int(Status.PROGRAMMED), "ERROR_BAD_LAYER": int(ErrorCode.BAD_LAYER),
        "MAGIC": MAGIC_WORD, "VERSION": FORMAT_VERSION}


def test_header_names_every_register_code_and_bit():
    text = c_header(small_config(), "my_top")
    assert text.count("#ifndef MY_TOP_REGS_H") == 1
    defines = dict(re.findall(r"^#define (BITLINE_\w+)\s+(.+?)\s*(?:/\*.*)?$", text,
                              re.MULTILINE))
    for register in Register:
        assert defines[f"BITLINE_REG_{register.name}"] == f"0x{4 * register:03x}u"
        access = re.search(rf"BITLINE_REG_{register.name}\s+\S+\s+/\* (\w+) \*/", text)[1]
        assert access == register_access(register)
    assert register_access(Register.CTRL) == "W" and register_access(Register.LAYER) == "RW"
    assert register_access(Register.STATUS) == "R"
    for code in ErrorCode:
        assert defines[f"BITLINE_ERROR_{code.name}"] == f"{int(code)}u"
    for flag in Status:
        assert defines[f"BITLINE_STATUS_{flag.name}"] == f"(1u << {flag.bit_length() - 1})"
