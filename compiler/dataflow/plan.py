"""Plan the streaming dataflow of an IntGraph: which engines, which stream orders.

Every stream carries one element per word. Engines that need pixels in (h, w, c) order
(SlidingWindow, GlobalSum, Concat) get canonical streams; MVAU accepts any order within a
row by permuting its weight columns; layout ops relabel; a ``Reorder`` (a whole-tensor
buffer) is inserted only where no relabelling serves.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import IntType
from ..ir import IntGraph, Node
from ..ops.pool_geometry import pooled_size
from .spec import Dataflow, Engine, Stream, canonical_order, channel_pattern, spatial


class PlanError(ValueError):
    """The graph has a node the streaming hardware does not implement yet."""


def _inverse(p: np.ndarray) -> np.ndarray:
    inv = np.empty_like(p)
    inv[p] = np.arange(p.size)
    return inv


class Planner:
    def __init__(self, g: IntGraph) -> None:
        self.g = g
        self.streams: dict[str, Stream] = {}
        self.engines: list[Engine] = []
        # IR tensor -> (physical stream, order: position -> flat index of the IR tensor)
        self.view: dict[str, tuple[str, np.ndarray]] = {}
        self.carries: dict[str, str] = {}  # stream -> IR tensor whose elements its order indexes

    # ---- streams --------------------------------------------------------------------------
    def new_stream(self, base: str, tensor_shape, dtype: IntType, order=None) -> str:
        name, i = base, 1
        while name in self.streams:
            name, i = f"{base}_{i}", i + 1
        order = canonical_order(tuple(tensor_shape)) if order is None else order
        self.streams[name] = Stream(name, dtype, tuple(tensor_shape), order)
        return name

    def add(self, kind: str, node: Node | None, inputs: list[str], outputs: list[str],
            **params) -> Engine:
        base = (node.name if node else kind).replace("/", "_")
        name, i = f"{base}.{kind}", 1
        while any(e.name == name for e in self.engines):
            name, i = f"{base}.{kind}_{i}", i + 1
        e = Engine(kind, name, inputs, outputs, params, [node.name] if node else [])
        self.engines.append(e)
        return e

    def fetch(self, tensor: str, required: np.ndarray | None) -> str:
        """The stream of ``tensor`` in the ``required`` order (reordering if needed)."""
        s, order = self.view[tensor]
        if required is None or np.array_equal(order, required):
            return s
        t = self.g.tensors[tensor]
        out = self.new_stream(f"{tensor}_reordered", t.shape, t.dtype, required)
        read = _inverse(order)[required]
        self.add("Reorder", None, [s], [out], read=read, dtype=t.dtype)
        self.carries[out] = tensor
        self.view[tensor + "#reordered"] = (out, required)
        return out

    def produce(self, tensor: str, base: str | None = None, order=None) -> str:
        t = self.g.tensors[tensor]
        s = self.new_stream(base or tensor, t.shape, t.dtype, order)
        self.view[tensor] = (s, self.streams[s].order)
        self.carries[s] = tensor
        return s

    # ---- planning ---------------------------------------------------------------------------
    def run(self) -> Dataflow:
        g = self.g
        inputs = []
        for h in g.inputs:
            inputs.append(self.produce(h.tensor))
        consumers = {name: g.consumers(name) for name in g.tensors}
        fused: set[str] = set()
        for n in g.nodes:
            if n.name in fused:
                continue
            requant = None
            if n.op in ("Conv", "MatMul"):
                acc = n.outputs[0]
                cs = consumers.get(acc, [])
                if (len(cs) == 1 and cs[0].op == "Requant" and acc not in g.output_names()):
                    requant = cs[0]
                    fused.add(requant.name)
            handler = getattr(self, f"plan_{n.op}", None)
            if handler is None:
                raise PlanError(f"{n.op} ({n.name}) has no streaming engine yet")
            handler(n, requant)
        if not self.engines:
            raise PlanError("the graph has no integer layer for the hardware (it is host "
                            "quantization/dequantization alone): use --engine reference")
        outputs = [self.view[o.tensor] for o in g.outputs]
        df = Dataflow(self.engines, self.streams, inputs, [s for s, _ in outputs],
                      dict(self.carries))
        df.output_orders = [o for _, o in outputs]  # type: ignore[attr-defined]
        insert_forks(df)
        return df

    # ---- requant parameters ---------------------------------------------------------------
    def requant_params(self, r: Node, n_channels: int) -> dict:
        g = self.g
        mult = np.broadcast_to(g.const(r.inputs[1]), (n_channels,)).copy()
        exp = np.broadcast_to(g.const(r.inputs[2]), (n_channels,)).copy()
        a = r.attrs
        return {"mode": a["mode"], "mult": mult, "exp": exp, "zero_point": a["zero_point"],
                "lo": a["lo"], "hi": a["hi"], "out_dtype": g.tensors[r.outputs[0]].dtype}

    def mvau(self, n: Node, requant: Node | None, x_stream: str, rows: int, w: np.ndarray,
             bias: np.ndarray, out_tensor_shape, out_order=None) -> None:
        g = self.g
        k, nn = w.shape[1], w.shape[0]
        out_t = requant.outputs[0] if requant is not None else n.outputs[0]
        params = {"rows": rows, "k": k, "n": nn, "weights": w, "bias": bias,
                  "in_dtype": self.streams[x_stream].dtype,
                  "weight_dtype": IntType.fit(int(w.min(initial=0)), int(w.max(initial=0))),
                  "acc_dtype": g.tensors[n.outputs[0]].dtype, "pe": 1, "simd": 1,
                  "requant": self.requant_params(requant, nn) if requant is not None else None}
        out = self.produce(out_t, order=out_order)
        self.add("MVAU", n, [x_stream], [out], **params)
        if requant is not None:
            self.engines[-1].origin.append(requant.name)

    # ---- one method per IntGraph op ---------------------------------------------------------
    def plan_Conv(self, n: Node, requant: Node | None) -> None:
        g = self.g
        a = n.attrs
        if a.get("x_zero_point", 0):
            raise PlanError(f"{n.name}: input zero point not folded")
        xt = g.tensors[n.inputs[0]]
        c, h, w_ = spatial(xt.shape)
        w = g.const(n.inputs[1])
        o = w.shape[0]
        nd = len(xt.shape) - 2
        k = list(w.shape[2:]) if nd == 2 else [1, w.shape[2]]
        strides = a["strides"] if nd == 2 else [1, a["strides"][0]]
        dil = a["dilations"] if nd == 2 else [1, a["dilations"][0]]
        pads = a["pads"] if nd == 2 else [0, a["pads"][0], 0, a["pads"][1]]
        group = a["group"]
        # dense weights (O, C, kh, kw): grouped/depthwise blocks with zeros elsewhere
        dense = np.zeros((o, c, k[0], k[1]), dtype=np.int64)
        cg, og = c // group, o // group
        wr = w.reshape(o, cg, k[0], k[1])
        for gi in range(group):
            dense[gi * og:(gi + 1) * og, gi * cg:(gi + 1) * cg] = wr[gi * og:(gi + 1) * og]
        wmat = dense.transpose(0, 2, 3, 1).reshape(o, -1)  # columns in (ky, kx, c) order
        bias = g.const(n.inputs[2]) if len(n.inputs) > 2 else np.zeros(o, np.int64)
        x = self.fetch(n.inputs[0], canonical_order(xt.shape))
        oh = (h + pads[0] + pads[2] - dil[0] * (k[0] - 1) - 1) // strides[0] + 1
        ow = (w_ + pads[1] + pads[3] - dil[1] * (k[1] - 1) - 1) // strides[1] + 1
        pointwise = k == [1, 1] and strides == [1, 1] and not any(pads)
        if not pointwise:
            win = self.new_stream(f"{n.inputs[0]}_windows", (oh * ow, k[0] * k[1] * c),
                                  xt.dtype)
            self.add("SlidingWindow", n, [x], [win], channels=c, height=h, width=w_,
                     kernel=k, stride=strides, dilation=dil, pads=pads,
                     pad_value=a["pad_value"], out_height=oh, out_width=ow, dtype=xt.dtype)
            x = win
        self.mvau(n, requant, x, oh * ow, wmat, bias, None)

    def plan_MatMul(self, n: Node, requant: Node | None) -> None:
        g = self.g
        if not g.is_const(n.inputs[1]):
            self.act_matmul(n, requant)
            return
        if n.attrs.get("x_zero_point", 0) or n.attrs.get("w_zero_point", 0):
            raise PlanError(f"{n.name}: zero points not folded")
        xt = g.tensors[n.inputs[0]]
        w = g.const(n.inputs[1])  # (K, N)
        k, nn = w.shape
        rows = xt.size // k
        s, order = self.view[n.inputs[0]]
        blocks = order.reshape(rows, k)
        row_of = blocks // k
        within = blocks % k
        ok = bool(np.all(row_of == row_of[:, :1]) and np.all(within == within[:1]))
        if not ok:  # rows of k contiguous: row-major (a 3-D input streams channels-last)
            order = np.arange(xt.size)
            s = self.fetch(n.inputs[0], order)
            blocks = order.reshape(rows, k)
        perm = blocks[0] % k  # stream column j carries logical element perm[j]
        row_seq = blocks[:, 0] // k
        wmat = w[perm, :].T  # (N, K) in stream order
        bias = g.const(n.inputs[2]) if len(n.inputs) > 2 else np.zeros(nn, np.int64)
        out_order = (row_seq[:, None] * nn + np.arange(nn)[None, :]).ravel()
        self.mvau(n, requant, s, rows, wmat, bias, None, out_order=out_order)

    def act_matmul(self, n: Node, requant: Node | None) -> None:
        """MatMul of two activations: an ActMatMul on row-major streams of both, then the
        Requant engine (per tensor: a run-time right operand has one scale)."""
        g = self.g
        at, wt = g.tensors[n.inputs[0]], g.tensors[n.inputs[1]]
        if len(at.shape) < 2 or len(wt.shape) < 2:
            raise PlanError(f"{n.name}: MatMul of two activations needs 2-D or higher operands")
        a_lead, w_lead = tuple(at.shape[:-2]), tuple(wt.shape[:-2])
        width = max(len(a_lead), len(w_lead))
        a_lead = (1,) * (width - len(a_lead)) + a_lead
        w_lead = (1,) * (width - len(w_lead)) + w_lead
        shared_w = all(d == 1 for d in w_lead)  # one W for every batch of A
        if a_lead != w_lead and not shared_w:
            raise PlanError(f"{n.name}: MatMul of two activations with broadcast batch axes "
                            f"{at.shape} x {wt.shape} has no streaming engine yet")
        rows, k = at.shape[-2], at.shape[-1]
        nn = wt.shape[-1]
        batch = int(np.prod(a_lead, dtype=np.int64))
        bias = g.const(n.inputs[2]) if len(n.inputs) > 2 else np.zeros(nn, np.int64)
        a_s = self.fetch(n.inputs[0], np.arange(at.size))
        w_s = self.fetch(n.inputs[1], np.arange(wt.size))
        out = self.produce(n.outputs[0], order=np.arange(g.tensors[n.outputs[0]].size))
        self.add("ActMatMul", n, [a_s, w_s], [out], batch=batch, rows=rows, k=k, n=nn,
                 x_zero_point=int(n.attrs.get("x_zero_point", 0)),
                 w_zero_point=int(n.attrs.get("w_zero_point", 0)),
                 bias=np.broadcast_to(bias, (nn,)).astype(np.int64), shared_w=shared_w,
                 out_dtype=g.tensors[n.outputs[0]].dtype)
        if requant is not None:
            self.plan_Requant(requant, None)

    def plan_MaxPool(self, n: Node, _r) -> None:
        g = self.g
        a = n.attrs
        xt = g.tensors[n.inputs[0]]
        c, h, w_ = spatial(xt.shape)
        nd = len(xt.shape) - 2
        if nd == 1:
            k, s, d = [1, a["kernel_shape"][0]], [1, a["strides"][0]], [1, a["dilations"][0]]
            p = [0, a["pads"][0], 0, a["pads"][1]]
        else:
            k, s, d, p = a["kernel_shape"], a["strides"], a["dilations"], list(a["pads"])
        sizes = (h, w_)
        outs = []
        for i in range(2):
            src_i = i if nd == 2 else (None if i == 0 else 0)
            if src_i is None:
                outs.append(1)
                continue
            o = pooled_size(sizes[i], k[i], s[i], p[i], p[i + 2], d[i], a.get("ceil_mode", 0))
            # ceil mode: extend the end padding so floor division gives the same count
            need = (o - 1) * s[i] + d[i] * (k[i] - 1) + 1 - sizes[i] - p[i]
            p[i + 2] = max(p[i + 2], need)
            outs.append(o)
        x = self.fetch(n.inputs[0], canonical_order(xt.shape))
        win = self.new_stream(f"{n.inputs[0]}_windows", (outs[0] * outs[1], k[0] * k[1] * c),
                              xt.dtype)
        self.add("SlidingWindow", n, [x], [win], channels=c, height=h, width=w_, kernel=k,
                 stride=s, dilation=d, pads=p, pad_value=xt.dtype.min, out_height=outs[0],
                 out_width=outs[1], dtype=xt.dtype)
        out = self.produce(n.outputs[0])
        self.add("WindowMax", n, [win], [out], rows=outs[0] * outs[1], window=k[0] * k[1],
                 channels=c, dtype=xt.dtype)

    def plan_GlobalAvgPool(self, n: Node, _r) -> None:
        xt = self.g.tensors[n.inputs[0]]
        c, h, w_ = spatial(xt.shape)
        x = self.fetch(n.inputs[0], canonical_order(xt.shape))
        out = self.produce(n.outputs[0])
        self.add("GlobalSum", n, [x], [out], channels=c, pixels=h * w_,
                 zero_point=n.attrs["x_zero_point"], in_dtype=xt.dtype,
                 out_dtype=self.g.tensors[n.outputs[0]].dtype)

    def plan_ReduceSum(self, n: Node, _r) -> None:
        """The GlobalSum engine: ``pixels`` = the reduced elements, ``channels`` = the kept
        ones, so the input streams reduced axes outermost, kept axes innermost (row-major
        within each), and the sums leave in the output's row-major order."""
        xt = self.g.tensors[n.inputs[0]]
        axes = list(n.attrs["axes"])
        kept = [a for a in range(len(xt.shape)) if a not in axes]
        idx = np.arange(xt.size).reshape(xt.shape)
        x = self.fetch(n.inputs[0], idx.transpose(axes + kept).ravel())
        out_t = self.g.tensors[n.outputs[0]]
        out = self.produce(n.outputs[0], order=np.arange(out_t.size))
        self.add("GlobalSum", n, [x], [out], channels=int(out_t.size),
                 pixels=int(xt.size // out_t.size), zero_point=n.attrs["x_zero_point"],
                 in_dtype=xt.dtype, out_dtype=out_t.dtype)

    def plan_Slice(self, n: Node, _r) -> None:
        """A Reorder that buffers the input and emits only the slice's elements, in the
        order they arrive (``read`` indexes the input stream, ``in_length`` its length)."""
        s, in_order = self.view[n.inputs[0]]
        xt = self.g.tensors[n.inputs[0]]
        a = n.attrs
        index = [slice(None)] * len(xt.shape)
        index[a["axis"]] = slice(a["start"], a["end"])
        src = np.arange(xt.size).reshape(xt.shape)[tuple(index)].ravel()  # output flat -> in
        pos = _inverse(in_order)[src]  # output flat index -> its input stream position
        out_order = np.argsort(pos, kind="stable")
        out = self.produce(n.outputs[0], order=out_order)
        self.add("Reorder", n, [s], [out], read=pos[out_order], in_length=int(xt.size),
                 dtype=xt.dtype)

    def _elementwise_channels(self, n: Node, axis: int | None) -> dict:
        if axis is None:
            return {"channels": 1, "channel_stride": 1}
        s, order = self.view[n.inputs[0]]
        shape = self.g.tensors[n.inputs[0]].shape
        pat = channel_pattern(order, shape, axis)
        if pat is None:
            raise PlanError(f"{n.name}: per-channel parameters on an irregular stream order")
        return {"channels": pat[0], "channel_stride": pat[1]}

    def plan_Requant(self, n: Node, _r) -> None:
        s, _ = self.view[n.inputs[0]]
        ch = self._elementwise_channels(n, n.attrs.get("axis"))
        params = self.requant_params(n, ch["channels"])
        out = self.produce(n.outputs[0], order=self.view[n.inputs[0]][1])
        self.add("Requant", n, [s], [out], in_dtype=self.g.tensors[n.inputs[0]].dtype,
                 **ch, **params)

    def plan_Lut(self, n: Node, _r) -> None:
        s, order = self.view[n.inputs[0]]
        ch = self._elementwise_channels(n, n.attrs.get("axis"))
        table = np.atleast_2d(self.g.const(n.inputs[1]))
        out = self.produce(n.outputs[0], order=order)
        self.add("Lut", n, [s], [out], table=table, x_min=n.attrs["x_min"],
                 in_dtype=self.g.tensors[n.inputs[0]].dtype,
                 out_dtype=self.g.tensors[n.outputs[0]].dtype, **ch)

    def plan_Clamp(self, n: Node, _r) -> None:
        s, order = self.view[n.inputs[0]]
        out = self.produce(n.outputs[0], order=order)
        self.add("Clamp", n, [s], [out], lo=n.attrs["lo"], hi=n.attrs["hi"],
                 dtype=self.g.tensors[n.outputs[0]].dtype)

    def _binary(self, n: Node, kind: str) -> None:
        g = self.g
        a, b = n.inputs
        out_shape = g.tensors[n.outputs[0]].shape
        acts = [t for t in (a, b) if not g.is_const(t)]
        if not acts:
            raise PlanError(f"{n.name}: {kind} of two constants")
        # the stream order of a full-size activation operand; a smaller one (numpy
        # broadcasting, e.g. a (1, C, 1, 1) squeeze-excite scale) is spread over that order
        full_size = [t for t in acts if g.tensors[t].shape == out_shape]
        order = self.view[full_size[0]][1] if full_size else canonical_order(out_shape)
        ins = [self.fetch(t, order) if g.tensors[t].shape == out_shape
               else self.broadcast(n, t, out_shape, order) for t in acts]
        consts = {}
        for i, t in enumerate((a, b)):
            if g.is_const(t):
                full = np.broadcast_to(g.const(t), out_shape).ravel()
                consts[i] = full[order]
        out = self.produce(n.outputs[0], order=order)
        self.add(kind, n, ins, [out], attrs=dict(n.attrs), constants=consts,
                 in_dtypes=[g.tensors[t].dtype for t in (a, b)],
                 out_dtype=g.tensors[n.outputs[0]].dtype)

    def broadcast(self, n: Node, tensor: str, out_shape, order: np.ndarray) -> str:
        """A stream of ``tensor`` broadcast (numpy rules) to ``out_shape`` in ``order``: a
        Reorder that buffers the small tensor and reads position ``read[i]`` at i."""
        s, in_order = self.view[tensor]
        t = self.g.tensors[tensor]
        if np.broadcast_shapes(t.shape, tuple(out_shape)) != tuple(out_shape):
            raise PlanError(f"{n.name}: {tensor} {t.shape} does not broadcast to {out_shape}")
        src = np.broadcast_to(np.arange(t.size).reshape(t.shape), out_shape).ravel()
        read = _inverse(in_order)[src[order]]  # output position -> input stream position
        out = self.new_stream(f"{tensor}_broadcast", out_shape, t.dtype, order)
        self.add("Reorder", n, [s], [out], read=read, in_length=int(t.size), dtype=t.dtype)
        return out

    def plan_Add(self, n: Node, _r) -> None:
        self._binary(n, "Add")

    def plan_Mul(self, n: Node, _r) -> None:
        self._binary(n, "Mul")

    def plan_Concat(self, n: Node, _r) -> None:
        g = self.g
        axis = n.attrs["axis"]
        out_t = g.tensors[n.outputs[0]]
        out_order = canonical_order(out_t.shape)
        # which input, and which of its flat elements, each output flat index comes from
        src_input = np.empty(out_t.size, np.int64)
        src_flat = np.empty(out_t.size, np.int64)
        offset = 0
        ins = []
        for i, t in enumerate(n.inputs):
            shape = g.tensors[t].shape
            idx = np.arange(int(np.prod(shape))).reshape(shape)
            sl = [slice(None)] * len(shape)
            sl[axis] = slice(offset, offset + shape[axis])
            full_in = np.full(out_t.shape, -1, np.int64)
            full_in[tuple(sl)] = idx
            mask = full_in.ravel() >= 0
            src_input[mask] = i
            src_flat[mask] = full_in.ravel()[mask]
            offset += shape[axis]
        seq_in = src_input[out_order]
        seq_flat = src_flat[out_order]
        consts = {}
        for i, t in enumerate(n.inputs):
            if g.is_const(t):  # a ROM in the engine: its words in consumption order
                consts[i] = np.asarray(g.const(t), np.int64).ravel()[seq_flat[seq_in == i]]
            else:
                ins.append(self.fetch(t, seq_flat[seq_in == i]))
        if not ins:
            raise PlanError(f"{n.name}: Concat of constants only")
        runs: list[list[int]] = []
        for v in seq_in:
            if runs and runs[-1][0] == v:
                runs[-1][1] += 1
            else:
                runs.append([int(v), 1])
        pattern, repeat = _periodic(runs)
        out = self.produce(n.outputs[0], order=out_order)
        self.add("Concat", n, ins, [out], pattern=pattern, repeat=repeat,
                 dtype=out_t.dtype, **({"constants": consts} if consts else {}))

    def plan_Reshape(self, n: Node, _r) -> None:
        self.view[n.outputs[0]] = self.view[n.inputs[0]]  # row-major flat indices unchanged

    def plan_Transpose(self, n: Node, _r) -> None:
        s, order = self.view[n.inputs[0]]
        shape = self.g.tensors[n.inputs[0]].shape
        perm = n.attrs["perm"]
        # flat index in the output of every flat index of the input
        idx = np.arange(int(np.prod(shape))).reshape(shape).transpose(perm).ravel()
        out_of_in = _inverse(idx)
        self.view[n.outputs[0]] = (s, out_of_in[order])

    def row_stream(self, tensor: str, same_within: bool) -> tuple[str, np.ndarray]:
        """The stream of ``tensor`` for an engine working on rows along its last axis: each
        row's n elements contiguous in the stream (with ``same_within``, in the same order in
        every row). The stream as it is when it already is, else a row-major Reorder (a 3-D
        activation streams channels-last: axis 1 fastest, not the last axis)."""
        s, order = self.view[tensor]
        n = self.g.tensors[tensor].shape[-1]
        blocks = order.reshape(-1, n)
        ok = bool(np.all(blocks // n == blocks[:, :1] // n))
        if ok and same_within:
            ok = bool(np.all(blocks % n == blocks[:1] % n))
        if not ok:
            order = np.arange(order.size)
            s = self.fetch(tensor, order)
        return s, order

    def plan_Softmax(self, n: Node, _r) -> None:
        """Softmax engine (``hw/engines/softmax.py``); the Requant after it is its own."""
        g = self.g
        xt = g.tensors[n.inputs[0]]
        s, order = self.row_stream(n.inputs[0], same_within=False)
        row = xt.shape[-1]
        table = np.asarray(g.const(n.inputs[1]), np.int64).ravel()
        span = xt.dtype.max - xt.dtype.min + 1  # d = max(x) - x < the code span
        if table.size < span or table[0] <= 0 or table.min() < 0:
            raise PlanError(f"{n.name}: Softmax exp table ({table.size} entries) must cover "
                            f"{span} codes, be >= 0 and have table[0] > 0")
        used = table[:span]
        s_min = int(used[0]) + (row - 1) * int(used.min())
        out = self.produce(n.outputs[0], order=order)
        self.add("Softmax", n, [s], [out], rows=xt.size // row, n=row, table=table,
                 attrs={k: int(n.attrs[k]) for k in ("E", "F", "M")},
                 recip_bits=quotient_bits(n.attrs["F"], s_min), in_dtype=xt.dtype,
                 out_dtype=g.tensors[n.outputs[0]].dtype)

    def plan_LayerNorm(self, n: Node, _r) -> None:
        """LayerNorm engine (``hw/engines/layernorm.py``): gamma and B in stream order."""
        import math
        g = self.g
        xt = g.tensors[n.inputs[0]]
        s, order = self.row_stream(n.inputs[0], same_within=True)
        row = xt.shape[-1]
        within = order[:row] % row  # stream position j of a row holds element within[j]
        gamma = np.broadcast_to(np.asarray(g.const(n.inputs[1]), np.int64), (row,))[within]
        bias = np.broadcast_to(np.asarray(g.const(n.inputs[2]), np.int64), (row,))[within]
        a = {k: int(n.attrs[k]) for k in ("T", "P", "K", "E2")}
        # V' = (n sum c^2 - (sum c)^2) 2^2T + E2; n sum c^2 - (sum c)^2 = sum over pairs
        # (c_i - c_j)^2 is largest with half the codes at each end: (n // 2)(n - n // 2) span^2
        span = xt.dtype.max - xt.dtype.min
        vp_max = (((row // 2) * (row - row // 2) * span * span) << (2 * a["T"])) + a["E2"]
        out = self.produce(n.outputs[0], order=order)
        self.add("LayerNorm", n, [s], [out], rows=xt.size // row, n=row, gamma=gamma,
                 bias=bias, attrs=a, sqrt_bits=max(1, (vp_max.bit_length() + 1) // 2),
                 recip_bits=quotient_bits(a["K"], max(math.isqrt(a["E2"]), 1)),
                 in_dtype=xt.dtype, out_dtype=g.tensors[n.outputs[0]].dtype)

    def plan_AvgPool(self, n: Node, _r) -> None:
        """SlidingWindow (pads hold zx, whose xf is 0) + WindowAvg (rounded sums and
        per-count thresholds, see ``avgpool.py``)."""
        from ..ops.maxpool import window_positions
        from . import avgpool as ap
        g = self.g
        a = n.attrs
        xt = g.tensors[n.inputs[0]]
        c, h, w_ = spatial(xt.shape)
        nd = len(xt.shape) - 2
        table = g.const(n.inputs[1])
        xfix, e_min = ap.fixed_point_table(table[0], table[1])
        zero_codes = np.flatnonzero(table[0] == 0)
        if zero_codes.size != 1:
            raise PlanError(f"{n.name}: AvgPool input scale gives no unique zero code")
        zx = int(zero_codes[0]) + a["x_min"]
        if nd == 1:
            k, s, d = [1, a["kernel_shape"][0]], [1, a["strides"][0]], [1, 1]
            p = [0, a["pads"][0], 0, a["pads"][1]]
        else:
            k, s, d, p = list(a["kernel_shape"]), list(a["strides"]), [1, 1], list(a["pads"])
        sizes = (h, w_)
        outs = []
        for i in range(2):
            if nd == 1 and i == 0:
                outs.append(1)
                continue
            ii = i if nd == 2 else 0
            o = pooled_size(sizes[i], k[i], s[i], a["pads"][ii], a["pads"][ii + nd], 1,
                            a.get("ceil_mode", 0))
            p[i + 2] = max(p[i + 2], (o - 1) * s[i] + k[i] - sizes[i] - p[i])
            outs.append(o)
        # in-bounds count of every output pixel (the reference's window geometry)
        cnt = None
        for _idx, valid in window_positions(xt.shape[2:], a):
            cnt = valid.astype(np.int64) if cnt is None else cnt + valid
        taps = k[0] * k[1]
        cnt = np.full(outs[0] * outs[1], taps) if a["count_include_pad"] else cnt.ravel()
        counts = sorted({int(v) for v in cnt})
        s_lo = taps * int(min(xfix.min(), 0))
        s_hi = taps * int(max(xfix.max(), 0))
        thr = np.stack([ap.thresholds(e_min, cn, a["sy"], a["zy"], a["lo"], a["hi"], s_lo, s_hi)
                        for cn in counts])
        x = self.fetch(n.inputs[0], canonical_order(xt.shape))
        win = self.new_stream(f"{n.inputs[0]}_windows", (outs[0] * outs[1], taps * c),
                              xt.dtype)
        self.add("SlidingWindow", n, [x], [win], channels=c, height=h, width=w_, kernel=k,
                 stride=s, dilation=d, pads=p, pad_value=zx, out_height=outs[0],
                 out_width=outs[1], dtype=xt.dtype)
        out = self.produce(n.outputs[0])
        self.add("WindowAvg", n, [win], [out], rows=outs[0] * outs[1], window=taps,
                 channels=c, x_min=a["x_min"], fixed_table=xfix,
                 count_index=np.searchsorted(counts, cnt), thresholds=thr, lo=a["lo"],
                 in_dtype=xt.dtype, out_dtype=g.tensors[n.outputs[0]].dtype,
                 sum_bits=IntType.fit(s_lo, s_hi).bits)


def quotient_bits(f_bits: int, divisor_min: int) -> int:
    """Bits of floor(2^F / S) for every divisor S >= ``divisor_min``: the cycles of a
    restoring divider that skips the quotient's leading zeros (at least 1)."""
    return max(1, ((1 << int(f_bits)) // max(int(divisor_min), 1)).bit_length())


def _periodic(runs: list[list[int]]) -> tuple[list[list[int]], int]:
    """Shortest prefix of ``runs`` whose repetition gives all of them."""
    n = len(runs)
    for p in range(1, n + 1):
        if n % p == 0 and all(runs[i] == runs[i % p] for i in range(n)):
            return runs[:p], n // p
    return runs, 1


def insert_forks(df: Dataflow) -> None:
    """A stream read by several engines (or by an engine and the host) goes through a Fork
    whose branches each buffer the whole tensor, so no branch can starve another (the safe
    depth; ``schedule`` may lower it)."""
    readers: dict[str, int] = {}
    for e in df.engines:
        for s in e.inputs:
            readers[s] = readers.get(s, 0) + 1
    for s in df.outputs:
        readers[s] = readers.get(s, 0) + 1
    for s, count in readers.items():
        if count < 2:
            continue
        src = df.streams[s]
        branches = []
        for i in range(count):
            name = f"{s}_fork{i}"
            df.streams[name] = Stream(name, src.dtype, src.shape, src.order, src.length + 2)
            if s in df.tensors:
                df.tensors[name] = df.tensors[s]
            branches.append(name)
        it = iter(branches)
        for e in df.engines:
            e.inputs = [next(it) if x == s else x for x in e.inputs]
        df.outputs = [next(it) if x == s else x for x in df.outputs]
        df.engines.append(Engine("Fork", f"{s}.Fork", [s], branches, {"dtype": src.dtype}))
    order_engines(df)


def order_engines(df: Dataflow) -> None:
    """Topological order of the engines (forks were appended at the end)."""
    ready = set(df.inputs)
    done: list[Engine] = []
    pending = list(df.engines)
    while pending:
        for e in pending:
            if all(s in ready for s in e.inputs):
                done.append(e)
                ready.update(e.outputs)
                pending.remove(e)
                break
        else:
            raise PlanError("dataflow graph has a cycle")
    df.engines = done


def plan(g: IntGraph) -> Dataflow:
    """The streaming dataflow of ``g`` (PE = SIMD = 1 everywhere; ``fold`` sets them)."""
    return Planner(g).run()
