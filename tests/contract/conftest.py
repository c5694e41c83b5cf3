from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contract.harness import SmsProvider, World, world


@pytest.fixture
async def w(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    # What a channel does is the same on either database; tests/e2e run both. SMS goes
    # through Twilio unless the test's id names SMSC (harness.params).
    sms: SmsProvider = "smsc" if "sms-smsc" in request.node.name else "twilio"
    async with world(f"sqlite+aiosqlite:///{tmp_path / 'otklik.db'}", sms) as built:
        yield built
