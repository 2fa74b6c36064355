"""One training run for the resume tests (one process, or several under mpiexec).

Usage: resume_run.py MODE CKPT OUT [K]
  full       train 3 epochs, write the final parameters to OUT
  kill       the same, saving the state after every batch to CKPT; SIGKILL itself in batch K
  killwrite  the same, but SIGKILLed in the middle of writing the K-th checkpoint
  resume     continue from CKPT (saving there again), write the final parameters to OUT

Randomness from every source a resume must restore: the loader's shuffling (minidl's host
Generator), a noise transform (the same), dropout (the device Generator), Adam's state and a
one-cycle schedule."""
import os
import signal
import sys

import numpy as np

from common import setup, synthetic
import minidl
from minidl import distributed
from minidl import layers as L
from minidl.data import DataLoader
from minidl.functions import softmax_cross_entropy
from minidl.optim import Adam, OneCycleLR
from minidl.train import fit

mode, ckpt, out = sys.argv[1:4]
k = int(sys.argv[4]) if len(sys.argv) > 4 else 0
setup(seed=5)
x, y = synthetic()


def noise(batch):
    return batch + 0.05 * minidl.backend.host_rng().standard_normal(batch.shape)


train = DataLoader(x, y, batch_size=64, shuffle=True, transform=noise, shard=True)
model = L.Sequential(L.Linear(20, 32), L.ReLU(), L.Dropout(0.3), L.Linear(32, 4))
opt = Adam(model.parameters(), lr=1e-2)
sched = OneCycleLR(opt, max_lr=1e-2, total_steps=3 * len(train))
calls = []


def loss_fn(logits, labels, **kw):
    calls.append(1)
    if mode == "kill" and len(calls) == k:
        os.kill(os.getpid(), signal.SIGKILL)
    return softmax_cross_entropy(logits, labels, **kw)


if mode == "killwrite":
    real_savez, saves = np.savez, []

    def savez(file, **arrays):
        saves.append(1)
        if len(saves) == k:   # half a file, then the process dies before the rename
            with open(file, "wb") as f:
                f.write(b"PK\x03\x04" + bytes(1000))
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return real_savez(file, **arrays)
    np.savez = savez

fit(model, train, opt, epochs=3, scheduler=sched, scheduler_per_batch=True, loss_fn=loss_fn,
    progress=mode == "resume", last_checkpoint=None if mode == "full" else ckpt,
    save_every=None if mode == "full" else 1, resume=ckpt if mode == "resume" else None)
if distributed.is_main():
    np.savez(out, **{n: np.asarray(v) for n, v in model.state_dict().items()},
             step=np.array(opt.step_count))
