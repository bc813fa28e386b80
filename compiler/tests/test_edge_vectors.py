"""The edge vectors every RTL test appends (``compiler/edge_vectors.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dtypes import IntType
from intflow.compiler.edge_vectors import KINDS, edge_vectors, with_edge_vectors


def test_edge_vectors_hit_the_corners():
    v = edge_vectors(IntType(True, 8), (2, 3), zero_point=-5)
    assert v.shape == (len(KINDS), 2, 3) and v.dtype == np.int64
    assert (v[0] == -128).all() and (v[1] == 127).all() and (v[2] == -5).all()
    assert v[3].ravel().tolist() == [-128, 127, -128, 127, -128, 127]
    assert (v[4] == -128 + 127 - v[3]).all()  # the other phase


def test_per_channel_zero_point_and_appending():
    u4 = IntType(False, 4)
    v = edge_vectors(u4, (2, 3), zero_point=np.array([[1], [9]]))
    assert v[2].tolist() == [[1, 1, 1], [9, 9, 9]]
    x = np.zeros((3, 5), np.int64)
    y = with_edge_vectors(x, u4)
    assert y.shape == (3 + len(KINDS), 5) and (y[:3] == 0).all() and (y[4] == 15).all()


def test_zero_point_outside_the_type_is_refused():
    with pytest.raises(ValueError, match=r"zero point outside uint8 \[0, 255\]"):
        edge_vectors(IntType(False, 8), 4, zero_point=-1)
