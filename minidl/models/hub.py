"""Pre-trained ImageNet weights: download once (verified, cached), then load into minidl.

    >>> from minidl.models.hub import pretrained
    >>> model = pretrained("resnet50")                       # torchvision's weights
    >>> model = pretrained("resnet50", source="keras")       # Keras's (ResNet v1, "caffe" input)
    >>> model = pretrained("inception_v3", weights="iv3.h5") # offline: a file you have

:func:`pretrained` returns the architecture that fits the weight source (torchvision's
:func:`~minidl.models.resnet50`, or Keras's :func:`~minidl.models.keras_resnet.keras_resnet50`)
in eval mode, with the weights loaded; :func:`preprocessing` says how to prepare its input
(:func:`minidl.data.imagenet.preprocess`).  :func:`weights_file` only finds or downloads the file.

Where a file is looked for, in this order (:func:`minidl.data.download.fetch`, as for MNIST):
``data_dir`` (the file in it, or in ``data_dir/models/``), ``$MINIDL_DATA/models/``, the cache
``<cache>/models/`` (``$MINIDL_CACHE``, else ``$XDG_CACHE_HOME/minidl``, else
``~/.cache/minidl``); otherwise it is downloaded into the cache with a progress bar, to a
temporary file that is verified and only then renamed into place, so an interrupted or wrong
download never leaves a file behind.  Offline, the error lists every place tried.

Verification (:data:`WEIGHTS`): torchvision names its files by the first 8 hex digits of their
SHA-256 (``resnet50-0676ba61.pth``), which torch.hub checks; the full digests could not be
computed here (no internet on the machine this was written on), so minidl checks those 8
digits, as torch.hub does, and records no full digest it has not verified.  Keras publishes
the MD5s of its files (``keras.applications``' ``file_hash``), which are checked in full.
Class names are offline in the package (:func:`minidl.data.imagenet.imagenet_classes`).
"""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

from minidl.data.checksums import SHA256
from minidl.data.download import default_cache_dir, fetch
from minidl.models import get_model

__all__ = ["WeightFile", "WEIGHTS", "SOURCES", "weights_file", "pretrained", "build",
           "load", "source_of", "preprocessing"]

SOURCES = ("torchvision", "keras")
_TV = "https://download.pytorch.org/models/"
_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class WeightFile:
    """One published weight file: where it is and what it must hash to.

    ``sha256`` is the full hex digest or a verified prefix (``SHA256`` says which);
    ``md5`` is used where the publisher gives an MD5 only (Keras)."""
    arch: str
    source: str
    url: str
    sha256: str = ""
    md5: str = ""

    @property
    def filename(self) -> str:
        return self.url.rpartition("/")[2]

    def checksum(self):
        return SHA256(self.sha256) if self.sha256 else (self.md5,)


def _tv(arch, name, prefix):
    return WeightFile(arch, "torchvision", _TV + name, sha256=prefix)


WEIGHTS = {(w.arch, w.source): w for w in (
    # torchvision IMAGENET1K_V1 files; the hash in the name is the SHA-256's first 8 digits
    _tv("resnet18", "resnet18-f37072fd.pth", "f37072fd"),
    _tv("resnet34", "resnet34-b627a593.pth", "b627a593"),
    _tv("resnet50", "resnet50-0676ba61.pth", "0676ba61"),
    _tv("resnet101", "resnet101-63fe2227.pth", "63fe2227"),
    _tv("resnet152", "resnet152-394f9c45.pth", "394f9c45"),
    _tv("alexnet", "alexnet-owt-7be5be79.pth", "7be5be79"),
    _tv("inception_v3", "inception_v3_google-0cc3c7bd.pth", "0cc3c7bd"),
    _tv("googlenet", "googlenet-1378be20.pth", "1378be20"),
    # Keras applications: MD5s from keras.applications.resnet / inception_v3 (Keras 3.15)
    WeightFile("resnet50", "keras",
               _KERAS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
               md5="2cb95161c43110f7111970584f804107"),
    WeightFile("inception_v3", "keras",
               _KERAS + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
               md5="9a0d58056eeedaa3f26cb7ebd46da564"),
)}


def _entry(arch: str, source: str) -> WeightFile:
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if (arch, source) not in WEIGHTS:
        have = sorted(a for a, s in WEIGHTS if s == source)
        raise ValueError(f"no {source} weights for {arch!r}; {source} has: {', '.join(have)}")
    return WEIGHTS[(arch, source)]


def source_of(path) -> str:
    """The weight source a file's name says: ``.h5`` -> "keras", anything else ->
    "torchvision" (``.pth``, and minidl's ``.npz`` / ``.safetensors`` in torchvision's layout)."""
    return "keras" if os.fspath(path).lower().endswith((".h5", ".hdf5")) else "torchvision"


def build(arch: str, source: str = "torchvision"):
    """The architecture ``arch`` as ``source`` builds it, with random weights."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "keras":
        from minidl.models.keras_inception import keras_inception_v3
        from minidl.models.keras_resnet import keras_resnet50
        builders = {"resnet50": keras_resnet50, "inception_v3": keras_inception_v3}
        if arch not in builders:
            raise ValueError(f"no Keras architecture {arch!r}; Keras weights exist for "
                             f"{', '.join(sorted(builders))}")
        return builders[arch]()
    # torchvision's Inception-v3 and GoogLeNet weights (ported from TensorFlow) expect the
    # ImageNet-normalised input re-mapped inside the model, as torchvision sets it for them
    transform = arch in ("inception_v3", "googlenet")
    return get_model(arch, **({"transform_input": True} if transform else {}))


def preprocessing(arch: str, source: str = "torchvision") -> dict:
    """Keyword arguments of :func:`minidl.data.imagenet.preprocess` for this model's input:
    ``resize``, ``crop`` and ``mode`` (see :func:`minidl.data.imagenet.preset`)."""
    from minidl.data.imagenet import preset
    return preset(arch, source)


def load(model, path, source: str | None = None):
    """Load the weight file ``path`` into ``model``: a Keras ``.h5`` through
    :func:`minidl.models.keras.load_keras_weights`, anything else through
    :func:`minidl.convert.load_weights`.  Returns the model."""
    source = source or source_of(path)
    if source == "keras":
        from minidl.models.keras import load_keras_weights
        return load_keras_weights(model, path)
    from minidl.convert import load_weights
    load_weights(model, os.fspath(path))
    return model


def weights_file(arch: str, source: str = "torchvision", *, data_dir=None, cache_dir=None,
                 download: bool = True, progress: bool = True, timeout: float = 30.0,
                 url: str | None = None, stream=None) -> pathlib.Path:
    """The local path of ``arch``'s ``source`` weights, found (see the module doc) or
    downloaded and verified.  ``url`` replaces the published address (a mirror, a test
    server); the file name and checksum stay the table's.

    Raises :class:`~minidl.data.download.DatasetNotFoundError` (nowhere found and not
    downloadable: the message lists every place and URL tried) or
    :class:`~minidl.data.checksums.ChecksumError` (a local copy with the wrong digest).
    """
    entry = _entry(arch, source)
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir is not None \
        else default_cache_dir()
    hint = [f"To use the file offline, get {entry.url} (e.g. on a machine with internet) and "
            "either",
            "  * pass its path: pretrained(..., weights=FILE) (classify_image.py --weights "
            "FILE),",
            "  * pass its folder: data_dir=FOLDER, or set MINIDL_DATA=ROOT with it in "
            "ROOT/models/, or",
            f"  * copy it into the cache folder {cache / 'models'}/ (set MINIDL_CACHE to use "
            "another cache)."]
    return fetch(entry.filename, subdir="models", mirrors=[url or entry.url],
                 md5s=entry.checksum(), data_dir=data_dir, cache_dir=cache, download=download,
                 progress=progress, timeout=timeout, what=f"{arch} ({source}) weights",
                 stream=stream, hint=hint)


def pretrained(arch: str, source: str | None = None, *, weights=None, **fetch_kwargs):
    """``arch`` (e.g. "resnet50", "inception_v3") built as ``source`` ("torchvision", the
    default, or "keras") builds it, with its ImageNet weights loaded, in eval mode.

    ``weights``: a local file to use instead of the published one (then ``source`` defaults
    to what its name says, :func:`source_of`); other keywords go to :func:`weights_file`
    (``data_dir``, ``cache_dir``, ``download``, ``progress``, ...).
    """
    if source is None:
        source = source_of(weights) if weights is not None else "torchvision"
    if weights is None:
        weights = weights_file(arch, source, **fetch_kwargs)
    elif fetch_kwargs:
        raise TypeError(f"pretrained: {', '.join(fetch_kwargs)} apply to downloads, not to "
                        "an explicit weights file")
    model = build(arch, source)
    return load(model, weights, source).eval()
