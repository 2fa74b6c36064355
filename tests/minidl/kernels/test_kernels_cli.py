"""``python -m minidl.kernels``: the table of kernels, and one call's choice explained."""
import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "-m", "minidl.kernels", *args], capture_output=True,
                          text=True)


def test_the_table_lists_every_kernel():
    from minidl import kernels
    out = _run().stdout
    for k in kernels.kernels():
        assert f"{k.op:<30} {k.name:<18}" in out


def test_explain_names_the_kernel_and_the_reason():
    out = _run("max_pool2d", "128,32,28,28", "--kernel-size", "3", "--stride", "2",
               "--padding", "1", "--backend", "numpy").stdout
    assert out.startswith("max_pool2d: wide_phases (")


def test_a_bad_shape_is_a_usage_error():
    proc = _run("conv2d", "1,2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
