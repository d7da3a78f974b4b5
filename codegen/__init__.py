"""codegen: SymPy expressions -> a vectorised numpy module and C99 kernels.

Every generated module is described first by a :class:`ModuleSpec` of :class:`FunctionSpec`
records (:mod:`.spec`) and then printed by one path (validation, stabilisation, CSE ->
backend printer -> jinja2 templates).

Public API:

* :func:`generate` -- ``{filename: text}`` of a derivation's closed forms, for
  ``lang="numpy"`` or ``lang="c"`` (one C kernel per quantity and the fused ``NAME_all``);
* :func:`render_module` -- ``{filename: text}`` of any :class:`ModuleSpec`;
* :func:`.quadrature.generate_quadrature` -- ``{filename: text}`` for an activation without
  closed forms: ``phi``, a sphere-moment quadrature and the moment forms, verified against the
  mpmath route when generated (:mod:`.quadrature`);
* :func:`write_sources` -- write those files atomically into a directory;
* :func:`load_c` -- compile C sources on demand (cached) and return callables (one per
  quantity, and ``all``: every quantity in one pass of the fused kernel);
* :func:`load_numpy` -- import a generated numpy module from its text;
* :class:`CodegenError` -- everything this stage refuses, with a one-line message.
"""

from .errors import CodegenError
from .generate import generate, render_module, write_sources
from .jit import load_c, load_numpy
from .spec import Argument, Constant, FunctionSpec, ModuleSpec

__all__ = [
    "Argument",
    "CodegenError",
    "Constant",
    "FunctionSpec",
    "ModuleSpec",
    "generate",
    "load_c",
    "load_numpy",
    "render_module",
    "write_sources",
]
