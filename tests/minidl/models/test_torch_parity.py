"""ResNet-50, Inception-v3 and AlexNet against PyTorch: the same architecture written in
torch.nn with torchvision's module names (tests/minidl/models/_torch_reference.py), random
weights and batch-norm statistics, exported state_dict -> minidl.convert -> .npz/.safetensors
-> load_weights, and the logits compared in eval mode."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minidl  # noqa: E402
from minidl.convert import load_weights, write_weights, torchvision_to_minidl  # noqa: E402
from minidl.models import alexnet, inception_v3, resnet50  # noqa: E402

import _torch_reference as R  # noqa: E402


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def parity(tmp_path, tmodel, make, hw, dtype, suffix):
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tmodel = R.randomize(tmodel.to(tdtype))
    x = np.random.default_rng(0).standard_normal((2, 3, hw, hw)).astype(dtype)
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(x)).numpy()
    path = tmp_path / f"weights{suffix}"
    write_weights(path, torchvision_to_minidl(tmodel.state_dict()))
    minidl.set_default_dtype(dtype)
    model = load_weights(make(), path).eval()
    with minidl.no_grad():
        out = model(minidl.tensor(x)).data
    assert out.dtype == dtype and out.shape == ref.shape
    return rel_err(out, ref)


@pytest.mark.parametrize("dtype, suffix, tol", [(np.float64, ".npz", 1e-6),
                                                (np.float32, ".safetensors", 1e-4)])
def test_resnet50_matches_torch(tmp_path, dtype, suffix, tol):
    assert parity(tmp_path, R.resnet50(), resnet50, 64, dtype, suffix) <= tol


def test_inception_v3_matches_torch_float64(tmp_path):
    # with the auxiliary head's weights in the file (unused in eval) and torchvision's
    # transform_input, as its pretrained model is built
    err = parity(tmp_path, R.Inception3(aux_logits=True, transform_input=True),
                 lambda: inception_v3(aux_logits=True, transform_input=True), 75, np.float64,
                 ".safetensors")
    assert err <= 1e-6


def test_alexnet_matches_torch_float32(tmp_path):
    # 64x64: features end at 1x1, so the adaptive pool upsamples to 6x6; weights passed as a
    # torchvision-named mapping (no file: 61M parameters)
    tmodel = R.randomize(R.alexnet())
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(x)).numpy()
    model = load_weights(alexnet(), tmodel.state_dict()).eval()
    with minidl.no_grad():
        assert rel_err(model(minidl.tensor(x)).data, ref) <= 1e-4


def test_resnet18_state_dict_keys_are_torchvisions():
    from minidl.convert import minidl_to_torchvision
    from minidl.models import resnet18
    assert set(minidl_to_torchvision(resnet18().state_dict())) == set(R.resnet18().state_dict())
    assert set(minidl_to_torchvision(inception_v3().state_dict())) == \
        set(R.Inception3().state_dict())
