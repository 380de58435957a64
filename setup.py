"""Build the compiled parts of spead2.

The C core (``csrc/*.c``: wire format, thread pool, allocators, heap
assembly, readers and writers) is built once, as the private shared library
``spead2/libspead2core.so``. Every ``.pyx`` under ``src/spead2`` becomes an
extension module that links that library (found at run time through an
``$ORIGIN``-relative rpath), so each C function exists in exactly one shared
object and state such as "is this thread a worker of that pool" is never
duplicated.
"""
import glob
import hashlib
import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = "csrc"
CORE_NAME = "spead2core"
CORE_FILE = f"lib{CORE_NAME}.so"
CFLAGS = ["-O3", "-std=gnu11", "-Wall", "-Wno-unused-function"]
MACROS = [("_GNU_SOURCE", None)]


class BuildWithCore(build_ext):
    """Build ``libspead2core.so`` into the package, then the extensions against it."""

    def _package_dir(self) -> str:
        if self.inplace:
            return os.path.join("src", "spead2")
        return os.path.join(self.build_lib, "spead2")

    def build_extensions(self):
        compiler = self.compiler
        sources = sorted(glob.glob(os.path.join(CSRC, "*.c")))
        extra = os.environ.get("SPEAD2_CFLAGS", "").split()
        if extra:
            # objects built with other flags (a sanitizer, say) must never be
            # reused for a normal build, or the other way round
            tag = hashlib.sha1(" ".join(extra).encode()).hexdigest()[:12]
            self.build_temp = os.path.join(self.build_temp, f"flags-{tag}")
        objects = compiler.compile(sources, output_dir=os.path.join(self.build_temp, "core"),
                                   macros=MACROS, include_dirs=[CSRC],
                                   extra_postargs=CFLAGS + ["-fPIC"] + extra)
        out_dir = self._package_dir()
        os.makedirs(out_dir, exist_ok=True)
        compiler.link_shared_object(objects, CORE_FILE, output_dir=out_dir,
                                    libraries=["pthread"],
                                    extra_postargs=[f"-Wl,-soname,{CORE_FILE}"] + extra)
        for ext in self.extensions:
            depth = ext.name.count(".") - 1          # package levels below spead2/
            origin = "$ORIGIN" + "/.." * depth
            ext.library_dirs = [os.path.abspath(out_dir)]
            ext.libraries = [CORE_NAME]
            ext.extra_link_args = [f"-Wl,-rpath,{origin}"] + extra
            ext.extra_compile_args = list(ext.extra_compile_args) + extra
        super().build_extensions()

    def get_outputs(self):
        return super().get_outputs() + [os.path.join(self._package_dir(), CORE_FILE)]


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
    cmdclass={"build_ext": BuildWithCore},
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
