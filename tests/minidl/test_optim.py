"""minidl.optim: update rules and schedules against PyTorch over several steps (float64),
gradient clipping, state on the parameters' device, argument validation."""
import math
import re

import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import kernels, optim
from minidl.autograd import Parameter, Tensor
from minidl.kernels.cupy import adam as adam_kernel

STEPS = 6


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def grad_of(w, k):
    """A deterministic, parameter-dependent 'gradient' (the same in both libraries)."""
    return w ** 3 - 0.5 * w + 0.1 * np.sin(k + np.arange(w.size).reshape(w.shape))


def params(xp, rng, dtype=np.float64):
    return [Parameter(xp.asarray(rng.standard_normal(s).astype(dtype))) for s in [(3, 4), (4,)]]


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


OPTIMIZERS = {
    "sgd": (optim.SGD, "SGD", dict(lr=0.1)),
    "sgd_momentum": (optim.SGD, "SGD", dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov": (optim.SGD, "SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": (optim.SGD, "SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1)),
    "adam": (optim.Adam, "Adam", dict(lr=0.01)),
    "adam_weight_decay": (optim.Adam, "Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                                   weight_decay=0.1)),
    "adamw": (optim.AdamW, "AdamW", dict(lr=0.01)),
    "adamw_strong_decay": (optim.AdamW, "AdamW", dict(lr=0.02, weight_decay=0.5)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_trajectory_matches_torch(xp, rng, name):
    torch = pytest.importorskip("torch")
    cls, torch_name, kwargs = OPTIMIZERS[name]
    ps = params(xp, rng)
    tps = [torch.tensor(host(p), requires_grad=True) for p in ps]
    opt, ref = cls(ps, **kwargs), getattr(torch.optim, torch_name)(tps, **kwargs)
    for k in range(STEPS):
        opt.zero_grad()
        ref.zero_grad()
        for p, tp in zip(ps, tps):
            p.grad = xp.asarray(grad_of(host(p), k))
            tp.grad = torch.from_numpy(grad_of(tp.detach().numpy(), k))
        opt.step()
        ref.step()
        for p, tp in zip(ps, tps):
            assert B.backend_of(p.data).xp is xp and p.dtype == np.float64
            assert rel_err(host(p), tp.detach().numpy()) <= 1e-6, (name, k)
    assert opt.step_count == STEPS


@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_optimizer_keeps_float32_and_skips_params_without_grad(xp, rng, name):
    cls, _, kwargs = OPTIMIZERS[name]
    ps = params(xp, rng, np.float32)
    frozen = host(ps[1]).copy()
    opt = cls(ps, **kwargs)
    for k in range(3):
        ps[0].grad = xp.asarray(grad_of(host(ps[0]), k).astype(np.float32))
        opt.step()
    assert ps[0].dtype == np.float32
    np.testing.assert_array_equal(host(ps[1]), frozen)
    if name == "adam":  # the frozen parameter's bias correction did not advance
        assert opt.state[1] == {} and opt.state[0]["step"] == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adams_cupy_kernel_body_computes_the_host_update(rng, dtype):
    """The one-kernel update Adam runs on CuPy: its C body, run here as Python on NumPy
    arrays, gives the host path's values over several steps (float32: to rounding, since
    nvcc may fuse multiply-adds)."""
    body = adam_kernel.ADAM_UPDATE.replace(";", "")
    host_p = Parameter(rng.standard_normal((5, 7)).astype(dtype))
    w = host_p.data.copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    opt = optim.Adam([host_p], lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    b1, b2 = opt.betas
    dt = np.dtype(dtype).type
    for t in range(1, 5):
        g = grad_of(w, t).astype(dtype)
        host_p.grad = g.copy()
        opt.step()
        env = dict(m=m, v=v, w=w, g=g, b1=dt(b1), omb1=dt(1 - b1), b2=dt(b2), omb2=dt(1 - b2),
                   root=dt(math.sqrt(1 - b2 ** t)), eps=dt(1e-6),
                   step=dt(0.01 / (1 - b1 ** t)), sqrt=np.sqrt)
        exec(body, env)
        m, v, w = env["m"], env["v"], env["w"]
        assert w.dtype == dtype
        np.testing.assert_allclose(w, host_p.data, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(m, opt.state[0]["m"], rtol=1e-5 if dtype == np.float32 else 1e-14)


class _ElementwiseOnNumPy:
    """A stand-in for cupy with an ElementwiseKernel that runs its body as Python on NumPy
    arrays, in place, with the parameters it was declared with."""

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, body, name):
            self.names = [p.split()[-1] for p in (in_params + ", " + out_params).split(",")]
            self.body = body.replace(";", "")

        def __call__(self, *args):
            env = dict(zip(self.names, args), sqrt=np.sqrt)
            exec(self.body, env)
            for name in ("w", "m", "v"):
                args[self.names.index(name)][...] = env[name]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adams_cupy_kernel_impl_computes_the_host_update(rng, dtype):
    """The registered "adam" kernel's impl, with Adam's scalars and its ElementwiseKernel run
    as Python on NumPy: the host path's values over several steps (float32 to rounding)."""
    kernel = next(k for k in kernels.kernels("adam") if k.name == "elementwise")
    host_p = Parameter(rng.standard_normal((5, 7)).astype(dtype))
    w = host_p.data.copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    opt = optim.Adam([host_p], lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    b1, b2 = opt.betas
    dt = np.dtype(dtype).type
    for t in range(1, 5):
        g = grad_of(w, t).astype(dtype)
        host_p.grad = g.copy()
        opt.step()
        kernel.impl(_ElementwiseOnNumPy, w, g, m, v, b1, b2, dt(math.sqrt(1 - b2 ** t)),
                    dt(1e-6), dt(0.01 / (1 - b1 ** t)))
        np.testing.assert_allclose(w, host_p.data, rtol=1e-6 if dtype == np.float32 else 1e-14)
    np.testing.assert_allclose(m, opt.state[0]["m"], rtol=1e-5 if dtype == np.float32 else 1e-14)


def test_adam_asks_the_registry_for_its_update():
    """On CuPy Adam's update is the registered one-kernel update; elsewhere the reference."""
    assert kernels.explain("adam", (5, 7), backend="cupy").kernel == "elementwise"
    for backend in ("numpy", "strict"):
        assert kernels.explain("adam", (5, 7), backend=backend).kernel == kernels.REFERENCE


def test_adam_first_step_moves_each_weight_by_lr(xp, rng):
    # with bias correction, step 1 is lr * g / (|g| + eps') = lr * sign(g)
    ps = params(xp, rng)
    before = [host(p).copy() for p in ps]
    for p in ps:
        p.grad = xp.asarray(rng.standard_normal(p.shape))
    optim.Adam(ps, lr=0.01, eps=1e-12).step()
    for p, b in zip(ps, before):
        np.testing.assert_allclose(np.abs(host(p) - b), 0.01, rtol=1e-6)


def test_adam_on_a_large_parameter_is_the_same_with_any_thread_count(rng):
    """A parameter of several MB is updated in parts on host threads; elementwise, so the
    result must be bitwise the one of a single thread (and of a non-contiguous gradient,
    which takes the one-piece path)."""
    from minidl import parallel
    w0 = rng.standard_normal((700, 1000)).astype(np.float32)
    grads = [rng.standard_normal(w0.shape).astype(np.float32) for _ in range(3)]

    def run(threads, transpose=False):
        parallel.set_num_threads(threads)
        p = Parameter(w0.copy())
        opt = optim.Adam([p], lr=0.01)
        for g in grads:
            p.grad = np.ascontiguousarray(g.T).T if transpose else g.copy()
            opt.step()
        return p.data.copy(), opt.state[0]["m"].copy(), opt.state[0]["v"].copy()

    try:
        one, two, strided = run(1), run(2), run(2, transpose=True)
    finally:
        parallel.set_num_threads(parallel._default_threads())
    for a, b, c in zip(one, two, strided):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(one[0], w0)


# --------------------------------------------------------------------------- schedules

def lrs(sched, n):
    return [sched.optimizer.lr] + [sched.step() for _ in range(n)]


def torch_lrs(torch, make_sched, lr, n):
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr)
    sched = make_sched(opt)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        opt.step()  # torch warns when a schedule steps before its optimizer
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def sgd(xp, lr=0.1):
    return optim.SGD([Parameter(xp.zeros(1))], lr=lr)


def test_step_lr_matches_torch(xp):
    torch = pytest.importorskip("torch")
    got = lrs(optim.StepLR(sgd(xp), step_size=3, gamma=0.5), 10)
    want = torch_lrs(torch, lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5), 0.1, 10)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_cosine_annealing_matches_torch(xp):
    torch = pytest.importorskip("torch")
    got = lrs(optim.CosineAnnealingLR(sgd(xp), T_max=8, eta_min=0.001), 8)
    want = torch_lrs(torch, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=8, eta_min=0.001), 0.1, 8)
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("total, pct", [(20, 0.3), (11, 0.25)])
def test_one_cycle_matches_torch(xp, total, pct):
    torch = pytest.importorskip("torch")
    got = lrs(optim.OneCycleLR(sgd(xp), max_lr=0.5, total_steps=total, pct_start=pct), total - 1)
    want = torch_lrs(torch, lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.5, total_steps=total, pct_start=pct, cycle_momentum=False), 0.1, total - 1)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[0] == pytest.approx(0.5 / 25)
    assert max(got) <= 0.5 and max(got) == pytest.approx(0.5, rel=0.01)  # peak between steps
    assert got[-1] == pytest.approx(0.5 / 25 / 1e4)


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_one_cycle_cycles_momentum_like_torch(xp, kind):
    torch = pytest.importorskip("torch")
    total, n = 20, 19
    opt = (optim.Adam([Parameter(xp.zeros(1))], lr=0.1) if kind == "adam"
           else optim.SGD([Parameter(xp.zeros(1))], lr=0.1))
    sched = optim.OneCycleLR(opt, max_lr=0.5, total_steps=total)

    def momentum(o):
        return o.betas[0] if kind == "adam" else o.momentum

    got = [momentum(opt)] + [sched.step() and momentum(opt) for _ in range(n)]
    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.Adam([w], lr=0.1) if kind == "adam" else torch.optim.SGD([w], lr=0.1)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.5, total_steps=total)
    key = (lambda g: g["betas"][0]) if kind == "adam" else (lambda g: g["momentum"])
    want = [key(topt.param_groups[0])]
    for _ in range(n):
        topt.step()
        tsched.step()
        want.append(key(topt.param_groups[0]))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == pytest.approx(0.95) and min(got) == pytest.approx(0.85, abs=1e-3)
    if kind == "adam":
        assert opt.betas[1] == 0.999


def test_one_cycle_momentum_arguments_are_validated():
    opt = optim.Adam([Parameter(np.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match=r"OneCycleLR: need base_momentum <= max_momentum < 1, "
                                         r"got 0.95 and 0.85"):
        optim.OneCycleLR(opt, 0.1, 10, base_momentum=0.95, max_momentum=0.85)
    sched = optim.OneCycleLR(opt, 0.1, 10, cycle_momentum=False)
    sched.step()
    assert opt.betas == (0.9, 0.999)


def test_schedule_formulas_without_torch(xp):
    assert lrs(optim.StepLR(sgd(xp, 1.0), 2, 0.1), 5) == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    cos = lrs(optim.CosineAnnealingLR(sgd(xp, 1.0), T_max=4), 4)
    assert cos == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                 (1 + math.cos(3 * math.pi / 4)) / 2, 0.0])


# --------------------------------------------------------------------------- clipping

@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(xp, rng, max_norm):
    torch = pytest.importorskip("torch")
    ps = params(xp, rng)
    ps.append(Parameter(xp.zeros(2)))  # no gradient: ignored
    tps = [torch.tensor(host(p), requires_grad=True) for p in ps]
    for p, tp in zip(ps[:2], tps[:2]):
        g = rng.standard_normal(p.shape)
        p.grad, tp.grad = xp.asarray(g), torch.from_numpy(g.copy())
    total = optim.clip_grad_norm(iter(ps), max_norm)  # a generator is fine
    want = float(torch.nn.utils.clip_grad_norm_(tps, max_norm))
    assert isinstance(total, float) and total == pytest.approx(want, rel=1e-12)
    for p, tp in zip(ps[:2], tps[:2]):
        assert rel_err(host(p.grad), tp.grad.numpy()) <= 1e-6
    assert ps[2].grad is None
    clipped = math.sqrt(sum(float((host(p.grad) ** 2).sum()) for p in ps[:2]))
    # the norm is summed on the device (another order than NumPy's on a GPU): equal to rounding
    assert clipped <= max_norm * (1 + 1e-9)
    assert max_norm < total or clipped == pytest.approx(total, rel=1e-12)


def test_clip_grad_norm_without_grads_and_single_param(xp):
    p = Parameter(xp.asarray(np.ones(4)))
    assert optim.clip_grad_norm([p], 1.0) == 0.0
    p.grad = xp.asarray(np.full(4, 3.0))
    assert optim.clip_grad_norm(p, 1.0) == pytest.approx(6.0)
    assert np.sqrt((host(p.grad) ** 2).sum()) == pytest.approx(1.0, rel=1e-6)


# --------------------------------------------------------------------------- validation

def test_optimizers_reject_bad_arguments(xp):
    p = Parameter(xp.zeros(2))
    with pytest.raises(ValueError, match=r"SGD: params is empty; pass model.parameters\(\)"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"Adam: params\[1\] must be a Parameter, got Tensor"):
        optim.Adam([p, Tensor(xp.zeros(2))])
    with pytest.raises(ValueError, match="SGD: lr must be a number >= 0, got -0.1"):
        optim.SGD([p], lr=-0.1)
    with pytest.raises(ValueError, match="SGD: lr must be a number >= 0, got '0.1'"):
        optim.SGD([p], lr="0.1")
    with pytest.raises(ValueError, match="SGD: momentum must be a number >= 0, got -0.9"):
        optim.SGD([p], momentum=-0.9)
    with pytest.raises(ValueError, match="SGD: nesterov=True needs momentum > 0"):
        optim.SGD([p], nesterov=True)
    with pytest.raises(ValueError, match="SGD: weight_decay must be a number >= 0, got -1"):
        optim.SGD([p], weight_decay=-1)
    with pytest.raises(ValueError, match=r"Adam: betas must be in \[0, 1\), got \(0.9, 1.0\)"):
        optim.Adam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="AdamW: eps must be a number >= 0, got -1e-08"):
        optim.AdamW([p], eps=-1e-8)
    with pytest.raises(ValueError, match="clip_grad_norm: max_norm must be a number > 0, got 0"):
        optim.clip_grad_norm([p], 0)


def test_schedules_reject_bad_arguments(xp):
    opt = sgd(xp)
    with pytest.raises(TypeError, match="StepLR: optimizer must be an Optimizer, got list"):
        optim.StepLR([], 3)
    with pytest.raises(ValueError, match="StepLR: step_size must be a positive int, got 0"):
        optim.StepLR(opt, 0)
    with pytest.raises(ValueError, match="CosineAnnealingLR: T_max must be a positive int, got "
                                         "2.5"):
        optim.CosineAnnealingLR(opt, 2.5)
    with pytest.raises(ValueError, match="OneCycleLR: total_steps must be an int > 1, got 1"):
        optim.OneCycleLR(opt, 0.1, 1)
    with pytest.raises(ValueError, match=r"OneCycleLR: pct_start must be in \(0, 1\), got 1.0"):
        optim.OneCycleLR(opt, 0.1, 10, pct_start=1.0)


@pytest.mark.parametrize("make, message", [
    (lambda o: optim.StepLR(o, 2, gamma=0), "StepLR: gamma must be a number > 0, got 0"),
    (lambda o: optim.CosineAnnealingLR(o, 5, eta_min=-1.0),
     "CosineAnnealingLR: eta_min must be a number >= 0, got -1.0"),
    (lambda o: optim.OneCycleLR(o, max_lr="0.1", total_steps=10),
     "OneCycleLR: max_lr must be a number > 0, got '0.1'"),
    (lambda o: optim.OneCycleLR(o, max_lr=0.1, total_steps=10, div_factor=0),
     "OneCycleLR: div_factor must be a number > 0, got 0"),
])
def test_schedule_arguments_are_validated(make, message):
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match=re.escape(message)):
        make(opt)


def test_cosine_annealing_past_t_max_climbs_back_like_torch(xp):
    """Issue 21 item 8: past T_max the schedule held eta_min; PyTorch 2.13's
    CosineAnnealingLR follows the cosine back up (T_max=4, eta_min=0.01, base 0.1: lr 0.01 at
    t=4, 0.0232 at t=5, 0.055 at t=6, back to 0.1 at t=8)."""
    got = lrs(optim.CosineAnnealingLR(sgd(xp), T_max=4, eta_min=0.01), 12)
    want = [0.01 + 0.09 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(13)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[4] == pytest.approx(0.01) and got[6] == pytest.approx(0.055)
    assert got[8] == pytest.approx(0.1) and got[12] == pytest.approx(0.01)
    try:
        import torch
    except ImportError:
        return  # the formula values above are the check; torch adds its own numbers
    ref = torch_lrs(torch, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=4, eta_min=0.01), 0.1, 12)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_one_cycle_past_its_end_does_what_torch_does(xp):
    """Issue 21 item 8: after its last step OneCycleLR held the final rate.  PyTorch 2.13 lets
    step() run total_steps times -- the last call gives the cosine one step past the end
    (total 10, max_lr 0.1: 4e-07 at t=9, 0.004951936798652624 at t=10) -- and the next call
    raises ValueError: "Tried to step 11 times. The specified number of total steps is 10"."""
    sched = optim.OneCycleLR(sgd(xp), max_lr=0.1, total_steps=10, cycle_momentum=False)
    got = lrs(sched, 10)
    peak = 0.3 * 10 - 1
    at_end = 0.1 / 25 / 1e4 + (0.1 - 0.1 / 25 / 1e4) * (
        1 + math.cos(math.pi * (10 - peak) / (9 - peak))) / 2
    assert got[9] == pytest.approx(4e-7) and got[10] == pytest.approx(at_end, rel=1e-12)
    assert got[10] == pytest.approx(0.004951936798652624, rel=1e-9)
    with pytest.raises(ValueError, match="OneCycleLR: Tried to step 11 times. The specified "
                                         "number of total steps is 10"):
        sched.step()
    assert sched.t == 10 and sched.optimizer.lr == got[10]  # the refused step changed nothing
    try:
        import torch
    except ImportError:
        return
    ref = torch_lrs(torch, lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.1, total_steps=10, cycle_momentum=False), 0.1, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([w], lr=0.1)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.1, total_steps=10,
                                                 cycle_momentum=False)
    for _ in range(10):
        topt.step()
        tsched.step()
    with pytest.raises(ValueError, match="Tried to step 11 times. The specified number of "
                                         "total steps is 10"):
        tsched.step()


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_one_cycle_momentum_at_its_last_step_matches_torch(xp, kind):
    torch = pytest.importorskip("torch", reason="torch is not installed: no reference")
    total = 12
    opt = (optim.Adam([Parameter(xp.zeros(1))], lr=0.1) if kind == "adam"
           else optim.SGD([Parameter(xp.zeros(1))], lr=0.1))
    sched = optim.OneCycleLR(opt, max_lr=0.5, total_steps=total)
    for _ in range(total):
        sched.step()
    w = torch.zeros(1, requires_grad=True)
    topt = torch.optim.Adam([w], lr=0.1) if kind == "adam" else torch.optim.SGD([w], lr=0.1)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.5, total_steps=total)
    for _ in range(total):
        topt.step()
        tsched.step()
    g = topt.param_groups[0]
    assert opt.lr == pytest.approx(g["lr"], rel=1e-9)
    m = opt.betas[0] if kind == "adam" else opt.momentum
    assert m == pytest.approx(g["betas"][0] if kind == "adam" else g["momentum"], rel=1e-12)
