"""benchmarks.bench_layers: the path column names the conv2d kernel each layer really takes
(minidl.kernels.explain), and whether the CNN's blocks run as one op."""
from benchmarks.bench_layers import conv_path, layer_cases
from minidl import kernels
from minidl.kernels import tuning


def test_conv_paths_of_the_benchmarked_layers():
    cases = {name: (make, shape) for name, make, _, shape, _ in layer_cases(batch=4)}
    with tuning.override(WINOGRAD_MIN_DEPTH=6):  # as with AVX2 BLAS kernels
        assert conv_path(*cases["conv3x3 s1 32->64 @14"]) == "winograd"
        assert conv_path(*cases["conv3x3 s1 1->32 @28"]) == "per_image"
        assert conv_path(*cases["conv3x3 s2 32->64 @28"]) == "phase_runs"
        assert conv_path(*cases["conv5x5 s1 32->64 @14"]) == "winograd_stacked"
        assert conv_path(*cases["conv5x5 s2 32->64 @28"]) == "winograd_stacked"
        assert conv_path(*cases["maxpool 2x2 s2 32@28"]) == "-"
        assert conv_path(*cases["block conv3x3 32->64 @14 +BN+ReLU+pool"]) == "one op, winograd"
        assert conv_path(*cases["block conv3x3 1->32 @28 +BN+ReLU+pool"]) == \
            "one op, im2col per image"
        with kernels.disable("conv2d", "phase_runs"):
            assert conv_path(*cases["conv3x3 s2 32->64 @28"]) == "columns"
