"""GoogLeNet: torchvision's parameter counts and key names, shapes through the network, the
training outputs (logits, aux2, aux1) and their gradients against a torch.nn reference, and
minidl.fuse keeping the logits."""
import numpy as np
import pytest

import minidl
from minidl.models import MODELS, googlenet


def count(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters())


def test_parameter_counts_are_torchvisions():
    # torchvision's GoogLeNet_Weights.IMAGENET1K_V1 lists num_params 6624904 (heads dropped);
    # the two auxiliary heads add 2 x 3,190,992
    assert count(googlenet(aux_logits=False)) == 6_624_904
    assert count(googlenet()) == 13_004_888
    assert count(googlenet(num_classes=10, aux_logits=False)) == 6_624_904 - 1025 * 990
    assert MODELS["googlenet"] is googlenet


@pytest.mark.parametrize("hw, grid", [(112, 4), (64, 2), (15, 1)])
def test_shapes_in_eval_and_training(hw, grid):
    model = googlenet(num_classes=5).eval()
    x = minidl.tensor(np.random.default_rng(0).standard_normal((2, 3, hw, hw)).astype(
        np.float32))
    trunk = model.inception5b(model.inception5a(minidl.tensor(np.zeros((1, 832, grid, grid),
                                                                       np.float32))))
    with minidl.no_grad():
        assert model(x).shape == (2, 5)
        assert trunk.shape == (1, 1024, grid, grid)
    model.train()
    out = model(x)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 5)] * 3
    assert googlenet(num_classes=5, aux_logits=False).train()(x).shape == (2, 5)


def test_state_dict_keys_are_torchvisions():
    torch = pytest.importorskip("torch")  # noqa: F841
    import _torch_reference as R
    from minidl.convert import minidl_to_torchvision
    assert set(minidl_to_torchvision(googlenet().state_dict())) == \
        set(R.GoogLeNet().state_dict())
    assert set(minidl_to_torchvision(googlenet(aux_logits=False).state_dict())) == \
        set(R.GoogLeNet(aux_logits=False).state_dict())


def test_training_outputs_and_gradients_match_torch_float64():
    """Train mode (batch statistics), dropout off so both sides are deterministic: the three
    outputs in torchvision's order and the gradients of conv1 and both heads' fc2."""
    torch = pytest.importorskip("torch")
    import _torch_reference as R
    from minidl.convert import load_weights
    tmodel = R.randomize(R.GoogLeNet(num_classes=7, transform_input=True, dropout=0.0,
                                     dropout_aux=0.0).double()).train()
    minidl.set_default_dtype(np.float64)
    model = load_weights(googlenet(num_classes=7, transform_input=True, dropout=0.0,
                                   dropout_aux=0.0), tmodel.state_dict()).train()
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    touts = tmodel(torch.from_numpy(x))
    outs = model(minidl.tensor(x))
    weights = np.random.default_rng(1).standard_normal((3, 2, 7))
    for o, to, name in zip(outs, touts, ("logits", "aux2", "aux1")):
        np.testing.assert_allclose(o.data, to.detach().numpy(), rtol=0, atol=1e-10,
                                   err_msg=name)
    assert np.abs(outs[1].data - outs[2].data).max() > 1e-3      # the order is checked
    sum((o * minidl.tensor(w)).sum() for o, w in zip(outs, weights)).backward()
    sum((o * torch.from_numpy(w)).sum() for o, w in zip(touts, weights)).backward()
    pairs = [(model.conv1.conv.W, tmodel.conv1.conv.weight),
             (model.aux1.fc2.W, tmodel.aux1.fc2.weight),
             (model.aux2.fc2.W, tmodel.aux2.fc2.weight),
             (model.inception4a.branch3[1].conv.W, tmodel.inception4a.branch3[1].conv.weight)]
    for ours, theirs in pairs:
        g = theirs.grad.numpy()
        assert np.abs(ours.grad - g).max() <= 1e-9 * np.abs(g).max()


def test_fuse_keeps_the_logits():
    model = googlenet(num_classes=10, aux_logits=False).eval()
    x = minidl.tensor(np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(
        np.float32))
    with minidl.no_grad():
        before = model(x).data
        after = minidl.fuse(model)(x).data
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)
