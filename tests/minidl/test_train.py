"""minidl.train: fit on a tiny separable problem, History, divergence, early stopping,
keeping the best weights (in memory or as a checkpoint), evaluate."""
import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import optim
from minidl.autograd import Tensor, no_grad
from minidl.layers import Linear, ReLU, Sequential
from minidl.train import History, TrainingDivergedError, evaluate, fit

N_TRAIN, N_VAL, BATCH, CLASSES = 240, 90, 30, 3
CENTERS = np.array([[2.0, 0.0], [-1.0, 1.8], [-1.0, -1.8]])


def blobs(rng, n):
    """Three well-separated Gaussian blobs in 2-D: a linear model can get ~100%."""
    y = np.arange(n) % CLASSES
    x = CENTERS[y] + 0.4 * rng.standard_normal((n, 2))
    return x.astype(np.float32), y.astype(np.int64)


def loader(x, y, batch=BATCH):
    """A list of device batches: iterable, with len(), like minidl.data.DataLoader."""
    return [(Tensor(B.to_device(x[i:i + batch])), B.to_device(y[i:i + batch]))
            for i in range(0, len(y), batch)]


@pytest.fixture
def problem(xp, rng):
    return loader(*blobs(rng, N_TRAIN)), loader(*blobs(rng, N_VAL))


def model():
    return Sequential(Linear(2, 16), ReLU(), Linear(16, CLASSES))


def predictions(m, batches):
    with no_grad():
        return np.concatenate([minidl.to_host(m(x).data) for x, _ in batches])


def test_fit_reaches_high_accuracy_and_records_history(problem):
    train, val = problem
    m = model()
    seen = []
    h = fit(m, train, optim.SGD(m.parameters(), lr=0.1, momentum=0.9), epochs=4,
            val_loader=val, progress=False, target_accuracy=0.9, num_classes=CLASSES,
            on_epoch_end=seen.append)
    assert isinstance(h, History) and len(h.epochs) == 4 and seen == h.epochs
    assert h.column("epoch") == [1, 2, 3, 4]
    for r in h.epochs:
        assert set(r) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                          "seconds", "images_per_s", "elapsed"}
        assert r["lr"] == 0.1 and r["seconds"] > 0
    assert h.epochs[-1]["val_accuracy"] >= 0.95 and h.epochs[-1]["train_accuracy"] >= 0.9
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    assert h.column("elapsed") == sorted(h.column("elapsed"))
    assert h.time_to_target is not None and h.time_to_target <= h.epochs[-1]["elapsed"]
    assert h.best_value == max(h.column("val_accuracy")) and not h.stopped_early
    cm = h.confusion_matrix
    assert isinstance(cm, np.ndarray) and cm.shape == (CLASSES, CLASSES) and cm.sum() == N_VAL
    assert B.backend_of(m[0].W.data) is B.get_backend()  # training stayed on the device


def test_evaluate_matches_a_manual_pass_and_restores_the_mode(problem):
    _, val = problem
    m = model()
    res = evaluate(m, val, num_classes=CLASSES, topk=(1, 2))
    assert m.training  # put back as it was
    logits = predictions(m, val)
    y = np.concatenate([minidl.to_host(t) for _, t in val])
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    loss = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))).mean()
    assert res["loss"] == pytest.approx(loss, rel=1e-5)
    assert res["accuracy"] == pytest.approx((logits.argmax(axis=1) == y).mean())
    assert res["accuracy"] <= res["top2_accuracy"] <= 1.0
    assert res["confusion_matrix"].sum() == len(y)


def test_nan_loss_raises_a_clear_error(problem):
    train, _ = problem
    x, y = train[0]
    bad = [(Tensor(x.data * np.float32(np.nan)), y)]
    m = model()
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 1, batch 1: "
                                                    r"training diverged\. Lower the learning "
                                                    r"rate \(now 0\.5\)"):
        fit(m, bad, optim.SGD(m.parameters(), lr=0.5), epochs=2, progress=False, log_every=1)
    assert issubclass(TrainingDivergedError, FloatingPointError)


def test_early_stopping_when_the_monitor_stalls(problem, capsys):
    train, val = problem
    m = model()
    h = fit(m, train, optim.SGD(m.parameters(), lr=0.0), epochs=10, val_loader=val,
            monitor="val_loss", patience=2)  # lr 0: nothing improves after epoch 1
    assert h.stopped_early and len(h.epochs) == 3 and h.best_epoch == 1
    out = capsys.readouterr().out
    assert "early stop: val_loss has not improved for 2 epochs (best" in out
    assert "epoch 3: train loss" in out


@pytest.mark.parametrize("use_checkpoint", [True, False])
def test_the_best_weights_are_kept(problem, tmp_path, use_checkpoint):
    train, val = problem
    m = model()
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)

    def sabotage(record):  # after epoch 2, wreck the model and stop learning
        if record["epoch"] == 2:
            opt.lr = 0.0
            for p in m.parameters():
                p.data *= p.data.dtype.type(0)

    ckpt = tmp_path / "best.npz" if use_checkpoint else None
    h = fit(m, train, opt, epochs=4, val_loader=val, checkpoint=ckpt, progress=False,
            on_epoch_end=sabotage)
    assert h.best_epoch <= 2 and h.epochs[-1]["val_accuracy"] < 0.5
    res = evaluate(m, val)
    assert res["accuracy"] == h.best_value  # the model in hand is the best one again
    if use_checkpoint:
        fresh = model().load(ckpt)
        np.testing.assert_array_equal(predictions(fresh, val), predictions(m, val))


def test_monitor_falls_back_to_train_metrics_and_scheduler_steps(problem):
    train, _ = problem
    m = model()
    opt = optim.SGD(m.parameters(), lr=0.1)
    h = fit(m, train, opt, epochs=3, scheduler=optim.StepLR(opt, 1, gamma=0.5), progress=False)
    assert h.column("lr") == pytest.approx([0.1, 0.05, 0.025])
    assert "val_loss" not in h.epochs[0] and h.best_value == max(h.column("train_accuracy"))


def test_fit_rejects_bad_arguments(problem):
    train, _ = problem
    m = model()
    opt = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="fit: epochs must be a positive int, got 0"):
        fit(m, train, opt, epochs=0)
    with pytest.raises(ValueError, match="fit: monitor must be val_accuracy, val_loss, "
                                         "train_accuracy or train_loss, got 'acc'"):
        fit(m, train, opt, epochs=1, monitor="acc")
