"""Kernels for NumPy on the CPU.  Importing this package registers them."""
