"""One point of a design-space study: compile, count, and (if asked) measure accuracy.

:func:`run_point` is the task the engine runs on a worker. Its metrics are a function of
the payload alone (the point's axes, config, seed and the study settings):

* the performance metrics (``cycles``, ``latency``, ``throughput``, ``energy``, ``area``,
  ``crossbars``) are the row :func:`~bitline.sw.flow.compare.compare_strategies` gives for
  the point's strategy alone on the point's config, without baselines: the numbers
  ``bitline compare MODEL --strategies S --no-baselines`` prints for that config. Its
  ``throughput`` is the layer pipeline at the point's ``budget`` (``own``: the crossbar
  units of one copy of each layer);
* ``accuracy``: the integer golden model's top-1 on the data set's test split (or the
  study's seeded subsample of ``samples`` images, seed = the study seed, the same images
  for every point);
* ``analog_accuracy``: the mean top-1 of ``chips`` analog chips
  (:class:`~bitline.sim.analog.AnalogDevice`, the study's ``analog`` parameters with the
  point's ``variation`` / ``stuck`` axes), chip ``k`` seeded ``point seed + k``.

A point that cannot be compiled (a ``ValueError``: a layer does not fit, a spec the
strategy cannot map) gives a row with ``error`` set and no metrics, like ``bitline explore``.
"""

from __future__ import annotations

import functools
import os
import socket
import time

import numpy as np

__all__ = ["PERF_METRICS", "point_payload", "run_point", "invalid_point_row"]

#: Metrics read from the compare row.
PERF_METRICS = ("cycles", "latency", "throughput", "energy", "area", "crossbars")


def point_payload(study, point, version: str) -> dict:
    """The task payload of ``point`` (small and picklable: no model, no data)."""
    return {"id": point.id, "axes": point.axes, "seed": point.seed, "config": point.config,
            "settings": study.settings, "metrics": list(study.metrics), "version": version}


@functools.lru_cache(maxsize=8)
def _network(name: str, dataset: str | None, calib_samples: int):
    """``(model, calib_x)`` of a network, once per worker process."""
    from bitline.sw.flow.inputs import calibration_inputs
    from bitline.sw.models import resolve_model

    model = resolve_model(name)
    calib_x, _ = calibration_inputs(model, dataset, model_name=name, samples=calib_samples)
    return model, calib_x


def _dataset(network: str, settings: dict) -> str:
    """The data set of the accuracy metrics (the study's, else the network's own)."""
    from bitline.sw.flow.inputs import model_dataset

    dataset = settings["dataset"] or model_dataset(network)
    if dataset is None:
        raise ValueError(f"accuracy of {network}: no data set; set [study] dataset")
    return dataset


def _spec(axes: dict) -> str:
    from bitline.sw.flow.compare import strategy_specs

    strategy = axes["strategy"]
    return strategy_specs([strategy])[strategy] if axes["quant"] == "default" else axes["quant"]


@functools.lru_cache(maxsize=64)
def _perf(network: str, dataset, calib_samples: int, strategy: str, budget: str, config,
          spec: str, metrics: tuple) -> tuple:
    """The performance metrics: the compare row of the point's strategy alone.

    Cached per process: points that differ only in analog axes share their hardware.
    """
    from bitline.sw.flow.compare import compare_strategies
    from bitline.sw.flow.study import METRICS

    model, calib_x = _network(network, dataset, calib_samples)
    row = compare_strategies(model, [strategy], {strategy: spec}, config=config,
                             calib_x=calib_x, baselines=False,
                             budget=None if budget == "own" else budget)[0]
    if row.get("pipeline_error") and "throughput" in metrics:
        raise ValueError(f"pipeline at budget {budget}: {row['pipeline_error']}")
    return tuple((name, row[METRICS[name][0]]) for name in metrics if name in PERF_METRICS)


@functools.lru_cache(maxsize=4)
def _compiled(network: tuple, strategy: str, spec: str, config):
    """The compiled point, once per process: points differing in analog axes share it."""
    from bitline.sw.flow import compile_model

    model, calib_x = _network(*network)
    return compile_model(model, strategy, spec, config, calib_x)


def _accuracy(network: tuple, payload: dict, spec: str, metrics) -> dict:
    """``accuracy`` (golden) and ``analog_accuracy`` (mean of the seeded chips)."""
    from bitline.sim.analog_params import AnalogParams
    from bitline.sim.golden import run_golden
    from bitline.sim.sweep import chip_predictions, test_images

    axes, settings = payload["axes"], payload["settings"]
    compiled = _compiled(network, axes["strategy"], spec, payload["config"])
    x, y, _ = test_images(_dataset(axes["network"], settings), settings["samples"],
                          settings["seed"])
    values = {}
    if "accuracy" in metrics:
        output = run_golden(compiled.qmodel, x).output
        values["accuracy"] = float(np.mean(np.asarray(output).reshape(len(y), -1)
                                           .argmax(1) == y))
    if "analog_accuracy" in metrics:
        params = AnalogParams.load(settings["analog"])
        if "variation" in axes:
            params = params.replace(variation=axes["variation"])
        if "stuck" in axes:
            params = params.replace(stuck_at_0=axes["stuck"] / 2, stuck_at_1=axes["stuck"] / 2)
        chips = [float(np.mean(chip_predictions(compiled, x, params, payload["seed"] + k) == y))
                 for k in range(settings["chips"])]
        values["analog_accuracy"] = float(np.mean(chips))
        values["analog_accuracies"] = chips
    return values


def run_point(payload: dict) -> dict:
    """Run one study point; return its store row (``id``, ``axes``, ``metrics``, ...).

    ``metrics`` holds the study's metrics (by metric name) and ``spec`` (the quantization
    spec used); ``error`` is the message of a ``ValueError`` of the point (then
    ``metrics`` holds ``spec`` only). ``seconds`` and ``worker`` say where and how long
    it ran (the only fields that differ between runs).
    """
    start = time.perf_counter()
    axes, metrics = payload["axes"], payload["metrics"]
    config = payload["config"]
    values, error = {}, None
    try:
        spec = _spec(axes)
        values["spec"] = spec
        network = (axes["network"], payload["settings"]["dataset"],
                   payload["settings"]["calib_samples"])
        if any(name in PERF_METRICS for name in metrics):
            values.update(_perf(*network, axes["strategy"], axes["budget"], config, spec,
                                tuple(metrics)))
        if "accuracy" in metrics or "analog_accuracy" in metrics:
            values.update(_accuracy(network, payload, spec, metrics))
    except ValueError as failure:
        values, error = {key: values[key] for key in ("spec",) if key in values}, str(failure)
    return {"id": payload["id"], "axes": axes, "seed": payload["seed"], "metrics": values,
            "error": error, "config_digest": config.digest[:16] if config else None,
            "bitline_version": payload["version"], "seconds": time.perf_counter() - start,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def invalid_point_row(point, version: str) -> dict:
    """The store row of a point whose config is invalid (no task runs)."""
    return {"id": point.id, "axes": point.axes, "seed": point.seed, "metrics": {},
            "error": f"invalid config: {point.error}", "config_digest": None,
            "bitline_version": version, "seconds": 0.0, "worker": None}
