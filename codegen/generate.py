"""Public entry points: ``render_module`` (a module spec -> source text), ``generate`` (closed
forms -> source text, through ``render_module``) and ``write_sources``.

Both are pure functions: the same expressions, module name, activation name and bnmft version
give the same bytes (no timestamps or paths), which the golden tests rely on.
"""

from __future__ import annotations

import os
from pathlib import Path

from .backends.c import printer as c_backend
from .backends.numpy import printer as numpy_backend
from .closed_forms import closed_form_module
from .errors import CodegenError
from .files import atomic_write_text
from .prepare import check_module_name, prepare
from .spec import ModuleSpec

#: Backends by ``lang`` name.
BACKENDS = {"numpy": numpy_backend.render, "c": c_backend.render}


def _check_lang(lang: str) -> None:
    if lang not in BACKENDS:
        raise CodegenError(f"unknown lang {lang!r}; choose one of {', '.join(sorted(BACKENDS))}")


def render_module(spec: ModuleSpec, *, lang: str) -> dict[str, str]:
    """``{filename: text}`` of ``spec`` for ``lang``: the one path of every generated module
    (:func:`.prepare.prepare`: validation, stabilisation, CSE -> backend printer -> templates)."""
    _check_lang(lang)
    return BACKENDS[lang](prepare(spec))


def generate(
    quantities, *, lang: str, module: str, activation_name: str | None = None, verified=None
) -> dict[str, str]:
    """Generate source files for ``quantities`` and return ``{filename: text}``.

    ``quantities``: a ``Derivation`` (its closed forms), a mapping ``name -> DerivedQuantity``
    or an iterable of ``DerivedQuantity``; the order is kept. ``lang``: ``"numpy"``
    (``module.py``) or ``"c"`` (``module.c`` and ``module.h``). ``module`` must be a valid
    Python/C identifier and no standard-library module name. ``activation_name`` is
    written into the headers (taken from the ``Derivation`` if omitted). ``verified``: a
    :class:`~.closed_forms.ClosedVerification` (from :func:`~.closed_forms.verify_closed`) to
    state in the header. Raises :class:`CodegenError` for anything not printable.
    """
    _check_lang(lang)
    check_module_name(module)
    spec = closed_form_module(quantities, module=module, activation_name=activation_name,
                              verified=verified)
    return render_module(spec, lang=lang)


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
