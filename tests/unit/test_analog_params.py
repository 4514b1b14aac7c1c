"""The ``[analog]`` file reader refuses unknown keys: Python API and `bitline run --analog`."""

from __future__ import annotations

import numpy as np
import pytest

from bitline.sim.analog_params import AnalogParams
from bitline.sw.cli import main

from support.networks import tiny_mlp_onnx

#: Every key a parameter file may set, as the errors list them.
KNOWN = ("adc_gain_error, adc_offset, g_off_us, g_on_us, ir_drop, on_off_ratio, read_noise, "
         "stuck_at_0, stuck_at_1, variation")


def _write(tmp_path, text: str):
    path = tmp_path / "chip.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[analog]\nread_nosie = 0.01\n",
     "unknown field(s) read_nosie in [analog] (did you mean read_noise?); known fields are "
     + KNOWN),
    ("ir_dorp = 0.1\nxyz = 1\n",
     "unknown field(s) ir_dorp, xyz in the top level (did you mean ir_drop?); known fields "
     "are " + KNOWN),
    ("read_noise = 0.01\n[analog]\nvariation = 0.1\n",
     "key(s) read_noise outside the [analog] table; put every field inside it"),
    ("[analog]\nvariation = 0.1\n[extra]\nread_noise = 0.01\n",
     "key(s) extra outside the [analog] table; put every field inside it"),
    ("[analogue]\nread_noise = 0.01\n",
     "unknown table [analogue]; the fields go in an [analog] table (or at the top level)"),
    ("analog = 3\n", "[analog] must be a table, not 3"),
])
def test_the_python_api_refuses_unknown_keys(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as error:
        AnalogParams.load(path)
    assert str(error.value) == f"{path}: {message}"


def test_a_file_of_known_keys_loads_in_either_layout(tmp_path):
    table = AnalogParams.load(_write(tmp_path, "[analog]\nread_noise = 0.01\n"))
    top = AnalogParams.load(_write(tmp_path, "read_noise = 0.01\n"))
    assert table == top == AnalogParams(read_noise=0.01)
    with pytest.raises(ValueError, match=r"^BITLINE_RUN analog: unknown field\(s\) sigma in "
                                         r"\[analog\]; known fields are adc_gain_error, "):
        AnalogParams.from_dict({"sigma": 0.1}, source="BITLINE_RUN analog")


def test_bitline_run_analog_names_file_table_and_key(tmp_path, capsys):
    model = tiny_mlp_onnx(tmp_path / "tiny.onnx")
    assert main(["compile", str(model), "-s", "bwq", "-o", str(tmp_path / "bundle"),
                 "-q"]) == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 8), np.float32))
    path = _write(tmp_path, "[analog]\nvariation = 0.05\nstuck_at0 = 0.01\n")
    capsys.readouterr()
    # refused when the file is read, before any Verilog is generated or built
    assert main(["run", str(tmp_path / "bundle"), "-i", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npz"), "--backend", "rtl", "--analog", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: unknown field(s) stuck_at0 in [analog] (did you mean stuck_at_0?); " \
           f"known fields are {KNOWN}" in err
    assert not (tmp_path / "y.npz").exists()
