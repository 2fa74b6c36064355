"""minidl: deep learning by hand on NumPy, and on the GPU through CuPy with the same code."""
from minidl._openblas import shorten_spin as _shorten_spin

# OpenBLAS's idle threads spin for about 0.1 s after every matrix product, holding the cores
# that minidl's own threads need for the elementwise ops in between (minidl._openblas).
_shorten_spin()

from minidl.backend import (  # noqa: F401,E402
    BackendUnavailableError, DeviceMismatchError, get_array_module, get_backend, get_xp,
    use_backend, to_device, to_host, seed, get_default_dtype, set_default_dtype,
)

__version__ = "0.1.0"
from minidl.autograd import (  # noqa: F401,E402
    Tensor, Parameter, Function, no_grad, enable_grad, is_grad_enabled, tensor, as_tensor,
)
from minidl import functions  # noqa: F401,E402  (also installs Tensor's operators)
