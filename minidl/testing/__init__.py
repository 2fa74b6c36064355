"""Testing helpers shipped with minidl: gradient checks and the strict CuPy-like backend."""
