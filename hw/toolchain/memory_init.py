"""Memory initial contents, converted fast and written compactly.

Most of the time and text of converting the accelerator to Verilog went into the initial
contents of its memories (the partial-sum, input, output-parameter and entry memories: some
20 M bits in the ``bwq`` preset, almost all zero):

* Amaranth's RTLIL back end builds the ``$meminit_v2`` data one netlist bit object per bit
  (about 80 % of the conversion's Python time, profiled); :func:`fast_memory_init` patches
  that one method to format the same constant from the words directly -- the RTLIL text is
  identical (``tests/hw/test_memory_init.py`` compares both);
* Yosys' ``write_verilog`` initializes a memory word by word (``mem[0] = 8'h00;`` ...), most
  of the lines of the file; :func:`compact_memory_init` writes an ``initial`` block that
  sets words ``0 .. n-1`` of one memory to one value as one ``for`` loop, the same meaning
  (a zero initialization inside ```ifndef BITLINE_NO_ZERO_INIT``, :data:`NO_ZERO_INIT`).

:func:`convert_verilog` is ``amaranth.back.verilog.convert`` with both.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from amaranth.back import rtlil, verilog

__all__ = ["fast_memory_init", "compact_memory_init", "convert_verilog", "NO_ZERO_INIT"]


def _emit_memory(self, cell_idx, cell, dropped: set | None):
    """``rtlil.ModuleEmitter.emit_memory`` with the init constant formatted from the words.

    With ``dropped`` (a set), an all-zero memory gets no ``$meminit_v2``; its
    ``(module, memory)`` names (no leading backslash) go into ``dropped`` instead.
    """
    memory_info = self.memories[cell_idx]
    width, depth = cell.width, cell.depth
    if dropped is not None and not any(cell.init):
        dropped.add((_bare(self.builder.name), _bare(memory_info.memid)))
        return
    if any(cell.init):
        mask = (1 << width) - 1
        bits = "".join(format(word & mask, f"0{width}b") for word in reversed(cell.init))
    else:
        bits = "0" * (width * depth)
    self.builder.cell("$meminit_v2", ports={
        "ADDR": self.sigspec(),
        "DATA": f"{width * depth}'{bits}",
        "EN": f"{width}'{'1' * width}",
    }, parameters={
        "MEMID": memory_info.memid,
        "ABITS": 0,
        "WIDTH": width,
        "WORDS": depth,
        "PRIORITY": 0,
    }, src_loc=cell.src_loc)


@contextlib.contextmanager
def fast_memory_init(dropped: set | None = None) -> Iterator[None]:
    """Within the block, Amaranth's RTLIL back end formats memory init data directly.

    Only for widths of at least one bit (a zero-width memory keeps Amaranth's own method).
    With ``dropped`` (an empty set), zero-initialized memories get no init in the RTLIL and
    are listed in ``dropped`` for :func:`compact_memory_init` to initialize in the Verilog
    (for Verilog output only: synthesis of the RTLIL would see uninitialized memories).
    """
    emitter = rtlil.ModuleEmitter
    original = emitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if cell.width and cell.depth:
            return _emit_memory(self, cell_idx, cell, dropped)
        return original(self, cell_idx, cell)

    emitter.emit_memory = emit_memory
    try:
        yield
    finally:
        emitter.emit_memory = original


#: Verilog macro that leaves out the zero initialization of memories. Defined, the
#: memories have no power-up contents, as SRAM macros (a chip's storage) have none; the
#: synthesis check (:mod:`bitline.hw.toolchain.synth_check`) defines it because Yosys'
#: Verilog front end unrolls each ``initial for`` loop word by word: some 1.6 M words in
#: the ``bwq`` preset, over 360 s of CPU before synthesis starts, against 8 s without.
#: Undefined (every simulator, every default flow) the Verilog means what the Amaranth
#: design means: memories without init start at zero.
NO_ZERO_INIT = "BITLINE_NO_ZERO_INIT"

_ZERO = re.compile(r"\d+'[bdh]0+")
_INIT_WORD = re.compile(r"    (\\\S+ |[A-Za-z_][\w$]*)\[0\] = ([^;]+);")
_MODULE = re.compile(r"module (\\\S+ |[A-Za-z_][\w$]*)")
_MEMORY = re.compile(r"  reg (?:\[(\d+):0\] )?(\\\S+ |[A-Za-z_][\w$]*) \[(\d+):0\];")


def _bare(name: str) -> str:
    """An RTLIL or Verilog identifier without its escape (``\\name`` / ``\\name ``)."""
    return name[1:].rstrip(" ") if name.startswith("\\") else name


def _zero(width: int) -> str:
    """Zero of ``width`` bits as ``write_verilog`` prints it (``32'd0``, ``8'h00``)."""
    return "32'd0" if width == 32 else f"{width}'h{'0' * -(-width // 4)}"


def _loop(name: str, words: int, value: str) -> list[str]:
    """The compact initialization of ``words`` words of memory ``name`` to ``value``.

    A zero initialization is wrapped in ```ifndef`` :data:`NO_ZERO_INIT` (see there).
    """
    loop = f"\\{_bare(name)}$init "
    lines = [f"  integer {loop};",
             f"  initial for ({loop}= 0; {loop}< {words}; {loop}= {loop}+ 1) "
             f"{name}[{loop}] = {value};"]
    if _ZERO.fullmatch(value):
        return [f"`ifndef {NO_ZERO_INIT}", *lines, "`endif"]
    return lines


def compact_memory_init(text: str, zeros: set | frozenset = frozenset()) -> str:
    """Return ``text`` with every constant memory initialization written as one loop.

    An ``initial`` block of ``write_verilog`` that sets words ``0 .. n-1`` of one memory, in
    order, to one value becomes ``for (i = 0; i < n; i = i + 1) mem[i] = value;`` (one
    ``integer`` loop variable per memory, at module scope, named ``\\<memory>$init``).
    Blocks with differing values (a preloaded program) stay as they are. A memory in
    ``zeros`` (``(module, memory)`` names from :func:`fast_memory_init`, whose init was left
    out of the RTLIL) gets the same loop, to zero, after its declaration -- the text an
    all-zero ``initial`` block would have become.
    """
    lines = text.split("\n")
    out: list[str] = []
    module = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        out.append(line)
        if line.startswith("module "):
            module = _bare(_MODULE.match(line).group(1))
        elif zeros and line.startswith("  reg ") and line.endswith(":0];"):
            memory = _MEMORY.fullmatch(line)
            if memory and (module, _bare(memory.group(2))) in zeros:
                width = int(memory.group(1)) + 1 if memory.group(1) else 1
                out.extend(_loop(memory.group(2), int(memory.group(3)) + 1, _zero(width)))
        elif line == "  initial begin" and index < len(lines):
            first = _INIT_WORD.fullmatch(lines[index])
            if first is None:
                continue
            end = lines.index("  end", index)
            name, value = first.groups()
            if lines[index:end] == [f"    {name}[{k}] = {value};" for k in range(end - index)]:
                out.pop()
                out.extend(_loop(name, end - index, value))
                index = end + 1
    return "\n".join(out)


def convert_verilog(elaboratable, **kwargs) -> str:
    """``amaranth.back.verilog.convert(elaboratable, **kwargs)``, fast and compact (above).

    Zero-initialized memories reach Yosys without their init (most of the RTLIL) and get it
    back as one loop each in the Verilog: the same text as compacting Yosys' full output.
    """
    zeros: set = set()
    with fast_memory_init(zeros):
        text = verilog.convert(elaboratable, **kwargs)
    return compact_memory_init(text, zeros)
