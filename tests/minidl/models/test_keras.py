"""Keras weight files (minidl.models.keras) into Keras-built minidl models: logits equal Keras's.

With Keras 3 installed (run on its PyTorch backend: KERAS_BACKEND=torch, no TensorFlow) the
tests build ``keras.applications.ResNet50`` / ``InceptionV3`` with random weights, save them

* in the LEGACY layout (what the Keras applications publish), with Keras's own writer
  ``keras.src.legacy.saving.legacy_h5_format.save_weights_to_hdf5_group``;
* in that layout as Keras 2 wrote it, rewritten here with h5py: ``:0`` after every weight
  name, layers counted from 1 (``conv2d_1`` ...), ``layer_names`` in another order and split
  into ``layer_names0/1`` as Keras splits long attributes;
* in Keras 3's own ``.weights.h5`` layout (``model.save_weights``),

and compare minidl's logits (NCHW) with Keras's pre-softmax output (NHWC,
``classifier_activation=None``).  The tests that need only h5py check the errors.
"""
import os
import re
import sys
import warnings

import numpy as np
import pytest

import minidl
from minidl.models.keras import KerasWeightsError, load_keras_weights, read_keras_h5
from minidl.models.keras_inception import keras_inception_v3
from minidl.models.keras_resnet import keras_resnet50

h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install 'minidl[keras]')")


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")   # Keras 3 on the installed PyTorch
    try:
        import keras
    except ImportError as exc:
        pytest.skip(f"keras not importable ({exc}); pip install keras, KERAS_BACKEND=torch")
    return keras


def _randomise(model, rng):
    """Random weights whose logits stay O(1) through 50 layers (He-scaled kernels, small
    gammas), with moving statistics far from 0 / 1 so that the batch norms matter."""
    for w in model.weights:
        shape, path = tuple(w.shape), w.path
        if "moving_variance" in path:
            v = rng.uniform(0.5, 2.0, shape)
        elif any(k in path for k in ("moving_mean", "beta", "bias")):
            v = rng.normal(0, 0.1, shape)
        elif "gamma" in path:
            v = rng.uniform(0.2, 0.5, shape)
        else:
            v = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
        w.assign(v.astype("float32"))


ARCHS = {   # name: (Keras builder name, minidl builder, input side: small to keep tests fast)
    "resnet50": ("ResNet50", keras_resnet50, 96),
    "inception_v3": ("InceptionV3", keras_inception_v3, 139),
}


@pytest.fixture(scope="module", params=sorted(ARCHS))
def saved(request, tmp_path_factory):
    """(arch, folder with legacy.h5 and k3.weights.h5, NHWC input, Keras's logits)."""
    keras = _keras()
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    name = request.param
    kname, _, side = ARCHS[name]
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp(name)
    with warnings.catch_warnings():
        # Keras 3.15's torch backend calls numpy.array(tensor, copy=False) on NumPy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        km = getattr(keras.applications, kname)(weights=None, input_shape=(side, side, 3),
                                                classifier_activation=None)
        _randomise(km, rng)
        with h5py.File(folder / "legacy.h5", "w") as f:
            save_weights_to_hdf5_group(f, km)
        km.save_weights(str(folder / "k3.weights.h5"))
        x = rng.normal(0, 1, (1, side, side, 3)).astype(np.float32)
        ref = keras.ops.convert_to_numpy(km(x, training=False))
    return name, folder, x, ref


def _minidl_logits(name, path, x):
    model = ARCHS[name][1]().eval()
    load_keras_weights(model, path)
    with minidl.no_grad():
        out = model(minidl.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
    return minidl.to_host(out.data)


def _as_keras2(src, dst):
    """Rewrite a legacy file as Keras 2 wrote it: ``:0`` names, counters from 1,
    layer_names reversed and split into two attribute chunks."""
    def rename(layer):   # conv2d -> conv2d_1, conv2d_5 -> conv2d_6; explicit names unchanged
        m = re.fullmatch(r"(conv2d|batch_normalization|dense)(?:_(\d+))?", layer)
        return f"{m.group(1)}_{int(m.group(2) or 0) + 1}" if m else layer

    def text(v):
        return v.decode() if isinstance(v, bytes) else str(v)

    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        names = [text(n) for n in f.attrs["layer_names"]][::-1]
        half = len(names) // 2
        g.attrs["layer_names0"] = [rename(n).encode() for n in names[:half]]
        g.attrs["layer_names1"] = [rename(n).encode() for n in names[half:]]
        for n in names:
            group = g.create_group(rename(n))
            wnames = []
            for w in map(text, f[n].attrs["weight_names"]):
                new = f"{rename(n)}/{w.rpartition('/')[2]}:0"
                group.create_dataset(new, data=f[n][w][()])
                wnames.append(new.encode())
            group.attrs["weight_names"] = wnames


@pytest.mark.parametrize("layout", ["legacy", "keras2", "keras3"])
def test_keras_weights_give_keras_logits(saved, layout, tmp_path):
    name, folder, x, ref = saved
    path = {"legacy": folder / "legacy.h5", "keras3": folder / "k3.weights.h5",
            "keras2": tmp_path / "k2.h5"}[layout]
    if layout == "keras2":
        _as_keras2(folder / "legacy.h5", path)
    out = _minidl_logits(name, path, x)
    assert out.shape == ref.shape == (1, 1000)
    assert ref.std() > 0.05          # logits that differ from class to class
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)


def test_the_legacy_file_has_keras_names_and_layouts(saved):
    name, folder, _, _ = saved
    layers = read_keras_h5(folder / "legacy.h5")
    if name == "resnet50":
        assert list(layers["conv1_conv"]) == ["kernel", "bias"]
        assert layers["conv1_conv"]["kernel"].shape == (7, 7, 3, 64)      # HWIO
        assert layers["conv2_block1_1_conv"]["kernel"].shape == (1, 1, 64, 64)
        assert list(layers["conv1_bn"]) == ["gamma", "beta", "moving_mean", "moving_variance"]
    else:
        bns = [w for w in layers.values() if "moving_mean" in w]
        assert len(bns) == 94 and all("gamma" not in w for w in bns)     # scale=False
    dense = [w for w in layers.values() if w.get("kernel", np.empty(0)).ndim == 2]
    assert [d["kernel"].shape for d in dense] == [(2048, 1000)]           # (in, out)


def test_parameter_counts():
    """Keras's count_params() counts the moving statistics and not InceptionV3's absent
    gammas: 25,636,712 = 25,583,592 + 26,560 batch-norm channels x 2; 23,851,784 =
    23,834,568 + 17,216 channels x (2 - 1)."""
    assert sum(p.data.size for p in keras_resnet50().parameters()) == 25_583_592
    assert sum(p.data.size for p in keras_inception_v3().parameters()) == 23_834_568


# ----------------------------------------------------------------------------- errors (h5py only)

def _tiny_legacy(path, kernel_shape=(7, 7, 3, 64)):
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv1_conv"]
        g = f.create_group("conv1_conv")
        g.attrs["weight_names"] = [b"conv1_conv/kernel:0", b"conv1_conv/bias:0"]
        g.create_dataset("conv1_conv/kernel:0", data=np.zeros(kernel_shape, np.float32))
        g.create_dataset("conv1_conv/bias:0", data=np.zeros(kernel_shape[-1], np.float32))


def test_a_file_of_another_network_names_the_missing_layer(tmp_path):
    _tiny_legacy(tmp_path / "w.h5")
    with pytest.raises(KerasWeightsError, match=r"w\.h5'.*no Keras layer 'conv1_bn' \(for bn1\)"):
        load_keras_weights(keras_resnet50(), tmp_path / "w.h5")
    with pytest.raises(KerasWeightsError, match=r"expected 94 Conv2D, 94 BatchNormalization"):
        load_keras_weights(keras_inception_v3(), tmp_path / "w.h5")


def test_not_hdf5_and_not_keras_are_refused(tmp_path):
    (tmp_path / "t.h5").write_text("hello")
    with pytest.raises(KerasWeightsError, match=r"t\.h5' is not an HDF5 file"):
        read_keras_h5(tmp_path / "t.h5")
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(KerasWeightsError, match=r"not a Keras weights file: no 'layer_names'"):
        read_keras_h5(tmp_path / "e.h5")
    with pytest.raises(FileNotFoundError, match=r"missing\.h5' does not exist"):
        read_keras_h5(tmp_path / "missing.h5")


def test_without_h5py_the_error_names_the_pip_install(tmp_path, monkeypatch):
    _tiny_legacy(tmp_path / "w.h5")
    monkeypatch.setitem(sys.modules, "h5py", None)      # import h5py -> ImportError
    with pytest.raises(ImportError, match=r"needs h5py.*pip install 'minidl\[keras\]'"):
        read_keras_h5(tmp_path / "w.h5")
