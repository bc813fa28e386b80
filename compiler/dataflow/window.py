"""The line buffer of a sliding window: which pixels each output window needs and how many
the buffer holds. ``hw/engines/sliding_window.py`` sizes its memory with it and the estimate
(``estimate.py``) counts that memory."""

from __future__ import annotations

import numpy as np

__all__ = ["window_geometry"]


def _clip(v, lo, hi):
    return np.minimum(np.maximum(v, lo), hi)


def window_geometry(p: dict) -> dict:
    """Per output pixel ``old``/``need`` (pixel indices within one inference) and the buffer
    size ``B`` (pixels) that lets the writer run ``extra`` pixels ahead of the reader."""
    h, w = p["height"], p["width"]
    (kh, kw), (sh, sw), (dh, dw) = p["kernel"], p["stride"], p["dilation"]
    pt, pl = p["pads"][0], p["pads"][1]
    oh, ow = p["out_height"], p["out_width"]
    row_lo = (np.arange(oh) * sh - pt)[:, None] + np.zeros(ow, np.int64)[None, :]
    col_lo = (np.arange(ow) * sw - pl)[None, :] + np.zeros(oh, np.int64)[:, None]
    old = np.where(row_lo < 0, 0, _clip(row_lo, 0, h - 1) * w + _clip(col_lo, 0, w - 1))
    need = (_clip(row_lo + (kh - 1) * dh, 0, h - 1) * w
            + _clip(col_lo + (kw - 1) * dw, 0, w - 1))
    span = int((need - old).max()) + 1
    span = max(span, h * w - int(old[-1, -1]))  # the last window waits for the whole image
    extra = sh * w if oh > 1 else sw
    return {"old": old.ravel(), "need": need.ravel(), "pixels": span + extra}
