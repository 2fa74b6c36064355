"""minidl.functions.arithmetic, reduction and shape: every op against a NumPy formula, a float64 gradcheck, and float32
kept float32 -- under every backend (the ``xp`` fixture)."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl.autograd import Tensor
from minidl.testing import gradcheck


def dev(xp, a):
    """A float64 device array from host data."""
    return xp.asarray(np.asarray(a, dtype=np.float64))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def check(xp, fn, ref, *host_inputs, **kwargs):
    """Forward against ``ref`` on host float64 data, then a gradcheck of ``fn``."""
    inputs = [dev(xp, a) if isinstance(a, (np.ndarray, np.generic)) else a for a in host_inputs]
    y = fn(*inputs)
    expected = ref(*host_inputs)
    out = host(y)
    assert out.dtype == np.float64
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    gradcheck(fn, inputs, **kwargs)


@pytest.fixture(autouse=True)
def _float64():
    minidl.set_default_dtype(np.float64)


# --------------------------------------------------------------------------- arithmetic

BROADCAST_SHAPES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((3,), (2, 3)), ((2, 3), (2, 1)),
                    ((2, 1), (1, 3)), ((2, 3), ()), ((4, 2, 3), (2, 1))]
ARITH = {"add": (F.add, np.add), "sub": (F.sub, np.subtract), "mul": (F.mul, np.multiply),
         "div": (F.div, np.divide)}


@pytest.mark.parametrize("name", list(ARITH))
@pytest.mark.parametrize("sa, sb", BROADCAST_SHAPES, ids=str)
def test_arithmetic_with_broadcasting(xp, rng, name, sa, sb):
    fn, ref = ARITH[name]
    a = rng.standard_normal(sa)
    b = rng.uniform(0.5, 2.0, sb) * rng.choice([-1, 1], sb)  # |b| >= 0.5 for div
    check(xp, fn, ref, a, b)


@pytest.mark.parametrize("name", list(ARITH))
def test_arithmetic_with_python_scalars_on_either_side(xp, rng, name):
    fn, ref = ARITH[name]
    a = rng.uniform(0.5, 2.0, (2, 3))
    check(xp, lambda x: fn(x, 1.5), lambda x: ref(x, 1.5), a)
    check(xp, lambda x: fn(-2.5, x), lambda x: ref(-2.5, x), a)
    check(xp, fn, ref, a, 1.5)  # the scalar passed through gradcheck untouched


def test_operators_match_the_functions(xp, rng):
    a, b = rng.uniform(0.5, 2.0, (2, 3)), rng.uniform(0.5, 2.0, (3,))
    ta, tb = Tensor(dev(xp, a)), Tensor(dev(xp, b))
    for got, want in [(ta + tb, a + b), (ta - tb, a - b), (ta * tb, a * b), (ta / tb, a / b),
                      (-ta, -a), (ta ** 2, a ** 2), (1.0 - ta, 1.0 - a), (2.0 / ta, 2.0 / a),
                      (ta.T, a.T), (ta.exp(), np.exp(a)), (ta.log(), np.log(a)),
                      (ta.sqrt(), np.sqrt(a)), (ta.sum(axis=0), a.sum(axis=0)),
                      (ta.mean(), a.mean()), (ta.max(axis=1), a.max(axis=1)),
                      (ta.min(), a.min()), (ta.reshape(3, 2), a.reshape(3, 2)),
                      (ta.transpose(1, 0), a.T), (ta[1], a[1])]:
        np.testing.assert_allclose(host(got), want, rtol=1e-12)


def test_neg(xp, rng):
    check(xp, F.neg, np.negative, rng.standard_normal((2, 3)))


@pytest.mark.parametrize("p", [2, 3, 0.5, -1, 1.5, -2.0])
def test_power(xp, rng, p):
    x = rng.uniform(0.5, 2.0, (2, 3))
    check(xp, lambda t: F.power(t, p), lambda a: a ** p, x)


def test_power_of_negative_base_with_integer_exponent(xp, rng):
    x = -rng.uniform(0.5, 2.0, (4,))
    check(xp, lambda t: t ** 3, lambda a: a ** 3, x)


# --------------------------------------------------------------------------- matmul

MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (5, 3, 4)), ((5, 2, 3), (3, 4)), ((2, 3), (5, 3, 4)),
                 ((3,), (5, 3, 4)), ((5, 2, 3), (3,)), ((2, 1, 2, 3), (4, 3, 2))]


@pytest.mark.parametrize("sa, sb", MATMUL_SHAPES, ids=str)
def test_matmul(xp, rng, sa, sb):
    check(xp, F.matmul, np.matmul, rng.standard_normal(sa), rng.standard_normal(sb))


def test_matmul_rejects_mismatched_or_scalar_operands(xp):
    a, b = Tensor(dev(xp, np.ones((2, 3)))), Tensor(dev(xp, np.ones((4, 2))))
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ: a has shape \(2, 3\), "
                                         r"b has shape \(4, 2\)"):
        F.matmul(a, b)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        F.matmul(Tensor(dev(xp, 2.0)), a)


# --------------------------------------------------------------------------- reductions

AXES = [None, 0, 1, -1, (0, 2), (2, 0), (0, 1, 2), ()]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reductions(xp, rng, name, axis, keepdims):
    fn = getattr(F, name)
    ref = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[name]
    x = rng.permutation(24).reshape(2, 3, 4) + rng.uniform(0, 0.5, (2, 3, 4))  # no ties
    check(xp, lambda t: fn(t, axis=axis, keepdims=keepdims),
          lambda a: np.asarray(ref(a, axis=axis, keepdims=keepdims)), x)


@pytest.mark.parametrize("name, want_grad", [
    ("max", [[0.0, 0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3, 0.0]]),
    ("min", [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]),
])
def test_max_and_min_share_the_gradient_among_ties(xp, name, want_grad):
    x = Tensor(dev(xp, [[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, -1.0]]), requires_grad=True)
    y = getattr(F, name)(x, axis=1)
    y.backward(dev(xp, [1.0, 1.0]))
    np.testing.assert_allclose(host(x.grad), want_grad, rtol=1e-12)
    # over everything: the tied maxima 5, 5, 5 share one unit of gradient
    x.zero_grad()
    F.max(x).backward()
    np.testing.assert_allclose(host(x.grad), [[0, 0, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0]])


def test_reductions_validate_axis_and_emptiness(xp):
    x = Tensor(dev(xp, np.ones((2, 3))))
    with pytest.raises(ValueError, match="sum: axis 2 is out of range for an input with 2 dims"):
        F.sum(x, axis=2)
    with pytest.raises(ValueError, match="max: axis -3 is out of range"):
        F.max(x, axis=-3)
    with pytest.raises(ValueError, match="min: input is empty"):
        F.min(Tensor(dev(xp, np.ones((0, 3)))))


def test_mean_of_integers_is_float(xp):
    x = Tensor(xp.asarray(np.arange(4)))
    assert host(F.mean(x)) == 1.5


# --------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("shape", [(3, 4), (12,), (2, -1), ((4, 3),), ([1, 12],)], ids=str)
def test_reshape(xp, rng, shape):
    x = rng.standard_normal((2, 6))
    target = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    check(xp, lambda t: F.reshape(t, *shape), lambda a: a.reshape(target), x)


def test_reshape_to_the_same_shape_is_the_identity_and_bad_shapes_say_why(xp):
    t = Tensor(dev(xp, np.ones((2, 3))))
    assert F.reshape(t, 2, 3) is t
    with pytest.raises(ValueError, match=r"reshape: cannot reshape an input of shape \(2, 3\) "
                                         r"\(6 elements\) into \(4, 2\)"):
        F.reshape(t, 4, 2)


@pytest.mark.parametrize("axes", [(), ((1, 0, 2),), (2, 0, 1), ((0, 2, 1),), (-1, 0, 1)],
                         ids=str)
def test_transpose(xp, rng, axes):
    x = rng.standard_normal((2, 3, 4))
    ref_axes = None if not axes else (axes[0] if isinstance(axes[0], tuple) else axes)
    check(xp, lambda t: F.transpose(t, *axes), lambda a: np.transpose(a, ref_axes), x)


def test_transpose_rejects_a_non_permutation(xp):
    with pytest.raises(ValueError, match=r"transpose: axes must be a permutation of 0..2, got "
                                         r"\(0, 0, 1\)"):
        F.transpose(Tensor(dev(xp, np.ones((2, 3, 4)))), 0, 0, 1)


@pytest.mark.parametrize("start", [1, 2, 0])
def test_flatten(xp, rng, start):
    x = rng.standard_normal((2, 3, 2, 2))
    check(xp, lambda t: F.flatten(t, start), lambda a: a.reshape(a.shape[:start] + (-1,)), x)


BASIC_INDICES = [1, -1, slice(1, None), (slice(None), slice(None, None, 2)), (0, 2),
                 (Ellipsis, 1), (None, slice(1, 3)), (slice(None, None, -1), 0),
                 (slice(0, 0),)]


@pytest.mark.parametrize("index", BASIC_INDICES, ids=str)
def test_getitem_basic(xp, rng, index):
    x = rng.standard_normal((4, 5))
    check(xp, lambda t: F.getitem(t, index), lambda a: np.asarray(a[index]), x)


@pytest.mark.parametrize("make_index", [
    lambda xp: xp.asarray(np.array([0, 0, 2, 0])),                       # repeated rows
    lambda xp: (xp.asarray(np.array([1, 1, 3])), xp.asarray(np.array([2, 2, 0]))),  # points
    lambda xp: (slice(None), xp.asarray(np.array([4, 4, 1]))),           # repeated columns
    lambda xp: xp.asarray(np.array([[0, 3], [3, 3]])),                   # 2-D index array
    lambda xp: [3, 3, 1],                                                # a plain list
    lambda xp: xp.asarray(np.array([True, False, True, True])),          # a boolean mask
], ids=["rows", "points", "columns", "2d", "list", "mask"])
def test_getitem_advanced_with_repeated_indices(xp, rng, make_index):
    x = rng.standard_normal((4, 5))
    index = make_index(xp)
    host_index = tuple(minidl.to_host(i) if not isinstance(i, (slice, list)) else i
                       for i in index) if isinstance(index, tuple) else \
        (index if isinstance(index, list) else minidl.to_host(index))
    check(xp, lambda t: F.getitem(t, index), lambda a: a[host_index], x)


def test_getitem_repeated_index_gradient_counts_every_use(xp):
    x = Tensor(dev(xp, [10.0, 20.0, 30.0]), requires_grad=True)
    idx = Tensor(xp.asarray(np.array([2, 0, 2, 2])))  # a Tensor index is unwrapped
    x[idx].sum().backward()
    np.testing.assert_array_equal(host(x.grad), [1.0, 0.0, 3.0])


@pytest.mark.parametrize("axis, shapes", [(0, [(2, 3), (1, 3), (4, 3)]), (1, [(2, 1), (2, 4)]),
                                          (-1, [(2, 2, 1), (2, 2, 3)]), (0, [(3,)])], ids=str)
def test_concatenate(xp, rng, axis, shapes):
    parts = [rng.standard_normal(s) for s in shapes]
    check(xp, lambda *ts: F.concatenate(ts, axis=axis),
          lambda *arrs: np.concatenate(arrs, axis=axis), *parts)


def test_concatenate_needs_at_least_one_tensor():
    with pytest.raises(ValueError, match="concatenate: xs must hold at least one tensor"):
        F.concatenate([])


@pytest.mark.parametrize("src, dst", [((3,), (2, 3)), ((2, 1), (2, 4)), ((), (2, 2)),
                                      ((1, 3), (4, 2, 3)), ((2, 3), (2, 3))], ids=str)
def test_broadcast_to_and_sum_to(xp, rng, src, dst):
    check(xp, lambda t: F.broadcast_to(t, dst), lambda a: np.broadcast_to(a, dst),
          rng.standard_normal(src))

    def sum_to_ref(a):
        lead = a.ndim - len(src)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(src)
                                          if n == 1 and a.shape[lead + i] != 1)
        return a.sum(axis=axes).reshape(src) if axes else a.reshape(src)

    check(xp, lambda t: F.sum_to(t, src), sum_to_ref, rng.standard_normal(dst))


# --------------------------------------------------------------------------- elementwise

@pytest.mark.parametrize("name, ref, low, high", [
    ("exp", np.exp, -3.0, 3.0), ("log", np.log, 0.2, 5.0), ("sqrt", np.sqrt, 0.2, 5.0),
    ("abs", np.abs, 0.1, 3.0),
])
def test_elementwise(xp, rng, name, ref, low, high):
    x = rng.uniform(low, high, (3, 4))
    if name == "abs":
        x = x * rng.choice([-1.0, 1.0], x.shape)
    check(xp, getattr(F, name), ref, x)


# --------------------------------------------------------------------------- float32 stays float32

FLOAT32_OPS = {
    "add_scalar": lambda x: x + 1.5, "radd": lambda x: 2 + x, "sub_scalar": lambda x: x - 0.5,
    "rsub": lambda x: 1.0 - x, "mul_scalar": lambda x: x * 3.0, "rmul": lambda x: 0.1 * x,
    "div_scalar": lambda x: x / 3.0, "rdiv": lambda x: 1.0 / x,
    "numpy_scalar": lambda x: x * np.float64(2.0) + np.float64(1.0),
    "add_vector": lambda x: x + Tensor(x.data[0] * 0 + 1),
    "neg": F.neg, "pow_int": lambda x: x ** 2, "pow_float": lambda x: x ** 0.5,
    "pow_numpy_scalar": lambda x: x ** np.float64(1.5),
    "matmul": lambda x: x @ x.T, "matmul_1d": lambda x: F.matmul(x[0], x[1]),
    "sum": lambda x: x.sum(axis=0), "mean": lambda x: x.mean(), "mean_axis": lambda x: x.mean(1),
    "max": lambda x: x.max(axis=1), "min": F.min, "reshape": lambda x: x.reshape(-1),
    "transpose": lambda x: x.T, "flatten": lambda x: F.flatten(x), "getitem": lambda x: x[1:, 0],
    "getitem_array": lambda x: x[[0, 0, 1]],
    "concatenate": lambda x: F.concatenate([x, x * 2.0]),
    "broadcast_to": lambda x: F.broadcast_to(x, (2, 2, 3)), "sum_to": lambda x: F.sum_to(x, (3,)),
    "exp": F.exp, "log": F.log, "sqrt": F.sqrt, "abs": F.abs,
}


@pytest.mark.parametrize("name", list(FLOAT32_OPS))
def test_float32_stays_float32(xp, name):
    minidl.set_default_dtype(np.float32)
    x = Tensor(xp.asarray(np.array([[0.5, 1.0, 2.0], [1.5, 3.0, 0.25]], np.float32)),
               requires_grad=True)
    y = FLOAT32_OPS[name](x)
    assert y.dtype == np.float32
    y.backward(xp.ones(y.shape, dtype=np.float32))
    assert x.grad.dtype == np.float32
