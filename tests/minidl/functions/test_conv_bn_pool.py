"""minidl.functions.conv_bn_pool: conv2d_batch_norm_max_pool2d against the separate ops
(conv2d, batch_norm, relu, max_pool2d) -- values, running statistics and gradients in float32
and float64, training and evaluation, ties and negative gamma, several chunks, float64
gradchecks, the statistics of an offset input, the fallback and the errors -- under every
backend (off NumPy it runs the separate ops)."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl.autograd import Tensor
from minidl.kernels import tuning
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


PATHS = {"winograd": "ConvBatchNormMaxPool", "per image": "ImageConvBatchNormMaxPool"}


@pytest.fixture(params=list(PATHS))
def path(request):
    """The fused op's two host paths, for the tests' small sizes: Winograd for every 3x3
    stride-1 conv however shallow, or never Winograd (one product per image)."""
    winograd = request.param == "winograd"
    with tuning.override(WINOGRAD_MIN_DEPTH=0 if winograd else np.inf,
                         CONV_PER_IMAGE_MAX_MACS=0 if winograd else 1 << 18):
        yield request.param


@pytest.fixture
def one_image_blocks():
    """Every chunk (Winograd) or block (per image) of the fused op holds one image."""
    with tuning.override(FUSED_WINOGRAD_CHUNK_BYTES=1, WINOGRAD_MIN_CHUNK_IMAGES=1,
                         FUSED_IMAGE_BLOCK_BYTES=1):
        yield


def _fused_here():
    return minidl.get_backend().name == "numpy"


def _inputs(rng, N=5, C=3, OC=4, H=6, Wd=8):
    x = rng.standard_normal((N, C, H, Wd))
    x[0, :, :4] = 0     # all-zero windows: the conv's outputs tie there (no bias)
    W = rng.standard_normal((OC, C, 3, 3)) * 0.3
    gamma = rng.uniform(0.5, 2, OC)
    gamma[1] = -0.7     # a channel whose normalising map reverses the order: pools the minimum
    return x, W, gamma, rng.standard_normal(OC)


def _both(xp, rng, path, dtype, training, affine, relu, inputs, padding=1, parts=None):
    """[y, running_mean, running_var, *grads] of the fused op (in ``parts`` chunks or blocks of
    images when given) and of the separate ops."""
    x, W, gamma, beta = inputs
    OC = W.shape[0]
    runs = []
    for fused in (True, False):
        rm, rv = dev(xp, np.full(OC, 0.5), dtype), dev(xp, np.full(OC, 2.0), dtype)
        ts = [Tensor(dev(xp, a, dtype), requires_grad=True)
              for a in ((x, W, gamma, beta) if affine else (x, W))]
        g, b = (ts[2], ts[3]) if affine else (None, None)
        if fused:
            y = F.conv2d_batch_norm_max_pool2d(ts[0], ts[1], rm, rv, g, b, padding=padding,
                                               training=training, relu=relu)
            expected = PATHS[path] if _fused_here() else "BatchNormMaxPool"
            assert type(y.creator).__name__ == expected
            if parts is not None and _fused_here():
                fn = y.creator
                assert len(fn.run.chunks if path == "winograd" else fn.run.blocks) == parts
        else:
            y = F.max_pool2d(F.batch_norm(F.conv2d(ts[0], ts[1], padding=padding), rm, rv, g, b,
                                          training=training), 2)
            y = F.relu(y) if relu else y
        if runs:
            gy = runs[0][-1]
        else:
            gy = dev(xp, rng.standard_normal(y.shape), dtype)
        y.backward(gy)
        runs.append([host(y), host(rm), host(rv)] + [host(t.grad) for t in ts] + [gy])
    return [r[:-1] for r in runs]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine, relu", [(True, False), (False, False), (True, True)])
def test_same_values_running_stats_and_gradients_as_the_separate_ops(xp, rng, path, dtype,
                                                                     training, affine, relu):
    fused, separate = _both(xp, rng, path, dtype, training, affine, relu, _inputs(rng))
    tol = 1e-12 if dtype == np.float64 else 3e-6   # the statistics are summed in another order
    for a, b in zip(fused, separate):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


def test_one_image_per_block_and_padding_zero(xp, rng, path, one_image_blocks):
    """One image per chunk or block: their statistics are merged and each one's output,
    winners and gradients land in its own slots.  Padding 0 (8x10 in, 6x8 out)."""
    fused, separate = _both(xp, rng, path, np.float64, True, True, True,
                            _inputs(rng, N=7, H=8, Wd=10), padding=0, parts=7)
    for a, b in zip(fused, separate):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


def test_statistics_of_an_offset_output_keep_their_precision(xp, rng, path, one_image_blocks):
    """A large common offset in the conv's output (mean/std ~ 4e3 in float32): the chunks'
    centred sums of squares keep the variance, where sum(y^2) - M*mean^2 would lose all of
    it (float32's relative error times (mean/std)^2 is about 1)."""
    x = np.full((6, 2, 6, 6), 1000.0) + rng.standard_normal((6, 2, 6, 6))
    W = np.full((3, 2, 3, 3), 1.0) + rng.standard_normal((3, 2, 3, 3)) * 0.001
    conv = host(F.conv2d(dev(xp, x), dev(xp, W), padding=0))   # float64
    var = conv.var(axis=(0, 2, 3))
    rv = dev(xp, np.zeros(3), np.float32)
    F.conv2d_batch_norm_max_pool2d(dev(xp, x, np.float32), dev(xp, W, np.float32),
                                   dev(xp, np.zeros(3), np.float32), rv, padding=0,
                                   training=True, momentum=1.0)
    M = conv.size // 3
    np.testing.assert_allclose(host(rv), var * M / (M - 1), rtol=1e-2)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
def test_gradcheck(xp, rng, path, training, relu):
    minidl.set_default_dtype(np.float64)
    x, W, gamma, beta = _inputs(rng, N=2, C=2, OC=3, H=4, Wd=6)
    x[0] = rng.standard_normal(x[0].shape)   # no ties: finite differences cross none
    mean, var = dev(xp, rng.standard_normal(3)), dev(xp, rng.uniform(0.5, 2, 3))
    gradcheck(lambda *t: F.conv2d_batch_norm_max_pool2d(
        t[0], t[1], None if training else mean, None if training else var, t[2], t[3],
        training=training, relu=relu), [dev(xp, x), dev(xp, W), dev(xp, gamma),
                                        dev(xp, beta)])


def test_other_layers_run_the_separate_ops(xp, rng):
    """Where conv2d would take neither Winograd nor one product per image, the separate ops
    run."""
    x, W, gamma, beta = _inputs(rng, C=2, OC=3)
    x = Tensor(dev(xp, x, np.float32), requires_grad=True)
    with tuning.override(CONV_PER_IMAGE_MAX_MACS=0):
        y = F.conv2d_batch_norm_max_pool2d(x, dev(xp, W, np.float32), None, None,
                                           training=True)
    assert type(y.creator).__name__ == "BatchNormMaxPool"
    assert y.shape == (5, 3, 3, 4)


def test_errors_name_the_op_and_the_argument(xp, rng, path):
    where = "conv2d_batch_norm_max_pool2d"
    x = dev(xp, rng.standard_normal((2, 3, 5, 6)))
    W = dev(xp, rng.standard_normal((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=rf"{where}: the convolution's output must have an "
                                         r"even height and width.*5x6"):
        F.conv2d_batch_norm_max_pool2d(x, W, training=True)
    x = dev(xp, rng.standard_normal((2, 3, 6, 6)))
    with pytest.raises(ValueError, match=rf"{where}: W must be \(OC, 3, 3, 3\)"):
        F.conv2d_batch_norm_max_pool2d(x, dev(xp, rng.standard_normal((4, 3, 5, 5))),
                                       training=True)
    with pytest.raises(ValueError, match=rf"{where}: x must be 4-D"):
        F.conv2d_batch_norm_max_pool2d(x[0], W, training=True)
    with pytest.raises(TypeError, match=rf"{where}: x and W must have the same floating dtype"):
        F.conv2d_batch_norm_max_pool2d(x, dev(xp, rng.standard_normal((4, 3, 3, 3)),
                                              np.float32), training=True)
    with pytest.raises(ValueError, match=rf"{where}: gamma must have shape \(4,\)"):
        F.conv2d_batch_norm_max_pool2d(x, W, None, None, dev(xp, np.ones(3)),
                                       dev(xp, np.zeros(3)), training=True)
    with pytest.raises(ValueError, match=rf"{where}: running_mean is required"):
        F.conv2d_batch_norm_max_pool2d(x, W)
