"""minidl._openblas: OpenBLAS's idle spin is shortened whether NumPy was imported first or not,
a user's own OPENBLAS_THREAD_TIMEOUT is kept, and matrix products still work afterwards.

Each case runs in a fresh interpreter: the import order is the thing under test."""
import json
import os
import subprocess
import sys

import pytest

from minidl._openblas import loaded_openblas

pytestmark = pytest.mark.skipif(
    not loaded_openblas(), reason="NumPy's BLAS here is not an OpenBLAS that exports "
    "openblas_read_env / blas_thread_shutdown_ (nothing to shorten)")

REPORT = """
from minidl._openblas import loaded_openblas
a = numpy.arange(512 * 512, dtype=numpy.float32).reshape(512, 512) % 7
ok = bool(numpy.allclose(a @ a, numpy.einsum("ij,jk->ik", a, a)))  # threads restarted fine
print(json.dumps({"timeouts": [lib.openblas_thread_timeout() for lib in loaded_openblas()],
                  "matmul_ok": ok, "env": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}))
"""


def _run(first_imports: str, env_value=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if env_value is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = env_value
    code = f"import json, os\n{first_imports}\n{REPORT}"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("first_imports", ["import minidl\nimport numpy",
                                           "import numpy\nimport minidl"],
                         ids=["minidl-first", "numpy-first"])
def test_spin_is_short_in_either_import_order(first_imports):
    r = _run(first_imports)
    assert r["env"] == "4"
    assert r["timeouts"] and all(t == 4 for t in r["timeouts"]), r
    assert r["matmul_ok"]


def test_a_users_own_setting_is_kept():
    r = _run("import numpy\nimport minidl", env_value="12")
    assert r["env"] == "12"
    assert r["timeouts"] and all(t == 12 for t in r["timeouts"]), r
    assert r["matmul_ok"]


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


@pytest.mark.skipif(not _has_avx2(), reason="Haswell kernels need an AVX2 CPU")
def test_kernel_names_follow_openblas_coretype():
    # the family OpenBLAS was told to use is the one it reports (Haswell runs on any x86-64
    # CPU with AVX2, which every OpenBLAS DYNAMIC_ARCH build that reports names supports)
    code = ("import json, minidl\nfrom minidl._openblas import kernel_names\n"
            "print(json.dumps(kernel_names()))")
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    names = json.loads(out.stdout.strip().splitlines()[-1])
    if not names:
        pytest.skip("this OpenBLAS does not export gotoblas_corename")
    assert all(n == "Haswell" for n in names), names


def test_set_num_threads_reaches_every_loaded_openblas():
    """The benchmarks pin NumPy's BLAS to their --threads with it (OpenBLAS takes every core
    otherwise).  In a fresh interpreter: each library reports the count, products still agree."""
    code = """
import json, numpy
from minidl import _openblas
a = numpy.arange(300 * 300, dtype=numpy.float64).reshape(300, 300) % 5
want = a @ a
print(json.dumps({"one": _openblas.set_num_threads(1), "ok": bool((a @ a == want).all()),
                  "two": _openblas.set_num_threads(2), "libs": len(_openblas.loaded_openblas())}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS",
                                                             "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True)
    out = json.loads(proc.stdout)
    assert out["one"] == [1] * out["libs"] and out["libs"] >= 1
    assert out["ok"]
    assert len(out["two"]) == out["libs"] and all(1 <= n <= 2 for n in out["two"])  # <= cores
    from minidl import _openblas
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive int"):
            _openblas.set_num_threads(bad)


def test_one_thread_each_sets_one_thread_and_puts_the_count_back():
    """Winograd's 16 small products run side by side, each on one BLAS thread, inside
    ``one_thread_each``; the count before the block comes back after it, error or not."""
    code = """
import json, numpy
from minidl import _openblas
_openblas.set_num_threads(2)
calls = _openblas._numpy_thread_calls()
seen = {"before": [int(get()) for _, get in calls]}
with _openblas.one_thread_each() as told:
    seen["told"], seen["inside"] = told, [int(get()) for _, get in calls]
seen["after"] = [int(get()) for _, get in calls]
try:
    with _openblas.one_thread_each():
        raise KeyError("boom")
except KeyError:
    seen["after_error"] = [int(get()) for _, get in calls]
print(json.dumps(seen))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS",
                                                             "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True)
    seen = json.loads(proc.stdout)
    if not seen["told"]:
        pytest.skip("NumPy's BLAS here is not an OpenBLAS that exports its thread calls")
    assert seen["inside"] == [1] * len(seen["inside"])
    assert seen["after"] == seen["after_error"] == seen["before"]
