"""Pretrained-style checkpoints with PyTorch hidden: torch.save of a torchvision-named ResNet-50,
Inception-v3 or GoogLeNet state_dict (random weights and batch-norm statistics, built by the
torch.nn references in _torch_reference.py), then -- with ``import torch`` failing, in-process
and in a subprocess -- ``python -m minidl.convert`` and ``load_weights`` read the .pth and the
logits equal PyTorch's on the same input."""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minidl  # noqa: E402
from minidl.convert import load_weights, main  # noqa: E402
from minidl.models import googlenet, inception_v3, resnet50  # noqa: E402

import _torch_reference as R  # noqa: E402

# name: (torch reference, minidl model, torchvision's checkpoint file name)
MODELS = {
    "resnet50": (R.resnet50, resnet50, "resnet50-0676ba61.pth"),
    "inception_v3": (lambda: R.Inception3(transform_input=True),
                     lambda: inception_v3(transform_input=True),
                     "inception_v3_google-0cc3c7bd.pth"),
    "googlenet": (lambda: R.GoogLeNet(transform_input=True),
                  lambda: googlenet(transform_input=True), "googlenet-1378be20.pth"),
}
TOL = {np.float32: 1e-4, np.float64: 1e-10}


def saved_reference(tmp_path, name, hw, dtype, batch=2):
    """torch.save of the reference's random state_dict; returns (path, input, torch logits)."""
    make_torch, _, filename = MODELS[name]
    tmodel = R.randomize(make_torch().to(torch.float64 if dtype == np.float64
                                         else torch.float32))
    path = tmp_path / filename
    torch.save(tmodel.state_dict(), path)
    x = np.random.default_rng(0).standard_normal((batch, 3, hw, hw)).astype(dtype)
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(x)).numpy()
    return path, x, ref


def max_err(out, ref):
    """max |out - ref| over max(1, max |ref|): absolute for O(1) logits, relative for the
    large ones random weights give a deep residual net."""
    return float(np.abs(out - ref).max() / max(1.0, np.abs(ref).max()))


def logits(model, x):
    with minidl.no_grad():
        return model(minidl.tensor(x)).data


def check_without_torch(tmp_path, monkeypatch, capsys, name, hw, dtype, batch=1):
    """The .pth read with torch hidden: converted by the command line (float32) or loaded
    directly (float64); returns the error of the logits."""
    path, x, ref = saved_reference(tmp_path, name, hw, dtype, batch)
    monkeypatch.setitem(sys.modules, "torch", None)          # as if PyTorch were not installed
    with pytest.raises(ImportError):
        import torch as _  # noqa: F401
    source = path
    if dtype == np.float32:
        source = tmp_path / f"{name}.npz"
        assert main(["torchvision", str(path), str(source)]) == 0
        assert f"checked against {name}" in capsys.readouterr().out
    minidl.set_default_dtype(dtype)
    out = logits(load_weights(MODELS[name][1](), source).eval(), x)
    assert out.dtype == dtype and out.shape == ref.shape
    err = max_err(out, ref)
    assert err <= TOL[dtype], (name, dtype, err)
    return err


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name, hw", [("resnet50", 64), ("inception_v3", 75),
                                      ("googlenet", 64)])
def test_torch_saved_checkpoint_loads_without_torch(tmp_path, monkeypatch, capsys, name, hw,
                                                     dtype):
    check_without_torch(tmp_path, monkeypatch, capsys, name, hw, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("name, hw, dtype", [("resnet50", 224, np.float32),
                                             ("inception_v3", 299, np.float32),
                                             ("googlenet", 224, np.float32),
                                             ("googlenet", 224, np.float64)], ids=str)
def test_full_size_checkpoints_load_without_torch(tmp_path, monkeypatch, capsys, name, hw,
                                                  dtype):
    err = check_without_torch(tmp_path, monkeypatch, capsys, name, hw, dtype, batch=2)
    print(f"{name} {hw}x{hw} {np.dtype(dtype).name}: max |minidl - torch| / max(1, |torch|) "
          f"= {err:.3g}")


def test_convert_in_a_process_where_torch_cannot_be_imported(tmp_path):
    """``python -m minidl.convert`` in a fresh interpreter whose ``import torch`` fails."""
    path, x, ref = saved_reference(tmp_path, "googlenet", 64, np.float32, batch=1)
    out_file = tmp_path / "g.safetensors"
    code = ("import sys, runpy; sys.modules['torch'] = None; "
            f"sys.argv = ['minidl.convert', 'torchvision', {str(path)!r}, {str(out_file)!r}]; "
            "runpy.run_module('minidl.convert', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "checked against googlenet" in done.stdout
    out = logits(load_weights(googlenet(transform_input=True), out_file).eval(), x)
    assert max_err(out, ref) <= 1e-4
