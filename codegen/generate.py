"""Public entry points: ``generate`` (closed forms -> source text) and ``write_sources``.

``generate`` is a pure function: the same expressions, module name, activation name and
bnmft version give the same bytes (no timestamps or paths), which the golden tests rely on.
"""

from __future__ import annotations

import os
from pathlib import Path

from .backends.c import printer as c_backend
from .backends.numpy import printer as numpy_backend
from .errors import CodegenError
from .files import atomic_write_text
from .prepare import check_module_name, prepare, source_sha256
from .render import Bundle

#: Backends by ``lang`` name.
BACKENDS = {"numpy": numpy_backend.render, "c": c_backend.render}


def _version() -> str:
    import bnmft  # late import: bnmft/__init__ may come to import this stage

    return bnmft.__version__


def generate(
    quantities, *, lang: str, module: str, activation_name: str | None = None
) -> dict[str, str]:
    """Generate source files for ``quantities`` and return ``{filename: text}``.

    ``quantities``: a ``Derivation`` (its closed forms), a mapping ``name -> DerivedQuantity``
    or an iterable of ``DerivedQuantity``; the order is kept. ``lang``: ``"numpy"``
    (``module.py``) or ``"c"`` (``module.c`` and ``module.h``). ``module`` must be a valid
    Python/C identifier and no standard-library module name. ``activation_name`` is
    written into the headers (taken from the ``Derivation`` if omitted). Raises
    :class:`CodegenError` for anything not printable.
    """
    if lang not in BACKENDS:
        raise CodegenError(f"unknown lang {lang!r}; choose one of {', '.join(sorted(BACKENDS))}")
    check_module_name(module)
    if activation_name is None:
        act = getattr(quantities, "activation", None)
        activation_name = getattr(act, "name", None)
        if activation_name is None:
            raise CodegenError("activation_name is required unless a Derivation is given")
    prepared = prepare(quantities)
    bundle = Bundle(
        module=module,
        activation=str(activation_name),
        version=_version(),
        sha256=source_sha256({q.name: q.expr for q in prepared}),
        quantities=tuple(prepared),
    )
    return BACKENDS[lang](bundle)


def write_sources(sources: dict[str, str], out_dir: str | os.PathLike) -> list[Path]:
    """Write each ``{filename: text}`` into ``out_dir`` atomically; return the paths written.

    Filenames must be plain names (no directories), so a source dict cannot write elsewhere.
    """
    out = Path(out_dir)
    paths = []
    for name in sorted(sources):
        if Path(name).name != name or name in ("", ".", ".."):
            raise CodegenError(f"refusing to write {name!r}: not a plain file name")
        paths.append(atomic_write_text(out / name, sources[name]))
    return paths
