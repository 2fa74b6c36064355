"""Tensor's operators and array-like methods (``a + b``, ``a @ b``, ``t.sum()``), installed by
:mod:`minidl.functions` so that the autograd core holds no op math."""
from __future__ import annotations

from minidl.autograd import Tensor
from minidl.functions.arithmetic import add, div, exp, log, matmul, mul, neg, power, sqrt, sub
from minidl.functions.reduction import max, mean, min, sum  # noqa: A004
from minidl.functions.shape import getitem, reshape, transpose

__all__ = ["install_operators"]


def install_operators():
    """Give Tensor its operators and array-like methods (kept out of the autograd core)."""
    T = Tensor
    T.__add__ = lambda s, o: add(s, o)
    T.__radd__ = lambda s, o: add(o, s)
    T.__sub__ = lambda s, o: sub(s, o)
    T.__rsub__ = lambda s, o: sub(o, s)
    T.__mul__ = lambda s, o: mul(s, o)
    T.__rmul__ = lambda s, o: mul(o, s)
    T.__truediv__ = lambda s, o: div(s, o)
    T.__rtruediv__ = lambda s, o: div(o, s)
    T.__neg__ = lambda s: neg(s)
    T.__pow__ = lambda s, p: power(s, p)
    T.__matmul__ = lambda s, o: matmul(s, o)
    T.__rmatmul__ = lambda s, o: matmul(o, s)
    T.__getitem__ = lambda s, i: getitem(s, i)
    T.sum = lambda s, axis=None, keepdims=False: sum(s, axis, keepdims)
    T.mean = lambda s, axis=None, keepdims=False: mean(s, axis, keepdims)
    T.max = lambda s, axis=None, keepdims=False: max(s, axis, keepdims)
    T.min = lambda s, axis=None, keepdims=False: min(s, axis, keepdims)
    T.reshape = lambda s, *shape: reshape(s, *shape)
    T.transpose = lambda s, *axes: transpose(s, *axes)
    T.T = property(lambda s: transpose(s))
    T.exp = lambda s: exp(s)
    T.log = lambda s: log(s)
    T.sqrt = lambda s: sqrt(s)


install_operators()
