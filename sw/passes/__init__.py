"""Passes on the IR: pure ``Model -> Model`` rewrites run after the ONNX import.

:func:`bitline.sw.frontend.onnx_import.load_onnx` converts ONNX nodes to IR layers and then runs
:data:`DEFAULT_PASSES` with :func:`run_passes`; a pass never mutates the model it is given.
See docs/frontend.md, "Conversion, then passes".
"""

from bitline.sw.passes.base import Pass, PassError, run_passes
from bitline.sw.passes.fold import fold_affine
from bitline.sw.passes.fuse import fuse_activations
from bitline.sw.passes.lower import lower_affine
from bitline.sw.passes.pads import fold_pads

__all__ = ["DEFAULT_PASSES", "Pass", "PassError", "fold_affine", "fold_pads", "fuse_activations",
           "lower_affine", "run_passes"]

#: The passes the importer runs, in order: affine layers that cannot fold backward are
#: placed first (forward fold or a depthwise / diagonal compute layer), then folding, so that
#: a ReLU after a folded BatchNorm finds the Conv as its producer; pads last, so that a Pad
#: before a MaxPool sees the fused ReLU that makes its input non-negative.
DEFAULT_PASSES: tuple[Pass, ...] = (lower_affine, fold_affine, fuse_activations, fold_pads)
