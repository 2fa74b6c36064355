"""minidl.data.imagenet (labels, torchvision's evaluation preprocessing) and the
examples/classify_image.py tutorial end to end."""
import numpy as np
import pytest
from PIL import Image

from minidl.convert import write_weights
from minidl.data.imagenet import (IMAGENET_MEAN, IMAGENET_STD, PRESETS, center_crop,
                                  imagenet_classes, preprocess, resize_shorter)
from minidl.models import resnet18


def test_the_1000_classes_in_torchvision_order():
    names = imagenet_classes()
    assert len(names) == 1000
    assert names[0] == "tench" and names[1] == "goldfish"
    assert names[207] == "golden retriever" and names[281] == "tabby"
    assert names[409] == "analog clock" and names[999] == "toilet tissue"


def test_resize_shorter_side_and_centre_crop():
    img = Image.new("RGB", (400, 300))
    assert resize_shorter(img, 256).size == (341, 256)        # int(256 * 400 / 300)
    assert resize_shorter(Image.new("RGB", (300, 500)), 342).size == (342, 570)
    assert center_crop(Image.new("RGB", (341, 256)), 224).size == (224, 224)
    with pytest.raises(ValueError, match=r"center_crop: image 100x80 is smaller than the crop"):
        center_crop(Image.new("RGB", (100, 80)), 90)


def test_preprocess_normalises_the_centre_crop():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (256, 300, 3), dtype=np.uint8)   # shorter side already 256
    x = preprocess(arr)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    crop = arr[16:240, 38:262].astype(np.float32) / 255        # round(32/2), round(76/2)
    expected = ((crop - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-6)
    gray = preprocess(rng.integers(0, 256, (400, 342), dtype=np.uint8), *PRESETS["inception_v3"])
    assert gray.shape == (3, 299, 299)
    with pytest.raises(ValueError, match=r"must be uint8 \(H, W\) or \(H, W, 3\)"):
        preprocess(np.zeros((10, 10), np.float32))


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_classify_image_prints_top5_with_weights(tmp_path, capsys, suffix, load_example):
    weights = tmp_path / f"r18{suffix}"
    model = resnet18()
    model.fc.b.data[...] = 0
    model.fc.b.data[281] = 1000.0                 # whatever the image: "tabby"
    write_weights(weights, model.state_dict())
    img = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)).save(img)
    status = load_example("classify_image").main([str(img), "--model", "resnet18", "--weights",
                                                  str(weights)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].startswith("resnet18 on numpy, 224x224")
    assert lines[1].split()[-1] == "tabby" and lines[1].split()[1] == "100.00%"
    assert len(lines) == 6


def test_classify_image_rejects_weights_of_another_model(tmp_path, load_example):
    weights = tmp_path / "r18.npz"
    write_weights(weights, resnet18().state_dict())
    img = tmp_path / "photo.png"
    Image.new("RGB", (64, 64)).save(img)
    with pytest.raises(SystemExit, match=r"error: load_weights into ResNet: .*missing key"):
        load_example("classify_image").main([str(img), "--model", "resnet50", "--weights",
                                             str(weights)])
