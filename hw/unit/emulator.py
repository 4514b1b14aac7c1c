"""The digital crossbar emulator: an ideal, synthesizable stand-in for one ReRAM crossbar.

It answers OU reads exactly as docs/contract.md section 4 defines them for an ideal device,
``code_a = min(adc_max, sum_k dac[k] * level[g*ou_rows + k, column_a])``, with the latency
``config.adc_latency`` the port promises. Two storage organizations, the same answers
(``config.emulator_ou_words``):

* **rows** (0, the default): ``ou_rows`` memory banks, one per row position inside a row
  group: bank ``k`` holds rows ``g*ou_rows + k`` (address ``g``), one full row per word, so
  one synchronous read of every bank yields the OU's rows, a column multiplexer cuts out its
  columns, and one row write programs a row. Shallow and wide: FPGA distributed RAM.
* **OU words** (1): one memory, one OU per word: address ``(g, h)`` (row group, column group;
  ``h`` in the low ``clog2(col_groups)`` bits) holds lane ``k`` = the ``ou_cols`` levels of
  row ``g*ou_rows + k`` in columns ``[h*ou_cols, (h+1)*ou_cols)``, so a read needs no column
  multiplexer and the memory is deep enough for FPGA block RAM (the 288 x 128 crossbar of
  examples/fpga/ulx3s-digits-net.toml: 512 words of 72 bits, three ``DP16KD`` in place of
  ~3,900 LUT4 of distributed RAM). A row write fills lane ``row % ou_rows`` of the
  ``col_groups`` words of its row group, one per cycle (byte-lane write enables); the
  config guarantees the loader never delivers rows faster.
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from bitline.hw._component import rejects_quietly
from bitline.hw.spec.config import AcceleratorConfig, clog2
from bitline.hw.unit.xbar_port import CrossbarSignature

__all__ = ["CrossbarEmulator"]


def _pack_levels(levels: np.ndarray, cell_bits: int) -> list[int]:
    """Each row of ``levels`` as one integer, level ``i`` at bits ``[i*cell_bits,
    (i+1)*cell_bits)`` (a memory word)."""
    bits = (levels[:, :, None] >> np.arange(cell_bits)) & 1
    packed = np.packbits(bits.reshape(len(levels), -1).astype(np.uint8), axis=1,
                         bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


class _Request:
    """The read request as the array sees it (registered copies of the port's members)."""


class CrossbarEmulator(wiring.Component):
    """An ideal crossbar behind :class:`~bitline.hw.unit.xbar_port.CrossbarSignature`.

    Parameters
    ----------
    config:
        Accelerator configuration (geometry, ADC, latency).
    levels:
        Optional ``(rows, cols)`` initial cell levels (e.g. a mapped crossbar image).

    Attributes
    ----------
    port: In(CrossbarSignature(config))
        The crossbar side of the port.
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, levels: np.ndarray | None = None):
        self.config = config
        if levels is not None:
            levels = np.asarray(levels, dtype=np.int64)
            if levels.shape != (config.rows, config.cols):
                raise ValueError(f"levels must have shape {(config.rows, config.cols)}, "
                                 f"not {levels.shape}")
            if levels.min(initial=0) < 0 or levels.max(initial=0) > config.level_max:
                raise ValueError(f"levels must be in 0..{config.level_max}")
        self._levels = levels
        super().__init__({"port": In(CrossbarSignature(config))})

    def _column_slots(self) -> int:
        """Words per row group in the OU-word memory: ``col_groups`` rounded up to a power
        of two (the column group is the address's low bits)."""
        config = self.config
        return 1 << clog2(config.col_groups) if config.col_groups > 1 else 1

    def _ou_word_init(self) -> list[int]:
        """Initial words of the OU-word memory (``emulator_ou_words``), address ``(g, h)``."""
        config = self.config
        if self._levels is None:
            return []
        padded = np.zeros((config.row_groups * config.ou_rows,
                           self._column_slots() * config.ou_cols), dtype=np.int64)
        padded[:config.rows, :config.cols] = self._levels
        # [g, k, h, j] -> word (g, h): lane k, column j
        blocks = padded.reshape(config.row_groups, config.ou_rows, -1, config.ou_cols)
        words = blocks.transpose(0, 2, 1, 3).reshape(-1, config.ou_rows * config.ou_cols)
        return _pack_levels(words, config.cell_bits)

    def _bank_init(self, bank: int) -> list[int]:
        """Initial words of row bank ``bank`` (rows ``g*ou_rows + bank``, whole rows)."""
        config = self.config
        padded = np.zeros((config.row_groups * config.ou_rows, config.cols), dtype=np.int64)
        if self._levels is not None:
            padded[:config.rows] = self._levels
        return _pack_levels(padded[bank::config.ou_rows], config.cell_bits)

    def elaborate(self, platform):
        config = self.config
        m = Module()
        port = self.port
        adcs = config.adcs_per_xbar
        latency = config.adc_latency
        # per OU row k: the ``ou_cols`` levels of the OU's columns (row-group and column-group
        # selected), valid in the cycle after the request when the memories read synchronously
        if config.emulator_ou_words:
            groups = self._ou_word_storage(m)
        else:
            groups = self._row_storage(m)

        request = _Request()
        for name in ("strobe", "wordline_en", "dac", "col_group", "phase", "adc_en"):
            live = getattr(port.read, name)
            held = Signal.like(live, name=f"request_{name}")
            if latency:
                m.d.sync += held.eq(live)
            else:
                m.d.comb += held.eq(live)
            setattr(request, name, held)

        # With a conversion latency of two cycles or more, the first delay register sits
        # between the column select and the sum (the selected cell levels, the row drives,
        # the ADC enables): same answer, same latency, but the FPGA's longest path -- bank
        # read data through the column multiplexer, the ou_rows-term sum and the clip into
        # the unit's shift-and-add -- is cut in two (docs/fpga.md, section 4).
        split = latency >= 2

        def stage(value, name):
            if not split:
                return value
            held = Signal.like(value, name=name)
            m.d.sync += held.eq(value)
            return held

        drives = [stage(Mux(request.wordline_en[bank], request.dac[bank], 0), f"drive_k{bank}")
                  for bank in range(config.ou_rows)]
        adc_en = stage(request.adc_en, "adc_en")
        valid = stage(request.strobe, "valid")

        # Columns of ADC a in this phase: col_group * ou_cols + phase * adcs + a. Each OU
        # row's columns are cut to the phase's ADCs by a shifted part-select (zero-padded: a
        # column past the OU in a partial last phase reads level 0), not by a multiplexer per
        # ADC and bank.
        codes = Signal(data.ArrayLayout(config.adc_bits, adcs))
        group_bits = config.ou_cols * config.cell_bits
        phase_bits = adcs * config.cell_bits
        phase_levels = []
        ou_levels = groups(request.col_group)
        for bank in range(config.ou_rows):
            group = ou_levels[bank]
            group = Cat(group, Const(0, config.conversions_per_read * phase_bits - group_bits))
            selected = group.word_select(request.phase, phase_bits) \
                if config.conversions_per_read > 1 else group
            levels = Signal(phase_bits, name=f"levels_k{bank}")
            m.d.comb += levels.eq(selected)
            phase_levels.append(stage(levels, f"levels_k{bank}_q"))
        for adc in range(adcs):
            total = 0
            for bank in range(config.ou_rows):
                level = phase_levels[bank][adc * config.cell_bits:(adc + 1) * config.cell_bits]
                total = total + drives[bank] * level
            clipped = Mux(total > config.adc_max, config.adc_max, total)
            m.d.comb += codes[adc].eq(Mux(adc_en[adc], clipped, 0))

        # Extra conversion latency beyond the synchronous memory read (and the split stage).
        for index in range(max(latency - 1 - int(split), 0)):
            delayed_codes = Signal.like(codes, name=f"codes_d{index}")
            delayed_valid = Signal(name=f"valid_d{index}")
            m.d.sync += [delayed_codes.eq(codes), delayed_valid.eq(valid)]
            codes, valid = delayed_codes, delayed_valid
        m.d.comb += [port.result.codes.eq(codes), port.result.valid.eq(valid)]
        return m

    def _row_tables(self) -> tuple[Array, Array]:
        """Return ``row % ou_rows`` (one-hot) and ``row // ou_rows`` as tables indexed by the
        write port's row (small ROMs), not a constant divider (carry chains: 32 ns in a
        4-unit build)."""
        config = self.config
        rows = range(1 << len(self.port.write.row))
        return (Array(Const(1 << (row % config.ou_rows), config.ou_rows) for row in rows),
                Array(Const(min(row // config.ou_rows, config.row_groups - 1),
                            range(config.row_groups)) for row in rows))

    def _row_storage(self, m: Module):
        """Rows organization: ``ou_rows`` banks of whole rows; return the column select."""
        config = self.config
        port = self.port
        latency = config.adc_latency
        row_layout = data.ArrayLayout(config.cell_bits, config.cols)

        # Row writes are registered first: bank ``row % ou_rows`` and address
        # ``row // ou_rows`` stay off the memories' write path, the FPGA's longest once the
        # OU issue path was pipelined (docs/fpga.md section 4). A row is written one cycle
        # after ``write.en``; the loader programs cells long before any read.
        write_en = Signal(config.ou_rows)
        write_group = Signal(range(config.row_groups))
        write_levels = Signal.like(port.write.levels)
        bank_of, group_of = self._row_tables()
        m.d.sync += [
            write_en.eq(Mux(port.write.en, bank_of[port.write.row], 0)),
            write_group.eq(group_of[port.write.row]),
            write_levels.eq(port.write.levels),
        ]
        rows = []
        for bank in range(config.ou_rows):
            memory = Memory(shape=row_layout.size, depth=config.row_groups,
                            init=self._bank_init(bank))
            m.submodules[f"bank{bank}"] = memory
            write = memory.write_port()
            m.d.comb += [
                write.addr.eq(write_group),
                write.data.eq(write_levels),
                write.en.eq(write_en[bank]),
            ]
            read = memory.read_port(domain="sync" if latency else "comb")
            m.d.comb += read.addr.eq(port.read.row_group)
            if latency:
                m.d.comb += read.en.eq(port.read.strobe)
            rows.append(row_layout(read.data))

        group_bits = config.ou_cols * config.cell_bits

        def select(col_group):
            # the OU's columns of each bank's row word (zero-padded past the crossbar's edge)
            selected = []
            for word in rows:
                word = word.as_value()
                padded = Cat(word, Const(0, config.col_groups * group_bits - len(word)))
                selected.append(padded.word_select(col_group, group_bits)
                                if config.col_groups > 1 else padded)
            return selected
        return select

    def _ou_word_storage(self, m: Module):
        """OU-word organization (``emulator_ou_words``): one memory, one OU per word, written
        a row group's ``col_groups`` words per row write; return the OU's row lanes."""
        config = self.config
        port = self.port
        group_bits = config.ou_cols * config.cell_bits
        memory = Memory(shape=config.ou_rows * group_bits,
                        depth=config.row_groups * self._column_slots(),
                        init=self._ou_word_init())
        m.submodules.cells = memory

        # A row write is registered (row word, lane, row group; the lane and group looked up
        # from the row, no constant divider) and then written one column group per cycle:
        # column group h of the row into lane row % ou_rows of word (row // ou_rows, h).
        pending = Signal(name="write_pending")
        lane = Signal(config.ou_rows)
        write_group = Signal(range(config.row_groups))
        column = Signal(range(config.col_groups))
        levels = Signal(config.col_groups * group_bits)
        lane_of, group_of = self._row_tables()
        with m.If(port.write.en):
            m.d.sync += [
                pending.eq(1), column.eq(0),
                lane.eq(lane_of[port.write.row]),
                write_group.eq(group_of[port.write.row]),
                levels.eq(port.write.levels.as_value()),   # zero past the crossbar's edge
            ]
        with m.Elif(pending):
            m.d.sync += column.eq(column + 1)
            with m.If(column == config.col_groups - 1):
                m.d.sync += pending.eq(0)
        write = memory.write_port(granularity=group_bits)
        slice_ = levels.word_select(column, group_bits) if config.col_groups > 1 else levels
        m.d.comb += [
            write.addr.eq(Cat(column, write_group) if config.col_groups > 1 else write_group),
            write.data.eq(Cat(slice_ for _ in range(config.ou_rows))),
            write.en.eq(Mux(pending, lane, 0)),
        ]
        read = memory.read_port()
        m.d.comb += [
            read.addr.eq(Cat(port.read.col_group, port.read.row_group)
                         if config.col_groups > 1 else port.read.row_group),
            read.en.eq(port.read.strobe),
        ]
        lanes = [read.data[k * group_bits:(k + 1) * group_bits] for k in range(config.ou_rows)]
        return lambda col_group: lanes
