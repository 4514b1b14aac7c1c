"""``bitline fpga`` (build a bitstream) and ``bitline board run`` (inference on a board).

``bitline fpga --board ulx3s-85f [--config CFG | --preset P | --bundle OUT/] -o BUILD/``
builds the accelerator (digital crossbar emulators) with the UART host bridge for an FPGA
board (:mod:`bitline.hw.toolchain.fpga`) and prints ``BUILD/report.json`` as tables.

``bitline board run --port PORT OUT/ --input X.npy`` programs a board with the bundle
``OUT/`` and runs the network on the inputs through the host driver
(:mod:`bitline.sw.host.driver`) over the UART protocol (:mod:`bitline.sw.host.uart`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bitline.hw.boards import BOARDS
from bitline.sw.cli.common import (
    NamedChoice,
    PositiveFloat,
    RunFailed,
    config_options,
    echo_json,
    json_option,
    print_table,
    quiet_option,
)

__all__ = ["fpga", "board", "board_run"]


def _console(silent: bool = False):
    import io

    from rich.console import Console

    if silent:                  # -q / --json: the messages go nowhere
        return Console(file=io.StringIO())
    return Console(file=sys.stdout, width=max(100, Console(file=sys.stdout).width))


@click.command("fpga")
@click.option("--board", "board_name", default="ulx3s-85f", show_default=True,
              type=NamedChoice(BOARDS, "board"), help="Target board.")
@config_options
@click.option("--bundle", "bundle_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Program bundle: its config, and its program preloaded into the memories.")
@click.option("--xbars", type=click.IntRange(min=1),
              help="Crossbar units (replaces n_xbars of --config / --preset).")
@click.option("--core-mhz", type=float,
              help="Core clock made by the board's PLL (default: the board's, 40 MHz on the "
                   "ULX3S).")
@click.option("--baud", type=click.IntRange(min=1), help="UART bit rate (default 1000000).")
@click.option("--unit-entries", type=click.IntRange(min=1),
              help="OU entries each unit's entry memory holds.")
@click.option("--seed", default=1, show_default=True, help="nextpnr placement seed.")
@click.option("--allow-timing-fail", is_flag=True,
              help="Exit 0 even if the design misses the core clock (the bitstream is "
                   "written either way).")
@click.option("--distributed-ram", "distributed_ram", multiple=True, metavar="PATTERN",
              help="Build the memories whose names match PATTERN (fnmatch, e.g. 'psum*', "
                   "the partial sums) in distributed RAM instead of block RAM; repeatable. "
                   "For designs short of block RAM, not of LUTs (docs/fpga.md section 6).")
@json_option
@quiet_option
@click.option("-o", "--output", "out_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Build directory (bitstream, logs, report.json).")
def fpga(board_name, config_path, preset_name, bundle_dir, xbars, core_mhz, baud,
         unit_entries, seed, allow_timing_fail, distributed_ram, as_json, quiet, out_dir):
    """Build an FPGA bitstream of the accelerator with a UART host bridge; report resources
    and Fmax (BUILD/report.json).

    --json prints report.json (an object: "clocks": [...], "resources", "timing_met",
    "critical_path", "seconds", "bitstream", ...). A --bundle compiled with --network adds
    its whole-network figures at the design's clocks ("network": {"cycles_per_image",
    "latency_cycles", "core_mhz", "latency_us", "images_per_second", "fmax_mhz",
    "images_per_second_at_fmax", "pipelined"}). A build that fails or misses timing exits
    with code 1.
    """
    import json

    from bitline.hw.boards import get_board
    from bitline.hw.toolchain.fpga import FPGABuildError, build_bitstream, report_tables
    from bitline.sw.flow.hardware import resolve_hardware

    board_spec = get_board(board_name)  # unknown board: fail before any work
    hardware, memories, unit_entries = resolve_hardware(config_path, preset_name, bundle_dir,
                                                        xbars, unit_entries)
    console = _console()
    log = (lambda message: None) if as_json or quiet else (
        lambda message: console.print(f"[dim]{message}[/]"))
    try:
        report = build_bitstream(hardware, out_dir, board=board_spec.name,
                                 core_hz=core_mhz * 1e6 if core_mhz else None, baud=baud,
                                 memories=memories, unit_entries=unit_entries, seed=seed,
                                 distributed_ram=distributed_ram, log=log)
    except FPGABuildError as error:
        raise RunFailed(str(error)) from None
    network = _network_rates(bundle_dir, report) if bundle_dir else None
    if network:
        from bitline.hw.toolchain.fpga import REPORT_FILE

        report["network"] = network
        (Path(out_dir) / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif not quiet:
        for table in report_tables(report):
            print_table(table)
        path = report["critical_path"]
        if path:
            console.print(f"critical path: {path['delay_ns']:.2f} ns ({path['logic_ns']:.2f} "
                          f"logic, {path['routing_ns']:.2f} routing) through "
                          f"{' -> '.join(path['modules'])}")
        if network:
            console.print(_network_line(network))
        seconds = report["seconds"]
        console.print("build time: " + ", ".join(f"{name} {value:.0f} s"
                                                 for name, value in seconds.items()))
        console.print(f"bitstream: {Path(out_dir) / report['bitstream']}  (program with "
                      f"`openFPGALoader -b ulx3s {Path(out_dir) / report['bitstream']}`)")
    if not report["timing_met"]:
        slow = ", ".join(f"{clock['name']} {clock['achieved_mhz']:.1f} MHz < "
                         f"{clock['constraint_mhz']:.1f} MHz"
                         for clock in report["clocks"] if not clock["met"])
        message = (f"timing not met: {slow}; rebuild with a lower --core-mhz (the bitstream "
                   f"may misbehave at this clock)")
        if not allow_timing_fail:
            raise RunFailed(message)
        click.echo(f"warning: {message}", err=True)


def _network_rates(bundle_dir, report: dict) -> dict | None:
    """The whole-network figures of a ``--network`` bundle at the built design's clocks
    (``report.json``'s ``"network"``): cycles per image and latency from the performance
    model (which the RTL's counters equal, docs/network.md sections 5 and 6), images/s at
    the core clock the PLL makes and at the routed Fmax of that clock; ``None`` for a
    per-layer bundle."""
    from bitline.sw.bundle import read_bundle
    from bitline.sw.perf.network import network_report, pipelined_report

    program = read_bundle(bundle_dir).program
    if not program.nodes:
        return None
    if program.config.pipeline_stages:
        piped = pipelined_report(program)
        cycles, latency = piped.steady_cycles, piped.latency
    else:
        cycles = latency = network_report(program).cycles
    core_mhz = report["core_hz"] / 1e6
    # the core clock's routed Fmax: the clock constrained to the core frequency
    core = [clock for clock in report["clocks"]
            if abs(clock["constraint_mhz"] - core_mhz) < 0.01]
    fmax = min((clock["achieved_mhz"] for clock in core), default=None)
    return {
        "pipelined": bool(program.config.pipeline_stages),
        "cycles_per_image": int(cycles), "latency_cycles": int(latency),
        "core_mhz": core_mhz, "latency_us": latency / core_mhz,
        "images_per_second": core_mhz * 1e6 / cycles,
        "fmax_mhz": fmax,
        "images_per_second_at_fmax": None if fmax is None else fmax * 1e6 / cycles,
    }


def _network_line(network: dict) -> str:
    """One line of the whole-network figures (:func:`_network_rates`)."""
    kind = "pipelined, steady state" if network["pipelined"] else "sequential"
    line = (f"whole-network run ({kind}; performance model = RTL counters): "
            f"{network['cycles_per_image']:,} cycles per image, latency "
            f"{network['latency_us']:,.0f} us and {network['images_per_second']:,.1f} "
            f"images/s at the {network['core_mhz']:g} MHz core clock")
    if network["fmax_mhz"] is not None:
        line += (f"; {network['images_per_second_at_fmax']:,.1f} images/s at the routed "
                 f"Fmax {network['fmax_mhz']:.2f} MHz")
    return line


@click.group("board")
def board():
    """Run inference on an FPGA board built with `bitline fpga`."""


@board.command("run")
@click.option("--port", required=True,
              help="Serial port of the board (e.g. /dev/ttyUSB0), or a pyserial URL.")
@click.argument("bundle_dir", metavar="OUT/",
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--input", "-i", "input_path", required=True,
              help="Input batch .npy of shape (N, *input_shape), or one sample.")
@click.option("--output", "-o", "output_path",
              help="Output file (.npz): 'output' (dequantized), 'output_int' (codes), like "
                   "`bitline run`.")
@click.option("--baud", type=click.IntRange(min=1),
              help="UART bit rate the bitstream was built with (default 1000000).")
@click.option("--timeout", default=2.0, show_default=True, type=PositiveFloat(),
              help="Seconds to wait for an answer from the board.")
@click.option("--max-vectors", type=click.IntRange(min=1),
              help="Split layer jobs into at most this many vectors.")
@click.option("--no-load", is_flag=True,
              help="Do not send image.bin (the bitstream was built with --bundle and "
                   "starts programmed).")
@click.option("--check", is_flag=True,
              help="Compare the outputs with the integer golden model (bit-exact).")
@click.option("--strict", is_flag=True,
              help="Refuse inputs outside the calibrated input range (by default they are "
                   "clamped as the hardware does, with a warning giving the count).")
@json_option
@quiet_option
def board_run(port, bundle_dir, input_path, output_path, baud, timeout, max_vectors,
              no_load, check, strict, as_json, quiet):
    """Program a board with the bundle OUT/ and run the network on --input over the UART.

    The input is checked as `bitline run` checks it (a real numeric array of the model's
    shape, finite values; values outside the calibrated range are clamped with a warning
    giving the count, --strict: an error), before the board is opened.
    --json prints {"samples", "seconds", "counters": {...}, "predicted": [...] (2-D outputs),
    "output": FILE or null, "checked", "clamped"}. A board error or a --check mismatch exits
    with 1.
    """
    import numpy as np

    from bitline.sw.bundle import read_bundle
    from bitline.sw.flow import load_input
    from bitline.sw.flow.inputs import report_clamped
    from bitline.sw.host.driver import Device, DeviceError, HostDriver
    from bitline.sw.host.uart import open_board

    bundle = read_bundle(bundle_dir)
    config = bundle.program.config
    x = load_input(input_path, tuple(bundle.qmodel.model.input_shape))
    clamped = report_clamped(x, bundle.qmodel.input, source=str(input_path), strict=strict,
                             warn=lambda message: click.echo(f"warning: {message}", err=True))
    console = _console(silent=quiet or as_json)
    try:
        transport = open_board(port, config, baud=baud, timeout=timeout)
    except DeviceError as error:
        raise RunFailed(f"board on {port}: {error}") from None
    try:
        info = transport.client.bridge
        console.print(f"[dim]board on {port}: protocol {info.version}, core clock "
                      f"{info.clock_hz / 1e6:g} MHz, {info.rx_fifo_depth}-byte receive "
                      f"FIFO[/]")
        driver = HostDriver.from_bundle(bundle, Device(transport), max_vectors=max_vectors)
        if no_load:
            driver.device.check_config(config)
        else:
            driver.load()
        result = driver.run(x)
    except DeviceError as error:
        raise RunFailed(f"board on {port}: {error}") from None
    finally:
        transport.client.link.close()

    counters = result.counters()
    seconds = sum(job.wall_seconds for job in result.jobs)
    cycles = counters["cycles"]
    console.print(f"{len(x)} samples, {len(result.jobs)} layer jobs in {seconds:.2f} s over "
                  f"the UART; accelerator busy {cycles:,} cycles "
                  f"({cycles / info.clock_hz * 1e3:.3f} ms at {info.clock_hz / 1e6:g} MHz), "
                  f"{counters['stall_cycles']:,} of them waiting for the host; "
                  f"{counters['ou_reads']:,} OU reads")
    if result.output_int.ndim == 2:
        console.print(f"predicted classes: {np.argmax(result.output_int, axis=1).tolist()}")
    if output_path:
        with open(output_path, "wb") as file:
            np.savez(file, output=result.output, output_int=result.output_int)
        console.print(f"wrote {output_path}")
    if check:
        from bitline.sim.golden import run_golden

        expected = run_golden(bundle.qmodel, x)
        if not np.array_equal(expected.output_int, result.output_int):
            bad = int(np.sum(np.any(expected.output_int.reshape(len(x), -1)
                                    != result.output_int.reshape(len(x), -1), axis=1)))
            raise RunFailed(f"{bad} of {len(x)} samples differ from the golden model")
        console.print("outputs equal the golden model bit for bit")
    if as_json:
        echo_json({"samples": len(x), "seconds": seconds, "counters": counters,
                   "predicted": (np.argmax(result.output_int, axis=1).tolist()
                                 if result.output_int.ndim == 2 else None),
                   "output": output_path, "checked": bool(check), "clamped": clamped})
