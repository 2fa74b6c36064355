"""minidl.metrics: accuracy, top-k and confusion matrix against naive Python loops, the running
accumulator, Tensors accepted, shape validation."""
import numpy as np
import pytest

from minidl import backend as B
from minidl.autograd import Tensor
from minidl.metrics import RunningMetrics, accuracy, confusion_matrix, topk_correct

N, C = 50, 6


@pytest.fixture
def data(xp, rng):
    logits = rng.standard_normal((N, C))
    labels = rng.integers(0, C, N)
    labels[:20] = logits[:20].argmax(axis=1)  # some right answers
    return logits, labels, xp.asarray(logits), xp.asarray(labels)


def naive_topk(logits, labels, k):
    return sum(int(labels[i] in sorted(range(C), key=lambda c: -logits[i, c])[:k])
               for i in range(len(labels)))


def test_accuracy_matches_a_loop(data):
    logits, labels, dl, dlab = data
    want = sum(int(np.argmax(logits[i]) == labels[i]) for i in range(N)) / N
    got = accuracy(dl, dlab)
    assert isinstance(got, float) and got == pytest.approx(want) and got >= 20 / N
    assert accuracy(Tensor(dl), Tensor(dlab)) == got  # Tensors are unwrapped


@pytest.mark.parametrize("k", [1, 2, 3, C])
def test_topk_correct_matches_a_loop(data, k):
    logits, labels, dl, dlab = data
    got = topk_correct(dl, dlab, k)
    assert got.shape == ()  # a 0-d count, read back only when asked (NumPy: a scalar)
    assert int(B.to_host(got)) == naive_topk(logits, labels, k)
    if k == C:
        assert int(B.to_host(got)) == N


def test_confusion_matrix_matches_a_loop(data):
    logits, labels, dl, dlab = data
    want = np.zeros((C, C), dtype=np.int64)
    for i in range(N):
        want[labels[i], np.argmax(logits[i])] += 1
    got = confusion_matrix(dl, dlab, C)
    assert B.is_array(got)
    np.testing.assert_array_equal(B.to_host(got), want)
    assert np.trace(want) / N == pytest.approx(accuracy(dl, dlab))


def test_running_metrics_over_batches_equals_the_whole(data):
    logits, labels, dl, dlab = data
    run = RunningMetrics(num_classes=C, topk=(1, 3))
    for lo in range(0, N, 16):
        sl = slice(lo, lo + 16)
        run.update(dl[sl], dlab[sl], float(len(labels[sl])) * 0.5)
    res = run.result()
    assert run.count == N
    assert res["loss"] == pytest.approx(0.5)
    assert res["accuracy"] == pytest.approx(accuracy(dl, dlab))
    assert res["top3_accuracy"] == pytest.approx(naive_topk(logits, labels, 3) / N)
    assert isinstance(res["confusion_matrix"], np.ndarray)
    np.testing.assert_array_equal(res["confusion_matrix"],
                                  B.to_host(confusion_matrix(dl, dlab, C)))


def test_empty_running_metrics_is_zero():
    assert RunningMetrics().result() == {"loss": 0.0, "accuracy": 0.0}


def test_metrics_validate_shapes(xp):
    logits = xp.asarray(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"logits must be 2-D \(N, C\), got shape \(4,\)"):
        accuracy(xp.asarray(np.zeros(4)), xp.asarray(np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\), got \(4, 1\)"):
        topk_correct(logits, xp.asarray(np.zeros((4, 1), np.int64)), 2)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\), got \(3,\)"):
        confusion_matrix(logits, xp.asarray(np.zeros(3, np.int64)), 3)


def test_metrics_refuse_mixed_devices_strict():
    logits = B.to_device(np.zeros((2, 3)), "strict")
    with pytest.raises(B.DeviceMismatchError, match="different devices"):
        topk_correct(logits, np.zeros(2, np.int64))


def test_topk_breaks_ties_like_argmax(xp):
    """All-equal logits: argmax picks class 0, so top-1 counts label 0 only and top-2 counts
    labels 0 and 1 -- the same rule for every k."""
    logits = xp.zeros((4, 5), dtype=xp.float32)
    labels = xp.asarray(np.array([0, 1, 2, 4]))
    assert int(topk_correct(logits, labels, 1)) == 1
    assert int(topk_correct(logits, labels, 2)) == 2
    assert int(topk_correct(logits, labels, 5)) == 4
    with pytest.raises(ValueError, match="topk_correct: k must be a positive int, got 0"):
        topk_correct(logits, labels, 0)
