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
  sets words ``0 .. n-1`` of one memory to one value as one ``for`` loop, the same meaning.

:func:`convert_verilog` is ``amaranth.back.verilog.convert`` with both.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from amaranth.back import rtlil, verilog

__all__ = ["fast_memory_init", "compact_memory_init", "convert_verilog"]


def _emit_memory(self, cell_idx, cell):
    """``rtlil.ModuleEmitter.emit_memory`` with the init constant formatted from the words."""
    memory_info = self.memories[cell_idx]
    width, depth = cell.width, cell.depth
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
def fast_memory_init() -> Iterator[None]:
    """Within the block, Amaranth's RTLIL back end formats memory init data directly.

    Only for widths of at least one bit (a zero-width memory keeps Amaranth's own method).
    """
    emitter = rtlil.ModuleEmitter
    original = emitter.emit_memory

    def emit_memory(self, cell_idx, cell):
        if cell.width and cell.depth:
            return _emit_memory(self, cell_idx, cell)
        return original(self, cell_idx, cell)

    emitter.emit_memory = emit_memory
    try:
        yield
    finally:
        emitter.emit_memory = original


_INIT_WORD = re.compile(r"    (\\\S+ |[A-Za-z_][\w$]*)\[0\] = ([^;]+);")


def compact_memory_init(text: str) -> str:
    """Return ``text`` with every constant memory initialization written as one loop.

    An ``initial`` block of ``write_verilog`` that sets words ``0 .. n-1`` of one memory, in
    order, to one value becomes ``for (i = 0; i < n; i = i + 1) mem[i] = value;`` (one
    ``integer`` loop variable per memory, at module scope, named ``\\meminit$k``). Blocks
    with differing values (a preloaded program) stay as they are.
    """
    lines = text.split("\n")
    out: list[str] = []
    start = 0
    loops = 0
    while True:
        try:
            index = lines.index("  initial begin", start)
        except ValueError:
            break
        first = _INIT_WORD.fullmatch(lines[index + 1]) if index + 1 < len(lines) else None
        end = lines.index("  end", index + 1) if first else index
        if first is not None:
            name, value = first.groups()
            uniform = lines[index + 1:end] == [f"    {name}[{k}] = {value};"
                                               for k in range(end - index - 1)]
        if first is None or not uniform:
            out.extend(lines[start:index + 1])
            start = index + 1
            continue
        out.extend(lines[start:index])
        loop = f"\\meminit${loops} "
        loops += 1
        out.append(f"  integer {loop};")
        out.append(f"  initial for ({loop}= 0; {loop}< {end - index - 1}; {loop}= {loop}+ 1) "
                   f"{name}[{loop}] = {value};")
        start = end + 1
    out.extend(lines[start:])
    return "\n".join(out)


def convert_verilog(elaboratable, **kwargs) -> str:
    """``amaranth.back.verilog.convert(elaboratable, **kwargs)``, fast and compact (above)."""
    with fast_memory_init():
        return compact_memory_init(verilog.convert(elaboratable, **kwargs))
