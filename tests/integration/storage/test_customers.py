from __future__ import annotations

import pytest
from sqlalchemy import update

from storage.errors import NotFound
from storage.models import CustomerRow, IdentityRow
from storage.uow import Database, Store
from tests.integration.storage.support import NOW, Factory


async def test_one_customer_in_every_channel(factory: Factory) -> None:
    db = Database(factory)

    def add(store: Store) -> tuple[CustomerRow, CustomerRow]:
        anna = store.customers.add(now=NOW, external_id="crm-1", first_name="Anna",
                                   attributes={"segment": "vip"})
        boris = store.customers.add(now=NOW, external_id="crm-2")
        store.customers.upsert_identity(anna.id, "telegram", "1001", now=NOW)
        store.customers.bind(anna.id, "email", "anna@example.com", now=NOW)
        return anna, boris

    anna, boris = await db.write(add)

    def check(store: Store) -> IdentityRow:
        by_chat = store.customers.by_identity("telegram", "1001")
        by_mail = store.customers.by_identity("email", "anna@example.com")
        assert by_chat is not None
        assert by_mail is not None
        assert by_chat.id == by_mail.id == anna.id
        assert by_chat.attributes == {"segment": "vip"}
        assert store.customers.by_external_id("crm-2") is not None
        assert store.customers.by_identity("telegram", "404") is None
        with pytest.raises(NotFound):
            store.customers.get(999)
        # The chat blocked the bot, then opened a deep link naming another customer.
        assert store.customers.mark_unreachable("telegram", "1001", "blocked")
        assert not store.customers.mark_unreachable("telegram", "404", "blocked")
        blocked = store.customers.identity("telegram", "1001")
        assert blocked is not None
        assert (blocked.reachable, blocked.unreachable_reason) == (False, "blocked")
        return store.customers.upsert_identity(boris.id, "telegram", "1001", now=NOW)

    moved = await db.write(check)
    assert (moved.customer_id, moved.reachable, moved.unreachable_reason) == (
        boris.id, True, None)
    owner = await db.read(lambda store: store.customers.by_identity("telegram", "1001"))
    assert owner is not None
    assert owner.id == boris.id

    # Unreachable is undone by binding again, as by upsert_identity.
    async with factory() as session:
        await session.execute(update(IdentityRow).values(reachable=False))
        await session.commit()
    await db.write(lambda store: store.customers.bind(anna.id, "email", "anna@example.com",
                                                      now=NOW))
    mail = await db.read(lambda store: store.customers.identity("email", "anna@example.com"))
    assert mail is not None
    assert mail.reachable


async def test_text_is_stored_and_compared_without_nul_characters(factory: Factory) -> None:
    """PostgreSQL can neither store nor compare a NUL: a customer's answer with one failed
    whole (a Telegram text, found by fuzzing). Both backends keep the rest of the text."""
    db = Database(factory)
    anna = await db.write(lambda store: store.customers.add(
        now=NOW, external_id="crm-\x001", first_name="An\x00na"))
    found = await db.read(lambda store: store.customers.by_external_id("crm-\x001"))
    assert found is not None
    assert (found.id, found.external_id, found.first_name) == (anna.id, "crm-1", "Anna")
