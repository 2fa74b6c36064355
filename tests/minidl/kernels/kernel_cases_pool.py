"""The reference's cases of max_pool2d and avg_pool2d, for test_kernels (see kernel_cases)."""
