"""Kernels for CuPy on a GPU.  Importing this package registers them; CuPy itself is only
imported when a kernel runs."""
from minidl.kernels.cupy import adam  # noqa: F401
