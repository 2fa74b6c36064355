"""The reference's cases of batch_norm, for test_kernels (see kernel_cases)."""
