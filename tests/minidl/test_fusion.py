"""minidl.fuse: matched runs of layers become fused Modules that compute what the layers do
(bit for bit, or to rounding where statistics are summed in another order), keep the same
Parameter objects, state_dict keys, values and running statistics, honour train/eval, and run
the layers one by one wherever the fused op has no fast path; Sequential.forward is a plain
loop; subclasses and replaced forwards are left alone and plan() says so."""
import numpy as np
import pytest

import minidl
import minidl.functions as F
from minidl.autograd import Tensor
from minidl.functions.conv_bn_pool import fused_path
from minidl.fusion import fuse, plan
from minidl.kernels import tuning
from minidl.layers import (BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU,
                           Sequential)
from minidl.layers.blocks import BasicBlock, BasicConv2d
from minidl.layers.fused import (Absorbed, FusedBatchNormMaxPool2d, FusedConvBatchNorm2d,
                                 FusedConvBatchNormMaxPool2d, MaxPool2dReLU)
from minidl.models import inception_v3, resnet18, resnet8


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def cnn(width=4, classes=3):
    """The MNIST CNN's layout, small."""
    return Sequential(
        Conv2d(1, width, 3, padding=1, bias=False), BatchNorm2d(width), ReLU(), MaxPool2d(2),
        Conv2d(width, 2 * width, 3, padding=1, bias=False), BatchNorm2d(2 * width), ReLU(),
        MaxPool2d(2), Flatten(), Linear(2 * width * 2 * 2, classes))


def _whole_and_layer_by_layer(xp, s, layers, x):
    """(s(a), ``layers`` (the unfused ones) applied one by one to b, a, b) for two copies a, b
    of x that require gradients."""
    a, b = (Tensor(xp.asarray(x), requires_grad=True) for _ in range(2))
    ya = s(a)
    yb = b
    for layer in layers:
        yb = layer(yb)
    return ya, yb, a, b


# --------------------------------------------------------------------------- the fused runs

def test_relu_before_max_pool_runs_after_it_with_the_same_values_and_gradients(xp, rng):
    """fuse runs a ReLU that comes right before a MaxPool2d after it (a quarter of the values
    to touch).  Values and gradients match relu-then-pool exactly, with windows that are all
    negative, all zero, tied at their maximum, or hold a NaN; subclasses keep the written
    order, and summary() lists the slots."""
    def inputs():
        x = rng.integers(-3, 3, size=(2, 3, 6, 8)).astype(np.float32)  # many ties, zeros
        x[0, 0, :2, :2] = -1.0
        x[0, 1, :2, :2] = 0.0
        x[1, 2, 2, 3] = np.nan
        return x

    for pool in (MaxPool2d(2), MaxPool2d(3, stride=2, padding=1)):
        s = fuse(Sequential(ReLU(), pool))
        assert isinstance(s[0], MaxPool2dReLU) and isinstance(s[1], Absorbed)
        assert s[1].layer is pool
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

    s = fuse(Sequential(MyReLU(), MaxPool2d(2)))
    assert type(s[0]) is MyReLU
    assert type(s(Tensor(xp.asarray(inputs()))).creator).__name__ != "ReLU"
    rows = Sequential(ReLU(), MaxPool2d(2)).summary((2, 3, 6, 8)).splitlines()[1:3]
    assert "ReLU" in rows[0] and "(2, 3, 6, 8)" in rows[0]
    assert "MaxPool2d" in rows[1] and "(2, 3, 3, 4)" in rows[1]
    rows = fuse(Sequential(ReLU(), MaxPool2d(2))).summary((2, 3, 6, 8)).splitlines()[1:3]
    assert "MaxPool2dReLU" in rows[0] and "(2, 3, 3, 4)" in rows[0]
    assert "Absorbed" in rows[1] and "(2, 3, 3, 4)" in rows[1]


def test_batch_norm_then_max_pool_runs_as_one_op_on_numpy(xp, rng):
    """On NumPy, fuse runs BatchNorm2d [-> ReLU] -> MaxPool2d(2) as one batch norm + pool op
    (the ReLU after it): the same outputs and running statistics as the layers one by one,
    the batch counted once, gradients to rounding.  Odd sizes and the other backends run the
    layers (checked at each call); other pools and subclasses are not fused."""
    def build(*between):
        bn = BatchNorm2d(3)
        bn.gamma.data[...] = xp.asarray(np.array([1.5, -0.5, 0.8], np.float32))
        return Sequential(bn, *between, MaxPool2d(2))

    x = rng.standard_normal((4, 3, 6, 8)).astype(np.float32)
    numpy = minidl.get_backend().name == "numpy"
    for between in ((ReLU(),), ()):
        for training in (True, False):
            s = build(*between)
            layers = list(s)
            fuse(s.train(training))
            assert isinstance(s[0], FusedBatchNormMaxPool2d)
            ya, yb, a, b = _whole_and_layer_by_layer(xp, s, layers, x)
            assert (type(ya.creator).__name__ == "BatchNormMaxPool") == numpy
            np.testing.assert_array_equal(host(ya), host(yb))
            gy = xp.asarray(rng.standard_normal(ya.shape).astype(np.float32))
            ya.backward(gy)
            yb.backward(gy)
            np.testing.assert_allclose(host(a.grad), host(b.grad), rtol=1e-5, atol=1e-5)
            assert int(host(s[0].num_batches_tracked)) == (2 if training else 0)

    def takes_fused(s, shape=(2, 3, 6, 8)):
        y = fuse(s)(Tensor(xp.asarray(rng.standard_normal(shape).astype(np.float32))))
        return type(y.creator).__name__ == "BatchNormMaxPool"

    assert takes_fused(build()) == numpy
    assert not takes_fused(build(), shape=(2, 3, 7, 8))     # odd height: max pool drops a row
    assert not takes_fused(Sequential(BatchNorm2d(3), MaxPool2d(3, stride=2)))

    class MyBatchNorm(BatchNorm2d):
        pass

    assert not takes_fused(Sequential(MyBatchNorm(3), MaxPool2d(2)))


# (C, OC, H, W) -> the fused op's path at the default thresholds
CONV_CASES = {"winograd": (32, 32, 6, 8), "per image": (2, 3, 6, 8), None: (4, 4, 44, 44)}


@pytest.mark.parametrize("path", ["winograd", "per image"])
def test_conv_batch_norm_then_max_pool_runs_as_one_op_on_numpy(xp, rng, path):
    """On NumPy, fuse runs a 3x3 stride-1 Conv2d without bias, then BatchNorm2d [-> ReLU] ->
    MaxPool2d(2), as one op where conv2d would take Winograd or one product per image: the
    same outputs and running statistics as the layers one by one (to rounding: statistics
    summed in another order), the batch counted once, the same gradients.  A bias, a stride
    and a subclass are not fused; an odd output, a layer on neither path and the other backends
    run the layers (checked at each call)."""
    C, OC, H, W = CONV_CASES[path]
    fused_op = "ConvBatchNormMaxPool" if path == "winograd" else "ImageConvBatchNormMaxPool"
    defaults = tuning.override(WINOGRAD_MIN_DEPTH=None, CONV_PER_IMAGE_MAX_MACS=1 << 18)

    def build(*between, conv=None, C=C, OC=OC):
        conv = conv or Conv2d(C, OC, 3, padding=1, bias=False)
        bn = BatchNorm2d(OC)
        bn.gamma.data[...] = xp.asarray(rng.uniform(-1.5, 1.5, OC).astype(np.float32))
        return Sequential(conv, bn, *between, MaxPool2d(2))

    x = rng.standard_normal((4, C, H, W)).astype(np.float32)
    numpy = minidl.get_backend().name == "numpy"
    with defaults:
        assert fused_path("numpy", C, OC, H, W) == path
        for (c, oc, h, w), want in ((v, k) for k, v in CONV_CASES.items()):
            assert fused_path("numpy", c, oc, h, w) == want
        for between in ((ReLU(),), ()):
            for training in (True, False):
                s = build(*between)
                layers = list(s)
                fuse(s.train(training))
                assert isinstance(s[0], FusedConvBatchNormMaxPool2d)
                ya, yb, a, b = _whole_and_layer_by_layer(xp, s, layers, x)
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

        def takes_fused(s, shape=(2, C, H, W)):
            y = fuse(s)(Tensor(xp.asarray(rng.standard_normal(shape).astype(np.float32))))
            return type(y.creator).__name__ in ("ConvBatchNormMaxPool",
                                                "ImageConvBatchNormMaxPool")

        assert takes_fused(build()) == numpy
        assert not takes_fused(build(conv=Conv2d(C, OC, 3, padding=1)))           # a bias
        assert not takes_fused(build(conv=Conv2d(C, OC, 3, padding=0)), (2, C, H + 1, W))
        assert not takes_fused(Sequential(Conv2d(C, OC, 3, stride=2, padding=1, bias=False),
                                          BatchNorm2d(OC), MaxPool2d(2)), (2, C, 2 * H, 2 * W))

        class MyConv(Conv2d):
            pass

        assert not takes_fused(build(conv=MyConv(C, OC, 3, padding=1, bias=False)))
        c, oc, h, w = CONV_CASES[None]       # im2col for the batch: no fused path
        s = fuse(build(C=c, OC=oc))
        assert isinstance(s[0], FusedConvBatchNormMaxPool2d) and not takes_fused(s, (2, c, h, w))
        rows = build(ReLU()).summary((2, C, H, W)).splitlines()[1:5]
        assert "Conv2d" in rows[0] and f"(2, {OC}, {H}, {W})" in rows[0]
        assert "MaxPool2d" in rows[3] and f"(2, {OC}, {H // 2}, {W // 2})" in rows[3]


# --------------------------------------------------------------------------- the model keeps

def test_fuse_keeps_parameters_state_dict_keys_and_values(xp):
    model = cnn()
    params, state = model.parameters(), model.state_dict()
    count = model.num_parameters()
    assert fuse(model) is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    after = model.state_dict()
    assert list(after) == list(state) and model.num_parameters() == count
    for k in state:
        assert after[k] is state[k]
    assert [n for n, _ in model.named_buffers()] == [k for k in state if "running" in k
                                                     or "num_batches" in k]
    assert isinstance(model[0], FusedConvBatchNormMaxPool2d)
    assert [type(m).__name__ for m in model][1:4] == ["Absorbed"] * 3
    assert model[0].W is params[0] and model[1].gamma is params[1]       # reads reach the layers
    assert model[1].running_mean is state["1.running_mean"]
    assert "runs inside 0 (FusedConvBatchNormMaxPool2d)" in repr(model)
    assert "FusedConvBatchNormMaxPool2d" in model.summary((2, 1, 8, 8))
    assert fuse(model) is model and not any(f.fused for f in plan(model))   # once is enough
    assert list(model.state_dict()) == list(state)


def test_checkpoints_load_either_way(xp, rng, tmp_path):
    x = minidl.tensor(rng.standard_normal((3, 1, 8, 8)).astype(np.float32))
    trained = cnn()
    fuse(trained)(x)                     # a training step's statistics
    trained.eval()
    want = host(trained(x))
    trained.save(tmp_path / "fused.npz")
    unfused = cnn().load(tmp_path / "fused.npz").eval()
    np.testing.assert_allclose(host(unfused(x)), want, rtol=1e-5, atol=1e-6)
    unfused.save(tmp_path / "unfused.npz")
    again = fuse(cnn()).load(tmp_path / "unfused.npz").eval()
    np.testing.assert_array_equal(host(again(x)), want)
    for k, v in trained.state_dict().items():
        np.testing.assert_array_equal(host(again.state_dict()[k]), host(v))


def test_train_and_eval_reach_the_absorbed_layers_and_running_stats_match(rng):
    """Trained side by side from the same weights, the fused and the unfused model keep the
    same running statistics (to rounding) and give the same eval outputs."""
    x = minidl.tensor(rng.standard_normal((4, 1, 8, 8)).astype(np.float32))
    plain, fused = cnn(), cnn()
    fused.load_state_dict(plain.state_dict())
    fuse(fused)
    bn = fused[0].bn
    fused.eval()
    assert not bn.training and not fused[1].training and not fused[0].training
    fused.train()
    assert bn.training and fused[3].layer.training
    for _ in range(2):
        plain(x)
        fused(x)
    for k, v in plain.state_dict().items():
        np.testing.assert_allclose(host(fused.state_dict()[k]), host(v), rtol=1e-5, atol=1e-6)
    assert int(host(bn.num_batches_tracked)) == 2
    plain.eval()
    fused.eval()
    mean = host(bn.running_mean).copy()
    np.testing.assert_allclose(host(fused(x)), host(plain(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(host(bn.running_mean), mean)      # eval: not updated


def test_to_moves_the_absorbed_layers_buffers(rng):
    model = fuse(cnn())
    bn = model[1].layer
    model.to("strict")
    assert minidl.backend.backend_of(bn.running_mean).name == "strict"
    assert model[1].running_mean is bn.running_mean
    assert model.state_dict()["1.running_mean"] is bn.running_mean
    model.to("numpy")
    assert minidl.backend.backend_of(bn.running_var).name == "numpy"


def test_sequential_forward_is_a_plain_loop(xp, rng, monkeypatch):
    """Unfused, every layer's own forward runs once, in order (no peephole rewrites)."""
    calls = []
    for cls in (Conv2d, BatchNorm2d, ReLU, MaxPool2d):
        original = cls.forward

        def spy(self, x, _original=original):
            calls.append(type(self).__name__)
            return _original(self, x)
        monkeypatch.setattr(cls, "forward", spy)
    s = Sequential(Conv2d(2, 3, 3, padding=1, bias=False), BatchNorm2d(3), ReLU(),
                   MaxPool2d(2))
    y = s(Tensor(xp.asarray(rng.standard_normal((2, 2, 6, 8)).astype(np.float32))))
    assert calls == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert type(y.creator).__name__ == "MaxPool2d"


# --------------------------------------------------------------------------- what is fused

def test_plan_reports_what_is_fused_and_what_is_left_alone():
    class MyBatchNorm(BatchNorm2d):
        pass

    replaced = ReLU()
    replaced.forward = lambda x: x
    model = Sequential(Conv2d(1, 4, 3, padding=1, bias=False), MyBatchNorm(4), ReLU(),
                       MaxPool2d(2), replaced, MaxPool2d(2))
    lines = [str(f) for f in plan(model)]
    assert lines[0].startswith("0 Conv2d -> 1 MyBatchNorm -> 2 ReLU -> 3 MaxPool2d: not fused")
    assert "1 is MyBatchNorm, a subclass of BatchNorm2d" in lines[0]
    assert lines[1] == "2 ReLU -> 3 MaxPool2d: fused as MaxPool2dReLU"
    assert "4 has its forward replaced on the instance" in lines[2]
    assert len(lines) == 3
    fuse(model)
    assert type(model[0]) is Conv2d and type(model[1]) is MyBatchNorm
    assert isinstance(model[2], MaxPool2dReLU) and model[4] is replaced
    with pytest.raises(TypeError, match="fuse: model must be a Module, got list"):
        fuse([model])


def test_blocks_declare_their_conv_bn_pairs_and_subclasses_must_redeclare(rng):
    block = BasicBlock(4, 8, stride=2)
    fusions = plan(block)
    assert [f.paths for f in fusions] == [("conv1", "bn1", "relu1"), ("conv2", "bn2"),
                                          ("downsample.0", "downsample.1")]
    assert all(f.module == "FusedConvBatchNorm2d" for f in fusions)
    assert len(plan(BasicBlock(4, 4))) == 2                  # no downsample: skipped quietly

    class Mine(BasicBlock):
        def forward(self, x):
            return super().forward(x) * 2

    [only] = plan(Mine(4, 4))
    assert not only.fused and "Mine defines its own forward without declaring fusable" \
        in only.reason

    class Inherits(BasicConv2d):                             # same forward: fused
        pass

    assert plan(Inherits(2, 3, 3))[0].fused


@pytest.mark.parametrize("make, shape", [(lambda: resnet8(width=4), (2, 1, 12, 12)),
                                         (lambda: resnet18(num_classes=5), (1, 3, 32, 32)),
                                         (lambda: inception_v3(num_classes=5), (1, 3, 75, 75))],
                         ids=["resnet8", "resnet18", "inception_v3"])
def test_fused_models_keep_their_keys_and_eval_outputs(make, shape):
    minidl.set_default_dtype(np.float64)
    rng = np.random.default_rng(0)
    model = make().eval()
    for m in model.modules():
        if isinstance(m, BatchNorm2d):
            C = m.num_features
            m.running_mean[...] = rng.standard_normal(C) * 0.1
            m.running_var[...] = rng.random(C) + 0.5
            m.gamma.data[...] = 1 + rng.standard_normal(C) * 0.1
    x = minidl.tensor(rng.standard_normal(shape))
    keys = list(model.state_dict())
    with minidl.no_grad():
        want = host(model(x))
        fuse(model)
        got = host(model(x))
    assert list(model.state_dict()) == keys
    assert sum(isinstance(m, FusedConvBatchNorm2d) for m in model.modules()) == \
        sum(isinstance(m, Absorbed) and isinstance(m.layer, BatchNorm2d)
            for m in model.modules()) > 0
    assert not any(type(m) is BatchNorm2d for m in model.modules())    # every pair found
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)


def test_module_py_imports_none_of_its_subclasses_and_no_layer_method_takes_a_layer():
    import ast
    import inspect
    from minidl.layers import module
    tree = ast.parse(inspect.getsource(module))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not [m for m in imported if m.startswith("minidl.layers")]
    nested = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not nested
    assert not [name for name in dir(BatchNorm2d) if name.startswith("forward_")]
