"""A disk cache for the activation-independent moment forms (:func:`.bsb1.moment_forms`).

Deriving them takes about a second per process (exchangeable reductions, a Meijer-G
integral for ``E[1/chi^2]``), and they depend on nothing but bnmft's own derivation code. The
cache file is keyed by the sha256 of that code and of SymPy's version, so an edited
derivation never reads a stale file; it is written atomically and read only if it parses
completely (anything else: derive again). Location: :func:`bnmft.paths.cache_dir` /
``derive``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import sympy as sp

#: The modules whose text the moment forms depend on.
_SOURCES = ("bsb1.py", "moments.py", "gaussian.py", "symbols.py", "formcache.py")


def _key(extra: str = "") -> str:
    """sha256 of SymPy's version, the derivation code and ``extra`` (state the forms depend
    on beyond the code, such as the relations in force)."""
    here = Path(__file__).parent
    h = hashlib.sha256(sp.__version__.encode() + b"\0" + extra.encode())
    for name in _SOURCES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()[:32]


def _path(name: str, extra: str = "") -> Path:
    from bnmft.paths import cache_dir

    return cache_dir() / "derive" / f"{name}-{_key(extra)}.json"


def load(name: str, extra: str = ""):
    """``(moments, {key: (expr, provenance)})`` from the cache, or None. Each sphere moment
    is re-created (registering its symbol) before the expressions are read."""
    from .moments import Point, SphereMoment

    try:
        data = json.loads(_path(name, extra).read_text())
        for points in data["moments"]:
            SphereMoment(tuple(Point(*pt) for pt in points)).symbol  # noqa: B018 (registers)
        forms = {k: (sp.sympify(v[0]), v[1]) for k, v in data["forms"].items()}
    except (OSError, ValueError, KeyError, TypeError, sp.SympifyError):
        return None
    return forms


def store(name: str, forms: dict, extra: str = "") -> None:
    """Write ``{key: (expr, provenance)}`` (best effort: an unwritable cache is skipped)."""
    from .moments import moments_in

    moments = {}
    for expr, _ in forms.values():
        for mo in moments_in(expr):
            moments[mo] = [[p.m, p.p, p.q] for p in mo.points]
    data = {"moments": list(moments.values()),
            "forms": {k: [sp.srepr(e), prov] for k, (e, prov) in forms.items()}}
    try:
        from bnmft.codegen.files import atomic_write_text

        atomic_write_text(_path(name, extra), json.dumps(data))
    except OSError:
        pass
