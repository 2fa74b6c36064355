"""minidl.layers.module: registration, traversal, modes, repr/summary, Sequential, state_dict
and .npz save/load (no pickle), moving between devices."""
import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl.autograd import Parameter, Tensor
from minidl.layers import Dropout, Flatten, Linear, Module, ReLU, Sequential, Tanh
from minidl.testing import gradcheck


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


class MLP(Module):
    def __init__(self, n_in=4, n_hidden=8, n_out=3):
        super().__init__()
        self.fc1 = Linear(n_in, n_hidden)
        self.act = ReLU()
        self.drop = Dropout(0.5)
        self.fc2 = Linear(n_hidden, n_out)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


class WithBuffer(Module):
    def __init__(self):
        super().__init__()
        self.fc = Linear(2, 2)
        self.register_buffer("running", B.get_xp().zeros(2, dtype=np.float32))

    def forward(self, x):
        return self.fc(x) + self.running


def batch(xp, rng, shape=(5, 4)):
    return Tensor(xp.asarray(rng.standard_normal(shape).astype(np.float32)))


# --------------------------------------------------------------------------- registration

def test_parameters_and_submodules_are_registered_in_order(xp):
    m = MLP()
    assert [n for n, _ in m.named_parameters()] == ["fc1.W", "fc1.b", "fc2.W", "fc2.b"]
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "act", "drop", "fc2"]
    assert list(m.children()) == [m.fc1, m.act, m.drop, m.fc2]
    assert m.parameters() == [m.fc1.W, m.fc1.b, m.fc2.W, m.fc2.b]
    assert all(isinstance(p, Parameter) for p in m.parameters())
    assert m.num_parameters() == 4 * 8 + 8 + 8 * 3 + 3
    assert m.device == B.get_backend().device


def test_reassigning_an_attribute_unregisters_it(xp):
    m = MLP()
    m.fc2 = None
    assert [n for n, _ in m.named_parameters()] == ["fc1.W", "fc1.b"]
    m.fc1.b = Tensor(xp.zeros(8, dtype=np.float32))  # a plain Tensor is not a parameter
    assert [n for n, _ in m.named_parameters()] == ["fc1.W"]


def test_shared_parameters_are_listed_once(xp):
    m = Module()
    m.a = Linear(3, 3)
    m.b = Linear(3, 3)
    m.b.W = m.a.W  # tied weights
    m.c = m.a      # a module used twice
    names = [n for n, _ in m.named_parameters()]
    assert names == ["a.W", "a.b", "b.b", "b.W", "c.W", "c.b"]  # reassigned W moves last
    params = m.parameters()
    assert len(params) == 3 and [id(p) for p in params] == [id(m.a.W), id(m.a.b), id(m.b.b)]
    assert m.num_parameters() == 9 + 3 + 3


def test_forgetting_super_init_is_a_clear_error():
    class Bad(Module):
        def __init__(self):
            self.fc = Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"Bad.__init__ must call super\(\).__init__\(\) "
                                           "before assigning attributes"):
        Bad()


def test_forward_not_implemented_names_the_class():
    class NoForward(Module):
        pass

    with pytest.raises(NotImplementedError, match="NoForward must implement forward"):
        NoForward()(1)


def test_register_buffer_rejects_non_arrays():
    with pytest.raises(TypeError, match="register_buffer: array must be a backend array, got "
                                        "list"):
        Module().register_buffer("x", [1, 2])


# --------------------------------------------------------------------------- modes and grads

def test_train_and_eval_propagate_to_every_submodule(xp):
    m = Sequential(MLP(), Sequential(Dropout(0.1)))
    assert all(sub.training for sub in m.modules())
    assert m.eval() is m
    assert not any(sub.training for sub in m.modules())
    m.train()
    assert all(sub.training for sub in m.modules())
    m.train(False)
    assert not any(sub.training for sub in m.modules())


def test_eval_mode_is_deterministic_and_train_mode_is_not(xp, rng):
    m = MLP()
    x = batch(xp, rng)
    m.eval()
    np.testing.assert_array_equal(host(m(x)), host(m(x)))
    m.train()
    assert not np.array_equal(host(m(x)), host(m(x)))


def test_zero_grad_clears_every_gradient(xp, rng):
    m = MLP()
    m(batch(xp, rng)).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


# --------------------------------------------------------------------------- printing

def test_repr_shows_children_with_parameter_counts():
    assert repr(MLP()) == ("MLP(\n"
                           "  (fc1): Linear(4, 8, bias=True)  # 40 params\n"
                           "  (act): ReLU()\n"
                           "  (drop): Dropout(p=0.5)\n"
                           "  (fc2): Linear(8, 3, bias=True)  # 27 params\n"
                           ")")
    nested = repr(Sequential(Linear(1000, 1000), Sequential(ReLU())))
    assert "(0): Linear(1000, 1000, bias=True)  # 1,001,000 params" in nested
    assert "  (1): Sequential(\n    (0): ReLU()\n  )" in nested


def test_summary_lists_leaf_layers_with_output_shapes(xp):
    m = Sequential(Flatten(), Linear(6, 5), ReLU(), Sequential(Linear(5, 2)))
    m.train()
    lines = m.summary((3, 2, 3)).splitlines()
    assert lines[0].split() == ["layer", "type", "output", "shape", "params"]
    rows = [line.split(None, 2) for line in lines[1:-1]]
    assert [(r[0], r[1]) for r in rows] == [("0", "Flatten"), ("1", "Linear"), ("2", "ReLU"),
                                            ("3.0", "Linear")]
    assert "(3, 6)" in lines[1] and "(3, 5)" in lines[2] and lines[2].endswith(" 35")
    assert "(3, 2)" in lines[4] and lines[4].endswith(" 12")
    assert lines[-1] == "total parameters: 47"
    # the hooks are gone and the mode is restored
    assert m.training and all("forward" not in vars(sub) for sub in m.modules())
    assert m(Tensor(xp.zeros((1, 2, 3), dtype=np.float32))).shape == (1, 2)


# --------------------------------------------------------------------------- Sequential

def test_sequential_applies_layers_in_order(xp, rng):
    fc1, fc2 = Linear(4, 3), Linear(3, 2)
    s = Sequential(fc1, ReLU(), fc2)
    x = batch(xp, rng)
    want = host(x) @ host(fc1.W).T + host(fc1.b)
    want = np.maximum(want, 0) @ host(fc2.W).T + host(fc2.b)
    np.testing.assert_allclose(host(s(x)), want, rtol=1e-5, atol=1e-6)
    assert len(s) == 3 and list(s) == [fc1, s[1], fc2] and s[-1] is fc2
    head = s[:2]
    assert isinstance(head, Sequential) and list(head) == [fc1, s[1]]
    assert s.append(Linear(2, 2)) is s and len(s) == 4
    assert [n for n, _ in s.named_parameters()][-2:] == ["3.W", "3.b"]


def test_sequential_gradcheck_through_every_layer(xp, rng):
    minidl.set_default_dtype(np.float64)
    s = Sequential(Flatten(), Linear(6, 5), Tanh(), Linear(5, 3))
    names = ["1.W", "1.b", "3.W", "3.b"]

    def fn(x, *ps):  # the parameters swapped for the checked tensors, in order
        for (mod, attr), p in zip([(s[1], "W"), (s[1], "b"), (s[3], "W"), (s[3], "b")], ps):
            setattr(mod, attr, p)
        return s(x)

    params = [v for k, v in s.state_dict().items() if k in names]
    gradcheck(fn, [xp.asarray(rng.standard_normal((4, 2, 3)))] + params)


def test_relu_before_max_pool_runs_after_it_with_the_same_values_and_gradients(xp, rng):
    """Sequential runs a ReLU that comes right before a MaxPool2d after it (a quarter of the
    values to touch).  Values and gradients match relu-then-pool exactly, with windows that
    are all negative, all zero, tied at their maximum, or hold a NaN; subclasses and
    summary()'s recording hooks keep the written order."""
    import minidl.functions as F
    from minidl.layers import MaxPool2d

    def inputs():
        x = rng.integers(-3, 3, size=(2, 3, 6, 8)).astype(np.float32)  # many ties, zeros
        x[0, 0, :2, :2] = -1.0
        x[0, 1, :2, :2] = 0.0
        x[1, 2, 2, 3] = np.nan
        return x

    for pool in (MaxPool2d(2), MaxPool2d(3, stride=2, padding=1)):
        s = Sequential(ReLU(), pool)
        x = inputs()
        gy = xp.asarray(rng.standard_normal((2, 3) + s(Tensor(xp.asarray(x))).shape[2:])
                        .astype(np.float32))
        a, b = Tensor(xp.asarray(x), requires_grad=True), Tensor(xp.asarray(x),
                                                                 requires_grad=True)
        ya, yb = s(a), F.max_pool2d(F.relu(b), pool.kernel_size, pool.stride, pool.padding)
        assert type(ya.creator).__name__ == "ReLU"  # the pool ran first
        ya.backward(gy)
        yb.backward(gy)
        np.testing.assert_array_equal(host(ya), host(yb))
        np.testing.assert_array_equal(host(a.grad), host(b.grad))

    class MyReLU(ReLU):
        pass

    assert type(Sequential(MyReLU(), MaxPool2d(2))(Tensor(xp.asarray(inputs()))).creator
                ).__name__ != "ReLU"
    rows = Sequential(ReLU(), MaxPool2d(2)).summary((2, 3, 6, 8)).splitlines()[1:3]
    assert "ReLU" in rows[0] and "(2, 3, 6, 8)" in rows[0]
    assert "MaxPool2d" in rows[1] and "(2, 3, 3, 4)" in rows[1]


def _whole_and_layer_by_layer(xp, s, x):
    """(s(a), the layers of s applied one by one to b, a, b) for two copies a, b of x that
    require gradients."""
    a, b = (Tensor(xp.asarray(x), requires_grad=True) for _ in range(2))
    ya = s(a)
    yb = b
    for layer in s:
        yb = layer(yb)
    return ya, yb, a, b


def test_batch_norm_then_max_pool_runs_as_one_op_on_numpy(xp, rng):
    """On NumPy, Sequential runs BatchNorm2d [-> ReLU] -> MaxPool2d(2) as one batch norm + pool
    op (the ReLU after it): the same outputs and running statistics as the layers one by one,
    the batch counted once, gradients to rounding.  Odd sizes, other pools, subclasses,
    summary()'s hooks and the other backends keep the layers as written."""
    from minidl.layers import BatchNorm2d, MaxPool2d

    def build(*between):
        bn = BatchNorm2d(3)
        bn.gamma.data[...] = xp.asarray(np.array([1.5, -0.5, 0.8], np.float32))
        return Sequential(bn, *between, MaxPool2d(2))

    x = rng.standard_normal((4, 3, 6, 8)).astype(np.float32)
    for between in ((ReLU(),), ()):
        for training in (True, False):
            s = build(*between)
            s.train(training)
            ya, yb, a, b = _whole_and_layer_by_layer(xp, s, x)
            fused = minidl.get_backend().name == "numpy"   # the ReLU too, when there is one
            assert (type(ya.creator).__name__ == "BatchNormMaxPool") == fused
            np.testing.assert_array_equal(host(ya), host(yb))
            gy = xp.asarray(rng.standard_normal(ya.shape).astype(np.float32))
            ya.backward(gy)
            yb.backward(gy)
            np.testing.assert_allclose(host(a.grad), host(b.grad), rtol=1e-5, atol=1e-5)
            assert int(host(s[0].num_batches_tracked)) == (2 if training else 0)

    def takes_fused(s, shape=(2, 3, 6, 8)):
        y = s(Tensor(xp.asarray(rng.standard_normal(shape).astype(np.float32))))
        return type(y.creator).__name__ == "BatchNormMaxPool"

    numpy = minidl.get_backend().name == "numpy"
    assert takes_fused(build()) == numpy
    assert not takes_fused(build(), shape=(2, 3, 7, 8))     # odd height: max pool drops a row
    assert not takes_fused(Sequential(BatchNorm2d(3), MaxPool2d(3, stride=2)))

    class MyBatchNorm(BatchNorm2d):
        pass

    assert not takes_fused(Sequential(MyBatchNorm(3), MaxPool2d(2)))
    rows = build(ReLU()).summary((2, 3, 6, 8)).splitlines()[1:4]
    assert "BatchNorm2d" in rows[0] and "(2, 3, 6, 8)" in rows[0]
    assert "MaxPool2d" in rows[2] and "(2, 3, 3, 4)" in rows[2]


@pytest.mark.parametrize("path", ["winograd", "per image"])
def test_conv_batch_norm_then_max_pool_runs_as_one_op_on_numpy(xp, rng, monkeypatch, path):
    """On NumPy, Sequential runs a 3x3 stride-1 Conv2d without bias, then BatchNorm2d [->
    ReLU] -> MaxPool2d(2), as one op where conv2d would take Winograd or one product per image:
    the same outputs and running statistics as the layers one by one (to rounding: statistics
    summed in another order), the batch counted once, the same gradients.  A bias, a stride, an
    odd output, a subclass, summary()'s hooks, a layer on neither path and the other backends
    keep the layers as written."""
    from minidl.kernels import tuning
    from minidl.layers import BatchNorm2d, Conv2d, MaxPool2d
    winograd = path == "winograd"
    monkeypatch.setattr(tuning, "WINOGRAD_MIN_DEPTH", 0 if winograd else np.inf)
    monkeypatch.setattr(tuning, "CONV_PER_IMAGE_MAX_MACS", 0 if winograd else 1 << 18)
    fused_op = "ConvBatchNormMaxPool" if winograd else "ImageConvBatchNormMaxPool"

    def build(*between, conv=None):
        conv = conv or Conv2d(2, 3, 3, padding=1, bias=False)
        bn = BatchNorm2d(3)
        bn.gamma.data[...] = xp.asarray(np.array([1.5, -0.5, 0.8], np.float32))
        return Sequential(conv, bn, *between, MaxPool2d(2))

    x = rng.standard_normal((4, 2, 6, 8)).astype(np.float32)
    numpy = minidl.get_backend().name == "numpy"
    for between in ((ReLU(),), ()):
        for training in (True, False):
            s = build(*between)
            s.train(training)
            ya, yb, a, b = _whole_and_layer_by_layer(xp, s, x)
            assert (type(ya.creator).__name__ == fused_op) == numpy
            np.testing.assert_allclose(host(ya), host(yb), rtol=1e-5, atol=1e-5)
            gy = xp.asarray(rng.standard_normal(ya.shape).astype(np.float32))
            grads = []
            for y, inp in ((ya, a), (yb, b)):
                s.zero_grad()
                y.backward(gy)
                grads.append([host(inp.grad), host(s[0].W.grad), host(s[1].gamma.grad)])
            for ga, gb in zip(*grads):
                np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-5 * np.abs(gb).max())
            assert int(host(s[1].num_batches_tracked)) == (2 if training else 0)

    def takes_fused(s, shape=(2, 2, 6, 8)):
        y = s(Tensor(xp.asarray(rng.standard_normal(shape).astype(np.float32))))
        return type(y.creator).__name__ == fused_op

    assert takes_fused(build()) == numpy
    assert not takes_fused(build(conv=Conv2d(2, 3, 3, padding=1)))              # a bias
    assert not takes_fused(build(conv=Conv2d(2, 3, 3, padding=0)), (2, 2, 7, 8))  # 5x6 out
    assert not takes_fused(Sequential(Conv2d(2, 3, 3, stride=2, padding=1, bias=False),
                                      BatchNorm2d(3), MaxPool2d(2)), (2, 2, 12, 16))

    class MyConv(Conv2d):
        pass

    assert not takes_fused(build(conv=MyConv(2, 3, 3, padding=1, bias=False)))
    rows = build(ReLU()).summary((2, 2, 6, 8)).splitlines()[1:5]
    assert "Conv2d" in rows[0] and "(2, 3, 6, 8)" in rows[0]
    assert "MaxPool2d" in rows[3] and "(2, 3, 3, 4)" in rows[3]
    monkeypatch.setattr(tuning, "WINOGRAD_MIN_DEPTH", np.inf)
    monkeypatch.setattr(tuning, "CONV_PER_IMAGE_MAX_MACS", 0)
    assert not takes_fused(build())          # im2col for the batch: no fused path


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="Sequential: layer 1 must be a Module, got function"):
        Sequential(ReLU(), lambda x: x)


# --------------------------------------------------------------------------- state_dict

def test_state_dict_names_parameters_and_buffers(xp):
    m = WithBuffer()
    state = m.state_dict()
    assert list(state) == ["fc.W", "fc.b", "running"]
    assert state["fc.W"] is m.fc.W.data and B.backend_of(state["running"]).xp is xp


def test_load_state_dict_copies_values_casts_and_keeps_the_device(xp):
    src, dst = WithBuffer(), WithBuffer()
    state = {k: B.to_host(v).astype(np.float64) + 1.0 for k, v in src.state_dict().items()}
    assert dst.load_state_dict(state) == ([], [])
    for k, v in dst.state_dict().items():
        assert v.dtype == np.float32 and B.backend_of(v).xp is xp
        np.testing.assert_array_equal(B.to_host(v), state[k].astype(np.float32))


def test_load_state_dict_reports_missing_and_unexpected_keys(xp):
    m = MLP()
    state = dict(m.state_dict())
    del state["fc2.b"]
    state["fc3.W"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"load_state_dict into MLP: missing keys \['fc2.b'\], "
                                         r"unexpected keys \['fc3.W'\]"):
        m.load_state_dict(state)
    before = B.to_host(m.fc2.b.data).copy()
    state["fc1.W"] = np.ones((8, 4), np.float32)
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert missing == ["fc2.b"] and unexpected == ["fc3.W"]
    np.testing.assert_array_equal(host(m.fc1.W), 1.0)
    np.testing.assert_array_equal(host(m.fc2.b), before)


def test_load_state_dict_reports_every_shape_mismatch(xp):
    m = MLP()
    state = dict(m.state_dict())
    state["fc1.W"] = np.zeros((4, 8), np.float32)
    state["fc2.b"] = np.zeros((1, 3), np.float32)
    with pytest.raises(ValueError, match=r"load_state_dict into MLP: shape mismatch: fc1.W: "
                                         r"expected shape \(8, 4\), got \(4, 8\); fc2.b: "
                                         r"expected shape \(3,\), got \(1, 3\)"):
        m.load_state_dict(state)


# --------------------------------------------------------------------------- save / load

def test_save_load_round_trip_gives_bit_exact_predictions(xp, rng, tmp_path):
    m = MLP().eval()
    m.register_buffer("extra", xp.asarray(np.arange(3, dtype=np.float32)))
    x = batch(xp, rng)
    want = host(m(x))
    path = tmp_path / "model.npz"
    m.save(path)
    B.seed(99)  # different initial weights
    other = MLP().eval()
    other.register_buffer("extra", xp.zeros(3, dtype=np.float32))
    assert not np.array_equal(host(other(x)), want)
    assert other.load(path) is other
    np.testing.assert_array_equal(host(other(x)), want)
    np.testing.assert_array_equal(B.to_host(other.extra), [0.0, 1.0, 2.0])
    assert B.backend_of(other.fc1.W.data).xp is xp


def test_saved_file_holds_plain_arrays_only(xp, tmp_path):
    m = MLP()
    path = tmp_path / "m.npz"
    m.save(path)
    with np.load(path, allow_pickle=False) as data:  # would raise on an object array
        assert sorted(data.files) == sorted(list(m.state_dict()) + ["__minidl__"])
        for k in data.files:
            assert data[k].dtype != object
        np.testing.assert_array_equal(data["fc1.W"], host(m.fc1.W))


def test_loading_a_file_with_wrong_keys_or_shapes_names_them(xp, tmp_path):
    MLP(n_hidden=8).save(tmp_path / "h8.npz")
    with pytest.raises(ValueError, match=r"load_state_dict into MLP: shape mismatch: fc1.W: "
                                         r"expected shape \(16, 4\), got \(8, 4\)"):
        MLP(n_hidden=16).load(tmp_path / "h8.npz")
    np.savez(tmp_path / "foreign.npz", weight=np.zeros((8, 4), np.float32))
    with pytest.raises(ValueError, match=r"missing keys \['fc1.W', 'fc1.b', 'fc2.W', 'fc2.b'\], "
                                         r"unexpected keys \['weight'\]"):
        MLP().load(tmp_path / "foreign.npz")


# --------------------------------------------------------------------------- devices

def test_to_the_same_device_is_a_no_op(xp, rng):
    m = MLP()
    before = m.fc1.W.data
    assert m.to(B.get_backend().name) is m
    assert m.fc1.W.data is before


def test_to_moves_parameters_grads_and_buffers_strict(rng):
    with B.use_backend("numpy"):
        m = WithBuffer()
        x = Tensor(rng.standard_normal((3, 2)).astype(np.float32))
        want = host(m(x))
        m(x).sum().backward()
    m.to("strict")
    assert m.device == "strict"
    for v in m.state_dict().values():
        assert B.backend_of(v).name == "strict"
    assert all(B.backend_of(p.grad).name == "strict" for p in m.parameters())
    with pytest.raises(B.DeviceMismatchError, match="the input is on cpu"):
        m(x)
    np.testing.assert_array_equal(host(m(Tensor(B.to_device(x.data, "strict")))), want)
    m.to("numpy")
    np.testing.assert_array_equal(host(m(x)), want)


def test_a_model_saved_on_one_device_loads_on_another_strict(rng, tmp_path):
    with B.use_backend("strict"):
        m = MLP().eval()
        m.save(tmp_path / "s.npz")
        x = Tensor(B.to_device(rng.standard_normal((2, 4)).astype(np.float32)))
        want = host(m(x))
        assert m.device == "strict"  # saving left it there
    with B.use_backend("numpy"):
        other = MLP().eval().load(tmp_path / "s.npz")
        assert other.device == "cpu"
        np.testing.assert_array_equal(host(other(Tensor(B.to_host(x.data)))), want)


def test_load_state_dict_rejects_values_that_are_not_arrays():
    from minidl import layers as L
    model = L.Linear(2, 3)
    with pytest.raises(TypeError, match=r"load_state_dict into Linear: values must be arrays, "
                                        r"got W \(list\)"):
        model.load_state_dict({"W": [[0.0] * 2] * 3, "b": np.zeros(3, np.float32)})
    with pytest.raises(TypeError, match="state must be a mapping of names to arrays, got list"):
        model.load_state_dict([1, 2])
