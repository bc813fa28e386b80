"""What an ONNX tensor is while the importer walks the graph.

Each ONNX value name maps to one of these. Quantised models are float graphs on the surface
(DequantizeLinear -> float op -> QuantizeLinear); the importer keeps the float values
symbolic until a QuantizeLinear closes them, and then emits the integer kernel onnxruntime
would run for that pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from ..ir import QuantParams


@dataclass
class Const:
    """A constant (initializer, Constant node or folded shape computation), float or int."""

    value: np.ndarray


@dataclass
class Codes:
    """Integer codes in an IR tensor; ``q`` their quantisation (None for raw integers)."""

    tensor: str
    shape: tuple[int, ...]
    q: QuantParams | None = None


@dataclass
class QConst:
    """Constant integer codes with their quantisation (weights, biases, constant operands)."""

    value: np.ndarray
    q: QuantParams


@dataclass
class Dequant:
    """The float value DequantizeLinear(src) — kept symbolic."""

    src: Codes | QConst
    # made by intflow, not by a DequantizeLinear node (e.g. Relu(DQ(c)) = DQ(max(c, zp))):
    # onnxruntime runs the op that consumes it in float
    synthetic: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.src.shape if isinstance(self.src, Codes) else tuple(self.src.value.shape)


@dataclass
class FloatOp:
    """A float op on dequantised values, waiting for the QuantizeLinear that closes it."""

    node: onnx.NodeProto
    inputs: list[Value]
    shape: tuple[int, ...]
    attrs: dict = field(default_factory=dict)


@dataclass
class FloatInput:
    """A float graph input, not yet quantised (the host quantises it)."""

    onnx_name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class FloatAcc:
    """f32(f32(acc) * scale) [+ bias]: an integer accumulator the host turns into float
    (MatMulIntegerToFloat, float-output QGemm)."""

    tensor: str
    shape: tuple[int, ...]
    scale: np.ndarray  # float32 (N,) along the last axis, or ()
    bias: np.ndarray | None = None


Value = Const | Codes | QConst | Dequant | FloatOp | FloatInput | FloatAcc


def describe(v: Value) -> str:
    """A few words for error messages."""
    return {
        Const: "a constant", Codes: "an integer tensor", QConst: "a quantised constant",
        Dequant: "a dequantised float tensor", FloatOp: "a float result",
        FloatInput: "a float graph input", FloatAcc: "a float accumulator result",
    }[type(v)]


def float_inputs_synthetic(v: Value) -> bool:
    """True when a pending float computation reads a value onnxruntime keeps in float."""
    if isinstance(v, Dequant):
        return v.synthetic
    if isinstance(v, FloatOp):
        return any(float_inputs_synthetic(i) for i in v.inputs if i is not None)
    return False


def reads_float_input(v: Value) -> bool:
    """True when ``v`` is a float graph input, or float ops over one (not yet quantised)."""
    if isinstance(v, FloatInput):
        return True
    if isinstance(v, FloatOp):
        return any(reads_float_input(i) for i in v.inputs if i is not None)
    return False
