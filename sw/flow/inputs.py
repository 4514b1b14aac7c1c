"""Inputs of the flow: the accelerator config, the model or bundle named on the command
line, calibration inputs, run inputs and the model summary of ``bitline info``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bitline.hw.spec.config import PRESETS, AcceleratorConfig, preset

__all__ = ["DEFAULT_PRESET", "CALIB_SEED", "SYNTHETIC_CALIB_SAMPLES", "BUNDLE_MANIFEST",
           "Target", "load_config", "preset_summary", "parse_xbars", "is_synthetic",
           "model_dataset", "require_dataset", "resolve_target", "calibration_inputs",
           "model_labels", "model_summary", "load_input", "InputError", "InputClampWarning",
           "check_input", "input_range", "count_clamped", "report_clamped"]

#: Preset used when neither ``--config`` nor ``--preset`` is given.
DEFAULT_PRESET = "bwq"

#: Seed and sample count of the random calibration inputs of synthetic models.
CALIB_SEED = 0
SYNTHETIC_CALIB_SAMPLES = 16
#: File that marks a directory as a compiled program bundle.
BUNDLE_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Target:
    """What ``MODEL`` on the command line names: a float IR model or a compiled bundle.

    Attributes
    ----------
    spec:
        The argument as typed.
    model:
        The IR model, when ``spec`` is a builtin name or an ``.onnx`` file.
    bundle:
        The bundle directory, when ``spec`` is one (it holds ``manifest.json``).
    """

    spec: str
    model: object = None
    bundle: Path | None = None

    @property
    def kind(self) -> str:
        """``"model"`` or ``"bundle"``."""
        return "bundle" if self.bundle is not None else "model"

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Input shape without batch, or ``None`` when the backend checks it itself."""
        return tuple(self.model.input_shape) if self.model is not None else None

    def require(self, kind: str, user: str):
        """Return the model (``kind="model"``) or bundle path (``"bundle"``).

        ``user`` names who asks (e.g. ``"backend 'float'"``) for the ``ValueError`` raised
        when the target is of the other kind.
        """
        if kind != self.kind:
            wanted = {"model": "a model (builtin name or .onnx file)",
                      "bundle": "a compiled bundle directory"}
            raise ValueError(f"{user} needs {wanted[kind]}, but {self.spec!r} is "
                             f"{wanted[self.kind]}")
        return self.model if kind == "model" else self.bundle


# ------------------------------------------------------------------------ inputs
def load_config(config_path: str | Path | None = None,
                preset_name: str | None = None) -> AcceleratorConfig:
    """Return the accelerator config from a TOML file or a preset (default ``bwq``).

    Raises
    ------
    ValueError
        If both a file and a preset are given, the preset is unknown or the file is invalid.
    """
    if config_path is not None and preset_name is not None:
        raise ValueError("give either --config or --preset, not both")
    if config_path is not None:
        return AcceleratorConfig.load(config_path)
    return preset(preset_name or DEFAULT_PRESET)


def preset_summary(name: str) -> str:
    """Return a one-line description of preset ``name`` (geometry, cells, OU, ADCs)."""
    config = PRESETS[name]
    return (f"{config.rows}x{config.cols} crossbars, {config.cell_bits}-bit cells, "
            f"{config.dac_bits}-bit DAC, {config.ou_rows}x{config.ou_cols} OU, "
            f"{config.adcs_per_xbar} x {config.adc_bits}-bit ADC per crossbar, "
            f"{config.max_weight_bits}-bit weights")


def parse_xbars(value: str | int) -> str | int:
    """Return ``"auto"`` or a positive crossbar count from a ``--xbars`` value.

    Raises
    ------
    ValueError
        If ``value`` is neither ``auto`` nor a positive integer.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif str(value).strip().lower() == "auto":
        return "auto"
    else:
        try:
            count = int(str(value).strip())
        except ValueError:
            raise ValueError(f"--xbars must be 'auto' or a positive integer, not {value!r}") \
                from None
    if count < 1:
        raise ValueError(f"--xbars must be 'auto' or a positive integer, not {value!r}")
    return count


def is_synthetic(model_name: str) -> bool:
    """True for the builtin models with generated weights and no data set."""
    from bitline.sw.models import BUILTIN_MODELS

    builtin = BUILTIN_MODELS.get(str(model_name))
    return builtin is not None and builtin.generator is not None


#: File-name prefix of an ``.onnx`` model -> the data set it is taken to be trained on (the
#: shipped files keep these names when copied out of the package).
_DATASET_PREFIXES = (("digits", "digits"), ("mnist", "mnist5k"))


def model_dataset(model_name: str | None) -> str | None:
    """Return the data set a model declares, or ``None`` for a model without one.

    A builtin model declares it (:attr:`bitline.sw.models.BuiltinModel.dataset`:
    ``digits`` for ``digits-*``, ``mnist5k`` for ``mnist-*``, none for synthetic models);
    an ``.onnx`` file whose name starts with ``digits`` or ``mnist`` is taken to be one of
    the shipped models (``digits`` / ``mnist5k``).
    """
    from bitline.sw.models import BUILTIN_MODELS

    if not model_name:
        return None
    builtin = BUILTIN_MODELS.get(str(model_name))
    if builtin is not None:
        return builtin.dataset
    file_name = Path(str(model_name)).name
    for prefix, dataset in _DATASET_PREFIXES:
        if file_name.startswith(prefix):
            return dataset
    return None


def require_dataset(model_name: str, dataset: str | None) -> str:
    """Return ``dataset``, or the one ``model_name`` declares when ``dataset`` is ``None``.

    Raises
    ------
    ValueError
        If neither is given (e.g. a synthetic model without ``--dataset``).
    """
    from bitline.sw.datasets import DATASETS

    chosen = dataset if dataset is not None else model_dataset(model_name)
    if chosen is None:
        raise ValueError(f"model {model_name!r} declares no data set; give --dataset (one of "
                         f"{', '.join(sorted(DATASETS))})")
    return chosen


def resolve_target(spec: str) -> Target:
    """Resolve a ``MODEL`` argument: bundle directory, builtin name or ``.onnx`` path.

    Raises
    ------
    ValueError
        For a directory without ``manifest.json``, an unknown name or an ONNX import error.
    """
    from bitline.sw.models import resolve_model

    path = Path(spec)
    if path.is_dir():
        if not (path / BUNDLE_MANIFEST).is_file():
            raise ValueError(f"{spec}: a directory but not a compiled bundle "
                             f"(no {BUNDLE_MANIFEST})")
        return Target(str(spec), bundle=path)
    return Target(str(spec), model=resolve_model(str(spec)))


def calibration_inputs(model, dataset: str | None = None, *, model_name: str | None = None,
                       samples: int = SYNTHETIC_CALIB_SAMPLES, seed: int = CALIB_SEED):
    """Return ``(calib_x, label)``: calibration inputs for ``model`` and where they came from.

    Parameters
    ----------
    model:
        The IR model (its ``input_shape`` sizes random inputs).
    dataset:
        A data set name (its ``calib`` split is used); ``None`` picks the data set the
        model declares (:func:`model_dataset`: ``digits`` for ``digits-*``, ``mnist5k``
        for ``mnist-*``) and seeded random inputs for a model without one.
    model_name:
        The name the model was resolved from (default ``model.name``).
    samples, seed:
        Size and seed of the random inputs: uniform in ``[0, 1)`` (non-negative, like
        normalized images), float32, shape ``(samples, *model.input_shape)``.

    Returns
    -------
    calib_x, label
        ``label`` is ``"digits/calib"`` or ``"random(seed=0, n=16)"``.
    """
    name = model_name or str(getattr(model, "name", "") or "")
    if dataset is None:
        dataset = model_dataset(name)
    if dataset is not None:
        from bitline.sw.datasets import load_dataset

        x, _ = load_dataset(dataset, "calib")
        return np.asarray(x, dtype=np.float32), f"{dataset}/calib"
    if samples < 1:
        raise ValueError(f"calibration samples must be at least 1, not {samples}")
    from bitline.sw.quant.calibrate import check_calibration_size

    check_calibration_size(model, samples)      # before allocating the random inputs
    rng = np.random.default_rng(seed)
    x = rng.random((samples, *model.input_shape), dtype=np.float32)
    return x, f"random(seed={seed}, n={samples})"


def model_labels(model_name: str, calib_label: str) -> dict:
    """Return the report labels: model, calibration source, ``weights="synthetic"``."""
    labels = {"model": model_name, "calibration": calib_label}
    if is_synthetic(model_name):
        labels["weights"] = "synthetic"
    return labels


def model_summary(model) -> dict:
    """Return the per-layer summary that ``bitline info --json`` prints.

    Keys: ``model``, ``source``, ``input_shape``, ``output_shape``, ``layers`` (each with
    ``name``, ``op``, ``activation``, ``input_shape``, ``output_shape``, ``weights`` (weight
    elements, biases excluded) and ``macs`` (per sample)), ``total_weights``, ``total_macs``.
    """
    layers = [{
        "name": layer.name, "op": layer.op, "activation": layer.activation,
        "input_shape": list(layer.input_shape), "output_shape": list(layer.output_shape),
        "weights": int(layer.weight.size) if layer.weight is not None else 0,
        "macs": int(layer.macs),
    } for layer in model.layers]
    return {
        "model": model.name, "source": model.source,
        "input_shape": list(model.input_shape), "output_shape": list(model.output_shape),
        "layers": layers,
        "total_weights": sum(layer["weights"] for layer in layers),
        "total_macs": sum(layer["macs"] for layer in layers),
    }


class InputError(ValueError):
    """An input array that cannot be run: wrong kind, shape, empty, NaN / Inf, or (strict)
    values outside the calibrated input range."""


class InputClampWarning(UserWarning):
    """Input values outside the calibrated range were clamped (``bitline run`` prints it)."""


def _expected(input_shape) -> str:
    if input_shape is None:
        return "a real numeric array (N, *input_shape)"
    return f"a real numeric array of shape ({', '.join(['N', *map(str, input_shape)])})"


def check_input(x, input_shape: tuple[int, ...] | None, source: str = "input") -> np.ndarray:
    """Validate an input batch at the boundary; return it as float32 ``(N, *input_shape)``.

    Accepted: a real numeric (integer, float or bool) array of shape ``(N, *input_shape)``
    with ``N >= 1``, or one sample of shape ``input_shape`` (given a batch axis of 1), all of
    whose values are finite in float32. ``input_shape=None`` skips the shape check.

    Raises
    ------
    InputError
        Naming ``source``, what is expected and what was found: a complex, object, string
        or structured dtype; no elements; a wrong shape; NaN or +/-Inf values (counted, with
        the index of the first), also values that overflow float32.
    """
    x = np.asarray(x)
    expected = _expected(input_shape)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
            or x.dtype == np.bool_):
        raise InputError(f"{source}: input must be {expected}, found dtype {x.dtype} "
                         f"(shape {tuple(x.shape)})")
    if x.size == 0 or x.ndim == 0:
        raise InputError(f"{source}: input must be {expected} with N >= 1, found an "
                         f"{'empty array' if x.size == 0 else 'array scalar'} of shape "
                         f"{tuple(x.shape)}")
    if input_shape is not None:
        input_shape = tuple(int(size) for size in input_shape)
        if tuple(x.shape) == input_shape:
            x = x[None]
        elif tuple(x.shape[1:]) != input_shape:
            raise InputError(f"{source}: input has shape {tuple(x.shape)}; the model expects "
                             f"({', '.join(['N', *map(str, input_shape)])}) or a single "
                             f"sample {input_shape}")
    with np.errstate(over="ignore"):
        values = np.asarray(x, dtype=np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        kinds = [(np.isnan(values).sum(), "NaN"), (np.isposinf(values).sum(), "+Inf"),
                 (np.isneginf(values).sum(), "-Inf")]
        found = ", ".join(f"{int(count)} {name}" for count, name in kinds if count)
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        note = "" if not np.isfinite(x[first]) else " (the value overflows float32)"
        raise InputError(f"{source}: input must be {expected} of finite values, found "
                         f"{found} of {values.size} (first at index {first}: "
                         f"{float(x[first]):g}){note}")
    return values


def input_range(act) -> tuple[float, float]:
    """Return the real interval ``[lo, hi]`` the input codes of ``act`` (ActParams) cover."""
    return (float(act.scale * (0 - act.zero_point)),
            float(act.scale * (act.qmax - act.zero_point)))


def count_clamped(x: np.ndarray, act) -> int:
    """Return how many values of ``x`` the input quantizer clamps.

    The quantizer (:func:`bitline.sw.integer.arith.quantize_input`, as the hardware's input
    codes) computes ``rint(x / scale) + zero_point`` and clips it to ``[0, 2**bits - 1]``;
    this counts the values whose unclipped code falls outside that range.
    """
    codes = np.rint(np.asarray(x, dtype=np.float64) / act.scale) + act.zero_point
    return int(np.count_nonzero((codes < 0) | (codes > act.qmax)))


def report_clamped(x: np.ndarray, act, *, source: str = "input", strict: bool = False,
                   warn=None) -> int:
    """Count the values of ``x`` the input quantizer ``act`` clamps and report them.

    The count (:func:`count_clamped`) goes to ``warn(message)`` (default: ``warnings.warn``
    with :class:`InputClampWarning`), or with ``strict`` is an :class:`InputError`; the
    message names ``source``, the count and the calibrated range. Returns the count. Every
    command that runs a bundle on inputs (``bitline run``, ``bitline board run``) calls it.
    """
    clamped = count_clamped(x, act)
    if clamped:
        lo, hi = input_range(act)
        message = (f"{source}: {clamped} of {x.size} input values lie outside the calibrated "
                   f"input range [{lo:.6g}, {hi:.6g}] (input scale {act.scale:.6g}, zero "
                   f"point {act.zero_point}, {act.bits} bits) and are clamped to it, as the "
                   "hardware does")
        if strict:
            raise InputError(f"{message} (strict: refused)")
        if warn is not None:
            warn(message)
        else:
            import warnings

            warnings.warn(message, InputClampWarning, stacklevel=3)
    return clamped


def load_input(path: str | Path, input_shape: tuple[int, ...] | None, *,
               check: bool = True) -> np.ndarray:
    """Load an input batch from ``.npy`` (or ``.npz`` with key ``input`` or one array).

    An array of exactly ``input_shape`` is one sample and gets a batch axis of 1. Returns
    float32 ``(N, *input_shape)``, checked by :func:`check_input`; with ``check=False`` the
    array as stored (the caller checks it, e.g. against a bundle's input shape once the
    bundle is authenticated). Raises ``ValueError`` (:class:`InputError`) naming the file,
    what is expected and what was found.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such input file")
    expected = _expected(input_shape)
    try:
        loaded = np.load(file, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.keys())
                if "input" in keys:
                    key = "input"
                elif len(keys) == 1:
                    key = keys[0]
                else:
                    raise InputError(f"{path}: .npz needs an array named 'input', has {keys}")
                x = loaded[key]
        else:
            x = loaded
    except InputError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):    # numpy refuses object arrays without pickle
            raise InputError(f"{path}: input must be {expected}, found an object array "
                             "(dtype object)") from None
        raise InputError(f"{path}: not a numpy .npy/.npz file ({error})") from None
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: not a numpy .npy/.npz file ({error})") from None
    return check_input(x, input_shape, str(path)) if check else x
