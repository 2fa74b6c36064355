"""Local response normalisation across channels (Krizhevsky et al. 2012, sec. 3.3), with the
semantics of ``torch.nn.LocalResponseNorm``.

    x (N, C, ...)  ->  y of the same shape
    S_c = sum of x_j^2 for j in [c - size//2, c + (size-1)//2] (channels outside [0, C) are 0)
    d_c = k + alpha / size * S_c          (PyTorch divides by ``size``, not by the window count)
    y_c = x_c * d_c^(-beta)

Backward: with t_j = gy_j * x_j * d_j^(-beta-1),

    gx_c = gy_c * d_c^(-beta) - 2 * alpha * beta / size * x_c * sum_{j : c in window(j)} t_j

and "c in window(j)" is the window j in [c - (size-1)//2, c + size//2]: the forward window
reflected.  Both window sums are ``size`` slice-adds over the channel axis (size is small: 5).
"""
from __future__ import annotations

import numbers

from minidl import backend as B
from minidl.autograd import Function
from minidl.functions.arguments import as_input as _as_input

__all__ = ["local_response_norm"]


def _window_sum(xp, a, before: int, after: int):
    """out[:, c] = sum of a[:, j] for j in [c - before, c + after] (zero outside)."""
    C = a.shape[1]
    out = xp.zeros_like(a)
    for off in range(-before, after + 1):
        lo, hi = max(0, -off), min(C, C - off)   # c range with c + off inside [0, C)
        if lo < hi:
            out[:, lo:hi] += a[:, lo + off:hi + off]
    return out


class LocalResponseNorm(Function):
    """y = x * (k + alpha/size * window_sum(x^2))^(-beta); see the module docstring."""

    def __init__(self, size, alpha, beta, k):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        xp = B.get_array_module(x)
        n = self.size
        t = x.dtype.type
        d = _window_sum(xp, x * x, n // 2, (n - 1) // 2)
        d *= t(self.alpha / n)
        d += t(self.k)
        scale = d ** t(-self.beta)
        self.x, self.d, self.scale = x, d, scale
        return x * scale

    def backward(self, gy):
        xp = B.get_array_module(gy)
        n = self.size
        t = gy.dtype.type
        tj = gy * self.x * self.scale / self.d
        back = _window_sum(xp, tj, (n - 1) // 2, n // 2)
        gx = gy * self.scale
        gx -= t(2 * self.alpha * self.beta / n) * self.x * back
        return gx


def local_response_norm(x, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
    """Normalise each value by the energy of ``size`` neighbouring channels (as
    ``torch.nn.functional.local_response_norm``).

    Parameters
    ----------
    x : Tensor or array (N, C, ...) with at least 3 axes, floating.
    size : channels in the window (the window of channel c is c - size//2 ... c + (size-1)//2).
    alpha, beta, k : y = x / (k + alpha/size * sum x^2)^beta.  AlexNet used size=5, alpha=1e-4,
        beta=0.75, k=2.

    >>> local_response_norm(x, 5, k=2.0).shape   # x (8, 96, 55, 55)
    (8, 96, 55, 55)
    """
    x = _as_input(x, "x", "local_response_norm")
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: x must have at least 3 axes (N, C, ...), got "
                         f"shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"local_response_norm: x must be floating, got dtype {x.dtype}")
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
        raise ValueError(f"local_response_norm: size must be a positive int, got {size!r}")
    for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        if not isinstance(v, numbers.Real) or isinstance(v, bool):
            raise TypeError(f"local_response_norm: {name} must be a number, got {v!r}")
    if k <= 0 and alpha <= 0:
        raise ValueError(f"local_response_norm: k + alpha/size * sum x^2 must stay positive; "
                         f"got k={k!r}, alpha={alpha!r}")
    return LocalResponseNorm(int(size), float(alpha), float(beta), float(k))(x)
