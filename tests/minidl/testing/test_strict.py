"""minidl.testing.strict: refuses what CuPy refuses (with messages that say so), and otherwise
computes exactly what NumPy computes, returning strict arrays (0-d ones from reductions)."""
import copy
import operator

import numpy as np
import pytest
import scipy.ndimage

from minidl.testing import _strict_manifest as M
from minidl.testing import strict as S


@pytest.fixture
def host():
    return np.arange(12, dtype=np.float64).reshape(3, 4) - 5.0


@pytest.fixture
def x(host):
    return S.asarray(host)


# --------------------------------------------------------------------------- refusals

def test_numpy_conversion_is_refused(x):
    for convert in (np.asarray, np.array, lambda a: np.float32(a[0, 0]),
                    lambda a: np.array([a[0, 0], a[0, 1]])):
        with pytest.raises(TypeError, match=r"Implicit conversion to a NumPy array is not "
                                             r"allowed\. Please use `\.get\(\)`.*minidl strict"):
            convert(x)


def test_numpy_function_without_cupy_twin_is_refused(x):
    with pytest.raises(TypeError, match="no implementation found for 'numpy.insert'"):
        np.insert(x, 0, 1.0)


def test_scipy_function_on_strict_array_is_refused(x):
    with pytest.raises(TypeError, match="Implicit conversion"):
        scipy.ndimage.correlate1d(x, [1.0, 2.0, 1.0])


def test_float_of_many_elements_is_refused_and_of_one_allowed(x):
    with pytest.raises(TypeError):
        float(x)
    assert float(x[1, 2]) == 1.0 and int(x[1, 2]) == 1 and bool(x[1, 2]) is True
    assert format(x[1, 2], ".2f") == "1.00"
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x)


def test_no_index_so_lists_cannot_be_indexed_with_device_scalars(x):
    assert not hasattr(x, "__index__")
    i = S.argmax(x)
    with pytest.raises(TypeError, match="list indices must be integers"):
        [0, 1, 2][i]
    with pytest.raises(TypeError):
        operator.index(i)


@pytest.mark.parametrize("call, match", [
    (lambda x: S.clip(x, min=0), r"cupy\.clip\(\).*CuPy 14\.2\.0 signature: clip\(a, a_min"),
    (lambda x: S.sum(x, where=x > 0), r"where.*signature: sum\("),
    (lambda x: x.sum(where=x > 0), r"cupy\.ndarray\.sum\(\).*'where'"),
    (lambda x: x.max(initial=0), "initial"),
    (lambda x: S.std(x, mean=x), "mean"),
    (lambda x: S.take_along_axis(x, S.argsort(x)), "axis"),
    (lambda x: S.lexsort(x, axis=0), "axis"),
    (lambda x: S.add(x, x, where=x > 0), "where"),
    (lambda x: S.lib.stride_tricks.as_strided(x, writeable=False), "writeable"),
])
def test_calls_are_checked_against_cupy_signatures(x, call, match):
    with pytest.raises(TypeError, match=match):
        call(x)


def test_ndarray_clip_takes_min_max_keywords_like_cupy(x, host):
    np.testing.assert_array_equal(x.clip(min=0).get(), host.clip(min=0))
    np.testing.assert_array_equal(S.clip(x, 0, None).get(), host.clip(0, None))


def test_generator_has_only_cupys_methods():
    g = S.random.default_rng(0)
    for name in ("normal", "permutation", "choice", "shuffle"):
        with pytest.raises(AttributeError, match=f"Generator.{name} does not exist in CuPy"):
            getattr(g, name)
    u = g.uniform(0, 1, (3,), dtype=np.float32)
    assert isinstance(u, S.ndarray) and u.dtype == np.float32
    assert g.standard_normal((2, 2), dtype=np.float32).dtype == np.float32
    assert g.integers(0, 5, (4,)).dtype.kind == "i"
    assert not hasattr(S.random.RandomState(0), "random")


@pytest.mark.parametrize("call", [
    lambda x: S.maximum.reduce(x), lambda x: np.maximum.reduce(x),
    lambda x: S.logical_or.reduce(x > 0), lambda x: S.maximum.accumulate(x),
    lambda x: S.multiply.at(x, S.asarray([0]), 2.0), lambda x: S.divide.at(x, S.asarray([0]), 2.0),
    lambda x: S.lib.stride_tricks.sliding_window_view(x, 2, writeable=True),
    lambda x: S.histogram(x, bins="auto"),
])
def test_what_cupy_has_not_implemented_raises_not_implemented(x, call):
    with pytest.raises(NotImplementedError):
        call(x)


def test_sort_kinds_other_than_stable_are_refused(x):
    for call in (lambda: S.argsort(x, kind="quicksort"), lambda: x.argsort(kind="quicksort"),
                 lambda: x.sort(kind="heapsort"), lambda: S.sort(x, kind="quicksort")):
        with pytest.raises(ValueError, match="kind can only be None or 'stable'"):
            call()
    with pytest.raises(NotImplementedError, match="non-contiguous"):
        x[:, ::2].sort()


@pytest.mark.parametrize("name", ["errstate", "insert", "geomspace", "nanpercentile", "block"])
def test_numpy_only_names_are_missing(name):
    with pytest.raises(AttributeError, match=rf"cupy\.{name} does not exist in CuPy 14\.2"):
        getattr(S, name)


def test_missing_linalg_and_ndarray_names():
    with pytest.raises(AttributeError, match="cupy.linalg.vector_norm does not exist"):
        S.linalg.vector_norm
    a = S.zeros((2, 2))
    for name in ("resize", "__imatmul__", "__array_namespace__"):
        with pytest.raises(AttributeError):
            getattr(a, name)
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)


def test_host_arrays_are_refused_by_ufuncs_operators_and_functions(x):
    h = np.ones(4)
    for call in (lambda: S.add(x, h), lambda: x + h, lambda: h + x, lambda: x * [1, 2, 3, 4],
                 lambda: S.exp(h), lambda: np.add(h, x)):
        with pytest.raises(TypeError, match="Universal Functions only work with CuPy array"):
            call()
    for call in (lambda: S.concatenate([x, h[None]]), lambda: S.where(x > 0, h, 0.0),
                 lambda: x @ h, lambda: x.dot(h)):
        with pytest.raises(TypeError, match="host numpy.ndarray"):
            call()


def test_ufuncs_accept_python_and_numpy_scalars(x, host):
    np.testing.assert_array_equal(S.add(x, np.float64(2)).get(), host + 2)
    np.testing.assert_array_equal(S.maximum(x, 0).get(), np.maximum(host, 0))
    np.testing.assert_array_equal((2 ** S.abs(x[0])).get(), 2 ** np.abs(host[0]))


@pytest.mark.parametrize("value", [np.ones(4), np.ones(1), [1.0, 2.0, 3.0, 4.0]])
def test_assigning_host_arrays_is_refused(x, value):
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        x[0] = value
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        x.fill(value)
    with pytest.raises(ValueError, match="cannot be used for copyto"):
        S.copyto(x, np.ones((3, 4)))


def test_unsupported_dtypes_and_pad_modes_are_refused():
    with pytest.raises(ValueError, match="Unsupported dtype"):
        S.asarray(np.array(["a"]))
    with pytest.raises(ValueError, match="mode 'median' is not supported"):
        S.pad(S.zeros(3), 1, mode="median")


# --------------------------------------------------------------------------- behaviour

@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv,
                                operator.floordiv, operator.mod, operator.pow, operator.lt,
                                operator.le, operator.gt, operator.ge, operator.eq, operator.ne])
def test_operators_equal_numpy(op, host):
    a, b = host, np.linspace(1.0, 2.0, 4)
    with np.errstate(all="ignore"), S.cupyx.errstate(divide="ignore", invalid="ignore"):
        want = op(a, b), op(a, 3.0), op(2.0, b)
        got = op(S.asarray(a), S.asarray(b)), op(S.asarray(a), 3.0), op(2.0, S.asarray(b))
    for g, w in zip(got, want):
        assert isinstance(g, S.ndarray)
        np.testing.assert_array_equal(g.get(), w)


def test_inplace_and_unary_operators_and_bitwise(host):
    a = S.asarray(host)
    a += 1
    a *= S.asarray(np.full(4, 2.0))
    np.testing.assert_array_equal(a.get(), (host + 1) * 2)
    np.testing.assert_array_equal((-a).get(), -(host + 1) * 2)
    np.testing.assert_array_equal(abs(a).get(), np.abs((host + 1) * 2))
    i = S.arange(6)
    np.testing.assert_array_equal(((i & 3) | (i << 1) ^ ~i).get(),
                                  (np.arange(6) & 3) | (np.arange(6) << 1) ^ ~np.arange(6))
    m = S.ones((2, 2))
    np.testing.assert_array_equal((m @ m).get(), np.full((2, 2), 2.0))


def test_reductions_return_0d_strict_arrays(x, host):
    for got, want in ((x.sum(), host.sum()), (S.mean(x), host.mean()), (x.max(), host.max()),
                      (np.sum(x), host.sum()), (x.argmax(), host.argmax()), (x[1, 2], host[1, 2]),
                      (S.linalg.norm(x), np.linalg.norm(host))):
        assert isinstance(got, S.ndarray) and got.shape == () and got.dtype == np.asarray(want).dtype
        assert got.get() == want
    np.testing.assert_array_equal(x.sum(axis=0, keepdims=True).get(), host.sum(0, keepdims=True))


def test_scalar_index_gives_a_0d_view(x):
    e = x[1, 2]
    e[...] = 100.0
    assert float(x[1, 2]) == 100.0


def test_round_trip_is_a_copy(host):
    a = S.asarray(host)
    assert S.asarray(a) is a
    back = S.asnumpy(a)
    assert isinstance(back, np.ndarray) and back is not host
    np.testing.assert_array_equal(back, host)
    host[0, 0] = 99.0  # asarray copied: the strict array is unchanged
    assert float(a[0, 0]) == -5.0
    np.testing.assert_array_equal(a.get(), S.asnumpy(a))
    assert S.asarray(a, dtype=np.float32).dtype == np.float32


def test_attributes_and_views(x, host):
    assert (x.shape, x.ndim, x.size, x.dtype, x.strides, x.nbytes, x.itemsize) == \
        (host.shape, host.ndim, host.size, host.dtype, host.strides, host.nbytes, host.itemsize)
    assert x.device == "strict" and x.flags.c_contiguous
    assert isinstance(x.T, S.ndarray) and x.T.shape == (4, 3)
    v = x.reshape(2, 6)
    assert v.base is not None
    v[0, 0] = 7.0
    assert float(x[0, 0]) == 7.0
    assert repr(S.zeros(2)).startswith("strict_array(")
    assert len(x) == 3 and [r.shape for r in x] == [(4,), (4,), (4,)]
    assert copy.deepcopy(x).get().tolist() == x.tolist()


def test_indexing_with_strict_arrays_masks_and_slices(x, host):
    idx = S.asarray([2, 0])
    np.testing.assert_array_equal(x[idx].get(), host[[2, 0]])
    np.testing.assert_array_equal(x[x > 0].get(), host[host > 0])
    np.testing.assert_array_equal(x[:, idx].get(), host[:, [2, 0]])
    x[x < 0] = 0.0
    x[0, :] = S.arange(4.0)
    host[host < 0] = 0.0
    host[0, :] = np.arange(4.0)
    np.testing.assert_array_equal(x.get(), host)


def test_scatter_add_at_and_stride_tricks(host):
    a = S.zeros(3)
    S.add.at(a, S.asarray([0, 0, 2]), 1.0)
    S.cupyx.scatter_add(a, S.asarray([1]), S.asarray([5.0]))
    a.scatter_max(S.asarray([2]), 4.0)
    np.testing.assert_array_equal(a.get(), [2.0, 5.0, 4.0])
    w = S.lib.stride_tricks.sliding_window_view(S.asarray(host), (2, 2))
    np.testing.assert_array_equal(w.get(), np.lib.stride_tricks.sliding_window_view(host, (2, 2)))
    s = S.lib.stride_tricks.as_strided(S.asarray(host), (2, 2), host.strides)
    np.testing.assert_array_equal(s.get(), host[:2, :2])



def test_as_strided_refuses_a_view_outside_the_arrays_memory():
    """NumPy reads whatever lies past the buffer; a CuPy kernel faults there."""
    buf = S.arange(12.0)
    it = buf.itemsize
    inner = buf[4:8]  # a slice may look past its own end, as long as the allocation goes on
    win = S.lib.stride_tricks.as_strided(inner, (3, 4), (it, it))
    np.testing.assert_array_equal(win.get()[2], [6.0, 7.0, 8.0, 9.0])
    with pytest.raises(IndexError, match="8 bytes past"):
        S.lib.stride_tricks.as_strided(buf, (2, 7), (6 * it, it))
    with pytest.raises(IndexError, match="16 bytes before"):
        S.lib.stride_tricks.as_strided(inner, (4,), (-2 * it,))
    empty = S.lib.stride_tricks.as_strided(buf, (0, 100), (it, it))
    assert empty.shape == (0, 100)

def test_ufunc_methods_that_cupy_has(x, host):
    np.testing.assert_array_equal(S.add.reduce(x, axis=1).get(), np.add.reduce(host, axis=1))
    np.testing.assert_array_equal(S.multiply.accumulate(x).get(), np.multiply.accumulate(host))
    np.testing.assert_array_equal(S.subtract.outer(x[0], x[1]).get(),
                                  np.subtract.outer(host[0], host[1]))
    out = S.empty((3, 4))
    assert S.add(x, 1.0, out=out) is out
    np.testing.assert_array_equal(out.get(), host + 1.0)


def test_random_module_and_ndimage_twin(host):
    S.random.seed(1)
    assert S.random.randn(2, 3, dtype=np.float32).dtype == np.float32
    assert S.random.rand(4).shape == (4,)
    y = S.cupyx.scipy.ndimage.correlate1d(S.asarray(host), [1.0, 2.0, 1.0], axis=1)
    np.testing.assert_array_equal(y.get(), scipy.ndimage.correlate1d(host, [1.0, 2.0, 1.0], axis=1))
    with pytest.raises(TypeError, match="input must be a cupy.ndarray"):
        S.cupyx.scipy.ndimage.correlate1d(host, [1.0, 2.0, 1.0])
    with pytest.raises(AttributeError, match="does not exist"):
        S.cupyx.scipy.ndimage.white_noise


def test_errstate_is_cupyx_and_numpy_dispatch_works(x, host):
    with S.cupyx.errstate(divide="ignore"):
        y = S.log(S.zeros(2))
    assert np.isneginf(y.get()).all()
    np.testing.assert_array_equal(np.concatenate([x, x]).get(), np.concatenate([host, host]))
    np.testing.assert_array_equal(np.exp(x).get(), np.exp(host))
    assert isinstance(np.linalg.norm(x), S.ndarray)


# --------------------------------------------------------------------------- namespace = manifest

def _public(mod):
    return {n for n in dir(mod) if not n.startswith("_")}


def test_every_public_name_exists_in_cupy():
    assert _public(S) - {"cupyx"} <= set(M.namespace("cupy"))
    for sub, ns in ((S.linalg, "cupy.linalg"), (S.fft, "cupy.fft"), (S.random, "cupy.random"),
                    (S.lib.stride_tricks, "cupy.lib.stride_tricks"),
                    (S.cupyx.scipy.ndimage, "cupyx.scipy.ndimage")):
        assert _public(sub) <= set(M.namespace(ns)), ns
    assert {n for n in vars(S.ndarray) if not n.startswith("_")} <= set(M.manifest()["ndarray"])
    gen = {n for n in vars(S.random.Generator) if not n.startswith("_")}
    assert gen <= set(M.manifest()["random.Generator"])


# CuPy names NumPy also has that the strict backend leaves out on purpose (they take arrays
# through NumPy's own machinery, which would call __array__) or that NumPy spells differently.
_LEFT_OUT = {"annotations", "vectorize", "broadcast", "flatiter", "poly1d", "format_parser",
             "DataSource", "testing", "typing", "polynomial", "exceptions"}


def test_every_cupy_name_numpy_also_has_is_offered():
    missing = sorted(n for n in M.namespace("cupy") if hasattr(np, n) and n not in _LEFT_OUT
                     and n not in _public(S))
    assert missing == []
    for sub, np_sub, ns in ((S.linalg, np.linalg, "cupy.linalg"), (S.fft, np.fft, "cupy.fft")):
        missing = sorted(n for n in M.namespace(ns)
                         if hasattr(np_sub, n) and n not in _public(sub) | _LEFT_OUT)
        assert missing == [], ns
    missing = sorted(n for n, sig in M.manifest()["ndarray"].items()
                     if sig and hasattr(np.ndarray, n) and not hasattr(S.ndarray, n))
    assert missing == []
