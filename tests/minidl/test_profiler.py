"""minidl.profiler: every op's forward and backward is booked under its name and input shape."""
import json

import numpy as np
import pytest

from minidl import autograd
from minidl import backend as B
from minidl.autograd import Tensor
from minidl.functions import softmax_cross_entropy
from minidl.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from minidl.profiler import profile


def _net():
    return Sequential(Conv2d(1, 4, 3, padding=1), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(4 * 4 * 4, 3))


def _step(model, x, y):
    loss = softmax_cross_entropy(model(x), y)
    loss.backward()


def test_profile_books_each_op_per_phase_and_input_shape(xp, rng):
    model = _net()
    x = Tensor(B.to_device(rng.standard_normal((5, 1, 8, 8)).astype(np.float32)))
    y = B.to_device(np.array([0, 1, 2, 0, 1]))
    with profile() as prof:
        for _ in range(3):
            _step(model, x, y)
    rows = {(p, n, s): c for (p, n, s), (c, _) in prof.rows.items()}
    assert rows[("forward", "Conv2d", (5, 1, 8, 8))] == 3
    assert rows[("backward", "Conv2d", (5, 1, 8, 8))] == 3
    assert rows[("forward", "MaxPool2d", (5, 4, 8, 8))] == 3
    assert rows[("backward", "Linear", (5, 64))] == 3
    assert all(sec >= 0 for _, sec in prof.rows.values())
    assert 0 < prof.op_total <= prof.wall
    table = prof.table(per=3)
    assert "Conv2d" in table and "(outside ops)" in table and table.count("\n") == len(rows) + 2
    json.dumps(prof.as_dict(per=3))
    assert autograd._profiler is None


def test_nothing_is_recorded_outside_and_profiles_do_not_nest(xp, rng):
    model = _net()
    x = Tensor(B.to_device(rng.standard_normal((2, 1, 8, 8)).astype(np.float32)))
    with profile() as prof:
        with pytest.raises(RuntimeError, match="profile: a profile is already running"):
            with profile():
                pass
    _step(model, x, B.to_device(np.array([0, 1])))
    assert prof.rows == {} and autograd._profiler is None


def test_profiling_stops_when_the_block_raises():
    with pytest.raises(ValueError):
        with profile():
            raise ValueError("boom")
    assert autograd._profiler is None
