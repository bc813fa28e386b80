"""The IntGraph op table: one op per file, registered here by name."""

from .add import Add
from .avgpool import AvgPool
from .base import Op
from .clamp import Clamp
from .conv import Conv
from .globalavgpool import GlobalAvgPool
from .layernorm import LayerNorm
from .layout import Concat, Reshape, Transpose
from .lut import Lut
from .matmul import MatMul
from .maxpool import MaxPool
from .mul import Mul
from .reducesum import ReduceSum
from .requant import Requant
from .slice import Slice
from .softmax import Softmax

OPS: dict[str, type[Op]] = {
    op.name: op
    for op in (Add, AvgPool, Clamp, Concat, Conv, GlobalAvgPool, LayerNorm, Lut, MatMul, MaxPool,
               Mul, ReduceSum, Requant, Reshape, Slice, Softmax, Transpose)
}

__all__ = ["OPS", "Op"]
