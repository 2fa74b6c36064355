"""minidl.backend: the switch, environment variable, device checks, transfers, dtype, seeds."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import functions as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cupy_usable():
    try:
        B._get("cupy")
    except B.BackendUnavailableError:
        return False
    return True


# --------------------------------------------------------------------------- the switch

def test_use_backend_plain_call_switches_for_good():
    before = B.get_backend().name
    other = "strict" if before != "strict" else "numpy"
    try:
        B.use_backend(other)
        assert B.get_backend().name == other
        assert B.get_xp() is B.get_backend().xp
        assert B.backend_of(minidl.tensor([1.0, 2.0])).name == other
    finally:
        B.use_backend(before)
    assert B.get_backend().name == before


def test_use_backend_as_context_manager_restores_even_on_error():
    before = B.get_backend().name
    with B.use_backend("strict") as b:
        assert b.name == "strict" and B.get_backend() is b
        with B.use_backend("numpy") as inner:
            assert inner.name == "numpy" and B.get_xp() is np
        assert B.get_backend().name == "strict"
    assert B.get_backend().name == before
    with pytest.raises(KeyError):
        with B.use_backend("strict"):
            raise KeyError("boom")
    assert B.get_backend().name == before


def test_use_backend_is_case_insensitive():
    with B.use_backend("NumPy") as b:
        assert b.name == "numpy"


def test_use_backend_rejects_unknown_and_non_str_names_without_switching():
    before = B.get_backend().name
    with pytest.raises(ValueError, match=r"backend must be one of \['cupy', 'numpy', 'strict'\], "
                                         r"got 'tpu'"):
        B.use_backend("tpu")
    with pytest.raises(TypeError, match="backend name must be a str, got int"):
        B.use_backend(3)
    assert B.get_backend().name == before


@pytest.mark.parametrize("value, expected", [
    (None, "numpy"), ("", "numpy"), ("  ", "numpy"), ("numpy", "numpy"), ("STRICT ", "strict"),
    ("cupy", "cupy"),
])
def test_initial_backend_name_reads_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(B.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(B.ENV_VAR, value)
    assert B._initial_backend_name() == expected


def test_check_environment_rejects_a_bad_value(monkeypatch):
    monkeypatch.setattr(B, "_active_name", "tpu")
    with pytest.raises(ValueError) as info:
        B.check_environment()
    msg = str(info.value)
    assert "MINIDL_BACKEND" in msg and "'tpu'" in msg and "'numpy'" in msg


@pytest.mark.parametrize("value, ok", [("strict", True), ("gpu0", False)])
def test_environment_variable_applies_at_import(value, ok):
    env = dict(os.environ, MINIDL_BACKEND=value, PYTHONPATH=REPO)
    code = "import minidl; print(minidl.get_backend().name)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == value
    else:
        assert proc.returncode != 0
        assert "ValueError" in proc.stderr and "MINIDL_BACKEND" in proc.stderr
        assert "'gpu0'" in proc.stderr


def test_cupy_without_a_gpu_says_what_is_missing():
    if _cupy_usable():
        pytest.skip("a usable GPU with CuPy is present")
    before = B.get_backend().name
    with pytest.raises(B.BackendUnavailableError) as info:
        B.use_backend("cupy")
    msg = str(info.value)
    if importlib.util.find_spec("cupy") is None:
        assert "not installed" in msg and "pip install" in msg
    else:
        assert "GPU" in msg and "sees none" in msg
    assert B.get_backend().name == before
    assert isinstance(info.value, RuntimeError)


def test_available_backends():
    names = B.available_backends()
    assert names[0] == "numpy" and "strict" in names
    assert ("cupy" in names) == _cupy_usable()


# --------------------------------------------------------------------------- array modules

def test_get_array_module_follows_the_arrays_not_the_active_backend(xp):
    host = np.zeros(3)
    strict_arr = B.to_device(host, "strict")
    assert B.get_array_module(host) is np
    assert B.get_array_module(strict_arr) is B._get("strict").xp
    assert B.get_array_module(minidl.Tensor(strict_arr)) is B._get("strict").xp
    # only scalars (or nothing): the active backend
    assert B.get_array_module() is xp
    assert B.get_array_module(1.0, np.float32(2)) is xp
    assert B.get_array_module(host, 2.0, np.int64(1)) is np


def test_backend_of_device_of_and_is_array():
    s = B.to_device(np.ones(2), "strict")
    assert B.backend_of(np.ones(2)).name == "numpy" and B.device_of(np.ones(2)) == "cpu"
    assert B.backend_of(s).name == "strict" and B.device_of(s) == "strict"
    for scalar in (1, 2.5, np.float32(1), True):
        assert B.backend_of(scalar) is None and B.device_of(scalar) == "scalar"
        assert not B.is_array(scalar)
    assert B.is_array(s) and B.is_array(np.ones(()))
    assert B.device_of(minidl.Tensor(s)) == "strict"


# --------------------------------------------------------------------------- transfers

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
@pytest.mark.parametrize("target", ["numpy", "strict"])
def test_to_device_to_host_round_trip(dtype, target):
    host = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    dev = B.to_device(host, target)
    assert B.backend_of(dev).name == target
    assert dev.shape == host.shape and dev.dtype == host.dtype
    back = B.to_host(dev)
    assert type(back) is np.ndarray and back.dtype == host.dtype
    np.testing.assert_array_equal(back, host)
    # and across: strict -> numpy -> strict
    other = "numpy" if target == "strict" else "strict"
    moved = B.to_device(dev, other)
    assert B.backend_of(moved).name == other
    np.testing.assert_array_equal(B.to_host(moved), host)


def test_to_device_defaults_to_the_active_backend_and_does_not_copy_in_place(xp):
    host = np.arange(3.0)
    dev = B.to_device(host)
    assert B.get_array_module(dev) is xp
    assert B.to_device(dev) is dev  # already there
    assert B.to_device([1.0, 2.0]).shape == (2,)
    t = minidl.Tensor(dev)
    assert B.to_device(t) is dev  # a Tensor is unwrapped
    np.testing.assert_array_equal(B.to_host(t), host)


def test_to_host_passes_numpy_arrays_and_scalars_through():
    a = np.ones(3)
    assert B.to_host(a) is a
    assert B.to_host(2.5) == 2.5


def test_to_device_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        B.to_device(np.ones(2), "tpu")


# --------------------------------------------------------------------------- device mismatch

def test_check_same_device_names_both_devices():
    host, dev = np.ones(2), B.to_device(np.ones(2), "strict")
    assert B.check_same_device(host, 1.0, host).name == "numpy"
    with pytest.raises(B.DeviceMismatchError) as info:
        B.check_same_device(host, 3, dev, names=("weights", "scale", "batch"), where="myop")
    msg = str(info.value)
    assert msg.startswith("myop: ")
    assert "weights is on cpu (numpy.ndarray)" in msg
    assert "batch is on strict" in msg
    assert "minidl.to_device" in msg
    assert isinstance(info.value, TypeError)


def test_a_function_mixing_numpy_and_strict_tensors_raises():
    a = minidl.Tensor(np.ones((2, 2), np.float32), requires_grad=True)
    b = minidl.Tensor(B.to_device(np.ones((2, 2), np.float32), "strict"))
    for op in (F.add, F.mul, F.matmul, lambda x, y: x - y, lambda x, y: y / x):
        with pytest.raises(B.DeviceMismatchError, match=r"on cpu .* on strict|on strict .* on cpu"):
            op(a, b)
    with pytest.raises(B.DeviceMismatchError, match=r"Add: inputs are on different devices"):
        a + b


# --------------------------------------------------------------------------- dtype

def test_default_dtype_is_float32_and_applies_to_new_tensors():
    assert B.get_default_dtype() == np.float32
    assert minidl.tensor([1.0, 2.0]).dtype == np.float32
    assert minidl.tensor(np.array([1.0])).dtype == np.float32  # float64 host data too
    assert minidl.tensor([1, 2]).dtype.kind == "i"  # integer data keeps its kind
    minidl.set_default_dtype(np.float64)
    assert minidl.get_default_dtype() == np.float64
    assert minidl.tensor([1.0]).dtype == np.float64


@pytest.mark.parametrize("bad", [np.int32, "int64", np.bool_, np.complex64])
def test_set_default_dtype_rejects_non_float(bad):
    with pytest.raises(TypeError, match="default dtype must be float32 or float64, got"):
        minidl.set_default_dtype(bad)
    assert minidl.get_default_dtype() == np.float32


# --------------------------------------------------------------------------- seeds

def test_seed_makes_host_rng_reproducible():
    B.seed(7)
    a = B.host_rng().standard_normal(5)
    legacy = np.random.rand(3)
    B.seed(7)
    np.testing.assert_array_equal(B.host_rng().standard_normal(5), a)
    np.testing.assert_array_equal(np.random.rand(3), legacy)
    B.seed(8)
    assert not np.array_equal(B.host_rng().standard_normal(5), a)


def test_seed_makes_device_rng_reproducible(xp):
    B.seed(3)
    rng = B.device_rng()
    assert B.device_rng(xp) is rng  # one generator per backend, until the next seed
    a = B.to_host(rng.random((4,), dtype=np.float32))
    b = B.to_host(B.device_rng().random((4,), dtype=np.float32))
    assert not np.array_equal(a, b)  # the stream moves on
    B.seed(3)
    np.testing.assert_array_equal(B.to_host(B.device_rng(xp).random((4,), dtype=np.float32)), a)


def test_seeded_device_rng_does_not_consume_the_host_stream():
    B.seed(5)
    B.device_rng(B._get("strict").xp).random((3,))
    after = B.host_rng().standard_normal(3)
    B.seed(5)
    np.testing.assert_array_equal(B.host_rng().standard_normal(3), after)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_seed_validation(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative int, got"):
        B.seed(bad)


def test_device_rng_rejects_a_foreign_namespace():
    with pytest.raises(ValueError, match="xp must be an array namespace of a minidl backend"):
        B.device_rng(object())


def test_importing_the_backend_loads_nothing_above_it():
    """The ground floor depends on nothing above it: importing minidl.backend in a fresh
    interpreter imports no autograd, kernels, functions, layers or testing module."""
    code = ("import sys, minidl.backend; print(sorted(m for m in sys.modules "
            "if m.startswith('minidl')))")
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("MINIDL_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    loaded = eval(out)
    assert loaded == ["minidl", "minidl._openblas", "minidl.backend"], loaded


@pytest.mark.parametrize("half", ["float16", np.float16, np.dtype("float16")])
def test_set_default_dtype_refuses_float16_and_names_the_supported_dtypes(half):
    """Issue 21 item 10: float16 used to be accepted, then Dropout failed much later
    ("Unsupported dtype float16 for random"); it is now refused where it is set."""
    with pytest.raises(ValueError, match=r"float16 training is not supported.*"
                                         r"supported dtypes: float32, float64"):
        minidl.set_default_dtype(half)
    assert minidl.get_default_dtype() == np.float32
