"""Train the MLP with fit() over the same samples: run under ``mpiexec -n 2`` (each rank a
local batch of 64) or alone (batch 128); rank 0 writes the parameters and the per-epoch
metrics to OUT.npz.  Usage: equivalence.py OUT.npz OPTIMIZER (sgd | adam) [blocking]
(blocking: fit(..., overlap=False), the gradients averaged after backward)"""
import sys

import numpy as np

from common import mlp, setup, synthetic
from minidl import distributed
from minidl.data import DataLoader
from minidl.optim import SGD, Adam, OneCycleLR
from minidl.train import fit

out, which = sys.argv[1], sys.argv[2]
overlap = sys.argv[3:] != ["blocking"]
finishes = []   # the overlapped path must really be the one taken
_finish = distributed.Reducer.finish
distributed.Reducer.finish = lambda self: (finishes.append(1), _finish(self))[1]
setup(seed=distributed.rank())     # rank 1 starts from other weights: the broadcast must fix it
x, y = synthetic()                 # 389 samples: batches 128, 128, 128 and a last one of 5
train = DataLoader(x, y, batch_size=128, shuffle=True, seed=3, shard=True)
test = DataLoader(x[:200], y[:200], batch_size=100, shard=True)
model = mlp()
opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3) \
    if which == "sgd" else Adam(model.parameters(), lr=3e-3)
sched = OneCycleLR(opt, max_lr=opt.lr, total_steps=3 * len(train))
history = fit(model, train, opt, epochs=3, val_loader=test, scheduler=sched,
              scheduler_per_batch=True, num_classes=4, progress=False, overlap=overlap)
if distributed.is_main():
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        state["metric." + key] = np.array(history.column(key))
    state["metric.confusion"] = np.asarray(history.confusion_matrix, np.float64)
    state["world"] = np.array(distributed.world_size())
    state["reducer_steps"] = np.array(len(finishes))
    np.savez(out, **state)
