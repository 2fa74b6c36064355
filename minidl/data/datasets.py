"""MNIST and Fashion-MNIST as host NumPy arrays.

::

    x_train, y_train = load_mnist("train")      # uint8 (60000, 28, 28), uint8 (60000,)
    x_test, y_test = load_fashion_mnist("test")  # uint8 (10000, 28, 28), uint8 (10000,)
    FASHION_MNIST_CLASSES[y_test[0]]             # 'Ankle boot'

The IDX files are looked for in ``data_dir``, ``$MINIDL_DATA/<name>/`` and the user cache, and
otherwise downloaded from the mirrors below (see :func:`minidl.data.download.fetch`).  Every file
is MD5-checked: the official ``.gz`` checksums and the checksums of the uncompressed payloads are
both accepted, so re-compressed or uncompressed copies of the official data work too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy

from minidl.data.download import DatasetNotFoundError, fetch
from minidl.data.idx import read_idx

__all__ = ["load_mnist", "load_fashion_mnist", "load_dataset", "MNIST", "FashionMNIST",
           "DatasetInfo", "MNIST_INFO", "FASHION_MNIST_INFO", "MNIST_CLASSES",
           "FASHION_MNIST_CLASSES", "MNIST_MIRRORS", "FASHION_MNIST_MIRRORS", "SPLITS"]

SPLITS = ("train", "test")

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@dataclass(frozen=True)
class DatasetInfo:
    """What is needed to find, download and check one IDX image data set.

    Attributes
    ----------
    name : a human-readable name for messages ("MNIST").
    subdir : the folder name under ``$MINIDL_DATA`` and the cache ("mnist").
    mirrors : base URLs, tried in order.
    md5s : file name -> accepted MD5s (of the ``.gz`` file or of its uncompressed payload).
    classes : the class names, indexed by label.
    sizes : split -> number of images.
    image_shape : the shape of one image.
    """

    name: str
    subdir: str
    mirrors: tuple[str, ...]
    md5s: dict
    classes: tuple[str, ...]
    sizes: dict
    image_shape: tuple[int, ...] = (28, 28)


MNIST_INFO = DatasetInfo(
    name="MNIST", subdir="mnist", mirrors=MNIST_MIRRORS, classes=MNIST_CLASSES,
    sizes={"train": 60000, "test": 10000},
    md5s={  # (official .gz MD5, uncompressed payload MD5)
        "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                       "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432",
                                       "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3",
                                      "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c",
                                      "27ae3e4e09519cfbb04c329615203637"),
    })

FASHION_MNIST_INFO = DatasetInfo(
    name="Fashion-MNIST", subdir="fashion-mnist", mirrors=FASHION_MNIST_MIRRORS,
    classes=FASHION_MNIST_CLASSES, sizes={"train": 60000, "test": 10000},
    md5s={  # (official .gz MD5, uncompressed payload MD5)
        "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                       "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe",
                                       "9018921c3c673c538a1fc5bad174d6f9"),
        "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79",
                                      "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310",
                                      "15d484375f8d13e6eb1aabb0c3f46965"),
    })


def _check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _validate(images: numpy.ndarray, labels: numpy.ndarray, info: DatasetInfo, split: str,
              sources) -> None:
    where = f"{info.name} {split} ({sources[0]}, {sources[1]})"
    if images.dtype != numpy.uint8 or images.ndim != 1 + len(info.image_shape) \
            or images.shape[1:] != info.image_shape:
        dims = ", ".join(map(str, info.image_shape))
        raise ValueError(f"{where}: images must be uint8 (N, {dims}), got {images.dtype} "
                         f"{images.shape}")
    if labels.dtype != numpy.uint8 or labels.ndim != 1:
        raise ValueError(f"{where}: labels must be uint8 (N,), got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels; "
                         "expected equal counts (are the files from the same split?)")
    expected = info.sizes.get(split)
    if expected is not None and images.shape[0] != expected:
        raise ValueError(f"{where}: expected {expected} samples in the {split} split, found "
                         f"{images.shape[0]} (are these the {info.name} {split} files?)")
    if labels.size and int(labels.max()) >= len(info.classes):
        raise ValueError(f"{where}: labels must be in [0, {len(info.classes) - 1}], found "
                         f"{int(labels.max())}")


def load_dataset(info: DatasetInfo, split: str = "train", data_dir=None, download: bool = True,
                 *, mirrors=None, cache_dir=None, progress: bool = True
                 ) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Load one split of an IDX image data set described by ``info``.

    Parameters
    ----------
    info : DatasetInfo
    split : "train" or "test"
    data_dir : str, os.PathLike or None
        A folder to look in first (the files directly in it, or under ``<info.subdir>/``).
    download : bool
        Download missing files from the mirrors (into the user cache).
    mirrors : sequence of str or None
        Base URLs to download from instead of ``info.mirrors``.
    cache_dir : str, os.PathLike or None
        The cache root instead of :func:`minidl.data.download.default_cache_dir`.
    progress : bool
        Show download progress on stderr.

    Returns
    -------
    images : numpy.ndarray, uint8 (N, H, W), host memory.
    labels : numpy.ndarray, uint8 (N,), values in ``[0, len(info.classes))``.

    Raises
    ------
    ValueError
        ``split`` is not "train"/"test", or the files are inconsistent.
    minidl.data.download.DatasetNotFoundError
        Some files are nowhere and cannot be downloaded: the message names every missing file
        of the split (``.missing``) and says where it looked.  Once one download has failed,
        the other files are only looked for locally (the network is not tried again).
    minidl.data.checksums.ChecksumError
        A local copy is damaged.
    """
    split = _check_split(split)
    paths, errors = [], []
    for name in _FILES[split]:
        try:
            paths.append(fetch(name, subdir=info.subdir,
                               mirrors=info.mirrors if mirrors is None else mirrors,
                               md5s=info.md5s.get(name), data_dir=data_dir, cache_dir=cache_dir,
                               download=download and not errors, progress=progress,
                               what=info.name))
        except DatasetNotFoundError as exc:
            errors.append(exc)
    if errors:
        raise _all_missing(info, split, errors, download)
    images, labels = (read_idx(p) for p in paths)
    _validate(images, labels, info, split, paths)
    return images, labels


def _all_missing(info: DatasetInfo, split: str, errors: list, download: bool
                 ) -> DatasetNotFoundError:
    """One error naming every missing file of the split, with the first one's details."""
    missing = [e.filename for e in errors]
    lines = [f"{info.name} {split} split: {len(missing)} of {len(_FILES[split])} files missing: "
             + ", ".join(repr(m) for m in missing), str(errors[0])]
    if len(errors) > 1:
        lines.append("The other missing files were looked for in the same folders"
                     + (" (not downloaded: the first download had already failed)."
                        if download else "."))
    tried = [t for e in errors for t in e.tried]
    return DatasetNotFoundError("\n".join(lines), missing[0], tried, missing)


def load_mnist(split: str = "train", data_dir=None, download: bool = True, **kwargs
               ) -> tuple[numpy.ndarray, numpy.ndarray]:
    """MNIST handwritten digits: ``(images uint8 (N, 28, 28), labels uint8 (N,))`` on the host.

    N is 60000 for ``split="train"`` and 10000 for ``"test"``; labels are the digits 0-9.
    Other arguments as in :func:`load_dataset` (``mirrors``, ``cache_dir``, ``progress``).
    """
    return load_dataset(MNIST_INFO, split, data_dir, download, **kwargs)


def load_fashion_mnist(split: str = "train", data_dir=None, download: bool = True, **kwargs
                       ) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Fashion-MNIST (Zalando): ``(images uint8 (N, 28, 28), labels uint8 (N,))`` on the host.

    N is 60000 for ``split="train"`` and 10000 for ``"test"``; label ``k`` is the garment
    ``FASHION_MNIST_CLASSES[k]``.  Other arguments as in :func:`load_dataset`.
    """
    return load_dataset(FASHION_MNIST_INFO, split, data_dir, download, **kwargs)


class MNIST:
    """One split of MNIST as an indexable data set.

    Parameters
    ----------
    split, data_dir, download, **kwargs
        As in :func:`load_mnist`.

    Attributes
    ----------
    images : numpy.ndarray, uint8 (N, 28, 28).
    labels : numpy.ndarray, uint8 (N,).
    classes : tuple of str, the class names indexed by label.
    split : str.

    ``len(ds)`` is N; ``ds[i]`` is ``(image uint8 (28, 28), label int)`` (a slice or index
    array gives ``(images, labels)``).  ``DataLoader(ds.images, ds.labels)`` makes batches.
    """

    info = MNIST_INFO

    def __init__(self, split: str = "train", data_dir=None, download: bool = True, **kwargs):
        self.split = _check_split(split)
        self.images, self.labels = load_dataset(self.info, split, data_dir, download, **kwargs)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index):
        if isinstance(index, (int, numpy.integer)):
            return self.images[index], int(self.labels[index])
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, n={len(self)}, "
                f"image_shape={self.images.shape[1:]})")


class FashionMNIST(MNIST):
    """One split of Fashion-MNIST; the same interface as :class:`MNIST`."""

    info = FASHION_MNIST_INFO
