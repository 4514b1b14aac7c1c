"""16-bit activations through the Accelerator (Amaranth simulator, digital crossbars).

ISAAC streams 16-bit inputs (docs/performance.md, baselines); ``max_act_bits = 16`` must
work end to end: the row drivers' banks and slice counter, the input stream, the layer
record's ``act_bits`` / ``zero_point`` / clamp fields and the output unit's offset all take
their widths from the config. Outputs are checked against the integer contract computed
here directly (``x @ W.T``, then the output unit), and the counters against the model.
"""

import numpy as np
import pytest

from bitline.hw.spec.encoding import flatten_fields, layer_layout
from bitline.hw.unit.row_driver import input_layout, slice_bits

from support.accelerator import assert_counters_match_model, expected_outputs, make_layer, run_jobs
from support.configs import small_config

#: Smallest machine that holds a 16-bit layer: 24-bit accumulators cannot hold
#: 16-bit codes x 4-bit weights x 11 inputs plus a bias, so 32.
ACT16 = dict(max_act_bits=16, acc_bits=32)


def test_widths_follow_max_act_bits():
    narrow, wide = small_config(max_act_bits=8), small_config(**ACT16)
    assert input_layout(wide).size - input_layout(narrow).size == 8
    assert slice_bits(wide) == 4 and slice_bits(narrow) == 3       # 16 and 8 slices
    widths = {name: width for name, _, width in flatten_fields(layer_layout(wide))}
    assert widths["act_bits"] == 5                                  # 0..16
    for name in ("zero_point", "clamp_lo", "clamp_hi"):
        assert widths[name] == 16


@pytest.mark.parametrize("strategy,mode", [("isaac", "requant"), ("bwq", "raw")])
def test_layer_with_16_bit_activations(strategy, mode):
    config = small_config(**ACT16)
    rng = np.random.default_rng(16)
    layer, weight = make_layer(config, strategy, rng, act_bits=16, mode=mode)
    # codes spanning the 16 bits, with the extremes 0 and 65535 present
    vectors = rng.integers(0, 1 << 16, (2, layer.n_inputs))
    vectors[0, :2] = (1 << 16) - 1, 0
    # the output unit's requantization reaches 16-bit output codes too
    layer.shift[:] = 12
    ((outputs, counters, _),) = run_jobs(config, [layer], [(0, vectors, layer.n_outputs)])
    expected = expected_outputs(config, layer, weight, vectors)
    assert np.array_equal(outputs, expected)
    if mode == "requant":
        assert expected.max() > 255   # the test exercises output codes above 8 bits
    assert_counters_match_model(config, layer, len(vectors), counters)


def test_uart_board_refuses_16_bit_inputs():
    # The UART protocol's INPUTS command carries one byte per code: a board build or host
    # transport for wider codes is refused by name instead of truncating codes.
    from bitline.hw.io.uart_bridge import UARTBridge
    from bitline.sw.host.uart import UARTTransport

    config = small_config(**ACT16)
    with pytest.raises(ValueError, match="max_act_bits <= 8, not 16"):
        UARTBridge(config, clock_hz=50_000_000)
    with pytest.raises(ValueError, match="max_act_bits <= 8, not 16"):
        UARTTransport(client=None, config=config)
    bridge = UARTBridge(small_config(max_act_bits=8), clock_hz=50_000_000)
    bridge._MustUse__silence = True     # built only to check its port (not elaborated)
    assert bridge.inputs.payload.shape().width == 8


def test_cocotb_bench_refuses_16_bit_inputs():
    # The cocotb bench's source memory holds one byte per input code.
    from bitline.sim.rtl import bench_design

    with pytest.raises(ValueError, match="max_act_bits <= 8, not 16"):
        bench_design(small_config(**ACT16))
