"""minidl.autograd: graph recording, backward, accumulation, graph freeing, Tensor basics."""
import weakref

import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import functions as F
from minidl.autograd import Function, Parameter, Tensor, enable_grad, is_grad_enabled, no_grad


def leaf(xp, host, requires_grad=True, dtype=np.float64):
    return Tensor(xp.asarray(np.asarray(host, dtype=dtype)), requires_grad=requires_grad)


def host(a):
    return minidl.to_host(a)


# --------------------------------------------------------------------------- backward

def test_diamond_graph_accumulates_both_paths(xp):
    x = leaf(xp, [1.0, -2.0, 3.0])
    a = x * 2.0           # used twice below
    b = a * a             # d b / d a = 2a
    c = a + b
    c.sum().backward()
    xh = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(host(x.grad), 2.0 + 2.0 * (2.0 * xh) * 2.0)


def test_same_tensor_twice_in_one_op(xp):
    x = leaf(xp, [1.5, -0.5])
    (x * x).sum().backward()
    np.testing.assert_allclose(host(x.grad), [3.0, -1.0])
    y = leaf(xp, [2.0])
    F.concatenate([y, y, y]).sum().backward()
    np.testing.assert_allclose(host(y.grad), [3.0])


def test_gradients_accumulate_across_backward_calls_until_zero_grad(xp):
    x = leaf(xp, [1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(host(x.grad), [3.0 + 2.0, 3.0 + 4.0])
    x.zero_grad()
    assert x.grad is None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(host(x.grad), [3.0, 3.0])


def test_grad_is_a_fresh_array_not_an_alias(xp):
    x = leaf(xp, [1.0, 2.0])
    y = leaf(xp, [1.0, 2.0])
    (x + y).sum().backward()
    assert x.grad is not y.grad
    x.grad[0] = 100.0
    assert host(y.grad)[0] == 1.0


def test_retain_graph_allows_a_second_backward(xp):
    x = leaf(xp, [1.0, 2.0])
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(host(x.grad), [4.0, 8.0])


def test_second_backward_without_retain_graph_raises_a_clear_error(xp):
    x = leaf(xp, [1.0, 2.0])
    loss = F.exp(x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match=r"backward through Sum a second time: its graph was "
                                           r"freed .* pass retain_graph=True"):
        loss.backward()
    # a shared intermediate is freed too
    y = x * 2.0
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through Mul a second time"):
        (y * 3.0).sum().backward()


def test_leaf_without_requires_grad_gets_no_grad(xp):
    x = leaf(xp, [1.0, 2.0])
    c = leaf(xp, [5.0, 6.0], requires_grad=False)
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_allclose(host(x.grad), [5.0, 6.0])


def test_backward_of_a_leaf_sets_its_own_grad(xp):
    x = leaf(xp, 3.0)
    x.backward()
    assert host(x.grad) == 1.0


def test_leaf_grad_keeps_the_leaf_dtype(xp):
    x = Tensor(xp.asarray(np.array([1.0, 2.0], np.float32)), requires_grad=True)
    y = x * Tensor(xp.asarray(np.array([1.0, 1.0])))  # float64 constant promotes the graph
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32


# --------------------------------------------------------------------------- recording

def test_no_grad_records_nothing(xp):
    x = leaf(xp, [1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = F.exp(x * 2.0)
        with enable_grad():
            assert is_grad_enabled()
            z = x * 2.0
        assert not is_grad_enabled()
    assert is_grad_enabled()
    assert y.creator is None and not y.requires_grad and y.is_leaf
    assert z.creator is not None and z.requires_grad


def test_no_grad_as_a_decorator_restores_per_call_even_when_recursing():
    seen = []

    @no_grad()
    def recurse(n):
        seen.append(is_grad_enabled())
        if n:
            recurse(n - 1)
        seen.append(is_grad_enabled())  # after the inner call returned: still off

    recurse(3)
    assert seen == [False] * 8
    assert is_grad_enabled()

    @no_grad()
    def fails():
        raise KeyError("x")

    with pytest.raises(KeyError):
        fails()
    assert is_grad_enabled()


def test_inputs_without_requires_grad_record_nothing(xp):
    x = leaf(xp, [1.0], requires_grad=False)
    y = x * 2.0
    assert y.creator is None and not y.requires_grad


def test_a_20000_op_chain_backprops_without_recursion_error(xp):
    x = leaf(xp, [1.0, 2.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0
        y = y + 0.5
    y.sum().backward()
    np.testing.assert_allclose(host(x.grad), [1.0, 1.0])
    np.testing.assert_allclose(host(y.data), [5001.0, 5002.0])
    # and an unused deep graph can be dropped without hitting the recursion limit either
    z = x
    for _ in range(20_000):
        z = z + 1.0
    ref = weakref.ref(z.creator)
    del z
    assert ref() is None


def test_graph_is_freed_by_backward(xp):
    x = leaf(xp, np.arange(3.0))
    h = x * 2.0                 # an intermediate, referenced only by the graph once `del h`
    e = F.exp(h)
    loss = (e * e).sum()
    h_ref, e_ref = weakref.ref(h), weakref.ref(e)
    exp_fn = weakref.ref(e.creator)
    saved = weakref.ref(e.creator.inputs[0])
    assert saved() is h
    del h, e
    assert h_ref() is not None and e_ref() is not None   # the graph holds them
    loss.backward()
    assert h_ref() is None and e_ref() is None             # ... until backward frees it
    assert exp_fn() is None
    assert loss.creator.inputs == () and loss.creator.released
    np.testing.assert_allclose(host(x.grad), 4.0 * np.exp(4.0 * np.arange(3.0)))


def test_retain_graph_keeps_the_graph(xp):
    x = leaf(xp, np.arange(3.0))
    h = x * 2.0
    loss = F.exp(h).sum()
    h_ref = weakref.ref(h)
    del h
    loss.backward(retain_graph=True)
    assert h_ref() is not None
    assert not loss.creator.released


def test_intermediate_grads_are_dropped_unless_retained(xp):
    x = leaf(xp, [1.0, 2.0])
    h = x * 3.0
    k = (x * 3.0).retain_grad()
    loss = (h * h + k * k).sum()
    loss.backward()
    assert h.grad is None and loss.grad is None
    np.testing.assert_allclose(host(k.grad), 2.0 * 3.0 * np.array([1.0, 2.0]))
    assert not h.is_leaf and x.is_leaf
    root = (x * 1.0).sum().retain_grad()
    root.backward()
    assert host(root.grad) == 1.0


def test_backward_grad_argument_is_checked(xp):
    x = leaf(xp, np.ones((2, 3)))
    y = x * 2.0
    with pytest.raises(ValueError, match=r"backward\(\): grad must have shape \(2, 3\), "
                                         r"got \(3, 2\)"):
        y.backward(xp.ones((3, 2)))
    with pytest.raises(ValueError, match=r"backward\(\) without grad needs a one-element tensor "
                                         r"\(a loss\), got shape \(2, 3\)"):
        y.backward()
    other = "numpy" if B.backend_of(x.data).name != "numpy" else "strict"
    with pytest.raises(B.DeviceMismatchError, match="backward"):
        y.backward(B.to_device(np.ones((2, 3)), other))
    g = xp.asarray(np.arange(6.0).reshape(2, 3))
    y.backward(Tensor(g))  # a Tensor grad is accepted too
    np.testing.assert_allclose(host(x.grad), 2.0 * np.arange(6.0).reshape(2, 3))


# --------------------------------------------------------------------------- Functions

class _Split(Function):
    """Two outputs: the first row and the rest."""

    def forward(self, x):
        return x[:1], x[1:]

    def backward(self, g0, g1):
        return B.get_array_module(g0).concatenate([g0, g1])


def test_function_with_two_outputs_fills_missing_output_grads_with_zeros(xp):
    x = leaf(xp, [1.0, 2.0, 3.0])
    first, rest = _Split()(x)
    (rest * 5.0).sum().backward()
    np.testing.assert_allclose(host(x.grad), [0.0, 5.0, 5.0])
    x.zero_grad()
    first, rest = _Split()(x)
    (first * 2.0 + rest.sum()).sum().backward()
    np.testing.assert_allclose(host(x.grad), [2.0, 1.0, 1.0])


class _Fresh(Function):
    """A Function that promises fresh gradients; ``how`` says what its backward really
    returns, to check that the promise is not taken further than it goes."""
    fresh_grads = True

    def __init__(self, how):
        self.how, self.made = how, []   # backward's arrays (released with the graph: kept here)

    def forward(self, a, b):
        return a * 1.0 + b * 1.0

    def backward(self, gy):
        xp = B.get_array_module(gy)
        if self.how == "fresh":
            self.made[:] = (gy * 1.0, gy * 1.0)
        elif self.how == "same":          # one array for both inputs
            g = gy * 1.0
            self.made[:] = (g, g)
        elif self.how == "upstream":      # the gradient that came in, passed on
            self.made[:] = (gy, gy * 1.0)
        else:                             # a view of a new array
            self.made[:] = (xp.stack([gy, gy])[0], gy * 1.0)
        return tuple(self.made)


def test_a_fresh_leaf_gradient_becomes_grad_without_a_copy(xp):
    a, b = leaf(xp, [1.0, 2.0]), leaf(xp, [3.0, 4.0])
    f = _Fresh("fresh")
    made = f.made
    f(a, b).backward(xp.asarray(np.array([1.0, -1.0])))
    assert a.grad is made[0] and b.grad is made[1]
    np.testing.assert_array_equal(host(a.grad), [1.0, -1.0])
    f = _Fresh("fresh")
    made, first = f.made, a.grad
    f(a, b).backward(xp.asarray(np.array([2.0, 2.0])))   # a second backward adds, anew
    assert a.grad is not made[0] and a.grad is not first
    np.testing.assert_array_equal(host(a.grad), [3.0, 1.0])
    np.testing.assert_array_equal(host(first), [1.0, -1.0])


@pytest.mark.parametrize("how", ["same", "upstream", "view"])
def test_a_shared_or_borrowed_leaf_gradient_is_copied(xp, how):
    a, b = leaf(xp, [1.0, 2.0]), leaf(xp, [3.0, 4.0])
    g = xp.asarray(np.array([1.0, -1.0]))
    f = _Fresh(how)
    made = f.made
    f(a, b).backward(g)
    assert a.grad is not made[0] and a.grad is not g
    assert a.grad is not b.grad
    a.grad[0] = 100.0   # writes to one gradient reach nothing else
    np.testing.assert_array_equal(host(b.grad), [1.0, -1.0])
    np.testing.assert_array_equal(host(g), [1.0, -1.0])


def _layer_cases():
    """(name, op on a leaf x, the Function class that makes x's gradient)."""
    import importlib   # the modules, not the functions of the same names in minidl.functions
    batchnorm_pool, conv, conv_bn_pool, linear, normalization, pooling = (
        importlib.import_module(f"minidl.functions.{m}") for m in (
            "batchnorm_pool", "conv", "conv_bn_pool", "linear", "normalization", "pooling"))
    W = np.linspace(-1, 1, 4 * 3 * 9).reshape(4, 3, 3, 3)
    W1 = np.linspace(-1, 1, 8 * 3 * 9).reshape(8, 3, 3, 3)
    return [
        ("conv2d", lambda x: F.conv2d(x, Tensor(W, requires_grad=True), padding=1),
         conv.Conv2d),
        ("linear", lambda x: F.linear(x, Tensor(np.ones((5, 8)))), linear.Linear),
        ("max 3x3 s2", lambda x: F.max_pool2d(x, 3, 2, 1), pooling.MaxPool2d),
        ("max 2x2", lambda x: F.max_pool2d(x, 2), pooling.MaxPool2d),
        ("avg 2x2", lambda x: F.avg_pool2d(x, 2), pooling.AvgPool2d),
        ("batch norm", lambda x: F.batch_norm(x, training=True), normalization.BatchNorm),
        ("batch norm + pool", lambda x: F.batch_norm_max_pool2d(x, training=True),
         batchnorm_pool.BatchNormMaxPool),
        ("conv + batch norm + pool", lambda x: F.conv2d_batch_norm_max_pool2d(
            x, Tensor(W1, requires_grad=True), training=True),
         (conv_bn_pool.ConvBatchNormMaxPool, conv_bn_pool.ImageConvBatchNormMaxPool)),
    ]


@pytest.mark.parametrize("case", range(len(_layer_cases())),
                         ids=[c[0] for c in _layer_cases()])
def test_a_layer_input_gradient_is_not_copied(rng, monkeypatch, case):
    """The layers' backwards make gx for that call: a leaf input takes it as its .grad (a
    view of it, such as a reshaped gW, is copied)."""
    name, op, classes = _layer_cases()[case]
    made = []
    for cls in classes if isinstance(classes, tuple) else (classes,):
        def spy(self, gy, backward=cls.backward):
            made.append(backward(self, gy))
            return made[-1]

        monkeypatch.setattr(cls, "backward", spy)
    x = Tensor(rng.standard_normal((2, 8) if name == "linear" else (2, 3, 8, 8)),
               requires_grad=True)
    (op(x) * 1.0).sum().backward()
    gx = made[0][0] if isinstance(made[0], tuple) else made[0]
    assert x.grad is gx
    if name == "conv2d":
        W = made[0][1]
        assert W.base is not None   # gW is a reshaped product: the parameter gets a copy


class _WrongCount(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        return gy


class _WrongShape(Function):
    def forward(self, a):
        return a.sum()

    def backward(self, gy):
        return gy


def test_broken_function_backward_is_reported(xp):
    x = leaf(xp, [1.0, 2.0])
    with pytest.raises(RuntimeError, match="_WrongCount.backward returned 1 gradients for 2"):
        _WrongCount()(x, x).sum().backward()
    with pytest.raises(RuntimeError, match=r"_WrongShape.backward gave a gradient of shape \(\) "
                                           r"for an input of shape \(2,\)"):
        _WrongShape()(x).backward()


def test_function_rejects_unknown_inputs(xp):
    with pytest.raises(TypeError, match=r"Add: inputs must be Tensors, backend arrays or Python "
                                        r"numbers, got list"):
        F.add(leaf(xp, [1.0]), [1.0])


# --------------------------------------------------------------------------- Tensor basics

def test_tensor_constructor_validates(xp):
    t = leaf(xp, [1.0])
    with pytest.raises(TypeError, match="got a Tensor; use .detach"):
        Tensor(t)
    with pytest.raises(TypeError, match=r"data must be a backend array \(numpy/cupy\), got list; "
                                        r"use minidl.tensor"):
        Tensor([1.0, 2.0])


def test_tensor_repr(xp):
    t = Tensor(xp.zeros((2, 3), dtype=np.float32), name="w")
    device = B.device_of(t.data)
    assert repr(t) == f"Tensor(shape=(2, 3), dtype=float32, device={device}, name='w')"
    t.requires_grad = True
    assert repr(t).endswith(", requires_grad=True)")
    p = Parameter(xp.zeros(4, dtype=np.float32))
    assert repr(p) == f"Parameter(shape=(4,), dtype=float32, device={device}, requires_grad=True)"


def test_tensor_item_numpy_detach_and_array_attributes(xp):
    t = leaf(xp, [[1.5, 2.0, 3.0]])
    assert t.shape == (1, 3) and t.ndim == 2 and t.size == 3 and len(t) == 1
    assert t.dtype == np.float64
    s = t.sum()
    v = s.item()
    assert type(v) is float and v == 6.5
    with pytest.raises(ValueError, match=r"item\(\) needs a tensor with one element, got shape "
                                         r"\(1, 3\)"):
        t.item()
    arr = t.numpy()
    assert type(arr) is np.ndarray
    np.testing.assert_array_equal(arr, [[1.5, 2.0, 3.0]])
    d = s.detach()
    assert d.data is s.data and d.creator is None and not d.requires_grad


@pytest.mark.parametrize("target", ["numpy", "strict"])
def test_tensor_to_moves_and_cuts_the_graph(xp, target):
    x = leaf(xp, [1.0, 2.0])
    y = (x * 2.0)
    y.name = "y"
    z = y.to(target)
    assert B.backend_of(z.data).name == target
    assert z.creator is None and z.requires_grad and z.name == "y"
    np.testing.assert_array_equal(z.numpy(), [2.0, 4.0])


def test_tensor_factory(xp):
    t = minidl.tensor([[1.0, 2.0]], requires_grad=True, name="t")
    assert B.get_array_module(t.data) is xp
    assert t.dtype == np.float32 and t.requires_grad and t.name == "t"
    assert minidl.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert minidl.as_tensor(t) is t
    a = xp.zeros(2)
    assert minidl.as_tensor(a).data is a


def test_operators_dispatch_to_tensor_from_the_left(xp):
    x = leaf(xp, [1.0, 2.0])
    for y in (2.0 * x, np.float64(2.0) * x, 2 + x, 1.0 - x, 4.0 / x):
        assert isinstance(y, Tensor) and y.requires_grad
    if xp is np:  # an ndarray on the left defers to Tensor (__array_priority__)
        y = np.array([3.0, 4.0]) * x
        assert isinstance(y, Tensor)
        np.testing.assert_allclose(host(y.data), [3.0, 8.0])
        assert isinstance(np.ones((1, 2)) @ leaf(xp, np.eye(2)), Tensor)
