from __future__ import annotations

import pytest
from sqlalchemy import update

from storage.errors import NotFound
from storage.models import IdentityRow
from storage.uow import UnitOfWork
from tests.integration.storage.support import NOW, Factory


async def test_one_customer_in_every_channel(factory: Factory) -> None:
    async with UnitOfWork(factory) as uow:
        anna = await uow.customers.add(now=NOW, external_id="crm-1", first_name="Anna",
                                       attributes={"segment": "vip"})
        boris = await uow.customers.add(now=NOW, external_id="crm-2")
        await uow.customers.upsert_identity(anna.id, "telegram", "1001", now=NOW)
        await uow.customers.upsert_identity(anna.id, "email", "anna@example.com", now=NOW)
        await uow.commit()

    async with UnitOfWork(factory) as uow:
        by_chat = await uow.customers.by_identity("telegram", "1001")
        by_mail = await uow.customers.by_identity("email", "anna@example.com")
        assert by_chat is not None
        assert by_mail is not None
        assert by_chat.id == by_mail.id == anna.id
        assert by_chat.attributes == {"segment": "vip"}
        assert (await uow.customers.by_external_id("crm-2")) is not None
        assert await uow.customers.by_identity("telegram", "404") is None
        with pytest.raises(NotFound):
            await uow.customers.get(999)
        # The chat blocked the bot, then opened a deep link naming another customer.
        await uow.session.execute(update(IdentityRow).values(
            reachable=False, unreachable_reason="blocked"))
        moved = await uow.customers.upsert_identity(boris.id, "telegram", "1001", now=NOW)
        await uow.commit()

    assert (moved.customer_id, moved.reachable, moved.unreachable_reason) == (
        boris.id, True, None)
    async with UnitOfWork(factory) as uow:
        owner = await uow.customers.by_identity("telegram", "1001")
        assert owner is not None
        assert owner.id == boris.id


async def test_text_is_stored_and_compared_without_nul_characters(factory: Factory) -> None:
    """PostgreSQL can neither store nor compare a NUL: a customer's answer with one failed
    whole (a Telegram text, found by fuzzing). Both backends keep the rest of the text."""
    async with UnitOfWork(factory) as uow:
        anna = await uow.customers.add(now=NOW, external_id="crm-\x001", first_name="An\x00na")
        await uow.commit()
    async with UnitOfWork(factory) as uow:
        found = await uow.customers.by_external_id("crm-\x001")
        assert found is not None
        assert (found.id, found.external_id, found.first_name) == (anna.id, "crm-1", "Anna")
