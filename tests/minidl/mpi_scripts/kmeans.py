"""k-means over rows split between the ranks (or all in one process): rank 0 writes the
centres and inertia to OUT.npz.  Usage: kmeans.py OUT.npz"""
import sys

import numpy as np

from minidl import distributed
from minifeat.kmeans_distributed import kmeans_distributed

rng = np.random.default_rng(1)
centres = rng.standard_normal((6, 8)) * 5
X = np.concatenate([c + rng.standard_normal((300, 8)) for c in centres])
X = X[rng.permutation(len(X))]
r, n = distributed.rank(), distributed.world_size()
cut = np.linspace(0, len(X), n + 1).astype(int)
km = kmeans_distributed(X[cut[r]:cut[r + 1]], 6, init_sample=500, tol=0, max_iter=50)
if distributed.is_main():
    np.savez(sys.argv[1], centers=km.cluster_centers_, inertia=km.inertia_,
             history=np.array(km.inertia_history_), n_iter=km.n_iter_)
