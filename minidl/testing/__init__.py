"""Testing helpers shipped with minidl.

* :func:`gradcheck` -- central finite differences in float64 along random directions.
* ``minidl.testing.strict`` -- a CuPy-like array backend on host memory that refuses what CuPy
  refuses (imported on demand: ``from minidl.testing import strict``).
"""
from minidl.testing.gradcheck import GradcheckError, gradcheck  # noqa: F401
