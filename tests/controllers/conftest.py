"""Fixtures of the fast controller tier: a fresh `Harness` (FakeKube + both emulators + a Manager) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from harness import PROVIDER_TYPES, Harness


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    started = await Harness.start()
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture(params=PROVIDER_TYPES)
def provider_type(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once per provider."""
    return str(request.param)
