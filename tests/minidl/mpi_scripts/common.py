"""Shared by the scripts that tests/minidl/test_distributed.py starts under ``mpiexec``: a
small synthetic problem and models, all in float64."""
from __future__ import annotations

import numpy as np

import minidl
from minidl import layers as L


def synthetic(n=389, d=20, classes=4, seed=7):
    """``n`` samples of ``d`` features whose class is a noisy linear function of them."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = rng.standard_normal((d, classes))
    y = np.argmax(x @ w + 0.5 * rng.standard_normal((n, classes)), axis=1)
    return x, y


def mlp(d=20, classes=4, hidden=32):
    return L.Sequential(L.Linear(d, hidden), L.ReLU(), L.Linear(hidden, hidden), L.Tanh(),
                        L.Linear(hidden, classes))


def setup(seed=0):
    minidl.set_default_dtype(np.float64)
    minidl.seed(seed)
