"""Optimizer and schedule ``state_dict``/``load_state_dict``: a copy loaded from the state
continues exactly as the original (the arithmetic of the update is not touched)."""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import layers as L
from minidl.optim import SGD, Adam, AdamW, CosineAnnealingLR, OneCycleLR, StepLR


def _steps(model, opt, sched, n, x):
    for _ in range(n):
        opt.zero_grad()
        (model(x) ** 2).sum().backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("make,schedule", [
    (lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
     lambda o: StepLR(o, 2, 0.5)),
    (lambda ps: Adam(ps, lr=1e-2), lambda o: OneCycleLR(o, 1e-2, total_steps=10)),
    (lambda ps: AdamW(ps, lr=1e-2), lambda o: CosineAnnealingLR(o, 4)),
])
def test_a_loaded_optimizer_continues_exactly(xp, make, schedule):
    minidl.set_default_dtype(np.float64)
    x = minidl.tensor(np.linspace(-1, 1, 12).reshape(4, 3))
    a = L.Linear(3, 2)
    b = L.Linear(3, 2)
    oa = make(a.parameters())
    sa = schedule(oa)
    _steps(a, oa, sa, 3, x)
    b.load_state_dict(a.state_dict())
    ob = make(b.parameters())
    sb = schedule(ob)
    ob.load_state_dict(oa.state_dict())
    sb.load_state_dict(sa.state_dict())
    assert (ob.lr, ob.step_count) == (oa.lr, oa.step_count)
    _steps(a, oa, sa, 4, x)
    _steps(b, ob, sb, 4, x)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(minidl.to_host(p.data), minidl.to_host(q.data))


def test_load_refuses_a_state_of_other_parameters():
    a = Adam(L.Linear(3, 2).parameters())
    with pytest.raises(ValueError, match="over 2 parameters, this one has 4"):
        Adam(L.Sequential(L.Linear(3, 2), L.Linear(2, 2)).parameters()).load_state_dict(
            a.state_dict())
    m = L.Linear(3, 2)
    opt = SGD(m.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad()
    m(minidl.tensor(np.ones((1, 3), np.float32))).sum().backward()
    opt.step()
    state = opt.state_dict()
    with pytest.raises(ValueError, match=r"state 'state.0.v' has shape \(2, 3\) but parameter "
                                         r"0 has shape \(3, 3\)"):
        SGD(L.Linear(3, 3).parameters(), lr=0.1).load_state_dict(state)
