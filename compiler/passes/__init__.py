"""The lowering passes, in the order ``compile`` runs them to a fixed point."""

from .base import Transformation, run_to_fixed_point
from .fold_zero_points import FoldZeroPoints
from .fuse_clamp import FuseClamp
from .prove_widths import ProveWidths, tensor_bounds

__all__ = ["FoldZeroPoints", "FuseClamp", "ProveWidths", "Transformation",
           "run_to_fixed_point", "tensor_bounds"]
