"""Sequential residual Add (ort): ``RequantOrtSerial`` behind the exact fixed-point sum.

``hw/engines/binary.py`` computes onnxruntime's QLinearAdd as ``S = x * coef + T[w]`` (exact,
in units of ``2^e``; ``add_ort_plan``) then ``y = clip(cvt(round24(S * 2^e)), lo, hi)``. With
``M = 2^e`` that last step is ``requant_ort(S, M)`` with zero point 0: ``f32(S)`` is
``round24(S)``, the product by a power of two rounds nothing (mantissa 2^23, ``exp = e - 23``)
and ``rint`` ties to even as ``cvt`` does. ``cvt``'s overflow to INT32_MIN (|v| >= 2^31) is
not modelled by the serial unit (it saturates by sign), so this unit is only built when
``round24(max |S|) * 2^e < 2^31`` (``serial_add_ok``); the engine falls back to the
pipelined ``Binary`` otherwise.

Front: the operands join (a beat moves when both streams have one), the inner table is read
from a synchronous ROM (block RAM) and the outer code registered; ``S`` is formed
combinationally from those registers into the serial unit, which accepts when idle. One word
every ``cycles_per_beat`` cycles (the serial unit's), no pipelined rounding datapath.
"""

from __future__ import annotations

from amaranth import Module, Shape, Signal, Value, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.dtypes import IntType
from .engines.binary import MANT, AddOrtPlan, add_ort_plan, rne_shift
from .engines.common import payload_shape
from .requant_serial import RequantOrtSerial

__all__ = ["AddOrtSerial", "build_serial_add", "serial_add_ok", "sum_shape"]


def sum_shape(plan: AddOrtPlan, in_dtypes: list[IntType]) -> Shape:
    """A signed shape holding every ``S = x * coef + T[w]`` (the outer code's extremes)."""
    dt = in_dtypes[plan.outer]
    x_max = max(abs(dt.min), abs(dt.max))
    bound = x_max * abs(plan.coef) + max(abs(t) for t in plan.table)
    return signed(bound.bit_length() + 1)


def serial_add_ok(plan: AddOrtPlan, in_dtypes: list[IntType], lo: int, hi: int) -> bool:
    """The serial unit computes this Add exactly: ``S`` fits its 48-bit register, no
    ``|round24(S) * 2^e| >= 2^31`` (x86's INT32_MIN path) is reachable, and the output
    magnitude fits the serial unit (as ``fold.serial_capable``)."""
    shape = sum_shape(plan, in_dtypes)
    if shape.width > 2 * MANT:
        return False
    dt = in_dtypes[plan.outer]
    bound = max(abs(dt.min), abs(dt.max)) * abs(plan.coef) + max(abs(t) for t in plan.table)
    # round24 is monotone: the largest |S| gives the largest |v| (as round24_rint computes)
    sh = max(bound.bit_length() - MANT, 0)
    m24, ev = rne_shift(bound, sh), plan.e + sh
    if m24 << max(ev, 0) >= (1 << 31) << max(-ev, 0):
        return False
    cap = max(hi, -lo, 0) + 1
    return cap.bit_length() <= MANT - 3


class AddOrtSerial(wiring.Component):
    """The ort Add of two streams, one word per ``cycles_per_beat`` cycles.

    Ports as ``Binary``'s: ``i0`` (operand a), ``i1`` (operand b), ``o0`` (codes)."""

    def __init__(self, attrs: dict, in_dtypes: list[IntType], out_dtype: IntType,
                 radix: int = 2):
        if attrs.get("mode") != "ort":
            raise ValueError("AddOrtSerial implements the ort Add")
        self.attrs = dict(attrs)
        self.in_dtypes, self.out_dtype = list(in_dtypes), out_dtype
        self.plan = add_ort_plan(self.attrs, self.in_dtypes)
        self.lo, self.hi = int(attrs["lo"]), int(attrs["hi"])
        if not serial_add_ok(self.plan, self.in_dtypes, self.lo, self.hi):
            self._MustUse__silence = True
            raise ValueError("Add: the serial unit cannot compute this Add exactly (sum wider "
                             "than 48 bits or results reaching 2^31)")
        self.sum_shape = sum_shape(self.plan, self.in_dtypes)
        # M = 2^e: mantissa 2^23, exponent e - 23 (requant_ort's M = mant * 2^exp)
        self.rq = RequantOrtSerial(self.sum_shape, [1 << (MANT - 1)], [self.plan.e - (MANT - 1)],
                                   0, self.lo, self.hi, radix)
        self.cycles_per_beat = self.rq.cycles_per_beat
        super().__init__({
            "i0": In(stream.Signature(payload_shape(self.in_dtypes[0]))),
            "i1": In(stream.Signature(payload_shape(self.in_dtypes[1]))),
            "o0": Out(stream.Signature(payload_shape(out_dtype))),
        })

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        m.submodules.rq = rq = self.rq
        ops = [self.i0, self.i1]
        x_in, w_in = Value.cast(ops[plan.outer].payload), Value.cast(ops[1 - plan.outer].payload)

        # front register: loads when empty or when the serial unit takes its word
        full = Signal()
        en = Signal()
        both = Signal()
        m.d.comb += [en.eq(~full | rq.i.ready), both.eq(self.i0.valid & self.i1.valid),
                     self.i0.ready.eq(en & self.i1.valid), self.i1.ready.eq(en & self.i0.valid)]
        x = Signal(x_in.shape(), name="outer")
        with m.If(en):
            m.d.sync += [full.eq(both), x.eq(x_in)]
        # the inner fma per code: T[w - inner_min], read with the same enable
        idx_bits = max(1, (len(plan.table) - 1).bit_length())
        t_shape = signed(max(abs(t) for t in plan.table).bit_length() + 1)
        if len(plan.table) == 1:
            t = plan.table[0]
        else:
            rom = memory.Memory(shape=t_shape, depth=len(plan.table), init=plan.table)
            m.submodules.inner = rom
            port = rom.read_port(domain="sync")
            m.d.comb += [port.addr.eq((w_in - plan.inner_min)[:idx_bits]), port.en.eq(en)]
            t = port.data
        # S exactly, in units of 2^e (sum_shape holds it: no wrap)
        m.d.comb += [rq.i.valid.eq(full), rq.i.payload.acc.eq(x * plan.coef + t)]
        m.d.comb += [self.o0.payload.eq(rq.o.payload.y), self.o0.valid.eq(rq.o.valid),
                     rq.o.ready.eq(self.o0.ready)]
        return m


def build_serial_add(engine) -> AddOrtSerial | None:
    """The sequential unit for an Add engine the plan marked ``style`` "serial"; None when it
    cannot compute this Add exactly (``serial_add_ok``): the caller builds the pipelined one."""
    p = engine.params
    plan = add_ort_plan(p["attrs"], p["in_dtypes"])
    if not serial_add_ok(plan, p["in_dtypes"], p["attrs"]["lo"], p["attrs"]["hi"]):
        return None
    return AddOrtSerial(p["attrs"], p["in_dtypes"], p["out_dtype"], p["radix"])
