"""minidl.backward's post-accumulate-grad hooks (Tensor.register_post_accumulate_grad_hook):
called once per backward, when a leaf's .grad is final (after its last consumer: shared
weights, a layer called twice), removable.  Traversal and accumulation are tested through
Tensor.backward in test_autograd.py."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl import layers as L
from minidl.autograd import Function, Tensor


def leaf(xp, values):
    return Tensor(xp.asarray(np.asarray(values, dtype=np.float64)), requires_grad=True)


def record(calls):
    """A hook that saves a host copy of the gradient it sees (what a reducer would send)."""
    return lambda t: calls.append((t, minidl.to_host(t.grad).copy()))


def test_a_weight_shared_by_three_consumers_is_ready_once_with_its_final_gradient(xp):
    w = leaf(xp, [1.0, 2.0])
    x = leaf(xp, [3.0, -1.0])
    calls = []
    w.register_post_accumulate_grad_hook(record(calls))
    # three consumers at different depths: the hook must wait for the deepest one
    y = (w * x).sum() + ((w * w) * 2.0).sum() + F.tanh(w * 0.5).sum()
    y.backward()
    assert len(calls) == 1 and calls[0][0] is w
    np.testing.assert_array_equal(calls[0][1], minidl.to_host(w.grad))
    wh = np.array([1.0, 2.0])
    expected = np.array([3.0, -1.0]) + 4.0 * wh + 0.5 * (1 - np.tanh(0.5 * wh) ** 2)
    np.testing.assert_allclose(calls[0][1], expected, rtol=1e-14)


def test_a_layer_called_twice_fires_after_both_calls_and_the_last_layer_first(rng):
    minidl.set_default_dtype(np.float64)
    try:
        first, shared, head = L.Linear(4, 4), L.Linear(4, 4), L.Linear(4, 2)
        order, seen = [], {}
        for name, layer in (("first", first), ("shared", shared), ("head", head)):
            for p in layer.parameters():
                p.register_post_accumulate_grad_hook(
                    lambda t, name=name: (order.append(name),
                                          seen.__setitem__(id(t), minidl.to_host(t.grad))))
        x = minidl.tensor(rng.standard_normal((5, 4)))
        out = head(F.relu(shared(F.relu(shared(first(x))))))
        F.softmax_cross_entropy(out, minidl.to_device(np.array([0, 1, 0, 1, 1]))).backward()
    finally:
        minidl.set_default_dtype(np.float32)
    params = first.parameters() + shared.parameters() + head.parameters()
    assert len(order) == len(params)                                 # each exactly once
    assert order == ["head"] * 2 + ["shared"] * 2 + ["first"] * 2    # backward's order
    for p in params:    # what each hook saw is the final gradient (both calls summed)
        np.testing.assert_array_equal(seen[id(p)], minidl.to_host(p.grad))


def test_hooks_fire_in_every_backward_and_remove_stops_them(xp):
    w = leaf(xp, [1.0, -1.0])
    calls = []
    handle = w.register_post_accumulate_grad_hook(record(calls))
    y = (w * w).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert [c[1].tolist() for c in calls] == [[2.0, -2.0], [4.0, -4.0]]   # accumulated
    handle.remove()
    handle.remove()                                   # twice is harmless
    (w * 3.0).sum().backward()
    assert len(calls) == 2


class StopGradient(Function):
    def forward(self, a):
        return a

    def backward(self, gy):
        return None


class SecondInputGetsNone(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        return gy, None


def test_a_leaf_whose_other_consumers_get_no_gradient_still_fires_once(xp):
    w = leaf(xp, [1.0, 2.0])
    calls = []
    w.register_post_accumulate_grad_hook(record(calls))
    # w * 3.0 is in the graph but no gradient reaches it (StopGradient returns None); the
    # second consumer returns None for w: the Add is the only edge that carries a gradient
    y = StopGradient()(w * 3.0) + SecondInputGetsNone()(w * 0.0, w) + w
    y.sum().backward()
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0][1], [1.0, 1.0])
    z = SecondInputGetsNone()(leaf(xp, [0.0, 0.0]), w)       # w's only edge gives None
    z.sum().backward()
    assert len(calls) == 1


def test_a_leaf_outside_the_graph_or_without_a_gradient_is_not_called(xp):
    w, other = leaf(xp, [1.0]), leaf(xp, [2.0])
    calls = []
    w.register_post_accumulate_grad_hook(record(calls))
    (other * 2.0).sum().backward()
    assert calls == []
    w.backward(xp.asarray(np.array([1.0])))           # a leaf as the root: its own gradient
    assert len(calls) == 1


def test_only_leaves_that_require_grad_take_a_hook(xp):
    w = leaf(xp, [1.0])
    with pytest.raises(RuntimeError, match="only a leaf tensor.*made by Mul"):
        (w * 2.0).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="only a leaf tensor"):
        Tensor(xp.asarray(np.zeros(1))).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="hook must be callable, got int"):
        w.register_post_accumulate_grad_hook(3)
