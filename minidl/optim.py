"""Optimizers (SGD with momentum/Nesterov, Adam, AdamW), learning-rate schedules (step,
cosine, one-cycle) and gradient clipping by global norm.

Update rules follow PyTorch's definitions exactly (tests compare against ``torch.optim``), and
run in place on the parameter arrays of whichever backend they live on.
"""
from __future__ import annotations

import math

import numpy

from minidl import backend as B
from minidl import kernels
from minidl.autograd import Parameter
from minidl.kernels.geometry import UpdateGeometry
from minidl.parallel import parallel_for

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "StepLR", "CosineAnnealingLR", "OneCycleLR",
           "clip_grad_norm"]


def _check_positive(name, value, allow_zero=True, where="optimizer"):
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = is_number and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{where}: {name} must be a number {bound}, got {value!r}")


class Optimizer:
    """Holds the parameters and their per-parameter state; ``step()`` applies one update."""

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: params is empty; pass model.parameters()")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{type(self).__name__}: params[{i}] must be a Parameter, got "
                                f"{type(p).__name__}")
        _check_positive("lr", lr, where=type(self).__name__)
        self.lr = float(lr)
        self.state: list[dict] = [{} for _ in self.params]
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.step_count += 1
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, p.grad, state)

    def update(self, p: Parameter, g, state: dict) -> None:
        raise NotImplementedError

    # hyper-parameters a schedule may change during a run, saved with the state
    _HYPER = ("lr", "momentum", "betas")

    def state_dict(self) -> dict:
        """Everything a resumed run needs, as arrays (no pickle): ``step_count``, the
        hyper-parameters a schedule moves (``lr``, SGD's ``momentum``, Adam's ``betas``), and
        each parameter's state as ``state.<index>.<name>`` (momentum buffers, Adam's m, v and
        step) on the parameters' device."""
        out = {"step_count": numpy.array(self.step_count, numpy.int64),
               "num_params": numpy.array(len(self.params), numpy.int64)}
        for name in self._HYPER:
            if hasattr(self, name):
                out[f"hyper.{name}"] = numpy.array(getattr(self, name), numpy.float64)
        for i, state in enumerate(self.state):
            for key, value in state.items():
                out[f"state.{i}.{key}"] = value if B.is_array(value) else numpy.array(value)
        return out

    def load_state_dict(self, state) -> None:
        """Restore :meth:`state_dict`'s output (arrays on any device; moved to each
        parameter's device and dtype).  The optimizer must be over the same parameters, in
        the same order, with the same shapes."""
        where = f"{type(self).__name__}.load_state_dict"
        n = int(state.get("num_params", -1))
        if n != len(self.params):
            raise ValueError(f"{where}: the state is of an optimizer over {n} parameters, "
                             f"this one has {len(self.params)}")
        per = [{} for _ in self.params]
        for key, value in state.items():
            if not key.startswith("state."):
                continue
            _, index, name = key.split(".", 2)
            p = self.params[int(index)]
            if B.to_host(value).ndim == 0:   # a counter (Adam's step)
                per[int(index)][name] = B.to_host(value).item()
                continue
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"{where}: state {key!r} has shape {tuple(value.shape)} but "
                                 f"parameter {index} has shape {tuple(p.shape)}")
            per[int(index)][name] = B.to_device(value, B.backend_of(p.data).name) \
                .astype(p.data.dtype)
        self.state = per
        self.step_count = int(state["step_count"])
        for name in self._HYPER:
            if f"hyper.{name}" in state and hasattr(self, name):
                value = B.to_host(state[f"hyper.{name}"])
                setattr(self, name, tuple(float(v) for v in value) if value.ndim
                        else float(value))


class SGD(Optimizer):
    """Stochastic gradient descent.

    g <- g + weight_decay * w;  v <- momentum * v + g;  w <- w - lr * (g + momentum * v if
    nesterov else v).  (PyTorch's formulation; v starts at g.)
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        _check_positive("momentum", momentum, where="SGD")
        _check_positive("weight_decay", weight_decay, where="SGD")
        if nesterov and momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay

    def update(self, p, g, state):
        if self.weight_decay:
            g = g + p.data.dtype.type(self.weight_decay) * p.data
        if self.momentum:
            v = state.get("v")
            if v is None:
                v = state["v"] = g.copy()
            else:
                v *= p.data.dtype.type(self.momentum)
                v += g
            g = g + p.data.dtype.type(self.momentum) * v if self.nesterov else v
        p.data -= p.data.dtype.type(self.lr) * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; ``weight_decay`` is the L2 penalty added
    to the gradient (coupled), as in ``torch.optim.Adam``."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        _check_positive("eps", eps, where=type(self).__name__)
        _check_positive("weight_decay", weight_decay, where=type(self).__name__)
        self.betas, self.eps, self.weight_decay = (b1, b2), eps, weight_decay

    def update(self, p, g, state):
        xp = B.get_array_module(p.data)
        # per parameter, as in PyTorch: a parameter without a gradient in some steps (frozen,
        # unused branch) must not have its bias correction advanced
        t = state["step"] = state.get("step", 0) + 1
        dt = p.data.dtype.type
        b1, b2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                p.data *= dt(1 - self.lr * self.weight_decay)
            else:
                g = g + dt(self.weight_decay) * p.data
        if "m" not in state:
            state["m"] = xp.zeros_like(p.data)
            state["v"] = xp.zeros_like(p.data)
        m, v = state["m"], state["v"]
        step, eps = dt(self.lr / (1 - b1 ** t)), dt(self.eps)
        root = dt(math.sqrt(1 - b2 ** t))
        kernel = kernels.select("adam", UpdateGeometry(p.data.size, p.data.dtype, g.dtype,
                                                       B.backend_of(p.data).name))
        if kernel is not None:  # on CuPy: one launch instead of thirteen
            kernel.impl(xp, p.data, g, m, v, b1, b2, root, eps, step)
            return
        tmp = xp.empty_like(p.data)

        def run(w, g, m, v, tmp):
            # the same arithmetic as PyTorch, in place through one scratch buffer
            m *= dt(b1)
            xp.multiply(g, dt(1 - b1), out=tmp)
            m += tmp
            v *= dt(b2)
            xp.multiply(g, g, out=tmp)
            tmp *= dt(1 - b2)
            v += tmp
            denom = xp.sqrt(v, out=tmp)
            denom /= root
            denom += eps
            q = xp.divide(m, denom, out=tmp)
            q *= step
            w -= q

        arrays = (p.data, g, m, v, tmp)
        if all(a.flags.c_contiguous for a in arrays):  # elementwise: split a large one
            flat = [a.reshape(-1) for a in arrays]
            parallel_for(flat[0].size, lambda lo, hi: run(*(a[lo:hi] for a in flat)),
                         nbytes=p.data.nbytes, like=p.data)
        else:
            run(*arrays)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): w <- w * (1 - lr * wd)
    before the Adam step.  Default weight_decay 0.01 as in PyTorch."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``;
    returns the norm before clipping (a host float: one device sync)."""
    _check_positive("max_norm", max_norm, allow_zero=False, where="clip_grad_norm")
    params = [params] if isinstance(params, Parameter) else list(params)  # may be a generator
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    xp = B.get_array_module(*grads)
    total = float(xp.sqrt(sum((g.astype(xp.float64) ** 2).sum() for g in grads)))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            if p.grad is not None:
                p.grad = p.grad * p.grad.dtype.type(scale)
    return total


# --------------------------------------------------------------------------- schedules

class _Schedule:
    """Sets ``optimizer.lr`` from a function of the step count; call ``step()`` once per
    epoch (StepLR, CosineAnnealingLR) or once per batch (OneCycleLR).  Past their end the
    schedules do what PyTorch's do: the cosine climbs back up, OneCycleLR refuses a step past
    ``total_steps`` (``_check_step``)."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer must be an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.t = 0
        self._apply(0)

    def lr_at(self, t: int) -> float:
        raise NotImplementedError

    def _apply(self, t: int) -> None:
        self.optimizer.lr = self.lr_at(t)

    def _check_step(self, t: int) -> None:
        """Raise ValueError if step ``t`` is past the schedule's end (none by default)."""

    def state_dict(self) -> dict:
        """The schedule's position (``t``) and base rate, as arrays."""
        return {"t": numpy.array(self.t, numpy.int64),
                "base_lr": numpy.array(self.base_lr, numpy.float64)}

    def load_state_dict(self, state) -> None:
        """Continue from :meth:`state_dict`: set ``t`` and apply its rate (and momentum)."""
        self.t = int(state["t"])
        self.base_lr = float(state["base_lr"])
        self._apply(self.t)

    def step(self) -> float:
        self._check_step(self.t + 1)  # before counting it: a refused step changes nothing
        self.t += 1
        self._apply(self.t)
        return self.optimizer.lr


class StepLR(_Schedule):
    """lr = base_lr * gamma ** (t // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        if not isinstance(step_size, int) or step_size <= 0:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        _check_positive("gamma", gamma, allow_zero=False, where="StepLR")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class CosineAnnealingLR(_Schedule):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2 for every t >= 0.

    Past ``T_max`` the cosine climbs back to base_lr at 2 * T_max and so on, as PyTorch's
    ``CosineAnnealingLR`` (its closed form; its recursive form agrees to rounding)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        if not isinstance(T_max, int) or T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        _check_positive("eta_min", eta_min, where="CosineAnnealingLR")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t
                                                                            / self.T_max)) / 2


class OneCycleLR(_Schedule):
    """Smith's one-cycle policy, as ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing).

    The learning rate warms up from max_lr/div_factor to max_lr over pct_start of total_steps,
    then anneals to max_lr/(div_factor*final_div_factor).  With ``cycle_momentum`` (the
    default, as in PyTorch) the momentum moves the opposite way: from ``max_momentum`` down to
    ``base_momentum`` at the peak rate and back up -- Adam's beta1, or SGD's ``momentum`` (which
    is then set even if the SGD was built without momentum, as PyTorch does).  Call ``step()``
    after every batch.

    As PyTorch's, ``step()`` may be called ``total_steps`` times: the last call (t =
    total_steps) extends the final cosine one step past max_lr/(div_factor*final_div_factor),
    and one more call raises ValueError ("Tried to step N times. The specified number of total
    steps is M") without changing the rate."""

    def __init__(self, optimizer, max_lr: float, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 cycle_momentum: bool = True, base_momentum: float = 0.85,
                 max_momentum: float = 0.95):
        if not isinstance(total_steps, int) or total_steps <= 1:
            raise ValueError(f"OneCycleLR: total_steps must be an int > 1, got {total_steps!r}")
        if not 0 < pct_start < 1:
            raise ValueError(f"OneCycleLR: pct_start must be in (0, 1), got {pct_start}")
        _check_positive("max_lr", max_lr, allow_zero=False, where="OneCycleLR")
        _check_positive("div_factor", div_factor, allow_zero=False, where="OneCycleLR")
        _check_positive("final_div_factor", final_div_factor, allow_zero=False,
                        where="OneCycleLR")
        if cycle_momentum:
            _check_positive("base_momentum", base_momentum, where="OneCycleLR")
            _check_positive("max_momentum", max_momentum, where="OneCycleLR")
            if not base_momentum <= max_momentum < 1:
                raise ValueError(f"OneCycleLR: need base_momentum <= max_momentum < 1, got "
                                 f"{base_momentum} and {max_momentum}")
            if not isinstance(optimizer, (SGD, Adam)):
                raise TypeError(f"OneCycleLR: cycle_momentum needs an SGD or Adam optimizer, got "
                                f"{type(optimizer).__name__}; pass cycle_momentum=False")
        self.max_lr, self.total = max_lr, total_steps
        self.initial = max_lr / div_factor
        self.final = self.initial / final_div_factor
        self.peak_step = float(pct_start * total_steps) - 1
        self.cycle_momentum = bool(cycle_momentum)
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        super().__init__(optimizer)

    @staticmethod
    def _cos(start, end, frac):
        return end + (start - end) * (1 + math.cos(math.pi * frac)) / 2

    def _check_step(self, t):
        if t > self.total:
            raise ValueError(f"OneCycleLR: Tried to step {t} times. The specified number of "
                             f"total steps is {self.total} (as PyTorch; make total_steps at "
                             f"least the number of step() calls)")

    def _phase(self, t):
        """(warming up?, fraction of the phase done) at step t (fraction > 1 at t =
        total_steps, as PyTorch)."""
        if t <= self.peak_step:
            return True, t / self.peak_step
        return False, (t - self.peak_step) / (self.total - 1 - self.peak_step)

    def lr_at(self, t):
        up, frac = self._phase(t)
        if up:
            return self._cos(self.initial, self.max_lr, frac)
        return self._cos(self.max_lr, self.final, frac)

    def momentum_at(self, t):
        """The momentum (Adam's beta1) at step t: max -> base while warming up, then back."""
        up, frac = self._phase(t)
        if up:
            return self._cos(self.max_momentum, self.base_momentum, frac)
        return self._cos(self.base_momentum, self.max_momentum, frac)

    def _apply(self, t):
        super()._apply(t)
        if not self.cycle_momentum:
            return
        m = self.momentum_at(t)
        if isinstance(self.optimizer, Adam):
            self.optimizer.betas = (m, self.optimizer.betas[1])
        else:
            self.optimizer.momentum = m
