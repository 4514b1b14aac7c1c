"""The UART bridge against a model of the accelerator's side, in the Amaranth simulator."""

from __future__ import annotations

import numpy as np

from bitline.hw.io.uart_bridge import UARTBridge

from support.simulation import simulate

__all__ = ["run_bridge"]


def run_bridge(config, host_bytes, *, outputs=(), registers=None, program_ready=True,
               timeout_cycles=200, cycles=2000, rx_fifo_depth=16, pause_seed=None):
    """Send ``host_bytes`` into a bridge; return (answer bytes, program bytes, inputs, csr log).

    The accelerator side is a model: registers answer ``registers[addr]``; ``outputs`` (values,
    or lists of lane values with ``max_copies > 1`` lanes) are offered on the outputs stream;
    the program stream is ready when ``program_ready``; ``inputs`` collects every input beat
    taken (a code, or a list of lane codes). Without ``pause_seed`` the inputs stream is
    always ready and every output is offered at once; with it, ``inputs.ready`` and
    ``outputs.valid`` each drop in a random 40% of the cycles (seeded).
    """
    registers = dict(registers or {})
    dut = UARTBridge(config, clock_hz=50_000_000, rx_fifo_depth=rx_fifo_depth,
                     timeout_cycles=timeout_cycles)
    lanes = config.max_copies
    rng = np.random.default_rng(pause_seed) if pause_seed is not None else None
    answer, program, inputs, writes = [], [], [], []
    pending = list(host_bytes)
    outputs = list(outputs)

    async def testbench(ctx):
        ctx.set(dut.tx.ready, 1)
        ctx.set(dut.program.ready, int(program_ready))
        read_addr = None
        for _ in range(cycles):
            ready = rng is None or rng.random() < 0.6
            offer = bool(outputs) and (rng is None or rng.random() < 0.6)
            ctx.set(dut.inputs.ready, int(ready))
            ctx.set(dut.rx.valid, int(bool(pending)))
            ctx.set(dut.rx.payload, pending[0] if pending else 0)
            ctx.set(dut.outputs.valid, int(offer))
            ctx.set(dut.outputs.payload, outputs[0] if offer else (0 if lanes == 1
                                                                   else [0] * lanes))
            ctx.set(dut.csr.r_data, registers.get(read_addr, 0) if read_addr is not None else 0)
            rx_taken = pending and ctx.get(dut.rx.ready)
            out_taken = offer and ctx.get(dut.outputs.ready)
            if ctx.get(dut.tx.valid):
                answer.append(ctx.get(dut.tx.payload))
            if ctx.get(dut.program.valid) and program_ready:
                program.append(ctx.get(dut.program.payload))
            if ctx.get(dut.inputs.valid) and ready:
                beat = ctx.get(dut.inputs.payload)
                inputs.append(beat if lanes == 1 else [int(beat[k]) for k in range(lanes)])
            read_addr = ctx.get(dut.csr.addr) if ctx.get(dut.csr.r_en) else None
            if ctx.get(dut.csr.w_en):
                writes.append((ctx.get(dut.csr.addr), ctx.get(dut.csr.w_data)))
            await ctx.tick()
            if rx_taken:
                pending.pop(0)
            if out_taken:
                outputs.pop(0)

    simulate(dut, testbench)
    return bytes(answer), bytes(program), inputs, writes
