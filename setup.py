"""Build the compiled parts of spead2.

Every ``.pyx`` under ``src/spead2`` becomes an extension module; the C sources
each one needs are named in its ``# distutils: sources = ...`` header line.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")

extensions = [
    Extension(
        "*",
        ["src/spead2/**/*.pyx"],
        include_dirs=[CSRC],
        extra_compile_args=["-O3", "-std=gnu11", "-Wno-unused-function"],
        define_macros=[("_GNU_SOURCE", None)],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        include_path=["src"],
    ),
)
