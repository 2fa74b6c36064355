from setuptools import find_packages, setup

setup(
    name="minidl",
    version="0.1.0",
    description="Deep learning and SIFT by hand, on NumPy and on the GPU through CuPy: "
                "minidl (autograd, layers, training) and minifeat (classical features).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["minidl", "minidl.*", "minifeat", "minifeat.*"]),
    package_data={"minidl.testing": ["*.json"],
                  "minidl.data": ["imagenet_classes.txt"]},
    install_requires=["numpy>=1.26", "scipy>=1.11", "pillow>=10"],
    extras_require={
        "gpu": ["cupy-cuda12x>=13"],
        "keras": ["h5py>=3"],
        # data-parallel training (minidl.distributed): mpi4py and an MPI from PyPI, so that a
        # fresh machine needs no system MPI (on a cluster, build mpi4py against its own MPI)
        "mpi": ["mpi4py>=4", "mpich"],
        "test": ["pytest>=8"],
        "dev": ["pytest>=8", "pytest-benchmark", "pyinstrument", "py-spy", "ruff"],
    },
)
