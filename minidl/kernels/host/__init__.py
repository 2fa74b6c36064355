"""Kernels for NumPy on the CPU.  Importing this package registers them."""
from minidl.kernels.host import pool_wide_phases  # noqa: F401
from minidl.kernels.host import bn_stats  # noqa: F401
from minidl.kernels.host import conv_columns  # noqa: F401
from minidl.kernels.host import conv_per_image  # noqa: F401
from minidl.kernels.host import conv_phase_runs  # noqa: F401
from minidl.kernels.host import winograd  # noqa: F401
from minidl.kernels.host import winograd_stacked  # noqa: F401
from minidl.kernels.host import fused_conv_bn_pool_per_image  # noqa: F401
from minidl.kernels.host import fused_conv_bn_pool_winograd  # noqa: F401
