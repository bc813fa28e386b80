"""Shared pieces of the QONNX importers (Quant/IntQuant, BipolarQuant, Trunc).

The arithmetic here mirrors qonnx's own executor (qonnx/custom_op/general/intquant.py,
bipolar_quant.py, trunc.py) step for step in numpy float32, so that constants folded at compile
time and tables built over every code equal what ``qonnx.core.onnx_exec`` computes:

    Quant:  y_int = round_mode(clamp(f32(f32(x / scale) + zeropt), min_int, max_int))
            y     = f32(f32(y_int - zeropt) * scale)
    (the zero point is added *before* rounding, unlike ONNX QuantizeLinear; clamping to integer
    bounds before or after rounding is the same thing.) ``ROUND`` is numpy's half-to-even.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import IntType
from ..errors import UnsupportedOp
from ..ir import QuantParams
from .values import Const, Dequant, QConst

# the domains QONNX ops appear under: current qonnx, FINN's older name, Brevitas' raw export
QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas", "finn")


def _round_up(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.ceil(np.abs(x))


def _half_up(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def _half_down(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.ceil(np.abs(x) - np.float32(0.5))


# qonnx's resolve_rounding_mode, name for name
ROUNDING = {"ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
            "UP": _round_up, "DOWN": np.fix, "HALF_UP": _half_up, "HALF_DOWN": _half_down}


def min_int(signed: bool, narrow: bool, bits: int) -> int:
    if signed:
        return -(1 << (bits - 1)) + int(narrow)
    return 0


def max_int(signed: bool, narrow: bool, bits: int) -> int:
    if signed:
        return (1 << (bits - 1)) - 1
    return (1 << bits) - 1 - int(narrow)


def rounding(imp, node, mode: str):
    fn = ROUNDING.get(str(mode).upper())
    if fn is None:
        raise UnsupportedOp(f"rounding_mode {mode!r} is not one of {', '.join(ROUNDING)}",
                            file=imp.path, node=imp.node_label(node), op=node.op_type)
    return fn


def int_quant_codes(x: np.ndarray, scale: np.ndarray, zeropt: np.ndarray, bits: int,
                    signed: bool, narrow: bool, round_fn) -> np.ndarray:
    """qonnx's int_quant up to the integer codes y_int (float32, as qonnx holds them)."""
    x = np.asarray(x, np.float32)
    y = np.divide(x, scale, dtype=np.float32)
    y = np.add(y, zeropt, dtype=np.float32)
    if bits == 1 and signed:  # qonnx: a 1-bit signed Quant is bipolar (y >= 0 -> +1)
        return np.where(y >= 0, np.float32(1), np.float32(-1))
    y = np.clip(y, np.float32(min_int(signed, narrow, bits)),
                np.float32(max_int(signed, narrow, bits)))
    return round_fn(y).astype(np.float32)


def const_input(imp, node, v, what: str) -> np.ndarray:
    """A parameter input that must be a constant; UnsupportedOp (naming the node) if not."""
    if v is None:
        raise imp.error(f"{node.op_type} needs its {what} input")
    if isinstance(v, Const):
        return np.asarray(v.value)
    if isinstance(v, Dequant) and isinstance(v.src, QConst):
        return np.asarray(imp.const(v, what))
    raise UnsupportedOp(f"{node.op_type} {what} must be a constant (a computed {what} is not "
                        "supported)", file=imp.path, node=imp.node_label(node),
                        op=node.op_type)


def bit_width(imp, node, v, what: str = "bit width") -> int:
    b = const_input(imp, node, v, what)
    if b.size != 1 or not np.isfinite(b).all() or float(b.ravel()[0]) != int(b.ravel()[0]):
        raise UnsupportedOp(f"{node.op_type} {what} must be one integer, got "
                            f"{b.ravel()[:4].tolist()}", file=imp.path,
                            node=imp.node_label(node), op=node.op_type)
    n = int(b.ravel()[0])
    if not 1 <= n <= 32:
        raise imp.error(f"{node.op_type} {what} {n} is outside 1..32")
    return n


def scale_param(imp, node, v, what: str = "scale") -> np.ndarray:
    s = const_input(imp, node, v, what).astype(np.float32)
    if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise imp.error(f"{node.op_type} {what} must be finite and > 0, got "
                        f"{s.ravel()[:4].tolist()}")
    return s


def channel_axis(imp, node, p: np.ndarray, ndim: int, shape: tuple[int, ...]) -> int | None:
    """The axis a broadcast parameter (scale/zero point) varies along, None when uniform."""
    if p.size == 1:
        return None
    if p.ndim > ndim:
        raise imp.error(f"{node.op_type} parameter of shape {list(p.shape)} does not broadcast "
                        f"to {list(shape)}")
    full = (1,) * (ndim - p.ndim) + tuple(p.shape)
    axes = [i for i, n in enumerate(full) if n != 1]
    if len(axes) != 1 or full[axes[0]] != shape[axes[0]]:
        raise UnsupportedOp(f"{node.op_type} parameter of shape {list(p.shape)} for a tensor "
                            f"of shape {list(shape)}: only per-tensor or per-axis "
                            "quantisation is supported", file=imp.path,
                            node=imp.node_label(node), op=node.op_type)
    return axes[0]


def quant_params(imp, node, scale: np.ndarray, zeropt: np.ndarray, dtype: IntType,
                 shape: tuple[int, ...]) -> QuantParams:
    """QuantParams (1-D scale along one axis, or scalars) of a QONNX quantiser's output."""
    if not np.all(zeropt == np.round(zeropt)):
        raise UnsupportedOp(f"{node.op_type} zero point {zeropt.ravel()[:4].tolist()} is not "
                            "an integer", file=imp.path, node=imp.node_label(node),
                            op=node.op_type)
    ndim = len(shape)
    ax_s = channel_axis(imp, node, scale, ndim, shape)
    ax_z = channel_axis(imp, node, zeropt, ndim, shape)
    axis = ax_s if ax_s is not None else ax_z
    if ax_s is not None and ax_z is not None and ax_s != ax_z:
        raise imp.error(f"{node.op_type} scale and zero point vary along different axes")
    if axis is None:
        return QuantParams(scale.reshape(()).astype(np.float32),
                           np.asarray(int(zeropt.ravel()[0]), np.int64).reshape(()), dtype)
    n = shape[axis]
    s = np.broadcast_to(scale.reshape(-1), (n,)).astype(np.float32)
    z = np.broadcast_to(zeropt.reshape(-1), (n,)).astype(np.int64)
    return QuantParams(s, z, dtype, axis)


def broadcast_to_param(p: np.ndarray, q: QuantParams, ndim: int) -> np.ndarray:
    if q.axis is None:
        return p.reshape(())
    shape = [1] * ndim
    shape[q.axis] = -1
    return p.reshape(shape)
