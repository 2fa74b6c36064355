"""A bag-of-words vocabulary from the PNG images of a folder, their SIFT extraction split
between the ranks (or all in one process): rank 0 writes the vocabulary, the per-image
descriptor counts gathered back, and which images each rank extracted to OUT.npz; every rank
checks that it holds rank 0's vocabulary.  Usage: bovw_vocabulary.py FOLDER OUT.npz"""
import pathlib
import sys

import numpy as np

from minidl import distributed
from minifeat import SIFT, BagOfWords
from minifeat.bovw_distributed import allgather_rows, fit_vocabulary_from_images
from minifeat.io import load_image

folder, out = pathlib.Path(sys.argv[1]), sys.argv[2]
paths = sorted(folder.glob("*.png"))
extracted = []


def extract(path):
    extracted.append(path.name)
    return np.asarray(SIFT(n_features=60).detect_and_compute(load_image(path))[1])


bow = BagOfWords(8, seed=3, max_descriptors=60, init_sample=40, max_iter=30)   # samples 60
bow, mine, feats = fit_vocabulary_from_images(bow, paths, extract, tol=0)
assert [p.name for p in (paths[i] for i in mine)] == extracted   # only its own share
counts = allgather_rows(np.array([[len(f)] for f in feats]), len(paths))[:, 0]
ranks = allgather_rows(np.full((len(mine), 1), distributed.rank()), len(paths))[:, 0]
vocab = np.asarray(bow.vocabulary_)
first = vocab.copy()
distributed.broadcast_([first])
assert np.array_equal(first, vocab), f"rank {distributed.rank()} has another vocabulary"
if distributed.is_main():
    np.savez(out, vocabulary=vocab, counts=counts, ranks=ranks, sigma=bow.soft_sigma_,
             world=distributed.world_size())
