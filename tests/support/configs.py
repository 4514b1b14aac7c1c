"""Small accelerator configurations for the block, simulator and FPGA-flow tests."""

from __future__ import annotations

from bitline.hw.spec.config import AcceleratorConfig

__all__ = ["small_config", "TEST_CONFIGS", "TINY_MLP_CONFIG", "E2E_SMALL_CONFIG"]


def small_config(**overrides) -> AcceleratorConfig:
    """Return a small accelerator (16 x 16 crossbars, 4 x 4 OU) for simulation tests.

    ``overrides`` replace any :class:`AcceleratorConfig` field (validated as usual).
    """
    fields = dict(rows=16, cols=16, cell_bits=1, dac_bits=1, ou_rows=4, ou_cols=4,
                  adc_bits=3, adcs_per_xbar=4, n_xbars=2, acc_bits=24, max_act_bits=4,
                  max_weight_bits=4, max_out_channels=16, max_in_features=48,
                  max_layers=4, max_entries=256, adc_latency=1)
    fields.update(overrides)
    return AcceleratorConfig(**fields)


#: Geometries the block tests run over (overrides of :func:`small_config`): one ADC per OU
#: column; a ragged crossbar (columns and rows not multiples of the OU) with 2-bit cells and
#: DACs, shared ADCs (a partial last phase) and a 2-cycle ADC; a tall OU with 4 conversions
#: per read and a combinational ADC.
TEST_CONFIGS = {
    "full-adc": dict(),
    "ragged-2bit": dict(rows=12, cols=10, ou_rows=3, ou_cols=4, adcs_per_xbar=3,
                        cell_bits=2, dac_bits=2, adc_bits=6, n_xbars=3, adc_latency=2),
    "shared-adc": dict(rows=16, cols=16, ou_rows=5, ou_cols=8, adcs_per_xbar=2,
                       adc_bits=4, adc_latency=0),
}


#: The hardware the tiny MLP (:func:`support.networks.tiny_mlp_onnx`) compiles onto: 16 x 16
#: crossbars, 4 x 4 OU, two ADCs per crossbar, four units, 8-bit weights and activations.
TINY_MLP_CONFIG = AcceleratorConfig(rows=16, cols=16, ou_rows=4, ou_cols=4, adc_bits=3,
                                    adcs_per_xbar=2, n_xbars=4, acc_bits=24, max_act_bits=8,
                                    max_weight_bits=8, max_out_channels=8, max_in_features=16,
                                    max_layers=2, max_entries=256)


#: The small end-to-end bench accelerator (random CNNs under every strategy, and the board
#: core over its UART): three 36 x 128 crossbars whose four ADCs are shared by the OU's eight
#: columns (2 conversions per read), a 2-cycle ADC.
E2E_SMALL_CONFIG = AcceleratorConfig(rows=36, cols=128, cell_bits=1, dac_bits=1, ou_rows=9,
                                     ou_cols=8, adc_bits=4, adcs_per_xbar=4, n_xbars=3,
                                     acc_bits=24, max_act_bits=8, max_weight_bits=8,
                                     max_out_channels=16, max_in_features=96, max_layers=4,
                                     max_entries=1024, adc_latency=2)
