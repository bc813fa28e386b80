"""Shapes and small helpers shared by the engines."""

from __future__ import annotations

from amaranth import Shape, signed, unsigned

from ...compiler.dtypes import IntType


def payload_shape(dtype: IntType) -> Shape:
    """The amaranth shape of one stream element of IR type ``dtype``."""
    return signed(dtype.bits) if dtype.signed else unsigned(dtype.bits)
