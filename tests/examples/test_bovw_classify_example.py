"""examples/bovw_classify.py on small folders of warped copies of real photos: the binary task
(sigmoid + binary log loss) and the multi-class one (softmax), and a clear error for bad
folders."""
import numpy as np
import pytest
from PIL import Image


def _make(images_dir, root, classes, per_photo, seed=0):
    from benchmarks.bench_retrieval import load_grey, warp
    rng = np.random.default_rng(seed)
    for cls, photos in classes.items():
        (root / cls).mkdir(parents=True)
        for name in photos:
            grey = load_grey(images_dir / name, 160)
            for k in range(per_photo):
                Image.fromarray(warp(grey, rng)).save(root / cls / f"{name[:-4]}_{k}.png")


def _accuracies(text):
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.startswith(("linear", "mlp"))}
    return {k: float(v[2].rstrip("%")) / 100 for k, v in rows.items()}


FAST = ["--vocab", "60", "--max-size", "160", "--n-features", "150", "--epochs", "150"]


def test_bovw_classify_binary(images_dir, tmp_path, capsys, load_example):
    _make(images_dir, tmp_path / "d", {"butterfly": ["butterfly.jpg"],
                                       "other": ["fruits.jpg", "building.jpg"]}, 6)
    assert load_example("bovw_classify").main(
        [str(tmp_path / "d"), "--out", str(tmp_path / "o")] + FAST) == 0
    text = capsys.readouterr().out
    assert "2 classes (butterfly, other)" in text and "sigmoid + binary log loss" in text
    acc = _accuracies(text)
    assert acc["linear"] >= 0.75 and acc["mlp"] >= 0.75      # chance: 2/3 at most
    for name in ("linear", "mlp"):
        with Image.open(tmp_path / "o" / f"confusion_{name}.png") as im:
            assert im.width > 100


def test_bovw_classify_multiclass(images_dir, tmp_path, capsys, load_example):
    _make(images_dir, tmp_path / "d", {"b": ["baboon.jpg"], "f": ["fruits.jpg"],
                                       "h": ["home.jpg"]}, 3)
    assert load_example("bovw_classify").main(
        [str(tmp_path / "d"), "--out", str(tmp_path / "o")] + FAST) == 0
    text = capsys.readouterr().out
    assert "softmax + log loss" in text and "6 to train, 3 to validate" in text
    assert _accuracies(text)["linear"] >= 2 / 3


def test_split_is_stratified(load_example):
    labels = np.array([0] * 10 + [1] * 4 + [2] * 2)
    train, val = load_example("bovw_classify").split(labels, 0.3, seed=0)
    assert sorted(np.concatenate([train, val])) == list(range(16))
    assert list(np.bincount(labels[val])) == [3, 1, 1]


def test_bovw_classify_needs_two_classes(tmp_path, load_example):
    (tmp_path / "only").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "only" / "a.png")
    with pytest.raises(ValueError, match="at least 2 classes; found 1"):
        load_example("bovw_classify").main([str(tmp_path)])
