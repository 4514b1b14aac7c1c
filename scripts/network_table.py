"""Whole-network runs on the RTL, per strategy, on the digits CNN and the digits ResNet.

For every strategy (``bitline compile --help``'s list) and both digits networks: compile
``--network`` (the strategy's default quantization spec) onto one shared accelerator -- the
config of ``examples/rtl/digits.toml`` with every sized field (units, entries, the
activation buffer and node capacities) the largest any of the ten compiles needs, so one
Verilator build serves them all (emulated crossbars) -- run one test image whole-network on
the Verilog (:mod:`bitline.sim.cocotb.tb_network`: the output checked against the golden
model, the run's and every node's counters against the performance model) and print:

* RTL cycles per image (the CYCLES counter: from ``RUN_NETWORK`` to the last output) and
  the model's (:func:`bitline.sw.perf.network_report`), and whether they are equal; the
  latency per image at 100 MHz;
* images/s at 100 MHz and at the FPGA clock ``--fpga-mhz`` (nodes run one at a time, one
  image at a time: ``clock / cycles``);
* the pipeline model's images/s at 100 MHz (:mod:`bitline.sw.perf.pipeline`, one copy per
  layer: ``clock / T_max``) -- a pipeline the RTL does not have yet (issue 18 item 4).

With ``--pipeline`` every (network, strategy) is compiled ``--network --pipeline`` instead
(docs/network.md section 6), ``pipeline_stages`` pinned to the CNN's node count (7) so one
design serves both networks ("every engine used": the ResNet's ten nodes are grouped onto
the seven engines), and ``--images`` images (default 4) go through each in one run. The
table then shows, per network and strategy, the RTL's LATENCY, INTERVAL and images/s at
``--fpga-mhz`` (steady state ``clock / INTERVAL``, and ``N * clock / CYCLES`` for the
batch) beside the model (``net_timing.pipeline_schedule``, through
:class:`bitline.sim.cocotb.tb_network.PipelineExpectation`), beside the sequential design's
cycles per image (``network_report`` of the same network compiled ``--network`` without the
pipeline: the section 5 table shows the RTL equal to it) and beside the stage model's
``T_max`` (``pipeline_comparison``).

``--pipeline --replicate NAME=R[,NAME=R...]`` adds layer replicas (docs/network.md
section 7): every (network, strategy) with a layer of that name (``bottleneck``: each
network's compute node with the longest job,
:func:`~bitline.sim.cocotb.tb_network.bottleneck_layer`) is compiled a second time
``--replicate`` onto the same shared design (sized for both) and run beside the
unreplicated one. A second table shows per (network, strategy) the RTL's INTERVAL and
CYCLES with replicas beside without, the model's (equal or not: every run counter), the
images/s at ``--fpga-mhz`` (``clock / INTERVAL``: with replicas taking turns by image the
last two images' gap, not the steady rate; and the batch's ``N * clock / CYCLES``) and the
model's steady cycles per image with replicas (:func:`bitline.sw.perf.pipelined_report`'s
``steady_cycles``: the mean gap over the last ``R`` outputs of a batch of ``max(N, 4R)``).
A replicated program whose replicas the pinned engines cannot each hold alone is compiled
with one engine per node onto a second design (the table's "engines" column).

Usage::

    python scripts/network_table.py [--fpga-mhz 25] [--work DIR] [--markdown]
    python scripts/network_table.py --pipeline [--images 4] [--fpga-mhz 25] [--markdown]
    python scripts/network_table.py --pipeline --strategies bwq --replicate bottleneck=2

Cost: one Verilator build of the shared design (cached by digest) and ten one-image runs
(``--pipeline``: ten runs of ``--images`` images; ``--replicate`` up to ten more).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NETWORKS = ("digits-cnn", "digits-resnet")
#: ``--pipeline``: stage engines of the shared design, the digits CNN's node count.
ENGINES = 7


def pipeline_base(base, engines: int = ENGINES):
    """``base`` with ``pipeline_stages`` pinned to ``engines`` (a config file setting it);
    the whole-network fields at 1 are sized by the compiler."""
    return base.replace(act_buffer_depth=1, max_nodes=engines, max_map_channels=1,
                        max_map_height=1, max_map_width=1, pipeline_stages=engines,
                        pinned={"pipeline_stages"})


def parse_replicate(text: str) -> dict[str, int]:
    """``--replicate NAME=R[,NAME=R...]`` as ``{name: R}`` (``bottleneck`` a name too).

    Raises
    ------
    ValueError
        For an item without ``=``, an empty name, a count that is no integer or a name
        given twice, naming the item.
    """
    counts: dict[str, int] = {}
    for item in text.split(","):
        name, sep, count = item.strip().rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"--replicate item {item.strip()!r} is not NAME=R")
        try:
            value = int(count)
        except ValueError:
            raise ValueError(f"--replicate item {item.strip()!r}: the count {count!r} is "
                             "not an integer") from None
        if name.strip() in counts:
            raise ValueError(f"--replicate names {name.strip()!r} twice")
        counts[name.strip()] = value
    return counts


def replicas_for(spec: dict[str, int], program) -> dict[str, int]:
    """``spec`` (:func:`parse_replicate`) resolved for one unreplicated pipelined
    ``program``: ``{layer name: R}`` of its layers the spec names (``bottleneck`` its
    :func:`~bitline.sim.cocotb.tb_network.bottleneck_layer`); empty when none."""
    from bitline.sim.cocotb.tb_network import bottleneck_layer

    names = {layer.name for layer in program.layers}
    counts = {name: count for name, count in spec.items() if name in names}
    if "bottleneck" in spec:
        counts[bottleneck_layer(program)] = spec["bottleneck"]
    return counts


def compile_all(strategies, base, calib, work: Path, *, pipeline: bool = False,
                replicate: dict[str, int] | None = None):
    """Compile every (network, strategy) ``--network`` (``--pipeline`` too with
    ``pipeline``) onto one shared config; with ``replicate`` (``--pipeline`` only) also
    each (network, strategy) whose layers it names ``--replicate`` (:func:`replicas_for`).

    A replicated program goes onto the shared config when the compiler can place its
    replicas on ``base``'s pinned engines; when it refuses (a replica would share an
    engine) it is compiled with one engine per node instead, onto a second shared config
    of that engine count (a second design, :func:`designs`).

    Returns ``({(network, strategy): (bundle dir, program)}, shared config,
    {(network, strategy): (bundle dir, program, {layer: R})})``.

    Raises
    ------
    ValueError
        If ``replicate`` names a layer no network has, or the compiler refuses a
        replication with one engine per node too (naming the layer and value).
    """
    from bitline.sim.cocotb.tb_network import shared_config
    from bitline.sw.bundle import write_bundle
    from bitline.sw.flow import DEFAULT_SPECS, compile_model
    from bitline.sw.models import resolve_model

    models = {name: resolve_model(name) for name in NETWORKS}

    def build(name, strategy, config, xbars, counts=None):
        extra = {"replicate": counts} if counts else {}
        return compile_model(models[name], strategy, DEFAULT_SPECS[strategy], config,
                             calib[name], xbars=xbars, network=True, pipeline=pipeline,
                             **extra)

    plain = {(name, strategy): build(name, strategy, base, "auto").program
             for name in NETWORKS for strategy in strategies}
    counts = {}
    if replicate:
        counts = {key: replicas_for(replicate, program) for key, program in plain.items()}
        counts = {key: value for key, value in counts.items() if value}
        named = {layer for value in counts.values() for layer in value}
        missing = sorted(set(replicate) - named - {"bottleneck"})
        if missing:
            raise ValueError(f"--replicate names {', '.join(missing)}: no layer of "
                             f"{' or '.join(NETWORKS)} has that name")
    # engine count -> the configs compiled for it (the sized ones)
    groups: dict[int, list] = {}
    for program in plain.values():
        groups.setdefault(program.config.pipeline_stages, []).append(program.config)
    unpinned = base.replace(pinned=frozenset(base.pinned) - {"pipeline_stages"})
    for key, value in counts.items():
        try:
            config = build(*key, base, "auto", value).program.config
        except ValueError:
            config = build(*key, unpinned, "auto", value).program.config
        groups.setdefault(config.pipeline_stages, []).append(config)
    shared = {engines: shared_config(configs) for engines, configs in groups.items()}
    bundles, replicated = {}, {}
    for key in plain:
        for folder, value in ((f"{key[0]}-{key[1]}", None),
                              (f"{key[0]}-{key[1]}-replicas", counts.get(key))):
            if folder.endswith("-replicas") and not value:
                continue
            result = None
            for config in shared.values():       # the first design it compiles onto
                try:
                    result = build(*key, config, config.n_xbars, value)
                except ValueError:
                    continue
                if result.program.config == config:
                    break
                result = None
            if result is None:
                raise RuntimeError(f"{folder}: compiles onto none of the shared configs")
            bundle = write_bundle(work / folder, result.program, result.qmodel)
            if value:
                replicated[key] = (bundle, result.program, value)
            else:
                bundles[key] = (bundle, result.program)
    return bundles, shared[base.pipeline_stages], replicated


def designs(programs) -> dict:
    """``programs`` grouped by config: ``{config digest: (config, [programs])}`` (one
    Verilator build each)."""
    grouped: dict = {}
    for program in programs:
        grouped.setdefault(program.config.digest, (program.config, []))[1].append(program)
    return grouped


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fpga-mhz", type=float, default=25.0,
                        help="FPGA clock for the images/s column (default 25, the ULX3S's)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for bundles and results (default: a temporary one)")
    parser.add_argument("--strategies", default=None,
                        help="comma-separated subset of the strategies (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--pipeline", action="store_true",
                        help="compile --network --pipeline and run --images images per run "
                             "(the inter-layer pipeline, docs/network.md section 6)")
    parser.add_argument("--images", type=int, default=4,
                        help="--pipeline: images per run (default 4)")
    parser.add_argument("--replicate", default=None, metavar="NAME=R[,NAME=R...]",
                        help="--pipeline: also compile each network with these layer "
                             "replicas (NAME a layer or 'bottleneck', the compute node with "
                             "the longest job) and run it beside the unreplicated one "
                             "(docs/network.md section 7)")
    args = parser.parse_args(argv)
    if not args.fpga_mhz > 0:
        parser.error(f"--fpga-mhz must be positive, not {args.fpga_mhz}")
    if args.images < 2:
        parser.error(f"--images must be at least 2 (an interval needs two images), not "
                     f"{args.images}")
    if args.replicate is not None:
        if not args.pipeline:
            parser.error("--replicate needs --pipeline (replicas are pipeline nodes)")
        try:
            args.replicate = parse_replicate(args.replicate)
        except ValueError as error:
            parser.error(str(error))

    from bitline.hw.spec.program import STRATEGIES
    from bitline.sim.rtl import DIGITS_CONFIG
    from bitline.sim.cocotb.tb_network import run_network_bench
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import calibration_inputs
    from bitline.sw.models import resolve_model
    from bitline.sw.perf.network import network_report, pipeline_comparison

    strategies = STRATEGIES if args.strategies is None else tuple(
        item.strip() for item in args.strategies.split(","))
    unknown = [item for item in strategies if item not in STRATEGIES]
    if unknown:
        parser.error(f"unknown strategy {', '.join(unknown)}; known: {', '.join(STRATEGIES)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="network-table-"))
    work.mkdir(parents=True, exist_ok=True)
    base = DIGITS_CONFIG          # = examples/rtl/digits.toml, nothing pinned
    calib = {name: calibration_inputs(resolve_model(name), "digits")[0] for name in NETWORKS}
    if args.pipeline:
        return pipeline_table(args, strategies, base, calib, work)
    start = time.perf_counter()
    bundles, config, _ = compile_all(strategies, base, calib, work)
    x_test, _ = load_dataset("digits", "test")
    x_path = work / "x.npy"
    np.save(x_path, np.asarray(x_test[:1], dtype=np.float32))
    runs = [{"name": f"{name}-{strategy}", "bundle": bundle, "input": x_path,
             "counters": True} for (name, strategy), (bundle, _) in bundles.items()]
    bench, results = run_network_bench(config, runs, work / "bench",
                                       programs=[program for _, program in bundles.values()])
    elapsed = time.perf_counter() - start

    header = ["network", "strategy", "RTL cycles/image", "model cycles/image", "equal",
              "latency @100 MHz (us)", "images/s @100 MHz",
              f"images/s @{args.fpga_mhz:g} MHz", "pipeline model images/s @100 MHz"]
    rows = []
    for (name, strategy), (_, program) in bundles.items():
        rtl = results[f"{name}-{strategy}"].runs[0]["cycles"]
        model = network_report(program)
        pipeline = pipeline_comparison(program)
        rows.append([name, strategy, f"{rtl:,}", f"{model.cycles:,}",
                     "yes" if rtl == model.cycles else "NO", f"{rtl / 100:,.1f}",
                     f"{100e6 / rtl:,.0f}", f"{args.fpga_mhz * 1e6 / rtl:,.0f}",
                     f"{pipeline.images_per_second(100.0):,.0f}"])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(header[i]), *(len(row[i]) for row in rows))
                  for i in range(len(header))]
        print("  ".join(text.ljust(width) for text, width in zip(header, widths)))
        for row in rows:
            print("  ".join(text.ljust(width) for text, width in zip(row, widths)))
    print(f"\nshared design: {config.n_xbars} units of {config.rows} x {config.cols}, "
          f"activation buffer {config.act_buffer_depth} codes, {config.max_nodes} node "
          f"records; emulated crossbars, {bench.simulator}, build "
          f"{'cached' if bench.cached else f'{bench.build_seconds:.0f} s'}; total "
          f"{elapsed:.0f} s wall")
    print("images/s = clock / RTL cycles per image: the RTL runs one node at a time, one "
          "image at a time; the pipeline model's column assumes the inter-layer pipeline "
          "(one image per T_max cycles), which the RTL does not have yet")
    return 0 if all(row[4] == "yes" for row in rows) else 1


def print_table(header, rows, markdown: bool) -> None:
    """Print ``rows`` under ``header``: Markdown or aligned columns."""
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    print("  ".join(text.ljust(width) for text, width in zip(header, widths)))
    for row in rows:
        print("  ".join(text.ljust(width) for text, width in zip(row, widths)))


def pipeline_table(args, strategies, base, calib, work: Path) -> int:
    """``--pipeline``: the pipelined design's table (module docstring); 0 if every RTL
    figure equals the model's."""
    from bitline.sim.cocotb.tb_network import PipelineExpectation, run_network_bench
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import DEFAULT_SPECS, compile_model
    from bitline.sw.models import resolve_model
    from bitline.sw.perf.network import network_report, pipeline_comparison

    start = time.perf_counter()
    try:
        bundles, config, replicated = compile_all(strategies, pipeline_base(base), calib,
                                                  work, pipeline=True,
                                                  replicate=args.replicate)
    except ValueError as error:
        print(f"network_table: error: {error}", file=sys.stderr)
        return 2
    x_test, _ = load_dataset("digits", "test")
    x_path = work / "x.npy"
    np.save(x_path, np.asarray(x_test[:args.images], dtype=np.float32))
    entries = [(f"{name}-{strategy}", bundle, program)
               for (name, strategy), (bundle, program) in bundles.items()]
    entries += [(f"{name}-{strategy}-replicas", bundle, program)
                for (name, strategy), (bundle, program, _) in replicated.items()]
    results, builds = {}, []
    for index, (digest, (design, programs)) in enumerate(
            designs(program for _, _, program in entries).items()):
        runs = [{"name": name, "bundle": bundle, "input": x_path, "counters": True}
                for name, bundle, program in entries if program.config.digest == digest]
        bench, found = run_network_bench(design, runs, work / f"bench-{index}",
                                         programs=programs)
        results.update(found)
        builds.append(f"{design.pipeline_stages} engines, {design.n_xbars} units: build "
                      f"{'cached' if bench.cached else f'{bench.build_seconds:.0f} s'}")
    elapsed = time.perf_counter() - start
    clock = args.fpga_mhz
    header = ["network", "strategy", "RTL latency (cycles)", "model latency",
              "RTL interval (cycles)", "model interval", "equal",
              f"latency @{clock:g} MHz (us)", f"images/s @{clock:g} MHz (1/interval)",
              f"batch of {args.images} images/s @{clock:g} MHz",
              "sequential cycles/image", f"sequential images/s @{clock:g} MHz",
              "stage model T_max (cycles)"]
    rows = []
    equal_all = True
    models = {name: resolve_model(name) for name in NETWORKS}
    for (name, strategy), (_, program) in bundles.items():
        run = results[f"{name}-{strategy}"].runs[0]
        model = PipelineExpectation(program, args.images).run_counters()
        equal = all(run[key] == model[key] for key in model)
        equal_all &= equal
        # the sequential design: the same network compiled --network alone (its RTL equals
        # network_report, docs/network.md section 5)
        sequential = compile_model(models[name], strategy, DEFAULT_SPECS[strategy], base,
                                   calib[name], xbars="auto", network=True).program
        cycles = network_report(sequential).cycles
        rows.append([name, strategy, f"{run['latency']:,}", f"{model['latency']:,}",
                     f"{run['interval']:,}", f"{model['interval']:,}",
                     "yes" if equal else "NO", f"{run['latency'] / clock:,.1f}",
                     f"{clock * 1e6 / run['interval']:,.0f}",
                     f"{args.images * clock * 1e6 / run['cycles']:,.0f}", f"{cycles:,}",
                     f"{clock * 1e6 / cycles:,.0f}",
                     f"{pipeline_comparison(program).bottleneck_cycles:,}"])
    print_table(header, rows, args.markdown)
    print(f"\nshared pipelined design: {config.pipeline_stages} stage engines, "
          f"{config.n_xbars} units of {config.rows} x {config.cols}, activation buffer "
          f"{config.act_buffer_depth} codes, {config.max_nodes} node records; emulated "
          f"crossbars, {bench.simulator}; designs: {'; '.join(builds)}; "
          f"{args.images} images per run; total {elapsed:.0f} s wall")
    print("equal: every run counter (CYCLES, LATENCY, INTERVAL, events) equals "
          "net_timing.pipeline_schedule; images/s = clock / INTERVAL in steady state")
    if replicated:
        equal_all &= replica_table(args, bundles, replicated, results)
    return 0 if equal_all else 1


def replica_table(args, bundles, replicated, results) -> bool:
    """``--replicate``: the second table (module docstring); whether every replicated
    run's counters equal the model's."""
    from bitline.sim.cocotb.tb_network import PipelineExpectation
    from bitline.sw.perf.network import pipelined_report

    def steady(program) -> int:
        return pipelined_report(program, args.images).steady_cycles

    clock = args.fpga_mhz
    header = ["network", "strategy", "replicas", "engines", "RTL interval",
              "RTL interval with replicas",
              "model interval with replicas", "equal", "RTL cycles",
              "RTL cycles with replicas", f"images/s @{clock:g} MHz (1/interval)",
              "with replicas (1/interval)", f"batch of {args.images} images/s",
              "batch with replicas", "model steady cycles/image",
              "model steady cycles/image with replicas",
              f"steady images/s @{clock:g} MHz with replicas"]
    rows, equal_all = [], True
    for (name, strategy), (_, program, counts) in replicated.items():
        plain = results[f"{name}-{strategy}"].runs[0]
        run = results[f"{name}-{strategy}-replicas"].runs[0]
        model = PipelineExpectation(program, args.images).run_counters()
        equal = all(run[key] == model[key] for key in model)
        equal_all &= equal
        period = steady(program)
        engines = (bundles[name, strategy][1].config.pipeline_stages,
                   program.config.pipeline_stages)
        rows.append([name, strategy,
                     ", ".join(f"{layer} x{count}" for layer, count in counts.items()),
                     " / ".join(f"{count}" for count in engines),
                     f"{plain['interval']:,}", f"{run['interval']:,}",
                     f"{model['interval']:,}", "yes" if equal else "NO",
                     f"{plain['cycles']:,}", f"{run['cycles']:,}",
                     f"{clock * 1e6 / plain['interval']:,.0f}",
                     f"{clock * 1e6 / run['interval']:,.0f}",
                     f"{args.images * clock * 1e6 / plain['cycles']:,.0f}",
                     f"{args.images * clock * 1e6 / run['cycles']:,.0f}",
                     f"{steady(bundles[name, strategy][1]):,}", f"{period:,}",
                     f"{clock * 1e6 / period:,.0f}"])
    print()
    print_table(header, rows, args.markdown)
    print("\nengines: the design's stage engines without / with replicas (the same design "
          "when equal; a replica the pinned engines cannot hold alone gets one engine per "
          "node); with replicas taking turns by image INTERVAL is the gap between the last "
          "two images (uneven), the model's steady cycles/image the mean gap over the last R "
          "images of a batch of max(N, 4R) (sw.perf.network.pipelined_report, on "
          "net_timing.pipeline_schedule)")
    return equal_all


if __name__ == "__main__":
    sys.exit(main())
