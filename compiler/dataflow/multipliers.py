"""Which multiplier an MVAU's products use, and the ``--no-dsp`` plan option.

``hw/lutmul.py`` builds the LUT forms; the estimate (``estimate.py``) counts them. Kinds:

- ``"pow2"``: every weight is 0 or +-2^e: ``x * w = +-(x << e)``, ``e`` the weight's lowest
  set bit (the same bit for ``2^e`` and ``-2^e`` in two's complement), then one negation.
- ``"shiftadd"``: ``x * w = sum_{i<B-1} w_i (x << i) - w_{B-1} (x << (B-1))`` for a signed
  ``B``-bit weight (all ``B`` terms added when unsigned): ``B - 1`` adders, no DSP. Chosen
  automatically for weights of at most ``LUT_MAX_BITS`` bits, and for any width under
  ``--no-dsp``.
- ``"dsp"``: the behavioural product, which synthesis maps onto DSP blocks.

``apply_no_dsp`` marks a plan for ``--no-dsp``: every MVAU takes a LUT multiplier. Requants
keep the units the folding chose: ``hw/requant_serial.py``'s sequential one (no DSP) wherever
it fits the II (at ``--fold min`` every ort requant), else the pipelined unit (always for
dyadic), whose products the board build maps to logic (yosys without DSP inference:
``synth_ice40`` without ``-dsp``, ``synth_ecp5 -nodsp``, ``synth_gowin -nodsp``); forcing the
serial unit there would multiply the II (digits MLP, ECP5, 10 multipliers: II 256 -> 1216).
"""

from __future__ import annotations

import numpy as np

from .fold import requant_sites
from .spec import Dataflow

__all__ = ["LUT_MAX_BITS", "MULTIPLIERS", "is_pow2_weights", "mvau_multiplier", "apply_no_dsp"]

LUT_MAX_BITS = 4
MULTIPLIERS = ("dsp", "shiftadd", "pow2")


def is_pow2_weights(weights) -> bool:
    """Every weight is 0, 2^e or -2^e."""
    a = np.abs(np.asarray(weights, np.int64))
    return bool(np.all((a & (a - 1)) == 0))


def mvau_multiplier(p: dict) -> str:
    """The multiplier kind of an MVAU's params (``p["no_dsp"]`` set by ``apply_no_dsp``)."""
    if is_pow2_weights(p["weights"]):
        return "pow2"
    if p["weight_dtype"].bits <= LUT_MAX_BITS or p.get("no_dsp"):
        return "shiftadd"
    return "dsp"


def apply_no_dsp(df: Dataflow) -> None:
    """Make the plan DSP-free (see the module doc); call after the folding."""
    for e in df.engines:
        if e.kind == "MVAU":
            e.params["no_dsp"] = True
    for rp, _, _ in requant_sites(df):
        rp["no_dsp"] = True  # serial: no DSP anyway; pipelined: products in logic


def lut_multiplier_luts(kind: str, in_bits: int, w_bits: int, family: str) -> int:
    """LUTs of one product in logic (iCE40 SB_LUT4; ECP5 LUT4 + 2 per CCU2C), fitted to yosys
    runs on 4 registered lanes of ``hw/lutmul.py``'s ``LutMultiplierArray`` with u8 inputs
    (per lane, iCE40 / ECP5): shift-add 2-bit weights 25 / 26, 4-bit 58 / 81, 8-bit 161 / 195;
    power of two 4-bit 39 / 61, 8-bit 72 / 88. ``"dsp"`` where no DSP fits (yosys' own soft
    multiplier; measured u8 x s8: 155 / 287): about ``in_bits * w_bits``."""
    if kind == "shiftadd":  # w_bits - 1 adders of about in + w bits, the AND masks merged
        area = (w_bits - 1) * (in_bits + w_bits)
        return 4 * area // 3 + 12 if family == "ice40" else 5 * area // 3 + 10
    if kind == "pow2":  # a w_bits-way one-hot select of x << e, then one negation
        return w_bits * in_bits + 7 if family == "ice40" else 7 * w_bits * in_bits // 8 + 34
    return in_bits * w_bits
