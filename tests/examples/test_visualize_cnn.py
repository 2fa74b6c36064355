"""examples/visualize_cnn.py end to end at tiny settings: the pictures exist and have the sizes
the network implies."""
import pytest
from PIL import Image


def _size(path):
    with Image.open(path) as im:
        return im.size, im.mode


def test_visualize_cnn_trains_a_tiny_model_when_none_is_saved(data_dir, tmp_path, capsys,
                                                              load_example, monkeypatch):
    monkeypatch.chdir(tmp_path)        # no runs/mnist_cnn/best.npz here
    out = tmp_path / "viz"
    args = ["--limit", "300", "--index", "3", "--out", str(out), "--data-dir", str(data_dir)]
    assert load_example("visualize_cnn").main(args) == 0
    text = capsys.readouterr().out
    assert "training a small one on 300 images" in text
    assert "true class" in text and "filters.png" in text
    (w, h), mode = _size(out / "filters.png")
    assert mode == "L" and w == h                     # 32 filters: 6 x 6 grid, square
    assert _size(out / "maps_2.png")[0][0] > _size(out / "maps_6.png")[0][0] / 2
    (sw, sh), smode = _size(out / "saliency.png")
    assert smode == "RGB" and sw > 3 * sh             # four 28x28 panels side by side


def test_visualize_cnn_reads_resnet_weights(images_dir, tmp_path, capsys, load_example):
    """--weights: an ImageNet ResNet (random weights saved in minidl's naming here) on a
    photo: RGB filters, five blocks of maps, saliency and Grad-CAM of layer4."""
    from minidl.models import get_model
    weights = tmp_path / "r18.npz"
    get_model("resnet18").save(weights)
    out = tmp_path / "viz"
    args = ["--arch", "resnet18", "--weights", str(weights), "--image",
            str(images_dir / "fruits.jpg"), "--out", str(out), "--class-index", "954"]
    assert load_example("visualize_cnn").main(args) == 0
    assert "saliency for class banana (954)" in capsys.readouterr().out
    assert _size(out / "filters.png")[1] == "RGB"
    for name in ("relu", "layer1", "layer2", "layer3", "layer4"):
        assert (out / f"maps_{name}.png").is_file()


def test_visualize_cnn_weights_without_image_is_an_error(tmp_path, load_example):
    with pytest.raises(ValueError, match="--weights needs --image"):
        load_example("visualize_cnn").main(["--weights", str(tmp_path / "w.npz"),
                                            "--out", str(tmp_path)])
