"""Usage: faults.py raise | mismatch.  ``raise``: rank 1's loss raises at its third batch while
rank 0 waits in the gradient allreduce.  ``mismatch``: rank 1 builds a wider model."""
import sys

from common import mlp, setup, synthetic
from minidl import distributed
from minidl.data import DataLoader
from minidl.functions import softmax_cross_entropy
from minidl.optim import SGD
from minidl.train import fit

setup()
calls = []


def loss_fn(logits, y, **kw):
    calls.append(1)
    if sys.argv[1] == "raise" and distributed.rank() == 1 and len(calls) == 3:
        raise ValueError("rank one fails on purpose at batch 3")
    return softmax_cross_entropy(logits, y, **kw)


x, y = synthetic()
model = mlp(hidden=48 if sys.argv[1] == "mismatch" and distributed.rank() == 1 else 32)
fit(model, DataLoader(x, y, batch_size=64, shard=True), SGD(model.parameters(), lr=0.1),
    epochs=50, loss_fn=loss_fn, progress=False)
print("finished without error")
