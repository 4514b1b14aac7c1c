"""ULX3S board top: 25 MHz oscillator, ECP5 PLL, reset, UART to the FTDI chip, LEDs.

::

    clk25 (G2) ──► EHXPLLL ──► sync clock (core_hz) ──► UARTAccelerator ◄──► FTDI UART
                      │ LOCK                                  │ leds[0..3] ──► LED0..3
                      └──► ResetSynchronizer ──► sync reset

The board's pins, I/O standards and the 25 MHz input clock constraint come from
amaranth-boards (``ULX3S_*_Platform``); nextpnr derives the core clock's constraint from
that input constraint through the PLL's dividers (so the dividers are its one definition);
constraints/ulx3s.lpf adds what neither provides (see constraints/README.md).

PLL parameters (:func:`ecp5_pll_parameters`): with feedback from the primary output,
``f_out = f_in / CLKI_DIV * CLKFB_DIV`` and ``f_vco = f_out * CLKOP_DIV``; the ECP5 sysCLOCK
PLL needs the phase-detector input ``f_in / CLKI_DIV`` in 3.125..400 MHz, the VCO in
400..800 MHz and the output in 10..400 MHz (Lattice TN1263; the same limits and search as
Project Trellis' ``ecppll``). The search takes the closest output, then the VCO closest to
600 MHz (on a tie the faster VCO, as ``ecppll`` ends up choosing);
``CLKOP_CPHASE = CLKOP_DIV // 2`` is the half-period phase ``ecppll`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from amaranth import ClockDomain, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from bitline.hw._component import rejects_quietly
from bitline.hw.boards.core import DEFAULT_BAUD, LEDS, UARTAccelerator
from bitline.hw.spec.config import AcceleratorConfig

__all__ = ["ECP5PLLParameters", "ecp5_pll_parameters", "ULX3SAccelerator", "CLOCK_HZ",
           "DEFAULT_CORE_HZ", "PLL_LIMITS", "PLL_TOLERANCE", "platform_class", "DEVICES"]

#: The ULX3S oscillator.
CLOCK_HZ = 25_000_000

#: Default core clock: what the small and one-unit 128x128 builds meet (four units reach
#: about 39 MHz, docs/fpga.md, section 4); ``--core-mhz`` asks for another.
DEFAULT_CORE_HZ = 40_000_000

#: (low, high) in Hz of the PLL's phase detector input, VCO and output (TN1263).
PLL_LIMITS = {
    "pfd": (3.125e6, 400e6),
    "vco": (400e6, 800e6),
    "output": (10e6, 400e6),
}
#: Ranges of the dividers.
_CLKI_DIV = range(1, 129)
_CLKFB_DIV = range(1, 81)
_CLKOP_DIV = range(1, 129)

#: Largest relative difference between the asked and the achieved core clock.
PLL_TOLERANCE = 0.01

#: ULX3S variant -> ECP5 device (``amaranth_boards.ulx3s.ULX3S_<variant>_Platform``).
DEVICES = {"12f": "LFE5U-12F", "25f": "LFE5U-25F", "45f": "LFE5U-45F", "85f": "LFE5U-85F"}


@dataclass(frozen=True)
class ECP5PLLParameters:
    """Divider settings of an ECP5 ``EHXPLLL`` with feedback from ``CLKOP``.

    Attributes
    ----------
    input_hz, output_hz:
        Reference and achieved output frequency (``output_hz`` is exact, a Fraction).
    clki_div, clkfb_div, clkop_div, clkop_cphase:
        The ``EHXPLLL`` parameters of the same names.
    """

    input_hz: Fraction
    output_hz: Fraction
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkop_cphase: int

    @property
    def pfd_hz(self) -> Fraction:
        """Phase-detector input frequency, ``input_hz / clki_div``."""
        return self.input_hz / self.clki_div

    @property
    def vco_hz(self) -> Fraction:
        """VCO frequency, ``output_hz * clkop_div``."""
        return self.output_hz * self.clkop_div

    def instance_parameters(self) -> dict[str, object]:
        """Return the ``EHXPLLL`` parameters and attributes (``p_`` / ``a_`` keys)."""
        return {
            "a_FREQUENCY_PIN_CLKI": f"{float(self.input_hz) / 1e6:g}",
            "a_FREQUENCY_PIN_CLKOP": f"{float(self.output_hz) / 1e6:g}",
            # charge pump and loop filter as Diamond and ecppll set them
            "a_ICP_CURRENT": "12",
            "a_LPF_RESISTOR": "8",
            "a_MFG_ENABLE_FILTEROPAMP": "1",
            "a_MFG_GMCREF_SEL": "2",
            "p_PLLRST_ENA": "DISABLED",
            "p_INTFB_WAKE": "DISABLED",
            "p_STDBY_ENABLE": "DISABLED",
            "p_DPHASE_SOURCE": "DISABLED",
            "p_OUTDIVIDER_MUXA": "DIVA",
            "p_OUTDIVIDER_MUXB": "DIVB",
            "p_OUTDIVIDER_MUXC": "DIVC",
            "p_OUTDIVIDER_MUXD": "DIVD",
            "p_CLKI_DIV": self.clki_div,
            "p_CLKOP_ENABLE": "ENABLED",
            "p_CLKOP_DIV": self.clkop_div,
            "p_CLKOP_CPHASE": self.clkop_cphase,
            "p_CLKOP_FPHASE": 0,
            "p_FEEDBK_PATH": "CLKOP",
            "p_CLKFB_DIV": self.clkfb_div,
        }


def ecp5_pll_parameters(input_hz: float, output_hz: float, *,
                        tolerance: float = PLL_TOLERANCE) -> ECP5PLLParameters:
    """Return the ``EHXPLLL`` dividers that make ``output_hz`` from ``input_hz``.

    Raises
    ------
    ValueError
        If ``output_hz`` is outside the PLL's output range, or no divider setting comes
        within ``tolerance`` (relative) of it.
    """
    low, high = PLL_LIMITS["output"]
    if not low <= output_hz <= high:
        raise ValueError(f"core clock {output_hz / 1e6:g} MHz is outside the ECP5 PLL's "
                         f"output range {low / 1e6:g}..{high / 1e6:g} MHz")
    fin = Fraction(input_hz).limit_denominator(1000)
    target = Fraction(output_hz).limit_denominator(1000)
    best = None
    for clki_div in _CLKI_DIV:
        pfd = fin / clki_div
        if not PLL_LIMITS["pfd"][0] <= pfd <= PLL_LIMITS["pfd"][1]:
            continue
        for clkfb_div in _CLKFB_DIV:
            fout = pfd * clkfb_div
            if not low <= fout <= high:
                continue
            for clkop_div in _CLKOP_DIV:
                vco = fout * clkop_div
                if not PLL_LIMITS["vco"][0] <= vco <= PLL_LIMITS["vco"][1]:
                    continue
                key = (abs(fout - target), abs(vco - 600_000_000), -vco)
                if best is None or key < best[0]:
                    best = (key, clki_div, clkfb_div, clkop_div, fout)
    if best is None or best[0][0] > tolerance * target:
        closest = f"; the closest is {float(best[4]) / 1e6:g} MHz" if best else ""
        raise ValueError(f"the ECP5 PLL cannot make {output_hz / 1e6:g} MHz from "
                         f"{input_hz / 1e6:g} MHz within {tolerance:.0%}{closest}")
    _, clki_div, clkfb_div, clkop_div, fout = best
    return ECP5PLLParameters(fin, fout, clki_div, clkfb_div, clkop_div, clkop_div // 2)


def platform_class(variant: str = "85f"):
    """Return the amaranth-boards platform class of a ULX3S variant (``12f`` .. ``85f``)."""
    from amaranth_boards import ulx3s

    key = variant.lower()
    if key not in DEVICES:
        raise ValueError(f"unknown ULX3S variant {variant!r}; known: {', '.join(DEVICES)}")
    return getattr(ulx3s, f"ULX3S_{key.upper()}_Platform")


class ULX3SAccelerator(Elaboratable):
    """The accelerator prototype on a ULX3S.

    Parameters
    ----------
    config:
        Accelerator configuration.
    core_hz:
        Core clock; made by the PLL from the 25 MHz oscillator (the oscillator itself when
        equal to it). The achieved frequency (:attr:`core_hz` afterwards, rounded to Hz) is the
        clock constraint and what the bridge reports.
    baud:
        UART bit rate.
    memories, unit_entries:
        Passed to :class:`~bitline.hw.core.top.Accelerator`.

    Attributes
    ----------
    pll: ECP5PLLParameters or None
    core: UARTAccelerator
    """

    @rejects_quietly
    def __init__(self, config: AcceleratorConfig, *, core_hz: float = DEFAULT_CORE_HZ,
                 baud: int = DEFAULT_BAUD, memories=None, unit_entries: int | None = None):
        if core_hz == CLOCK_HZ:
            self.pll = None
            achieved = Fraction(CLOCK_HZ)
        else:
            self.pll = ecp5_pll_parameters(CLOCK_HZ, core_hz)
            achieved = self.pll.output_hz
        self.core_hz = round(achieved)
        self.core = UARTAccelerator(config, clock_hz=self.core_hz, baud=baud,
                                    memories=memories, unit_entries=unit_entries)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        if self.pll is None:
            locked = Signal(init=1)
            m.d.comb += [sync.clk.eq(clk25.i), locked.eq(1)]
        else:
            locked = Signal()
            m.submodules.pll = Instance(
                "EHXPLLL",
                i_CLKI=clk25.i, i_CLKFB=sync.clk, o_CLKOP=sync.clk, o_LOCK=locked,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
                i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                **self.pll.instance_parameters())
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")

        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(uart_rx.i), uart_tx.o.eq(core.tx)]
        for index in range(len(LEDS)):
            m.submodules[f"led{index}"] = led = io.Buffer(
                "o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(core.leds[index])
        return m
