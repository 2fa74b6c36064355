"""Module.freeze / unfreeze / requires_grad_: a frozen part gets no weight gradient, the
autograd computes no input gradient where nothing upstream needs one, and the trained part's
gradients are those of an unfrozen run."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl.functions import conv as conv_mod
from minidl.layers import Linear
from minidl.models import resnet18


@pytest.fixture
def conv_spy(monkeypatch):
    """Records (need_x, need_W, gx is None, gW is None) of every conv2d backward."""
    calls = []
    original = conv_mod.Conv2d.backward

    def spy(self, gy):
        need = (self.inputs[0].requires_grad, self.inputs[1].requires_grad)
        out = original(self, gy)
        calls.append((*need, out[0] is None, out[1] is None))
        return out
    monkeypatch.setattr(conv_mod.Conv2d, "backward", spy)
    return calls


def _model(seed=0):
    minidl.seed(seed)
    model = resnet18()
    model.set_submodule("fc", Linear(512, 2))
    return model


def _step(model, seed=1):
    rng = np.random.default_rng(seed)
    x = minidl.tensor(rng.standard_normal((4, 3, 32, 32)))
    y = np.array([0, 1, 1, 0])
    model.zero_grad()
    F.softmax_cross_entropy(model(x), y).backward()


def test_freeze_sets_and_clears():
    model = _model()
    _step(model)
    assert all(p.grad is not None for p in model.parameters())
    assert model.layer1.freeze() is model.layer1
    assert all(not p.requires_grad and p.grad is None for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.fc.parameters())
    assert len(model.trainable_parameters()) == \
        len(model.parameters()) - len(model.layer1.parameters())
    model.unfreeze()
    assert all(p.requires_grad for p in model.parameters())
    model.requires_grad_(False)
    assert model.trainable_parameters() == []


def test_frozen_backbone_records_no_graph_and_head_grads_match(conv_spy):
    reference = _model()
    _step(reference)
    ref_grads = {n: p.grad.copy() for n, p in reference.fc.named_parameters()}
    assert conv_spy, "the unfrozen run must backpropagate through the convolutions"
    assert all(c[:2] == (False, True) for c in conv_spy[-1:])   # conv1: no input gradient
    conv_spy.clear()

    model = _model()
    model.freeze()
    model.fc.unfreeze()
    _step(model)
    frozen = [n for n, p in model.named_parameters() if not n.startswith("fc.")]
    assert frozen and all(dict(model.named_parameters())[n].grad is None for n in frozen)
    assert conv_spy == []   # no convolution was differentiated at all
    for n, p in model.fc.named_parameters():
        np.testing.assert_allclose(p.grad, ref_grads[n], rtol=1e-5, atol=1e-7)


def test_partly_frozen_skips_input_gradients_below_the_trained_part(conv_spy):
    model = _model()
    for part in (model.conv1, model.bn1, model.layer1, model.layer2, model.layer3):
        part.freeze()
    _step(model)
    # only layer4 and fc learn: 5 convolutions in layer4 (2 blocks x 2 + the projection)
    assert len(conv_spy) == 5
    # layer4's first convolutions see an input that needs no gradient (all upstream frozen):
    # their kernels are told so and return none; their weights do get one
    first = [c for c in conv_spy if not c[0]]
    assert len(first) == 2 and all(c == (False, True, True, False) for c in first)
    assert all(c == (True, True, False, False) for c in conv_spy if c[0])
    for n, p in model.named_parameters():
        assert (p.grad is not None) == n.startswith(("layer4.", "fc.")), n
