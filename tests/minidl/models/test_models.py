"""minidl.models and minidl.layers.blocks: published parameter counts, torchvision's names,
shapes, training (backward) through the blocks, and the inference path of ``minidl.fuse``
(batch norm folded into the convolutions) against the layer by layer one under every
backend."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl.autograd import Tensor
from minidl.layers.activation import ReLU
from minidl.layers.blocks import BasicBlock, Bottleneck, InceptionAux
from minidl.layers.conv import Conv2d
from minidl.layers.fused import FusedConvBatchNorm2d
from minidl.layers.normalization import BatchNorm2d
from minidl.models import (MODELS, SmallResNet, alexnet, get_model, inception_v3, resnet8,
                           resnet18, resnet20, resnet50, resnet152)

PUBLISHED = [(alexnet, {}, 61_100_840), (resnet18, {}, 11_689_512),
             (resnet50, {}, 25_557_032), (resnet152, {}, 60_192_808),
             (inception_v3, {}, 27_161_264), (inception_v3, {"aux_logits": False}, 23_834_568)]


@pytest.mark.parametrize("make, kw, count", PUBLISHED,
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_parameter_counts_equal_the_published_ones(make, kw, count):
    assert make(**kw).num_parameters() == count


def test_names_follow_torchvision():
    keys = list(resnet50().state_dict())
    assert keys[:2] == ["conv1.W", "bn1.gamma"]
    for k in ("layer1.0.downsample.0.W", "layer1.0.downsample.1.running_var",
              "layer4.2.conv3.W", "layer4.2.bn3.beta", "fc.W", "fc.b"):
        assert k in keys
    iv3 = inception_v3().state_dict()
    for k in ("Conv2d_1a_3x3.conv.W", "Mixed_5b.branch_pool.bn.running_mean",
              "Mixed_6e.branch7x7dbl_5.conv.W", "Mixed_7c.branch3x3dbl_3b.bn.gamma",
              "AuxLogits.conv1.conv.W", "AuxLogits.fc.b", "fc.W"):
        assert k in iv3
    assert "AuxLogits.fc.W" not in inception_v3(aux_logits=False).state_dict()
    ax = alexnet().state_dict()
    assert [k for k in ax if k.endswith(".W")] == [
        "features.0.W", "features.3.W", "features.6.W", "features.8.W", "features.10.W",
        "classifier.1.W", "classifier.4.W", "classifier.6.W"]


def test_small_resnets_on_28x28(xp):
    x = minidl.tensor(np.random.default_rng(0).random((2, 1, 28, 28)))
    for make, depth in ((resnet8, 8), (resnet20, 20)):
        model = make()
        assert model.depth == depth
        assert model(x).shape == (2, 10)
    assert resnet8().num_parameters() == 77_754
    assert resnet20().num_parameters() == 272_186


def test_small_resnet_trains_one_step_and_gradients_reach_the_stem(xp):
    model = resnet8(num_classes=3, in_channels=2, width=4)
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.random((4, 2, 12, 12)))
    y = minidl.tensor(rng.integers(0, 3, 4))
    loss = F.softmax_cross_entropy(model(x), y)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
    assert float(abs(p.grad).sum()) > 0


def test_blocks_shapes(xp):
    x = minidl.tensor(np.random.default_rng(0).random((2, 8, 9, 9)))
    assert BasicBlock(8, 8)(x).shape == (2, 8, 9, 9)
    assert BasicBlock(8, 16, stride=2)(x).shape == (2, 16, 5, 5)
    assert BasicBlock(8, 8).downsample is None
    b = Bottleneck(8, 4, stride=2)
    assert b(x).shape == (2, 16, 5, 5) and b.downsample is not None
    aux = InceptionAux(8, 5).eval()
    assert aux(minidl.tensor(np.zeros((1, 8, 17, 17)))).shape == (1, 5)


def _randomize_bn(model, rng):
    for name, m in model.named_modules():
        if isinstance(m, BatchNorm2d):
            C = m.num_features
            m.running_mean[...] = minidl.to_device(rng.standard_normal(C) * 0.1)
            m.running_var[...] = minidl.to_device(rng.random(C) + 0.5)
            m.gamma.data[...] = minidl.to_device(1 + rng.standard_normal(C) * 0.1)
            m.beta.data[...] = minidl.to_device(rng.standard_normal(C) * 0.1)


@pytest.mark.parametrize("make, hw", [(lambda: resnet8(width=8), 12),
                                      (lambda: SmallResNet(8, 4, 3, width=8), 9)])
def test_fused_inference_path_equals_the_layer_by_layer_path(xp, make, hw):
    minidl.set_default_dtype(np.float64)
    model = make().eval()
    _randomize_bn(model, np.random.default_rng(1))
    x = minidl.tensor(np.random.default_rng(2).standard_normal((3, model.conv1.in_channels,
                                                                 hw, hw)))
    with minidl.no_grad():
        unfused = model(x)                 # the layers one by one
    minidl.fuse(model)
    assert isinstance(model.conv1, FusedConvBatchNorm2d)
    generic = model(x)                     # graph recorded -> the layer calls
    assert generic.requires_grad
    np.testing.assert_array_equal(minidl.to_host(generic.data), minidl.to_host(unfused.data))
    with minidl.no_grad():
        fused = model(x)                   # BN folded into the convolutions
    np.testing.assert_allclose(minidl.to_host(fused.data), minidl.to_host(generic.data),
                               rtol=1e-10, atol=1e-12)


def test_conv_bn_fused_1x1_strided_and_with_bias(xp):
    minidl.set_default_dtype(np.float64)
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((2, 4, 7, 7)))
    for conv in (Conv2d(4, 6, 1, stride=2), Conv2d(4, 6, 3, padding=1, bias=True),
                 Conv2d(4, 6, 1, bias=False)):
        bn = BatchNorm2d(6).eval()
        _randomize_bn(bn, rng)
        for relu in (True, False):
            ref = bn(conv(x))
            ref = F.relu(ref) if relu else ref
            fused = FusedConvBatchNorm2d(conv, bn, ReLU() if relu else None)
            with minidl.no_grad():
                assert fused.takes_folded_path(x)
                got = fused(x)
            np.testing.assert_allclose(minidl.to_host(got.data), minidl.to_host(ref.data),
                                       rtol=1e-10, atol=1e-12)


def test_fused_path_keeps_the_input_checks():
    model = minidl.fuse(resnet8().eval())
    with minidl.no_grad(), pytest.raises(ValueError, match=r"expected input with 1 channels"):
        model(minidl.tensor(np.zeros((1, 3, 28, 28))))


def test_inception_forward_small_input_and_training_outputs():
    model = inception_v3(num_classes=7, aux_logits=True).eval()
    with minidl.no_grad():
        y = model(minidl.tensor(np.zeros((1, 3, 75, 75))))
    assert isinstance(y, Tensor) and y.shape == (1, 7)
    assert "AuxLogits" in dict(model.named_modules())


def test_alexnet_lrn_option():
    plain, lrn = alexnet(num_classes=10), alexnet(num_classes=10, lrn=True)
    assert plain.num_parameters() == lrn.num_parameters()
    assert type(lrn.features[2]).__name__ == "LocalResponseNorm"
    with minidl.no_grad():
        assert lrn.eval()(minidl.tensor(np.zeros((1, 3, 67, 67)))).shape == (1, 10)


def test_get_model_and_errors():
    assert set(MODELS) >= {"alexnet", "resnet18", "resnet34", "resnet50", "resnet101",
                           "resnet152", "inception_v3", "resnet8", "resnet20"}
    assert isinstance(get_model("resnet8"), SmallResNet)
    with pytest.raises(ValueError, match=r"get_model: unknown model 'resnet51'; choose one of"):
        get_model("resnet51")
    with pytest.raises(ValueError, match=r"SmallResNet: depth must be 6n \+ 2"):
        SmallResNet(10)
