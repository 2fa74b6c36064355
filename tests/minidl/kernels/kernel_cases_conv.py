"""The reference's cases of conv2d, for test_kernels (see kernel_cases)."""
