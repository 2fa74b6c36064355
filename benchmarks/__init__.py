"""Benchmarks: scripts that print a table and write JSON (never timed unit tests).

Run them all with ``python -m benchmarks`` (or one: ``python -m benchmarks.bench_gemm``)."""
# minidl first, before anything loads NumPy: it sets OpenBLAS's short thread spin (see
# minidl.parallel), so every benchmark process runs minidl as a user's script would
import minidl  # noqa: F401,E402
