"""Pool attribute normalisation shared by MaxPool and AveragePool lowerings."""

from __future__ import annotations

from ..ops.pool_geometry import pooled_size
from .lowering import check_window


def pool_geometry(imp, attrs: dict, x_shape: tuple[int, ...]):
    nd = len(x_shape) - 2
    if nd not in (1, 2):
        raise imp.error(f"only 1-D and 2-D pooling is supported (input {list(x_shape)})")
    if "kernel_shape" not in attrs:
        raise imp.error("pooling needs kernel_shape")
    k = list(attrs["kernel_shape"])
    s = list(attrs.get("strides", [1] * nd))
    d = list(attrs.get("dilations", [1] * nd))
    p = list(attrs.get("pads", [0] * (2 * nd)))
    check_window(imp, nd, kernel_shape=k, strides=s, dilations=d, pads=p)
    ceil = int(attrs.get("ceil_mode", 0))
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        p = [0] * (2 * nd)
        for i in range(nd):
            out = -(-x_shape[2 + i] // s[i])
            total = max(0, (out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - x_shape[2 + i])
            small, big = total // 2, total - total // 2
            p[i], p[i + nd] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        p = [0] * (2 * nd)
    out = []
    for i in range(nd):
        if p[i] >= k[i] * d[i] or p[i + nd] >= k[i] * d[i]:
            raise imp.error(f"pad {p[i]} is not smaller than the kernel on axis {2 + i}")
        o = pooled_size(x_shape[2 + i], k[i], s[i], p[i], p[i + nd], d[i], bool(ceil))
        if o <= 0:
            raise imp.error(f"pool window larger than the input on axis {2 + i}")
        out.append(o)
    geometry = {"kernel_shape": k, "strides": s, "pads": p, "dilations": d, "ceil_mode": ceil}
    return geometry, (*x_shape[:2], *out)
