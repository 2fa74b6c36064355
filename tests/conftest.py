"""One test suite, every backend.

Tests that take the ``xp`` fixture (or ``backend``) run once per backend: NumPy, the strict
CuPy stand-in (``minidl.testing.strict``), and real CuPy when a GPU is present (skipped
otherwise, with the reason).  Inside such a test the backend is active, so layers create their
parameters there and ``minidl.to_device`` moves data there.
"""
import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest

from minidl import backend as B

BACKENDS = ["numpy", "strict", "cupy"]


def _cupy_skip_reason():
    try:
        B._get("cupy")
    except B.BackendUnavailableError as exc:
        return str(exc)
    return None


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The active :class:`minidl.backend.Backend` for this test (parametrized over all)."""
    name = request.param
    if name == "cupy":
        reason = _cupy_skip_reason()
        if reason:
            pytest.skip(f"real CuPy not usable here: {reason}")
    with B.use_backend(name) as b:
        yield b


@pytest.fixture
def xp(backend):
    """The active backend's array namespace (numpy, strict, or cupy)."""
    return backend.xp


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seeds, the default dtype and the backend it found; a
    test that switches backends for good (an example's ``--backend strict``) cannot leak its
    choice into the next test."""
    active = B.get_backend().name
    B.seed(0)
    B.set_default_dtype(np.float32)
    yield
    B.set_default_dtype(np.float32)
    B.use_backend(active)


@pytest.fixture
def rng():
    """A seeded host Generator for test data."""
    return np.random.default_rng(1234)


def _data_root():
    root = os.environ.get("MINIDL_DATA")
    return pathlib.Path(root) if root else None


@pytest.fixture
def data_dir():
    """The shared data folder (``$MINIDL_DATA``), or a skip with the reason."""
    root = _data_root()
    if root is None or not root.is_dir():
        pytest.skip("real data not available: set MINIDL_DATA to a folder holding mnist/, "
                    "fashion-mnist/ and images/ (CI uses ../shared/data)")
    return root


@pytest.fixture
def images_dir(data_dir):
    d = data_dir / "images"
    if not d.is_dir():
        pytest.skip(f"no images/ folder under MINIDL_DATA={data_dir}")
    return d


EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load_example(name: str):
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package);
    their folder is on ``sys.path`` while it runs, so that they can import ``_cli``."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@pytest.fixture
def load_example():
    """``load_example("mnist_cnn")`` -> the example's module, to call its ``main(argv)``."""
    return _load_example
