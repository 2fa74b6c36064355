"""examples/bovw_search.py on a small folder of warped copies of real photos: the query's own
photo comes first, the saved index is reused, and the pictures are written."""
import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def photos(images_dir, tmp_path):
    from benchmarks.bench_retrieval import load_grey, warp
    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("building.jpg", "butterfly.jpg", "fruits.jpg", "baboon.jpg"):
        grey = load_grey(images_dir / name, 200)
        for k in range(2):
            Image.fromarray(warp(grey, rng)).save(folder / ("sub" if k else "") /
                                                  f"{name[:-4]}_{k}.png")
    query = tmp_path / "query.png"
    Image.fromarray(warp(load_grey(images_dir / "fruits.jpg", 200), rng)).save(query)
    return folder, query


def test_bovw_search_finds_the_same_photo(photos, tmp_path, capsys, load_example):
    folder, query = photos
    ex = load_example("bovw_search")
    args = [str(folder), str(query), "--index", str(tmp_path / "i.npz"), "--vocab", "150",
            "--max-size", "200", "--n-features", "300", "--top", "3", "--verify", "4",
            "--out", str(tmp_path / "out" / "results.png")]
    assert ex.main(args) == 0
    text = capsys.readouterr().out
    assert "indexed 8 photos" in text and "saved" in text
    ranks = [line.split() for line in text.splitlines() if line[:4].strip().isdigit()]
    assert len(ranks) == 3
    assert "fruits_" in ranks[0][3] and int(ranks[0][2]) >= 12   # verified
    assert (tmp_path / "out" / "results.png").is_file()
    assert (tmp_path / "out" / "matches.png").is_file()
    # the second run reuses the saved index
    assert ex.main(args[:-2] + ["--verify", "0", "--out", str(tmp_path / "r0.png")]) == 0
    text = capsys.readouterr().out
    assert "loaded" in text and "indexed" not in text
    assert [line.split() for line in text.splitlines()
            if line[:4].strip().isdigit()][0][3].split("/")[-1].startswith("fruits_")


def test_bovw_search_empty_folder_is_a_clear_error(tmp_path, load_example):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_example("bovw_search").main([str(tmp_path / "empty"), "q.png"])
