"""Train a small CNN with batch norm (conv -> SyncBatchNorm2d -> relu -> pool -> linear ->
SyncBatchNorm1d -> relu -> linear) with fit(): under ``mpiexec -n 2`` (each rank a local
batch of 64) or alone (batch 128); rank 0 writes the parameters, the running statistics and
the per-epoch metrics to OUT.npz.
Usage: equivalence_bn.py OUT.npz OPTIMIZER (sgd | adam) [plain]; ``plain`` keeps per-rank
BatchNorm (the control: it must NOT match one process).

389 samples with drop_last: three global batches of 128.  (An uneven last batch -- 3 + 2 --
is averaged with weights n_r / n by fit, which a synchronised batch norm's cross-rank terms
do not follow: see docs/distributed.md.)"""
import sys

import numpy as np

from common import setup
from minidl import distributed
from minidl import layers as L
from minidl.data import DataLoader
from minidl.distributed.sync_batchnorm import convert_sync_batchnorm
from minidl.optim import SGD, Adam, OneCycleLR
from minidl.train import fit

out, which = sys.argv[1], sys.argv[2]
setup(seed=distributed.rank())     # rank 1 starts from other weights: the broadcast must fix it
rng = np.random.default_rng(11)
x = rng.standard_normal((389, 2, 6, 6)) * 2 + 0.5
w = rng.standard_normal((2 * 6 * 6, 4))
y = np.argmax(x.reshape(len(x), -1) @ w + 0.5 * rng.standard_normal((len(x), 4)), axis=1)
train = DataLoader(x, y, batch_size=128, shuffle=True, seed=3, shard=True, drop_last=True)
test = DataLoader(x[:200], y[:200], batch_size=100, shard=True)
model = L.Sequential(
    L.Conv2d(2, 6, 3, padding=1), L.BatchNorm2d(6), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
    L.Linear(6 * 3 * 3, 16), L.BatchNorm1d(16), L.ReLU(), L.Linear(16, 4))
if sys.argv[3:] != ["plain"]:
    model = convert_sync_batchnorm(model)
opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3) \
    if which == "sgd" else Adam(model.parameters(), lr=3e-3)
sched = OneCycleLR(opt, max_lr=opt.lr, total_steps=3 * len(train))
history = fit(model, train, opt, epochs=3, val_loader=test, scheduler=sched,
              scheduler_per_batch=True, num_classes=4, progress=False)
if distributed.is_main():
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        state["metric." + key] = np.array(history.column(key))
    state["world"] = np.array(distributed.world_size())
    np.savez(out, **state)
