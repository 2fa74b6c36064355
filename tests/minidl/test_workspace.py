"""Workspace: spare buffers are handed out again by (size, dtype), never to two users at once."""
import numpy as np
import pytest

from minidl.workspace import Workspace


def test_given_buffer_is_taken_again_for_any_shape_of_its_size():
    ws = Workspace()
    a = ws.take(np, (3, 4), np.float32)
    assert a.shape == (3, 4) and a.dtype == np.float32
    ws.give(a)
    b = ws.take(np, (2, 6), np.float32)
    assert np.shares_memory(a, b) and b.shape == (2, 6)
    c = ws.take(np, (2, 6), np.float32)  # the spare is in use: a new one
    assert not np.shares_memory(b, c)


def test_size_and_dtype_must_both_match():
    ws = Workspace()
    a = ws.take(np, 12, np.float32)
    ws.give(a)
    assert not np.shares_memory(a, ws.take(np, 12, np.float64))
    assert not np.shares_memory(a, ws.take(np, 13, np.float32))
    assert np.shares_memory(a, ws.take(np, 12, np.float32))


def test_a_buffer_given_twice_is_kept_once():
    ws = Workspace(per_size=4)
    a = ws.take(np, (4, 4), np.float32)
    ws.give(a, a.reshape(-1), a)
    first = ws.take(np, 16, np.float32)
    second = ws.take(np, 16, np.float32)
    assert np.shares_memory(first, a) and not np.shares_memory(second, a)


def test_per_size_bounds_the_spares_and_track_lists_each_buffer_once():
    ws = Workspace(per_size=1, track=True)
    a, b = ws.take(np, 8, np.float32), ws.take(np, 8, np.float32)
    ws.give(a, b)
    assert len(ws.free[("numpy", 8, np.dtype(np.float32))]) == 1
    again = ws.take(np, (2, 4), np.float32)
    assert np.shares_memory(again, a)
    assert len(ws.taken) == 2  # a (taken twice) and b
    ws.clear()
    assert not ws.free and not ws.taken


def test_non_numpy_and_non_contiguous_arrays_are_not_kept(xp):
    ws = Workspace(track=True)
    a = ws.take(xp, (4, 6), xp.float32)
    ws.give(a)
    ws.give(np.zeros((4, 6), np.float32)[:, ::2])
    kept = sum(len(v) for v in ws.free.values())
    assert kept == (1 if xp is np else 0)
    assert len(ws.taken) == (1 if xp is np else 0)


def test_bad_per_size_is_named():
    with pytest.raises(ValueError, match="per_size"):
        Workspace(per_size=-1)
