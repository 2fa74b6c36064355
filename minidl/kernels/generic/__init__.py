"""Kernels written on ``xp`` that serve every backend (NumPy, strict, CuPy): fast paths whose
arrays ops are as good on a GPU as on the host.  Importing this package registers them.
(Host-only kernels are in :mod:`minidl.kernels.host`, CuPy-only ones in
:mod:`minidl.kernels.cupy`.)"""
from minidl.kernels.generic import pool_halving  # noqa: F401
from minidl.kernels.generic import pool_tiled  # noqa: F401
