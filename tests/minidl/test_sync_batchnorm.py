"""minidl.distributed.sync_batchnorm: the layers and convert_sync_batchnorm in one process
(sharing parameters and buffers, the same keys, BatchNorm's numbers, never fused); the 2-rank
runs are in tests/minidl/test_distributed.py."""
import numpy as np
import pytest

import minidl
from minidl import kernels
from minidl.autograd import Tensor
from minidl.distributed.sync_batchnorm import (
    SyncBatchNorm1d, SyncBatchNorm2d, convert_sync_batchnorm,
)
from minidl.fusion import fuse, plan
from minidl.layers import (
    BatchNorm1d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential,
)
from minidl.layers.blocks import BasicBlock
from minidl.optim import SGD


@pytest.fixture(autouse=True)
def _float64():
    minidl.set_default_dtype(np.float64)


def small_cnn():
    return Sequential(Conv2d(2, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(),
                      MaxPool2d(2), Flatten(), Linear(4 * 3 * 3, 5), BatchNorm1d(5),
                      ReLU(), Linear(5, 3))


def test_conversion_shares_parameters_buffers_and_keys():
    model = small_cnn()
    params, state = model.parameters(), model.state_dict()
    buffers = dict(model.named_buffers())
    old_bn = model[1]
    assert convert_sync_batchnorm(model) is model
    assert type(model[1]) is SyncBatchNorm2d and type(model[6]) is SyncBatchNorm1d
    assert isinstance(model[1], BatchNorm2d) and model[1].training
    assert [id(p) for p in model.parameters()] == [id(p) for p in params]
    assert list(model.state_dict()) == list(state)
    assert all(model.state_dict()[k] is v for k, v in buffers.items())
    assert model[1].gamma is old_bn.gamma and model[1].running_var is old_bn.running_var
    assert (model[1].eps, model[1].momentum, model[1].num_features) == (1e-5, 0.1, 4)
    single = convert_sync_batchnorm(BatchNorm2d(3, momentum=0.2, affine=False))
    assert type(single) is SyncBatchNorm2d and single.momentum == 0.2 and single.gamma is None
    assert "SyncBatchNorm2d(3, momentum=0.2, affine=False)" in repr(single)


def test_nested_blocks_are_converted_and_buffers_updated_in_place(rng):
    block = convert_sync_batchnorm(Sequential(BasicBlock(2, 4, stride=2)))
    inner = block[0]
    assert type(inner.bn1) is SyncBatchNorm2d and type(inner.bn2) is SyncBatchNorm2d
    assert type(inner.downsample[1]) is SyncBatchNorm2d
    assert inner._modules["bn1"] is inner.bn1
    before = inner.bn1.running_mean
    block(rng.standard_normal((3, 2, 6, 6)))
    assert inner.bn1.running_mean is before and np.abs(before).max() > 0
    assert int(inner.bn1.num_batches_tracked) == 1


def test_one_process_trains_exactly_like_batch_norm(rng):
    """Two SGD steps and an eval pass: parameters, running statistics and outputs agree bit
    for bit with the BatchNorm model (both with batch norm's reference passes)."""
    x, y = rng.standard_normal((6, 2, 6, 6)), rng.integers(0, 3, 6)
    results = []
    for sync in (False, True):
        minidl.seed(0)
        model = small_cnn()
        if sync:
            convert_sync_batchnorm(model)
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        with kernels.force("batch_norm", "reference"):
            for _ in range(2):
                loss = minidl.functions.softmax_cross_entropy(model(Tensor(x)), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            out = model(Tensor(x)).data
        results.append([out] + [np.asarray(v) for v in model.state_dict().values()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_fuse_leaves_sync_batch_norm_alone(rng):
    model = convert_sync_batchnorm(Sequential(Conv2d(1, 4, 3, padding=1, bias=False),
                                              BatchNorm2d(4), ReLU(), MaxPool2d(2)))
    line, relu_pool = [str(f) for f in plan(model)]
    assert "not fused" in line and "1 is SyncBatchNorm2d, a subclass of BatchNorm2d" in line
    assert relu_pool == "2 ReLU -> 3 MaxPool2d: fused as MaxPool2dReLU"   # no statistics
    fuse(model)
    assert type(model[1]) is SyncBatchNorm2d and type(model[0]) is Conv2d
    block = convert_sync_batchnorm(BasicBlock(4, 4))
    assert not any(f.fused for f in plan(block))
    fuse(block)
    assert type(block.bn1) is SyncBatchNorm2d and type(block.conv1) is Conv2d


def test_a_fused_model_is_refused_with_the_order_to_follow():
    model = fuse(Sequential(Conv2d(1, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(),
                            MaxPool2d(2)))
    with pytest.raises(ValueError, match=r"convert_sync_batchnorm: 0 is a fused "
                                         r"FusedConvBatchNormMaxPool2d holding a batch norm; "
                                         r"call convert_sync_batchnorm before minidl.fuse"):
        convert_sync_batchnorm(model)
    with pytest.raises(TypeError, match="convert_sync_batchnorm: model must be a Module, got "
                                        "list"):
        convert_sync_batchnorm([model])


# --------------------------------------------------------------------------- mpiexec -n 2

def test_two_ranks_forward_and_backward_equal_one_process_on_the_whole_batch(tmp_path):
    """Shares of 5 and 3 images; outputs, input gradients, eval outputs, gamma's and beta's
    gradients (summed over ranks) and the running statistics (the same on both ranks)."""
    from test_distributed import run_script
    run_script("sync_bn.py", tmp_path / "two.npz", ranks=2)
    run_script("sync_bn.py", tmp_path / "one.npz")
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert int(two["world"]) == 2 and int(one["world"]) == 1
    assert len(one.files) == 15
    for key in set(one.files) - {"world"}:
        scale = np.abs(one[key]).max()
        assert np.abs(two[key] - one[key]).max() <= 1e-12 * scale, key


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_two_ranks_of_64_with_sync_batch_norm_equal_one_process_of_128(tmp_path, optimizer):
    """fit() for 3 epochs, float64, a CNN with SyncBatchNorm2d and SyncBatchNorm1d: the
    parameters, running statistics and metrics agree to 1e-6 relative (about 1e-14 with SGD,
    1e-10 with Adam, which divides by the near-zero gradient of the bias before a batch
    norm); with per-rank BatchNorm they do not."""
    from test_distributed import run_script
    run_script("equivalence_bn.py", tmp_path / "two.npz", optimizer, ranks=2)
    run_script("equivalence_bn.py", tmp_path / "one.npz", optimizer)
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert int(two["world"]) == 2 and int(one["world"]) == 1
    assert {"1.running_mean", "6.running_var", "metric.val_loss"} <= set(one.files)
    for key in set(one.files) - {"world"}:
        scale = max(np.abs(one[key]).max(), 1e-12)
        assert np.abs(two[key] - one[key]).max() <= 1e-6 * scale, key
    assert one["metric.train_loss"][-1] < one["metric.train_loss"][0]   # it did train
    if optimizer == "sgd":   # the control: per-rank statistics end elsewhere
        run_script("equivalence_bn.py", tmp_path / "plain.npz", optimizer, "plain", ranks=2)
        plain = np.load(tmp_path / "plain.npz")
        assert np.abs(plain["1.running_mean"] - one["1.running_mean"]).max() > 1e-3
