"""Passes on the IR: pure ``Model -> Model`` rewrites run after the ONNX import.

:func:`bitline.sw.frontend.onnx_import.load_onnx` converts ONNX nodes to IR layers and then runs
:data:`DEFAULT_PASSES` with :func:`run_passes`; a pass never mutates the model it is given.
See docs/frontend.md, "Conversion, then passes".
"""

from bitline.sw.passes.base import Pass, PassError, run_passes
from bitline.sw.passes.fold import fold_affine
from bitline.sw.passes.fuse import fuse_activations

__all__ = ["DEFAULT_PASSES", "Pass", "PassError", "fold_affine", "fuse_activations", "run_passes"]

#: The passes the importer runs, in order: folding first, so that a ReLU after a folded
#: BatchNorm finds the Conv as its producer.
DEFAULT_PASSES: tuple[Pass, ...] = (fold_affine, fuse_activations)
