"""examples/bovw_classify.py under ``mpiexec -n 2``: the SIFT extraction split between the
processes, the vocabulary fitted across them; it prints once and reports the accuracies of
one process."""
from __future__ import annotations

import pathlib

from test_bovw_classify_example import FAST, _accuracies, _make

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_two_processes_print_once_and_classify_like_one(images_dir, tmp_path, run_python):
    def _run(args, ranks=None):
        return run_python(ROOT / "examples" / "bovw_classify.py", *args, ranks=ranks,
                          timeout=180).stdout

    _make(images_dir, tmp_path / "d", {"butterfly": ["butterfly.jpg"],
                                       "other": ["fruits.jpg", "building.jpg"]}, 6)
    two = _run([tmp_path / "d", "--out", tmp_path / "o2"] + FAST, ranks=2)
    one = _run([tmp_path / "d", "--out", tmp_path / "o1"] + FAST)
    assert two.count("photos in 2 classes") == 1 and "(2 processes)" in two
    assert _accuracies(two) == _accuracies(one) and _accuracies(one)["linear"] >= 0.75
    assert (tmp_path / "o2" / "confusion_mlp.png").exists()
