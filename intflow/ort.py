"""onnxruntime as the truth: the session configuration intflow's ``ort`` mode is held to."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np


def session(path: str, *, level: str = "all", int8_allowed: bool = True, threads: int = 1):
    """An onnxruntime CPU session: ORT_ENABLE_ALL and ``session.qdqisint8allowed=1`` by
    default, where onnxruntime runs its integer kernels for every QDQ pattern."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if int8_allowed:
        so.add_session_config_entry("session.qdqisint8allowed", "1")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(path: str, inputs: Mapping[str, np.ndarray], **kw) -> dict[str, np.ndarray]:
    """Run every sample through onnxruntime. Dynamic batch: one call; fixed batch of 1: one
    call per sample. Returns arrays with a leading sample axis (batch axis replaced)."""
    sess = session(path, **kw)
    ins = sess.get_inputs()
    n = next(iter(inputs.values())).shape[0]
    dynamic = all(isinstance(i.shape[0], str) or i.shape[0] is None for i in ins if i.shape)
    names = [o.name for o in sess.get_outputs()]
    if dynamic:
        feeds = {i.name: np.asarray(inputs[i.name]).reshape(n, *_rest(i, inputs[i.name]))
                 for i in ins}
        outs = sess.run(names, feeds)
        return dict(zip(names, outs))
    results: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for s in range(n):
        feeds = {i.name: np.asarray(inputs[i.name][s]).reshape(
            [d if isinstance(d, int) else 1 for d in i.shape]) for i in ins}
        for k, v in zip(names, sess.run(names, feeds)):
            results[k].append(v[0] if v.ndim and v.shape[0] == 1 else v)
    return {k: np.stack(v) for k, v in results.items()}


def _rest(i, x) -> tuple[int, ...]:
    return tuple(np.asarray(x).shape[1:])


def latency_us(path: str, inputs: Mapping[str, np.ndarray], repeats: int = 200) -> float:
    """Median single-inference latency on one CPU thread, in microseconds."""
    sess = session(path)
    ins = sess.get_inputs()
    feeds = {i.name: np.asarray(inputs[i.name][:1]).reshape(
        [d if isinstance(d, int) else 1 for d in i.shape]) for i in ins}
    names = [o.name for o in sess.get_outputs()]
    for _ in range(10):
        sess.run(names, feeds)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(names, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)
