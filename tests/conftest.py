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


#: Files whose tests must share one xdist worker (``pytestmark = xdist_group``): their session
#: fixtures take minutes. If the grouping silently stops working (it did with pytest 9.2), the
#: run fails here instead of computing those fixtures once per worker.
GROUPED_FILES = ("tests/test_codegen_quadrature.py",)
_workers_seen: dict = {}


def pytest_runtest_logreport(report):
    node = getattr(report, "node", None)  # the worker that ran it (on the xdist controller)
    if node is None or report.when != "call":
        return
    path = report.nodeid.split("::", 1)[0]
    if path in GROUPED_FILES:
        _workers_seen.setdefault(path, set()).add(node.gateway.id)


def pytest_sessionfinish(session, exitstatus):
    split = {p: sorted(w) for p, w in _workers_seen.items() if len(w) > 1}
    if split:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"xdist_group not honoured: {split} ran on several workers "
                                "(--dist loadgroup broken by this pytest/pytest-xdist pair)",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
