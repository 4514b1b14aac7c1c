"""Whole-network hardware (issue 18): activation buffer, the non-matrix units, the sequencer.

* :mod:`.geometry` - the capacities of the units (:class:`NetGeometry`) and the per-layer
  window record the address generator runs from (:class:`WindowParams`).
* :mod:`.buffer` - :class:`ActivationBuffer`, a channel-first feature-map store.
* :mod:`.im2col` - :class:`Im2colReader`, the address generation of conv inputs, pooling
  windows and flatten.
* :mod:`.pool` - :class:`PoolUnit`, max / average / global average pooling.
* :mod:`.residual` - :class:`ResidualAdd`, the requantizing residual add.
* :mod:`.sequencer` - :class:`Sequencer`, the node FSM of whole-network mode and the
  datapath around these units (the Accelerator adds it with ``config.network``).
* :mod:`.node_datapath` - :func:`node_datapath`, one node's routing from its reader to its
  consumer and out (shared by the sequencer and the pipeline engines).
* :mod:`.pipeline` - :class:`Pipeline`, the inter-layer pipeline's stage engines (the
  Accelerator adds it instead with ``config.pipeline_stages > 0``).

docs/network.md describes what is built (section 6: the inter-layer pipeline).
"""

from bitline.hw.net.buffer import ActivationBuffer
from bitline.hw.net.geometry import NetGeometry, WindowParams
from bitline.hw.net.im2col import Im2colReader
from bitline.hw.net.pipeline import Pipeline
from bitline.hw.net.pool import PoolUnit
from bitline.hw.net.residual import ResidualAdd
from bitline.hw.net.sequencer import Sequencer

__all__ = ["ActivationBuffer", "Im2colReader", "NetGeometry", "Pipeline", "PoolUnit",
           "ResidualAdd", "Sequencer", "WindowParams"]
