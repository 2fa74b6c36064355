"""examples/classify_image.py with Keras .h5 weights (h5py only, no Keras), with weights it
downloads (a local HTTP server) and offline."""
import hashlib
import http.server
import threading

import numpy as np
import pytest
from PIL import Image

from minidl.convert import write_weights
from minidl.models import hub, keras_resnet50, resnet18


@pytest.fixture
def photo(tmp_path):
    img = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)).save(img)
    return img


def _write_keras_legacy(model, path):
    """A KerasResNet's weights in the Keras 2 legacy layout, named as keras.applications names
    ResNet50's layers (conv1_conv, conv2_block1_0_conv, ..., predictions)."""
    h5py = pytest.importorskip("h5py", reason="h5py not installed (pip install 'minidl[keras]')")
    pairs = [("conv1_conv", model.conv1), ("conv1_bn", model.bn1), ("predictions", model.fc)]
    for s in range(1, 5):
        for j, block in enumerate(getattr(model, f"layer{s}")):
            k = f"conv{s + 1}_block{j + 1}"
            pairs += [(f"{k}_{i}_{kind}", getattr(block, f"{kind}{i}"))
                      for i in (1, 2, 3) for kind in ("conv", "bn")]
            if block.downsample is not None:
                pairs += [(f"{k}_0_conv", block.downsample[0]), (f"{k}_0_bn", block.downsample[1])]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n, _ in pairs]
        for name, m in pairs:
            if hasattr(m, "running_mean"):
                arrays = {"gamma": m.gamma.data, "beta": m.beta.data,
                          "moving_mean": m.running_mean, "moving_variance": m.running_var}
            elif m.W.data.ndim == 4:
                arrays = {"kernel": m.W.data.transpose(2, 3, 1, 0), "bias": m.b.data}
            else:
                arrays = {"kernel": m.W.data.T, "bias": m.b.data}
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/{leaf}:0".encode() for leaf in arrays]
            for leaf, a in arrays.items():
                g.create_dataset(f"{name}/{leaf}:0", data=np.asarray(a))


def test_keras_h5_weights_are_read_and_get_caffe_preprocessing(tmp_path, photo, capsys,
                                                               load_example):
    model = keras_resnet50()
    model.fc.W.data[...] = 0                      # random features on a 0..255 input are big
    model.fc.b.data[...] = 0
    model.fc.b.data[281] = 1000.0                 # whatever the image: "tabby"
    _write_keras_legacy(model, tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")
    status = load_example("classify_image").main(
        [str(photo), "--weights", str(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].startswith("resnet50 on numpy, 224x224") and \
        lines[0].endswith("(keras weights, caffe preprocessing)")
    assert lines[1].split()[-1] == "tabby" and lines[1].split()[1] == "100.00%"


def test_keras_weights_exist_only_for_two_models(photo, load_example):
    with pytest.raises(SystemExit) as info:
        load_example("classify_image").main([str(photo), "--model", "resnet18",
                                             "--source", "keras"])
    assert info.value.code == 2


def _serve(body):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_without_weights_it_downloads_them_once_into_the_cache(tmp_path, photo, capsys,
                                                                monkeypatch, load_example):
    model = resnet18()
    model.fc.b.data[...] = 0
    model.fc.b.data[409] = 1000.0                 # "analog clock"
    write_weights(tmp_path / "src.npz", model.state_dict())
    body = (tmp_path / "src.npz").read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    httpd = _serve(body)
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/resnet18-{digest[:8]}.npz"
        monkeypatch.setitem(hub.WEIGHTS, ("resnet18", "torchvision"),
                            hub.WeightFile("resnet18", "torchvision", url, sha256=digest[:8]))
        monkeypatch.setenv("MINIDL_CACHE", str(tmp_path / "cache"))
        status = load_example("classify_image").main([str(photo), "--model", "resnet18"])
    finally:
        httpd.shutdown()
        httpd.server_close()
    out, err = capsys.readouterr()
    assert status == 0 and url in err
    assert out.splitlines()[0].endswith("(torchvision weights, torch preprocessing)")
    assert out.splitlines()[1].split()[-2:] == ["analog", "clock"]
    assert (tmp_path / "cache" / "models" / f"resnet18-{digest[:8]}.npz").read_bytes() == body


def test_offline_without_weights_says_what_was_tried_and_how_to_fix_it(tmp_path, photo,
                                                                       monkeypatch,
                                                                       load_example):
    entry = hub.WeightFile("resnet18", "torchvision", "http://127.0.0.1:9/resnet18-f37072fd.pth",
                           sha256="f37072fd")
    monkeypatch.setitem(hub.WEIGHTS, ("resnet18", "torchvision"), entry)
    monkeypatch.setenv("MINIDL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as info:
        load_example("classify_image").main([str(photo), "--model", "resnet18"])
    text = str(info.value.code)
    assert text.startswith("error: could not find the resnet18 (torchvision) weights file")
    assert "http://127.0.0.1:9/resnet18-f37072fd.pth: cannot connect" in text
    assert "--weights FILE" in text
    assert not (tmp_path / "cache").exists()
