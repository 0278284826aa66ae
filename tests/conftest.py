"""Shared fixtures. Real services come from plugins in tests/fixtures and start only when a test asks."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.factories",
    "tests.fixtures.processes",
    "tests.fixtures.models",
]


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test reads settings anew, so a test's environment overrides never leak into the next."""
    from pipeline.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
