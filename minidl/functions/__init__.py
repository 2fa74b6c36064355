"""Differentiable operations (stateless): each is a Function with forward and backward side by
side, written once over the array namespace ``xp``."""
from minidl.functions.arithmetic import (  # noqa: F401
    add, sub, mul, div, neg, power, matmul, exp, log, sqrt, abs,
)
from minidl.functions.reduction import sum, mean, max, min  # noqa: F401
from minidl.functions.shape import (  # noqa: F401
    reshape, transpose, flatten, getitem, concatenate, broadcast_to, sum_to,
)
from minidl.functions import operators  # noqa: F401,E402  (Tensor's + - * / @ and methods)
from minidl.functions.activation import (  # noqa: F401
    sigmoid, tanh, relu, leaky_relu, softmax, log_softmax,
)
from minidl.functions.loss import (  # noqa: F401
    softmax_cross_entropy, cross_entropy, binary_cross_entropy_with_logits, mse_loss,
)
from minidl.functions.linear import linear  # noqa: F401
from minidl.functions.dropout import dropout  # noqa: F401
from minidl.functions.conv import conv2d, conv_output_size  # noqa: F401
from minidl.functions.pooling import max_pool2d, avg_pool2d, global_avg_pool2d  # noqa: F401
from minidl.functions.normalization import batch_norm  # noqa: F401
from minidl.functions.batchnorm_pool import batch_norm_max_pool2d  # noqa: F401
from minidl.functions.conv_bn_pool import conv2d_batch_norm_max_pool2d  # noqa: F401
from minidl.functions.lrn import local_response_norm  # noqa: F401,E402
from minidl.functions.adaptive_pooling import adaptive_avg_pool2d  # noqa: F401,E402
