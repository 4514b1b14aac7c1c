"""Design-space study files (``bitline dse STUDY.toml``): parsing, axes expansion, digests.

The pure half of the study engine (no simulator: :mod:`bitline.sim.dse` runs the points).
A study file is TOML::

    [study]
    name = "ou-size"             # label of tables and plots (default: the file's stem)
    seed = 0                     # study seed: every point's seed derives from it
    preset = "bwq"               # base AcceleratorConfig (or config = "base.toml")
    adc = "exact"                # adc_bits follows the point (exact) or stays (fixed)
    metrics = ["cycles", "energy", "area", "accuracy"]
    dataset = "digits"           # accuracy metrics: data set (default: the network's)
    samples = 200                # accuracy on a seeded subsample of the test split
    chips = 3                    # analog_accuracy: chips per point
    analog = "typical"           # analog_accuracy: base analog parameters

    [axes]
    network = ["digits-cnn"]     # builtin name or .onnx path (relative to the study file)
    strategy = ["isaac", "bwq"]
    quant = ["default"]          # "default": each strategy's own spec; or a spec
    ou = ["9x8", "16x16"]        # ROWSxCOLS pairs (ou_rows, ou_cols); xbar likewise
    adc_bits = [4, 5, 6]         # any AcceleratorConfig field

Every axis is a list; the points are the Cartesian product of the axes in file order. The
axes are :data:`SPECIAL_AXES` (``network``, ``strategy``, ``quant``, ``budget``, and the
analog ``variation`` / ``stuck``), the pairs :data:`PAIR_AXES` (``ou``, ``xbar``) and every
integer or float field of :class:`~bitline.hw.spec.config.AcceleratorConfig`. A point's
config is the base with its hardware values replaced and, as in ``bitline explore``
(:mod:`bitline.sw.flow.explore`), ``adc_bits`` following (``adc = "exact"``, unless
``adc_bits`` is an axis) and ``adcs_per_xbar`` following the OU width (unless an axis).

Identity: a point's id is the first 16 hex digits of the SHA-256 of its axes as canonical
JSON (sorted keys); its seed is ``int(sha256(f"{study seed}/{point id}")[:8], 16)``, so it
depends on the study seed and the point's own axes, never on the order points are scheduled
in. The study digest hashes the canonical settings, axes, metrics and the base config: a
results store remembers it, and a store is never shared by two different studies.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from bitline.hw.spec.config import AcceleratorConfig
from bitline.hw.spec.program import STRATEGIES
from bitline.hw.spec.toml_file import read_toml

__all__ = ["METRICS", "SPECIAL_AXES", "PAIR_AXES", "Study", "Point", "load_study",
           "parse_study", "canonical_digest", "point_seed"]

#: Metric name -> (row key, unit, better: "min" or "max").
METRICS: dict[str, tuple[str, str, str]] = {
    "cycles": ("cycles", "cycles/image", "min"),
    "latency": ("latency_s", "s/image", "min"),
    "throughput": ("throughput_ips", "images/s", "max"),
    "energy": ("energy_pj", "pJ/image", "min"),
    "area": ("area_mm2", "mm2", "min"),
    "crossbars": ("crossbars", "units", "min"),
    "accuracy": ("accuracy", "top-1", "max"),
    "analog_accuracy": ("analog_accuracy", "top-1", "max"),
}

#: Axes that are not config fields: what each value is.
SPECIAL_AXES = {
    "network": "a builtin model name or an .onnx path",
    "strategy": "a mapping strategy (" + ", ".join(STRATEGIES) + ")",
    "quant": "a quantization spec, or 'default' (the strategy's own)",
    "budget": "a pipeline budget: 'own' (the point's crossbars), 'xbars:N' or 'area:MM2'",
    "variation": "a lognormal conductance-variation sigma (analog_accuracy)",
    "stuck": "a stuck-at rate, half at 0 and half at 1 (analog_accuracy)",
}

#: Paired axes: one ``ROWSxCOLS`` value sets two config fields (``xbar`` also takes ``N``).
PAIR_AXES = {"ou": ("ou_rows", "ou_cols"), "xbar": ("rows", "cols")}

#: ``[study]`` keys and their defaults.
_SETTINGS = {"name": None, "seed": 0, "preset": None, "config": None, "adc": "exact",
             "metrics": ["cycles", "energy", "area"], "dataset": None, "samples": None,
             "chips": 1, "analog": "ideal", "calib_samples": 16}

#: Fixed axis values when an axis is absent.
_DEFAULT_AXES = {"network": "digits-cnn", "strategy": "bwq", "quant": "default",
                 "budget": "own"}


def canonical_digest(value) -> str:
    """Return the SHA-256 hex digest of ``value`` as canonical JSON (sorted keys)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def point_seed(study_seed: int, point_id: str) -> int:
    """Return a point's seed: 32 bits of ``sha256(f"{study_seed}/{point_id}")``."""
    return int(hashlib.sha256(f"{study_seed}/{point_id}".encode()).hexdigest()[:8], 16)


@dataclass(frozen=True)
class Point:
    """One point of a study: its axes, id, seed and config (``None`` if invalid).

    ``axes`` holds every axis value (the absent special axes at their defaults);
    ``error`` says why the point's config is invalid (then ``config`` is ``None``).
    """

    id: str
    axes: dict
    seed: int
    config: AcceleratorConfig | None
    error: str | None = None


@dataclass(frozen=True)
class Study:
    """A parsed study: settings, axes (name -> values), metrics, base config, points."""

    path: str
    name: str
    settings: dict
    axes: dict
    metrics: tuple[str, ...]
    base_config: AcceleratorConfig
    points: list[Point] = field(repr=False)

    @property
    def digest(self) -> str:
        """The study digest: settings, axes, metrics and base config (not the file bytes)."""
        return canonical_digest({"settings": self.settings, "axes": self.axes,
                                 "metrics": list(self.metrics),
                                 "config": self.base_config.to_dict()})

    def to_dict(self) -> dict:
        """The study as JSON-ready data (what a results store records)."""
        return {"path": self.path, "name": self.name, "settings": self.settings,
                "axes": self.axes, "metrics": list(self.metrics),
                "base_config": self.base_config.to_dict(), "digest": self.digest,
                "points": len(self.points)}


def load_study(path: str | Path) -> Study:
    """Read and check a study file; every error names the file, the axis and the value.

    ``path`` may also name a shipped example (``ou_size``, ``adc_bits``, ``bits``,
    ``cluster``: ``examples/dse/``).

    Raises
    ------
    ValueError
        A missing or malformed file, an unknown key, axis, metric or strategy, an empty
        axis or a value of the wrong type.
    """
    path = _example(Path(path))
    return parse_study(read_toml(path, "study file"), source=str(path), root=path.parent)


def _example(path: Path) -> Path:
    """``path``, or the shipped example study of that name (``ou_size``) if no such file."""
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    from importlib.resources import files

    shipped = Path(str(files("bitline.examples.dse") / f"{path.name}.toml"))
    return shipped if shipped.is_file() else path


def parse_study(data: dict, *, source: str = "<study>", root: Path | None = None) -> Study:
    """Check a study's TOML data and expand its points (see :func:`load_study`)."""
    from bitline.sw.flow.inputs import load_config

    unknown = set(data) - {"study", "axes"}
    if unknown:
        raise ValueError(f"{source}: unknown table {sorted(unknown)[0]!r}; a study has "
                         f"[study] and [axes]")
    settings = _settings(data.get("study", {}), source, root)
    try:
        base = load_config(settings["config"], settings["preset"])
    except ValueError as error:
        raise ValueError(f"{source}: [study] config: {error}") from None
    axes = _axes(data.get("axes", {}), source, root, base)
    name = settings["name"] or (Path(source).stem if source != "<study>" else "study")
    points = [_point(combo, settings, base) for combo in _combinations(axes)]
    return Study(source, name, settings, axes, tuple(settings["metrics"]), base, points)


def _settings(table: dict, source: str, root: Path | None) -> dict:
    """Return the ``[study]`` settings with defaults, each checked."""
    if not isinstance(table, dict):
        raise ValueError(f"{source}: [study] must be a table")
    unknown = set(table) - set(_SETTINGS)
    if unknown:
        raise ValueError(f"{source}: [study] unknown key {sorted(unknown)[0]!r}; known: "
                         f"{', '.join(_SETTINGS)}")
    settings = {**_SETTINGS, **table}

    def need(key, kind, check=lambda v: True, what=""):
        value = settings[key]
        if value is None and _SETTINGS[key] is None:
            return
        if isinstance(value, bool) or not isinstance(value, kind) or not check(value):
            raise ValueError(f"{source}: [study] {key} = {value!r}: expected {what}")

    need("seed", int, lambda v: v >= 0, "a non-negative integer")
    need("chips", int, lambda v: v >= 1, "a positive integer")
    need("samples", int, lambda v: v >= 1, "a positive integer")
    need("calib_samples", int, lambda v: v >= 1, "a positive integer")
    for key in ("name", "preset", "config", "dataset", "analog"):
        need(key, str, what="a string")
    need("adc", str, lambda v: v in ("exact", "fixed"), "'exact' or 'fixed'")
    metrics = settings["metrics"]
    if not isinstance(metrics, list) or not metrics:
        raise ValueError(f"{source}: [study] metrics = {metrics!r}: expected a non-empty list")
    for metric in metrics:
        if metric not in METRICS:
            raise ValueError(f"{source}: [study] metrics: unknown metric {metric!r}; choose "
                             f"from {', '.join(METRICS)}")
    if settings["config"] is not None and root is not None:
        settings["config"] = str((root / settings["config"]).resolve())
    if settings["analog"] not in ("ideal", "typical") and root is not None:
        settings["analog"] = str((root / settings["analog"]).resolve())
    return settings


def _axes(table: dict, source: str, root: Path | None, base: AcceleratorConfig) -> dict:
    """Return the axes (name -> list of values), each value checked."""
    if not isinstance(table, dict):
        raise ValueError(f"{source}: [axes] must be a table")
    fields = {name: type(value) for name, value in base.to_dict().items()}
    axes = {}
    for name, values in table.items():
        where = f"{source}: axis {name!r}"
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}: expected a non-empty list of values, not {values!r}")
        if name not in SPECIAL_AXES and name not in PAIR_AXES and name not in fields:
            raise ValueError(f"{where}: unknown axis; choose from {', '.join(SPECIAL_AXES)}, "
                             f"{', '.join(PAIR_AXES)} or an AcceleratorConfig field "
                             f"({', '.join(fields)})")
        if len(set(map(str, values))) != len(values):
            raise ValueError(f"{where}: repeated value in {values!r}")
        axes[name] = [_axis_value(name, value, where, root, fields) for value in values]
    for pair, members in PAIR_AXES.items():
        if pair in axes and any(member in axes for member in members):
            raise ValueError(f"{source}: axis {pair!r} sets {' and '.join(members)}; do not "
                             f"list them as axes too")
    return axes


def _axis_value(name: str, value, where: str, root: Path | None, fields: dict):
    """Check (and normalize) one value of axis ``name``."""
    bad = f"{where}: value {value!r} is not {SPECIAL_AXES.get(name, '')}".rstrip()
    if name == "strategy":
        if value not in STRATEGIES:
            raise ValueError(bad)
        return value
    if name == "network":
        if not isinstance(value, str):
            raise ValueError(bad)
        is_file = value.endswith(".onnx")
        return str((root / value).resolve()) if is_file and root is not None else value
    if name in ("quant", "budget"):
        if not isinstance(value, str):
            raise ValueError(bad)
        if value != _DEFAULT_AXES[name]:          # "default" spec, "own" budget
            try:
                _text_checker(name)(value)
            except ValueError as error:
                raise ValueError(f"{where}: value {value!r}: {error}") from None
        return value
    if name in ("variation", "stuck"):
        high = 10.0 if name == "variation" else 1.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0 <= value <= high:
            raise ValueError(f"{bad}, between 0 and {high:g}")
        return float(value)
    if name in PAIR_AXES:
        parts = str(value).lower().split("x")
        if name == "xbar" and len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"{where}: value {value!r} is not ROWSxCOLS")
        return f"{int(parts[0])}x{int(parts[1])}"
    kind = fields[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (kind is int and not isinstance(value, int)):
        raise ValueError(f"{where}: value {value!r} is not a{'n integer' if kind is int else ' number'}")
    return value


def _text_checker(name: str):
    """The parser that checks a ``quant`` spec or a ``budget`` (raises ``ValueError``)."""
    if name == "quant":
        from bitline.sw.quant import load_spec

        return load_spec
    from bitline.sw.perf.pipeline import parse_budget

    return parse_budget


def _combinations(axes: dict):
    """Yield every point's axes: the Cartesian product, absent special axes at defaults."""
    names = list(axes)
    for combo in itertools.product(*(axes[name] for name in names)):
        yield {**_DEFAULT_AXES, **dict(zip(names, combo))}


def _point(axes: dict, settings: dict, base: AcceleratorConfig) -> Point:
    """Return the point of ``axes``: id, seed and config (or the config's error)."""
    point_id = canonical_digest(axes)[:16]
    seed = point_seed(settings["seed"], point_id)
    try:
        config = point_config(base, axes, settings["adc"])
    except ValueError as error:
        return Point(point_id, axes, seed, None, str(error))
    return Point(point_id, axes, seed, config)


def point_config(base: AcceleratorConfig, axes: dict, adc: str = "exact") -> AcceleratorConfig:
    """Return the config of a point: hardware axes replaced, ADC fields following.

    Raises
    ------
    ValueError
        If the point's config is invalid (the :class:`AcceleratorConfig` message).
    """
    from bitline.sw.flow.explore import exact_adc_bits

    changes = {}
    for name, value in axes.items():
        if name in PAIR_AXES:
            rows, cols = (int(part) for part in value.split("x"))
            changes.update(zip(PAIR_AXES[name], (rows, cols)))
        elif name not in SPECIAL_AXES:
            changes[name] = value
    if "ou_cols" in changes and "adcs_per_xbar" not in changes:
        # the same conversions per read as the base (bitline explore ou)
        changes["adcs_per_xbar"] = max(1, -(-changes["ou_cols"] // base.conversions_per_read))
    if adc == "exact" and "adc_bits" not in changes:
        values = {**base.to_dict(), **changes}
        changes["adc_bits"] = exact_adc_bits(values["ou_rows"], values["cell_bits"],
                                             values["dac_bits"])
    return base.replace(**changes)
