"""The disk cache of the activation-independent moment forms (bnmft.derive.formcache)."""

from __future__ import annotations

import json

from bnmft.derive import formcache
from bnmft.derive.bsb1 import _derive_moment_forms
from bnmft.derive.moments import moments_in


def test_round_trip_and_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("BNMFT_CACHE_DIR", str(tmp_path))
    assert formcache.load("moment_forms") is None
    forms = {n: (f.expr, f.provenance) for n, f in _derive_moment_forms().items()}
    formcache.store("moment_forms", forms)
    (path,) = (tmp_path / "derive").glob("moment_forms-*.json")
    back = formcache.load("moment_forms")
    assert set(back) == set(forms)
    for name, (expr, prov) in forms.items():
        assert back[name][0] == expr and back[name][1] == prov
        assert moments_in(back[name][0]) == moments_in(expr)  # moment symbols registered
    # a truncated or foreign file is never used
    path.write_text(path.read_text()[:100])
    assert formcache.load("moment_forms") is None
    path.write_text(json.dumps({"moments": [], "forms": {"q_star": ["Symbol(", "x"]}}))
    assert formcache.load("moment_forms") is None


def test_key_follows_the_derivation_code(monkeypatch):
    before = formcache._key()
    monkeypatch.setattr(formcache, "_SOURCES", formcache._SOURCES[:-1])
    assert formcache._key() != before


def test_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("BNMFT_CACHE_DIR", str(blocker))  # a file, not a folder
    formcache.store("moment_forms", {"q_star": (_derive_moment_forms()["q_star"].expr, "p")})
    assert formcache.load("moment_forms") is None
