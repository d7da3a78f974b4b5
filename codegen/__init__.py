"""codegen: SymPy closed forms -> a vectorised numpy module and C99 kernels.

Public API:

* :func:`generate` -- ``{filename: text}`` for ``lang="numpy"`` or ``lang="c"``;
* :func:`write_sources` -- write those files atomically into a directory;
* :func:`load_c` -- compile C sources on demand (cached) and return callables;
* :func:`load_numpy` -- import a generated numpy module from its text;
* :class:`CodegenError` -- everything this stage refuses, with a one-line message.
"""

from .errors import CodegenError
from .generate import generate, write_sources
from .jit import load_c, load_numpy

__all__ = ["CodegenError", "generate", "load_c", "load_numpy", "write_sources"]
