"""Benchmarks: scripts that print a table and write JSON (never timed unit tests).

Run them all with ``python -m benchmarks`` (or one: ``python -m benchmarks.bench_gemm``)."""
