from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contract.harness import World, world


@pytest.fixture
async def w(tmp_path: Path) -> AsyncIterator[World]:
    # What a channel does is the same on either database; tests/e2e run both.
    async with world(f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}") as built:
        yield built
