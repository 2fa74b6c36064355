"""Kernels for NumPy on the CPU.  Importing this package registers them."""
from minidl.kernels.host import pool_wide_phases  # noqa: F401
from minidl.kernels.host import bn_stats  # noqa: F401
