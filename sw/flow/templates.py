"""Starting points to edit: a per-layer quantization spec for a model (``bitline quant
template``)."""

from __future__ import annotations

import json

__all__ = ["quant_template"]


def _toml_value(value) -> str:
    """TOML literal of a spec value (str, bool, int, float or a list of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)            # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise ValueError(f"cannot write {value!r} as TOML")


def _table(header: str, values: dict) -> list[str]:
    return [f"[{header}]"] + [f"{key} = {_toml_value(value)}" for key, value in values.items()]


def quant_template(model, base="int8", *, model_name: str | None = None) -> str:
    """Return a TOML quantization spec listing every compute layer of ``model``.

    The spec is ``base`` (a fixed-mode spec: file or shorthand such as ``int8``, ``int4``,
    ``pot4``) with one ``[layers."NAME"]`` table per compute layer holding the base weight
    rule, to edit layer by layer. :func:`bitline.sw.quant.load_spec` reads it back, and
    unedited it quantizes exactly as ``base`` does.

    Raises
    ------
    ValueError
        If ``base`` is invalid or not a fixed-mode spec (varied and BWQ choose the widths
        themselves).
    """
    from bitline.sw.quant import load_spec

    spec = load_spec(base)
    if spec.mode != "fixed":
        raise ValueError(f"--quant {base}: a template starts from a fixed-mode spec (int8, "
                         f"int4, pot4, ...), not mode {spec.mode!r}")
    data = spec.to_dict()
    name = model_name or model.name
    lines = [f"# Per-layer quantization spec for {name}, from {spec.name!r}: edit a layer's",
             "# scheme / bits / granularity, or add [[layers.\"NAME\".channels]] for some",
             "# output channels (docs/quantization.md). Unedited it quantizes as the base.",
             f"name = {_toml_value(f'{name}-{spec.name}')}", f"mode = {_toml_value('fixed')}",
             ""]
    for key, value in data.items():
        if isinstance(value, dict) and key != "layers":
            lines += _table(key, value) + [""]
    weights = data["weights"]
    for layer in model.compute_layers:
        rule = dict(weights, **data.get("layers", {}).get(layer.name, {}))
        shape = "x".join(map(str, layer.weight.shape))
        lines.append(f"# {layer.op}, weights {shape}")
        lines += _table(f"layers.{json.dumps(layer.name)}", rule) + [""]
    return "\n".join(lines).rstrip() + "\n"
