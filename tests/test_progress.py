"""Progress bars: on stderr, only on a terminal, off with --quiet; items pass unchanged."""

import io

from bnmft import progress as P
from bnmft.cli import main


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_bar_only_on_a_terminal_and_not_when_quiet(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    P.set_enabled(True)
    assert not P.enabled()  # not a terminal
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    assert P.enabled()
    monkeypatch.setattr(P, "MIN_ITEMS", 1)
    items = list(range(50))
    assert list(P.progress(items, "work")) == items
    P.set_enabled(False)
    try:
        assert not P.enabled()
        assert list(P.progress(items, "work")) == items
    finally:
        P.set_enabled(True)


def test_quiet_flag_switches_bars_off(capsys):
    assert main(["analyze", "linear", "--batch-size", "8", "--quiet"]) == 0
    assert not P.enabled()
    assert main(["analyze", "linear", "--batch-size", "8"]) == 0
    assert P._ENABLED
    capsys.readouterr()
