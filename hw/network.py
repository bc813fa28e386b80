"""The network top: every engine of a ``compiler.dataflow`` plan, a FIFO on every stream.

``Network(df)`` is an amaranth ``Component`` with one input stream per graph input (the host's
input tensor, one element per beat, in ``df.streams[df.inputs[k]].order``) and one output
stream per graph output (the output tensor in the order ``df.output_orders[k]`` says). A
network with one input and one output names them ``i`` and ``o``; with several, ``i0``,
``i1``, ... and ``o0``, ``o1``, ... in graph order (``in_ports``/``out_ports``), every stream
independent of the others (its own valid/ready). Every engine comes from the
registry (``hw.engines.build``); every stream of the plan — the host edges included — gets a
buffer of the plan's depth: a ``SkidBuffer`` (two registers, one beat a cycle) where the plan
asks for at most 2 words, else an ``amaranth.lib.fifo.SyncFIFOBuffered`` of that depth (at
least 3: a buffered FIFO of depth 2 passes one beat every other cycle).

``ports()`` describes the Verilog ports of ``amaranth.back.verilog.convert(net, name=TOP)``
(stable names: ``clk``, ``rst``, ``i__payload``/``i__valid``/``i__ready``,
``o__payload``/``o__valid``/``o__ready``; ``i0__payload``, ... with several streams) so the
accelerator drops into a user's design; ``ports.json`` is that dict.

With ``probes=True`` a third output, ``probe``, carries per edge the FIFO level and its four
handshake bits (``probe_fields`` says where), for a simulation watchdog to name a stalled edge.
With ``taps=True`` (simulation only) ``tap_data`` carries every edge's FIFO write data and
``tap_we`` one bit per edge, high when a word is written (``w_en & w_rdy``): ``tap_fields``
says where, so a testbench can record every layer's output stream.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import numpy as np
from amaranth import Cat, Elaboratable, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..compiler.dataflow.spec import Dataflow
from .engines import build
from .engines.common import payload_shape

TOP = "intflow_network"
MIN_FIFO_DEPTH = 3  # of a SyncFIFOBuffered; plan depths up to SKID_DEPTH use a SkidBuffer
SKID_DEPTH = 2
HOST = "host"


class SkidBuffer(Elaboratable):
    """A two-word FIFO of registers with the ``SyncFIFOBuffered`` port names used here: full
    rate (a beat in and out every cycle), registered ``r_data``/``r_rdy`` and ``w_rdy`` (no
    combinational path from ``r_en`` to ``w_rdy``), 2 * width flip-flops and a width-bit
    multiplexer, where a 3-deep ``SyncFIFOBuffered`` costs about twice that on iCE40.

    ``main`` is the output word; ``skid`` takes a beat written while ``main`` is full and not
    read, and ``w_rdy`` is low while it holds one (the buffer holds 2 words: the plan's depth).
    """

    def __init__(self, width: int):
        self.width, self.depth = width, SKID_DEPTH
        self.w_data, self.w_en, self.w_rdy = Signal(width), Signal(), Signal()
        self.r_data, self.r_en, self.r_rdy = Signal(width), Signal(), Signal()
        self.level = Signal(range(SKID_DEPTH + 1))

    def elaborate(self, platform):
        m = Module()
        main_v, skid_v = Signal(), Signal()
        skid = Signal(self.width)
        m.d.comb += [self.w_rdy.eq(~skid_v), self.r_rdy.eq(main_v),
                     self.level.eq(main_v + skid_v)]
        write = self.w_en & ~skid_v
        read = self.r_en & main_v
        with m.If(read | ~main_v):  # main empties or is empty: refill from skid, else input
            m.d.sync += [self.r_data.eq(Mux(skid_v, skid, self.w_data)),
                         main_v.eq(skid_v | write), skid_v.eq(0)]
        with m.Elif(write):  # main full and kept: the beat waits in skid
            m.d.sync += [skid.eq(self.w_data), skid_v.eq(1)]
        return m


@dataclass
class Edge:
    """One stream of the plan: who writes it, who reads it (``host`` at the boundary)."""

    stream: str
    producer: str  # engine instance name, or "host"
    producer_port: str
    consumer: str
    consumer_port: str
    width: int
    depth: int  # buffer depth built: the plan's (SKID_DEPTH when at most that, else at least
    # MIN_FIFO_DEPTH)
    plan_depth: int


@dataclass
class TapField:
    edge: str
    bit: int  # of tap_we
    offset: int  # of tap_data
    width: int


@dataclass
class ProbeField:
    edge: str
    name: str  # level, w_valid, w_ready, r_valid, r_ready
    offset: int
    width: int


def built_depth(plan_depth: int) -> int:
    """The depth of the buffer built for a plan depth: a SkidBuffer's 2 up to 2, else at
    least ``MIN_FIFO_DEPTH``."""
    return SKID_DEPTH if plan_depth <= SKID_DEPTH else max(plan_depth, MIN_FIFO_DEPTH)


def port_names(prefix: str, n: int) -> list[str]:
    """``["i"]`` for one stream (the single-IO names users' ports.json have), else ``i0``..."""
    return [prefix] if n == 1 else [f"{prefix}{k}" for k in range(n)]


def instance_name(engine_name: str) -> str:
    """A Verilog-friendly instance name for an engine (stable: derived from its name)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", engine_name).strip("_") or "engine"


class Network(wiring.Component):
    def __init__(self, df: Dataflow, *, probes: bool = False, taps: bool = False):
        if not df.inputs or not df.outputs:
            raise ValueError(f"the plan has {len(df.inputs)} inputs and {len(df.outputs)} "
                             "outputs; the network top needs at least one of each")
        through = set(df.inputs) & set(df.outputs)
        if through:
            raise ValueError(f"the plan has no engine between its input and its output "
                             f"({', '.join(sorted(through))})")
        self.df = df
        self.probes = probes
        self.taps = taps
        self.in_ports = port_names("i", len(df.inputs))
        self.out_ports = port_names("o", len(df.outputs))
        self.names: dict[str, str] = {}
        for e in df.engines:
            base = instance_name(e.name)
            name, k = base, 1
            while name in self.names.values():
                name, k = f"{base}_{k}", k + 1
            self.names[e.name] = name
        self.edges = self._edges()
        self.probe_fields: list[ProbeField] = []
        offset = 0
        for ed in self.edges:
            for field, width in (("level", (ed.depth).bit_length()), ("w_valid", 1),
                                 ("w_ready", 1), ("r_valid", 1), ("r_ready", 1)):
                self.probe_fields.append(ProbeField(ed.stream, field, offset, width))
                offset += width
        self.probe_width = offset
        self.tap_fields: list[TapField] = []
        offset = 0
        for k, ed in enumerate(self.edges):
            self.tap_fields.append(TapField(ed.stream, k, offset, ed.width))
            offset += ed.width
        self.tap_width = offset
        sig = {}
        for port, s in zip(self.in_ports, df.inputs):
            sig[port] = In(stream.Signature(payload_shape(df.streams[s].dtype)))
        for port, s in zip(self.out_ports, df.outputs):
            sig[port] = Out(stream.Signature(payload_shape(df.streams[s].dtype)))
        if probes:
            sig["probe"] = Out(unsigned(self.probe_width))
        if taps:
            sig["tap_data"] = Out(unsigned(self.tap_width))
            sig["tap_we"] = Out(unsigned(len(self.edges)))
        super().__init__(sig)

    def _edges(self) -> list[Edge]:
        df = self.df
        ends: dict[str, dict] = {s: {} for s in df.streams}
        for port, s in zip(self.in_ports, df.inputs):
            ends[s]["producer"] = (HOST, port)
        for port, s in zip(self.out_ports, df.outputs):
            if "consumer" in ends[s]:
                raise ValueError(f"stream {s} is returned to the host twice (the plan should "
                                 "fork it)")
            ends[s]["consumer"] = (HOST, port)
        for e in df.engines:
            for k, s in enumerate(e.outputs):
                ends[s]["producer"] = (self.names[e.name], f"o{k}")
            for k, s in enumerate(e.inputs):
                if "consumer" in ends[s]:
                    raise ValueError(f"stream {s} has two readers (the plan should fork it)")
                ends[s]["consumer"] = (self.names[e.name], f"i{k}")
        edges = []
        for s, st in df.streams.items():
            end = ends[s]
            if "producer" not in end and "consumer" not in end:
                continue  # a stream the plan no longer uses
            for side in ("producer", "consumer"):
                if side not in end:
                    raise ValueError(f"stream {s} has no {side}")
            edges.append(Edge(s, *end["producer"], *end["consumer"],
                              payload_shape(st.dtype).width,
                              built_depth(int(st.depth)), int(st.depth)))
        return edges

    def elaborate(self, platform):
        m = Module()
        comps = {}
        for e in self.df.engines:
            comp = build(e, self.df.streams)
            comps[self.names[e.name]] = comp
            m.submodules[self.names[e.name]] = comp
        probe, tap_data, tap_we = [], [], []
        for ed in self.edges:
            fifo = (SkidBuffer(ed.width) if ed.depth <= SKID_DEPTH
                    else SyncFIFOBuffered(width=ed.width, depth=ed.depth))
            m.submodules[f"fifo_{instance_name(ed.stream)}"] = fifo
            src = getattr(self if ed.producer == HOST else comps[ed.producer],
                          ed.producer_port)
            dst = getattr(self if ed.consumer == HOST else comps[ed.consumer],
                          ed.consumer_port)
            m.d.comb += [
                fifo.w_data.eq(src.payload),
                fifo.w_en.eq(src.valid),
                src.ready.eq(fifo.w_rdy),
                dst.payload.eq(fifo.r_data),
                dst.valid.eq(fifo.r_rdy),
                fifo.r_en.eq(dst.ready),
            ]
            probe += [fifo.level, fifo.w_en, fifo.w_rdy, fifo.r_rdy, fifo.r_en]
            tap_data.append(fifo.w_data)
            tap_we.append(fifo.w_en & fifo.w_rdy)
        if self.probes:
            m.d.comb += self.probe.eq(Cat(*probe))
        if self.taps:
            m.d.comb += [self.tap_data.eq(Cat(*tap_data)), self.tap_we.eq(Cat(*tap_we))]
        return m

    # ---- the user's view ----------------------------------------------------------------------
    def ports(self, g=None) -> dict:
        """The Verilog interface of ``verilog.convert(self, name=TOP)`` (``ports.json``).

        ``g`` (the IntGraph) adds the tensor names and shapes. ``inputs``/``outputs`` list
        every stream port in graph order; a single-IO network also has ``input``/``output``
        (the same dicts), as before multi-IO."""
        df = self.df

        def side(port: str, sname: str, order: np.ndarray, host) -> dict:
            st = df.streams[sname]
            shape = payload_shape(st.dtype)
            d = {
                "valid": f"{port}__valid", "ready": f"{port}__ready",
                "payload": f"{port}__payload", "width": shape.width, "signed": shape.signed,
                "stream": sname, "elements_per_inference": st.length,
                "shape": [int(v) for v in st.shape],
                "order": [int(v) for v in np.ravel(order)],
            }
            if host is not None:  # the ONNX side: which input/output, how codes map to it
                d["tensor"] = host.tensor
                d["onnx_name"] = host.onnx_name
                q = getattr(host, "quantize", None) or getattr(host, "quant", None)
                if q is not None:
                    d["quantization"] = q.to_json()
                if hasattr(host, "kind"):
                    d["host_epilogue"] = host.kind
            return d

        orders = list(df.output_orders)
        ins = [side(p, s, df.streams[s].order, g.inputs[k] if g is not None else None)
               for k, (p, s) in enumerate(zip(self.in_ports, df.inputs))]
        outs = [side(p, s, orders[k], g.outputs[k] if g is not None else None)
                for k, (p, s) in enumerate(zip(self.out_ports, df.outputs))]
        single = {"input": ins[0], "output": outs[0]} if len(ins) == len(outs) == 1 else {}
        return {
            "top": TOP,
            "clock": {"name": "clk", "edge": "rising"},
            "reset": {"name": "rst", "active": "high", "synchronous": True,
                      "note": "clears every engine and FIFO; a sample cut by reset is lost, "
                              "the next complete sample computes normally"},
            "protocol": "valid/ready stream (amaranth.lib.stream): a beat moves at a rising "
                        "clock edge where valid and ready are both high; the payload is one "
                        "tensor element, an integer code in two's complement (signed) or "
                        "plain binary. 'order'[k] is the row-major flat index, within the "
                        "tensor 'shape' (batch axis 1), of the element carried by beat k of "
                        "an inference; inferences follow each other with no gap or marker. "
                        "With several inputs or outputs every stream is independent: each "
                        "carries its tensor of inference k after that of inference k - 1.",
            **single,
            "inputs": ins,
            "outputs": outs,
            "notes": ["Icarus Verilog: compile with -g2005 (not -g2012): under SystemVerilog "
                      "rules a 'reg x = 0' initialiser makes no event at time 0, so yosys's "
                      "time-zero trigger of combinational always blocks never fires and "
                      "they stay X until an input changes. Verilator and synthesis are "
                      "unaffected."],
            "fifos": [{"stream": ed.stream, "from": ed.producer, "to": ed.consumer,
                       "depth": ed.depth, "width": ed.width} for ed in self.edges],
            "engines": [{"instance": self.names[e.name], "kind": e.kind, "name": e.name,
                         "origin": list(e.origin)} for e in df.engines],
        }

    def write_ports_json(self, path: str | os.PathLike, g=None) -> None:
        with open(path, "w") as f:
            json.dump(self.ports(g), f, indent=1)
            f.write("\n")


def write_rtl(df: Dataflow, out_dir: str | os.PathLike, g=None) -> list[str]:
    """Write ``<out_dir>/intflow_network.v`` (the network top, ports as ``ports()`` says) and
    ``<out_dir>/ports.json``; returns the paths written."""
    from amaranth.back import verilog

    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    net = Network(df)
    v_path = os.path.join(out, f"{TOP}.v")
    with open(v_path, "w") as f:
        f.write(verilog.convert(net, name=TOP))
    j_path = os.path.join(out, "ports.json")
    net.write_ports_json(j_path, g)
    return [v_path, j_path]
