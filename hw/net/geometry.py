"""Capacities of the network units and the per-layer window record (docs/network.md).

The definitions live in :mod:`bitline.hw.spec.network` (the spec is the contract the
compiler, the image and the hardware share); this module re-exports them unchanged for the
units of :mod:`bitline.hw.net`.
"""

from bitline.hw.spec.network import NetGeometry, WindowParams, element_layout, window_layout

__all__ = ["NetGeometry", "WindowParams", "element_layout", "window_layout"]
