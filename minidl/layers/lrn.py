"""LocalResponseNorm layer (AlexNet's cross-channel normalisation); no parameters."""
from __future__ import annotations

from minidl.functions.lrn import local_response_norm
from minidl.layers.module import Module, check_input

__all__ = ["LocalResponseNorm"]


class LocalResponseNorm(Module):
    """y_c = x_c / (k + alpha/size * sum of x_j^2 over ``size`` neighbouring channels)^beta,
    x (N, C, ...) -> same shape; the semantics of ``torch.nn.LocalResponseNorm``.

    >>> lrn = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)   # AlexNet (2012)
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"LocalResponseNorm: size must be a positive int, got {size!r}")
        self.size, self.alpha, self.beta, self.k = size, float(alpha), float(beta), float(k)

    def forward(self, x):
        x = check_input(self, x, "(N, C, ...) with at least 3 axes", ndim=(3, 4, 5))
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
