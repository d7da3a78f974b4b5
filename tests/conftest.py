"""Shared pytest configuration."""

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="regenerate the golden files in tests/golden/ instead of comparing against them",
    )


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """``BNMFT_CACHE_DIR`` set to a new folder for the tests of one module (generated modules
    and compiled libraries built there, not in the user's cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BNMFT_CACHE_DIR", str(tmp_path_factory.mktemp("bnmft-cache")))
        yield
