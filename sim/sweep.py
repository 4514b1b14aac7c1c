"""Accuracy under analog non-idealities, per mapping strategy (``bitline sweep``).

:func:`nonideal_sweep` is used by ``bitline sweep``, ``scripts/nonideal_sweep.py`` and the
tests. For each strategy it quantizes the model with the strategy's default spec
(:data:`bitline.sw.flow.DEFAULT_SPECS`, or ``--quant``), maps it, and runs the
crossbar-level executor (:func:`bitline.sim.executor.run_executor`) on the data set's test
images with an :class:`~bitline.sim.analog.AnalogDevice` for every sweep point:

* the *variation* axis: lognormal programming variation ``sigma`` in ``variations``, no
  stuck cells;
* the *stuck* axis: stuck-at rate ``p`` in ``stuck`` (``p * sa1_fraction`` stuck at 1, the
  rest at 0), no variation;
* with ``grid=True`` every ``(sigma, p)`` pair instead.

Every other non-ideality comes from the base parameters (``--params``, default ideal), so
the axes isolate the two effects. A chip is one seed: point ``k`` of ``chips`` uses chip
seed ``seed + k`` for every strategy and every point (the same cells fail, more of them as
the rate grows: :mod:`bitline.sim.analog` draws common random numbers), and the accuracy is
the mean over the chips. ``samples`` subsamples the test split with
``np.random.default_rng(seed).choice(n, samples, replace=False)`` (sorted) when the full
split would take too long.

The sweep runs on the study engine (:class:`bitline.sim.dse.engine.Engine`): one task per
strategy for the ideal (golden) predictions and one per ``(strategy, point, chip, batch of
images)`` for the analog chips. Every task is a function of its payload (chip seed, images,
parameters), so the tables are the same whatever the engine (``--serial``, a
``LocalCluster``, a cluster) and the order the tasks finish in. ``batch`` splits the images
only without read noise: the read numbers that key the noise restart at every batch.
"""

from __future__ import annotations

import hashlib
import pickle
import time
from pathlib import Path

import numpy as np

from bitline.hw.spec.program import STRATEGIES

__all__ = ["DEFAULT_VARIATIONS", "DEFAULT_STUCK", "nonideal_sweep", "sweep_points",
           "format_tables", "plot_sweep", "test_images", "chip_predictions", "sweep_task"]

#: Default lognormal programming-variation sigmas (0-20 %).
DEFAULT_VARIATIONS = (0.0, 0.05, 0.1, 0.2)
#: Default stuck-at rates (0-2 % of the cells).
DEFAULT_STUCK = (0.0, 0.005, 0.01, 0.02)


def sweep_points(variations, stuck, *, grid: bool = False) -> list[tuple[float, float]]:
    """Return the ``(variation, stuck)`` points: the two axes through (0, 0), or the grid."""
    variations = [float(v) for v in variations]
    stuck = [float(p) for p in stuck]
    if grid:
        return [(v, p) for v in variations for p in stuck]
    points = [(v, 0.0) for v in variations] + [(0.0, p) for p in stuck]
    return list(dict.fromkeys(points))


def _check_rates(name: str, values, high: float) -> list[float]:
    values = [float(v) for v in values]
    if not values:
        raise ValueError(f"--{name} needs at least one value")
    for value in values:
        if not 0.0 <= value <= high:
            raise ValueError(f"--{name} values must be between 0 and {high:g}, not {value:g}")
    return values


def nonideal_sweep(
    model,
    *,
    dataset: str = "digits",
    strategies=STRATEGIES,
    variations=DEFAULT_VARIATIONS,
    stuck=DEFAULT_STUCK,
    spec=None,
    config=None,
    params=None,
    seed: int = 0,
    chips: int = 1,
    samples: int | None = None,
    sa1_fraction: float = 0.5,
    grid: bool = False,
    progress=None,
    engine=None,
    batch: int | None = None,
) -> dict:
    """Run the executor with analog non-idealities over a sweep; return the report.

    Parameters
    ----------
    model:
        Builtin model name, ``.onnx`` path or IR :class:`~bitline.sw.frontend.ir.Model`.
    dataset:
        Data set with ``calib`` and ``test`` splits (:func:`bitline.sw.datasets.load_dataset`).
    strategies:
        Mapping strategies to compare.
    variations, stuck:
        Lognormal variation sigmas (0 .. 1) and stuck-at rates (0 .. 1).
    spec:
        Quantization spec for every strategy; default each strategy's
        :data:`~bitline.sw.flow.DEFAULT_SPECS` entry.
    config:
        :class:`~bitline.hw.spec.config.AcceleratorConfig`; default the ``bwq`` preset.
    params:
        Base :class:`~bitline.sim.analog_params.AnalogParams` (a path or example name is loaded);
        default ideal. Its ``variation`` and ``stuck_at_*`` are replaced by the sweep's.
    seed:
        First chip seed; also the seed of the test-image subsample.
    chips:
        Chips (seeds ``seed .. seed + chips - 1``) averaged per point.
    samples:
        Evaluate on this many test images (seeded subsample); default all.
    sa1_fraction:
        Share of the stuck cells stuck at 1 (low resistance); the rest stick at 0.
    grid:
        Sweep every ``(variation, stuck)`` pair instead of the two axes.
    progress:
        Optional ``callable(str)`` told about each finished point.
    engine:
        :class:`~bitline.sim.dse.engine.Engine` that runs the tasks; default serial (this
        process).
    batch:
        Images per task (default: all the images in one task per chip); only without
        read noise.

    Returns
    -------
    dict
        ``model``, ``dataset``, ``split``, ``images``, ``subsample_seed`` (or None),
        ``seed``, ``chips``, ``sa1_fraction``, ``params`` (the base), ``config`` (digest),
        ``ideal`` (strategy -> golden accuracy on the same images), ``specs`` (strategy ->
        spec) and ``points``: one dict per ``(strategy, variation, stuck)`` with
        ``accuracy`` (mean over chips), ``accuracies`` (per chip), ``agreement`` (fraction
        of predictions equal to the ideal model's, mean over chips) and ``seconds``.

    Raises
    ------
    ValueError
        For an unknown strategy, a rate out of range, bad ``chips`` / ``samples`` /
        ``batch`` (or a batch with read noise) or any error of the compile steps.
    """
    from bitline.hw.spec.config import preset
    from bitline.sim.analog_params import AnalogParams
    from bitline.sim.dse.engine import Engine
    from bitline.sw.flow import DEFAULT_SPECS
    from bitline.sw.frontend.ir import Model
    from bitline.sw.models import resolve_model

    strategies = _check_arguments(strategies, sa1_fraction, chips, seed)
    variations = _check_rates("variation", variations, 10.0)
    stuck = _check_rates("stuck", stuck, 1.0)
    if params is None:
        params = AnalogParams.ideal()
    elif not isinstance(params, AnalogParams):
        params = AnalogParams.load(params)
    # tasks carry the model's name (each worker resolves it once), or the IR model itself
    source = model if isinstance(model, Model) else str(model)
    model = model if isinstance(model, Model) else resolve_model(model)
    config = config or preset("bwq")
    _, y, subsample_seed = test_images(dataset, samples, seed)
    batches = _batches(len(y), batch, params)
    points = sweep_points(variations, stuck, grid=grid)
    specs = {s: spec if spec is not None else DEFAULT_SPECS[s] for s in strategies}
    key = source if isinstance(source, str) else hashlib.sha256(pickle.dumps(model)).hexdigest()
    base = {"model": source, "model_key": key,
            "dataset": dataset, "samples": samples, "seed": int(seed), "config": config}
    tasks = [(("ideal", s), {**base, "strategy": s, "spec": specs[s], "chip": None})
             for s in strategies]
    for s in strategies:
        for variation, rate in points:
            chip_params = params.replace(variation=variation,
                                         stuck_at_0=rate * (1.0 - sa1_fraction),
                                         stuck_at_1=rate * sa1_fraction)
            tasks += [((s, variation, rate, chip, lo), {
                **base, "strategy": s, "spec": specs[s], "params": chip_params,
                "chip": seed + chip, "images": (lo, hi)})
                for chip in range(chips) for lo, hi in batches]
    report = {
        "model": model.name, "dataset": dataset, "split": "test", "images": int(len(y)),
        "subsample_seed": subsample_seed, "seed": int(seed), "chips": int(chips),
        "sa1_fraction": float(sa1_fraction), "params": params.to_dict(),
        "config": config.digest[:16], "ideal": {}, "specs": {}, "points": [],
    }
    results = _collect((engine or Engine("serial")).run(sweep_task, tasks, name="sweep"),
                       y, chips, batches, progress)
    for strategy in strategies:
        report["ideal"][strategy] = float(np.mean(results["ideal", strategy] == y))
        report["specs"][strategy] = str(specs[strategy])
        for variation, rate in points:
            point = _sweep_point(results, strategy, variation, rate, y, chips, batches)
            report["points"].append({"strategy": strategy, "variation": variation,
                                     "stuck": rate, **point})
    return report


def _check_arguments(strategies, sa1_fraction: float, chips, seed: int) -> list[str]:
    """Validate the sweep's scalar arguments; return the strategies as a list."""
    strategies = list(strategies)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise ValueError(f"unknown strategy {', '.join(unknown) or '(none)'}; choose from "
                         f"{', '.join(STRATEGIES)}")
    if not 0.0 <= sa1_fraction <= 1.0:
        raise ValueError(f"--sa1-fraction must be between 0 and 1, not {sa1_fraction}")
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise ValueError(f"--chips must be a positive integer, not {chips!r}")
    if seed < 0:
        raise ValueError(f"--seed must be non-negative, not {seed}")
    return strategies


def test_images(dataset: str, samples: int | None, seed: int):
    """Return ``(x, y, subsample_seed)``: the test split, or a seeded subsample of it."""
    from bitline.sw.datasets import load_dataset

    x, y = load_dataset(dataset, "test")
    if samples is None:
        return x, y, None
    if samples < 1:
        raise ValueError(f"--samples must be at least 1, not {samples}")
    if samples >= len(y):
        return x, y, None
    keep = np.sort(np.random.default_rng(seed).choice(len(y), samples, replace=False))
    return x[keep], y[keep], seed


_test_images = test_images     # the name scripts/fault_table.py imports


def _batches(images: int, batch: int | None, params) -> list[tuple[int, int]]:
    """The ``(start, stop)`` image ranges of one chip's tasks."""
    if batch is None:
        return [(0, images)]
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"--batch must be a positive integer, not {batch!r}")
    if params.read_noise and batch < images:
        raise ValueError(f"--batch {batch} splits the {images} images, but read_noise = "
                         f"{params.read_noise:g}: its read numbers restart in every batch, "
                         f"so the chips would differ from one run of all the images; drop "
                         f"--batch or use read_noise = 0")
    return [(lo, min(lo + batch, images)) for lo in range(0, images, batch)]


#: Compiled strategies of this process (a worker keeps them across its tasks).
_COMPILED: dict = {}


def _compiled(payload: dict):
    """Compile the payload's model and strategy once per process (a small cache)."""
    from bitline.sw.datasets import load_dataset
    from bitline.sw.flow import compile_model

    key = (payload["model_key"], payload["strategy"], str(payload["spec"]),
           payload["config"].digest, payload["dataset"])
    if key not in _COMPILED:
        if len(_COMPILED) >= 4:
            _COMPILED.pop(next(iter(_COMPILED)))
        calib_x, _ = load_dataset(payload["dataset"], "calib")
        model = payload["model"]
        if isinstance(model, str):
            from bitline.sw.models import resolve_model

            model = resolve_model(model)
        _COMPILED[key] = compile_model(model, payload["strategy"], payload["spec"],
                                       payload["config"], calib_x)
    return _COMPILED[key]


#: Test images of this process's tasks, read-only (a worker keeps them across its tasks).
_IMAGES: dict = {}


def _task_images(payload: dict) -> np.ndarray:
    """The payload's test images, loaded once per process (loading digits takes ~0.1 s)."""
    key = (payload["dataset"], payload["samples"], payload["seed"])
    if key not in _IMAGES:
        if len(_IMAGES) >= 4:
            _IMAGES.pop(next(iter(_IMAGES)))
        x, _, _ = test_images(*key)
        x = np.array(x)                 # a copy of our own, so read-only harms no caller
        x.flags.writeable = False
        _IMAGES[key] = x
    return _IMAGES[key]


def chip_predictions(compiled, x: np.ndarray, params, seed: int) -> np.ndarray:
    """Top-1 predictions of one seeded analog chip (the crossbar-level executor)."""
    from bitline.sim.analog import AnalogDevice
    from bitline.sim.executor import run_executor

    device = AnalogDevice(compiled.program.config, params, seed=seed)
    output = run_executor(compiled.program, compiled.qmodel, x, device=device).output
    return np.asarray(output).reshape(len(x), -1).argmax(axis=1)


def sweep_task(payload: dict) -> tuple[np.ndarray, float]:
    """One task of the sweep: ``(predictions, seconds)``.

    ``chip`` ``None``: the golden model's predictions on every image; otherwise the chip
    of seed ``chip`` with ``params`` on the images ``images = (start, stop)``.
    """
    from bitline.sim.golden import run_golden

    start = time.perf_counter()
    compiled = _compiled(payload)
    x = _task_images(payload)
    if payload["chip"] is None:
        output = run_golden(compiled.qmodel, x).output
        predicted = np.asarray(output).reshape(len(x), -1).argmax(1)
    else:
        lo, hi = payload["images"]
        predicted = chip_predictions(compiled, x[lo:hi], payload["params"], payload["chip"])
    return predicted, time.perf_counter() - start


def _collect(finished, y: np.ndarray, chips: int, batches, progress) -> dict:
    """Gather the tasks' results by key; tell ``progress`` each point as it completes."""
    results, remaining = {}, {}
    for key, (predicted, seconds) in finished:
        results[key] = predicted if key[0] == "ideal" else (predicted, seconds)
        if key[0] == "ideal":
            continue
        point = key[:3]
        remaining[point] = remaining.get(point, chips * len(batches)) - 1
        if remaining[point] or progress is None:
            continue
        strategy, variation, rate = point
        runs = [np.concatenate([results[(*point, chip, lo)][0] for lo, _ in batches])
                for chip in range(chips)]
        accuracy = float(np.mean([np.mean(run == y) for run in runs]))
        took = sum(results[(*point, chip, lo)][1] for chip in range(chips) for lo, _ in batches)
        progress(f"{strategy:13s} variation {variation:5.3f} stuck {rate:6.4f}: "
                 f"accuracy {100 * accuracy:6.2f} % ({took:.1f} s)")
    return results


def _sweep_point(results: dict, strategy: str, variation: float, rate: float,
                 y: np.ndarray, chips: int, batches) -> dict:
    """Accuracy and agreement of one sweep point from its chips' batch predictions."""
    ideal_pred = results["ideal", strategy]
    accuracies, agreements, seconds = [], [], 0.0
    for chip in range(chips):
        parts = [results[strategy, variation, rate, chip, lo] for lo, _ in batches]
        predicted = np.concatenate([part[0] for part in parts])
        seconds += sum(part[1] for part in parts)
        accuracies.append(float(np.mean(predicted == y)))
        agreements.append(float(np.mean(predicted == ideal_pred)))
    return {"accuracy": float(np.mean(accuracies)), "accuracies": accuracies,
            "agreement": float(np.mean(agreements)), "seconds": seconds}


def _percent(value: float) -> str:
    text = f"{100 * value:.2f}".rstrip("0").rstrip(".")
    return f"{text} %"


def format_tables(report: dict, metric: str = "accuracy") -> str:
    """Return the report as Markdown tables (in %), one per sweep axis or per grid row.

    ``metric`` is ``"accuracy"`` (top-1; the ``ideal`` column is the golden model's on the
    same images) or ``"agreement"`` (predictions equal to the ideal model's).
    Rows are strategies.
    """
    if metric not in ("accuracy", "agreement"):
        raise ValueError(f"metric must be 'accuracy' or 'agreement', not {metric!r}")
    points = report["points"]
    strategies = list(dict.fromkeys(p["strategy"] for p in points))
    accuracy = {(p["strategy"], p["variation"], p["stuck"]): p[metric] for p in points}
    name = "Accuracy" if metric == "accuracy" else "Agreement with the ideal chip"
    variations = sorted({p["variation"] for p in points})
    rates = sorted({p["stuck"] for p in points})
    grid = len(points) == len(strategies) * len(variations) * len(rates) and \
        len(variations) > 1 and len(rates) > 1 and \
        all((s, v, r) in accuracy for s in strategies for v in variations for r in rates)

    def table(title, columns, key):
        header = ["strategy", "ideal"] + [label for label, _ in columns]
        lines = [f"{title}", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] * len(header)) + "|"]
        for strategy in strategies:
            ideal = report["ideal"][strategy] if metric == "accuracy" else 1.0
            cells = [strategy, _percent(ideal)]
            cells += [_percent(accuracy[key(strategy, value)]) if key(strategy, value) in
                      accuracy else "" for _, value in columns]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    sections = []
    if grid:
        for rate in rates:
            sections.append(table(
                f"{name}, stuck-at rate {_percent(rate)}, by variation sigma:",
                [(f"sigma {_percent(v)}", v) for v in variations],
                lambda s, v, r=rate: (s, v, r)))
    else:
        sections.append(table(
            f"{name} by conductance variation (lognormal sigma), no stuck cells:",
            [(f"sigma {_percent(v)}", v) for v in variations
             if (strategies[0], v, 0.0) in accuracy],
            lambda s, v: (s, v, 0.0)))
        sections.append(table(
            f"{name} by stuck-at rate ({_percent(report['sa1_fraction'])} of the stuck "
            f"cells at 1, the rest at 0), no variation:",
            [(f"stuck {_percent(r)}", r) for r in rates if (strategies[0], 0.0, r) in accuracy],
            lambda s, r: (s, 0.0, r)))
    images = f"{report['images']} {report['dataset']} test images"
    if report.get("subsample_seed") is not None:
        images += f" (subsample, seed {report['subsample_seed']})"
    chips = report["chips"]
    footer = (f"{report['model']}, {images}; chip seed{'s' if chips > 1 else ''} "
              f"{report['seed']}" + (f"..{report['seed'] + chips - 1} (mean)" if chips > 1
                                     else ""))
    return "\n\n".join(sections + [footer])


def plot_sweep(report: dict, path: str | Path) -> Path:
    """Plot accuracy against variation and against stuck-at rate, one line per strategy.

    Needs matplotlib (a development extra); imported here. Returns the written path.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise ValueError("--plot needs matplotlib: pip install -e \".[dev]\"") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = report["points"]
    strategies = list(dict.fromkeys(p["strategy"] for p in points))
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for strategy in strategies:
        mine = [p for p in points if p["strategy"] == strategy]
        by_var = sorted((p["variation"], p["accuracy"]) for p in mine if p["stuck"] == 0.0)
        by_stuck = sorted((p["stuck"], p["accuracy"]) for p in mine if p["variation"] == 0.0)
        for axis, data in ((axes[0], by_var), (axes[1], by_stuck)):
            if data:
                axis.plot([100 * v for v, _ in data], [100 * a for _, a in data], marker="o",
                          label=strategy)
    axes[0].set_xlabel("conductance variation sigma (%)")
    axes[1].set_xlabel("stuck-at cells (%)")
    axes[0].set_ylabel("top-1 accuracy (%)")
    for axis in axes:
        axis.grid(True, alpha=0.3)
    axes[1].legend(fontsize="small")
    images = f"{report['images']} {report['dataset']} test images"
    if report.get("chips", 1) > 1:
        images += f", mean of {report['chips']} chips"
    figure.suptitle(f"{report['model']} on a non-ideal ReRAM chip ({images})", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
