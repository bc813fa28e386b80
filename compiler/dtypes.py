"""Integer data types of IntGraph tensors: signedness and bit width, with their range."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto


@dataclass(frozen=True, order=True)
class IntType:
    """A two's-complement (signed) or plain binary (unsigned) integer of ``bits`` bits."""

    signed: bool
    bits: int

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= 64:
            raise ValueError(f"bit width {self.bits} out of range 1..64")

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits}"

    def __str__(self) -> str:
        return self.name

    def contains(self, lo: int, hi: int) -> bool:
        return self.min <= lo and hi <= self.max

    @staticmethod
    def fit(lo: int, hi: int, *, min_bits: int = 1) -> IntType:
        """The narrowest type holding every integer in ``[lo, hi]`` (signed iff lo < 0)."""
        lo, hi = int(lo), int(hi)
        if lo > hi:
            raise ValueError(f"empty range [{lo}, {hi}]")
        if lo < 0:
            # signed b bits holds [-2^(b-1), 2^(b-1)-1]
            bits = max((-lo - 1).bit_length(), hi.bit_length()) + 1
            return IntType(True, max(bits, min_bits, 2))
        return IntType(False, max(hi.bit_length(), min_bits, 1))

    @staticmethod
    def parse(name: str) -> IntType:
        if name.startswith("uint"):
            return IntType(False, int(name[4:]))
        if name.startswith("int"):
            return IntType(True, int(name[3:]))
        raise ValueError(f"not an integer type name: {name!r}")

    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype onnxruntime uses for this type when it is a standard width."""
        table = {(False, 8): np.uint8, (True, 8): np.int8, (False, 16): np.uint16,
                 (True, 16): np.int16, (True, 32): np.int32, (False, 32): np.uint32,
                 (True, 64): np.int64}
        return np.dtype(table.get((self.signed, self.bits), np.int64))


UINT8 = IntType(False, 8)
INT8 = IntType(True, 8)
INT32 = IntType(True, 32)

ONNX_INT_TYPES: dict[int, IntType] = {
    TensorProto.UINT8: UINT8,
    TensorProto.INT8: INT8,
    TensorProto.UINT16: IntType(False, 16),
    TensorProto.INT16: IntType(True, 16),
    TensorProto.INT32: INT32,
    TensorProto.UINT4: IntType(False, 4),
    TensorProto.INT4: IntType(True, 4),
}
