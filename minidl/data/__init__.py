"""Data sets and mini-batches: MNIST and Fashion-MNIST from IDX files, a DataLoader, transforms.

::

    from minidl.data import DataLoader, RandomShift, load_mnist

    x_train, y_train = load_mnist("train")   # uint8 (60000, 28, 28), uint8 (60000,), host
    train = DataLoader(x_train, y_train, batch_size=128, shuffle=True, seed=0,
                       transform=RandomShift(2))
    for x, y in train:                       # float32 (128, 1, 28, 28) in [0, 1], int64 (128,)
        ...                                  # both on the active backend's device

Modules: :mod:`~minidl.data.idx` (the IDX file format), :mod:`~minidl.data.download` (finding
files locally or downloading them), :mod:`~minidl.data.checksums` (MD5/SHA-256 checks),
:mod:`~minidl.data.datasets` (MNIST, Fashion-MNIST), :mod:`~minidl.data.loader` (DataLoader),
:mod:`~minidl.data.transforms` (batches), :mod:`~minidl.data.image_transforms` (photos),
:mod:`~minidl.data.image_folder`.

Where the files come from, in order: ``data_dir``, ``$MINIDL_DATA/<mnist|fashion-mnist>/``, the
user cache (``$MINIDL_CACHE``, else ``~/.cache/minidl``), then the public mirrors.
"""
from minidl.data.datasets import (
    FASHION_MNIST_CLASSES, FASHION_MNIST_INFO, FASHION_MNIST_MIRRORS, MNIST, MNIST_CLASSES,
    MNIST_INFO, MNIST_MIRRORS, DatasetInfo, FashionMNIST, load_dataset, load_fashion_mnist,
    load_mnist,
)
from minidl.data.checksums import ChecksumError, verify_file
from minidl.data.download import DatasetNotFoundError, default_cache_dir, fetch
from minidl.data.idx import read_idx, write_idx
from minidl.data.image_folder import ImageFolder, ImageFolderLoader, open_rgb
from minidl.data.loader import DataLoader
from minidl.data.transforms import Compose, Normalize, RandomShift

__all__ = [
    "load_mnist", "load_fashion_mnist", "load_dataset", "MNIST", "FashionMNIST", "DatasetInfo",
    "MNIST_INFO", "FASHION_MNIST_INFO", "MNIST_CLASSES", "FASHION_MNIST_CLASSES",
    "MNIST_MIRRORS", "FASHION_MNIST_MIRRORS",
    "DataLoader", "RandomShift", "Normalize", "Compose",
    "read_idx", "write_idx", "ImageFolder", "ImageFolderLoader", "open_rgb",
    "fetch", "verify_file", "default_cache_dir", "DatasetNotFoundError", "ChecksumError",
]
