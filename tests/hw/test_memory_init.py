"""Memory init: fast RTLIL conversion (same text) and compact Verilog (one loop per memory)."""

import re

from amaranth import Module, signed
from amaranth.back import rtlil, verilog
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from bitline.hw.toolchain.memory_init import (
    NO_ZERO_INIT,
    compact_memory_init,
    convert_verilog,
    fast_memory_init,
)


class _TwoMemories(wiring.Component):
    """Zero-initialized memories of several widths, one with distinct words, a signed one."""

    def __init__(self):
        super().__init__({"addr": In(4), "zeros": Out(8), "words": Out(8), "signed": Out(5),
                          "wide": Out(54), "word": Out(32), "bit": Out(1)})

    def elaborate(self, platform):
        m = Module()
        for name, shape, init in (("zeros", 8, []), ("words", 8, list(range(3, 19))),
                                  ("signed", signed(5), [-16, -1, 0, 15, 3]),
                                  ("wide", 54, []), ("word", 32, []), ("bit", 1, [])):
            depth = {"signed": 5, "wide": 3, "word": 2, "bit": 7}.get(name, 16)
            memory = Memory(shape=shape, depth=depth, init=init)
            m.submodules[name] = memory
            read = memory.read_port(domain="comb")
            m.d.comb += read.addr.eq(self.addr)
            m.d.comb += getattr(self, name).eq(read.data)
        return m


def _word_lines(text):
    return re.findall(r"^    \S+ ?\[\d+\] = [^;]+;$", text, re.M)


def test_a_constant_memory_becomes_one_loop_and_others_stay():
    text = verilog.convert(_TwoMemories(), name="top", emit_src=False)
    compact = compact_memory_init(text)
    guard = f"`ifndef {NO_ZERO_INIT}"
    words = _word_lines(text)
    assert len(words) == 16 + 16 + 5 + 3 + 2 + 7  # write_verilog: one line per word
    loops = re.findall(r"initial for \((\S+ )= 0; \1< (\d+); \1= \1\+ 1\) (\S+ ?)\[\1\] = ([^;]+);",
                       compact)
    assert sorted((count, value) for _, count, _, value in loops) == [
        ("16", "8'h00"), ("2", "32'd0"), ("3", "54'h00000000000000"), ("7", "1'h0")]
    assert re.search(rf"integer {re.escape(loops[0][0])};", compact)
    # the memories of distinct words keep them, in order
    kept = _word_lines(compact)
    assert len(kept) == 21 and kept == [line for line in words
                                        if "\\signed$" in line or "\\words$" in line]
    # everything outside the memory initializations is unchanged
    strip = lambda t: [line for line in t.split("\n")  # noqa: E731
                       if line not in words and "$init " not in line
                       and line not in ("  initial begin", "  end", guard, "`endif")]
    assert strip(compact) == strip(text)
    # every zero loop (and no other) sits inside `ifndef BITLINE_NO_ZERO_INIT ... `endif
    lines = compact.split("\n")
    guarded = [lines[i + 2] for i, line in enumerate(lines) if line == guard]
    assert len(guarded) == 4 and all(lines[lines.index(g) + 1] == "`endif" for g in guarded)
    assert sorted(re.search(r"\] = ([^;]+);$", g).group(1) for g in guarded) == [
        "1'h0", "32'd0", "54'h00000000000000", "8'h00"]


def test_blocks_that_are_not_one_value_from_word_zero_are_left_alone():
    text = "\n".join([
        "module m;",
        "  reg [7:0] a [2:0];",
        "  initial begin",
        "    a[0] = 8'h00;",
        "    a[1] = 8'h00;",
        "    a[2] = 8'h01;",
        "  end",
        "  reg [7:0] b [1:0];",
        "  initial begin",
        "    b[1] = 8'h00;",
        "    b[0] = 8'h00;",
        "  end",
        "  initial begin",
        "    \\c$1 [0] = 4'h5;",
        "    \\c$1 [1] = 4'h5;",
        "  end",
        "endmodule",
    ])
    compact = compact_memory_init(text)
    lines = compact.split("\n")
    assert lines[:12] == text.split("\n")[:12]
    assert lines[12:] == [
        "  integer \\c$1$init ;",
        "  initial for (\\c$1$init = 0; \\c$1$init < 2; \\c$1$init = \\c$1$init + 1) "
        "\\c$1 [\\c$1$init ] = 4'h5;",
        "endmodule",
    ]


def test_fast_memory_init_writes_the_same_rtlil():
    slow = rtlil.convert(_TwoMemories(), name="top", emit_src=False)
    with fast_memory_init():
        fast = rtlil.convert(_TwoMemories(), name="top", emit_src=False)
    assert "$meminit_v2" in fast and fast == slow
    # the patch is undone on leaving the block
    assert rtlil.ModuleEmitter.emit_memory.__module__ == "amaranth.back.rtlil"


def test_convert_verilog_leaves_zero_init_to_the_verilog_with_the_same_text():
    compact = compact_memory_init(verilog.convert(_TwoMemories(), name="top", emit_src=False))
    assert convert_verilog(_TwoMemories(), name="top", emit_src=False) == compact
    assert compact.count("initial for") == 4
