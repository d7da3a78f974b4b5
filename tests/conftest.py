"""Shared pytest configuration."""


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="regenerate the golden files in tests/golden/ instead of comparing against them",
    )
