"""The ops that have kernels, each with the geometry that :func:`minidl.kernels.explain`
builds from its shapes.  Kernel modules register against these names."""
from minidl.kernels.geometry import (BatchNormGeometry, ConvGeometry, PoolGeometry,
                                     UpdateGeometry)
from minidl.kernels.registry import define_op

define_op("conv2d", ConvGeometry.from_shapes)
define_op("max_pool2d", lambda *a, **k: PoolGeometry.from_shapes(*a, mode="max", **k))
define_op("avg_pool2d", lambda *a, **k: PoolGeometry.from_shapes(*a, mode="avg", **k))
define_op("batch_norm", BatchNormGeometry.from_shapes)
define_op("adam", UpdateGeometry.from_shapes)
define_op("conv2d_batch_norm_max_pool2d",  # a 3x3 stride-1 conv's geometry; padding 1 by default
          lambda x_shape, W_shape, padding=1, **k: ConvGeometry.from_shapes(
              x_shape, W_shape, padding=padding, **k))
