from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from storage.errors import NotFound
from storage.models import CustomerRow, IdentityRow
from storage.repositories.base import Repository
from storage.rollups import upsert_insert


class CustomerRepository(Repository):
    async def get(self, customer_id: int) -> CustomerRow:
        row = await self.session.get(CustomerRow, customer_id)
        if row is None:
            raise NotFound(f"customer {customer_id}")
        return row

    async def by_external_id(self, external_id: str) -> CustomerRow | None:
        return await self.session.scalar(
            select(CustomerRow).where(CustomerRow.external_id == external_id))

    async def by_identity(self, channel: str, address: str) -> CustomerRow | None:
        return await self.session.scalar(
            select(CustomerRow).join(IdentityRow, IdentityRow.customer_id == CustomerRow.id)
            .where(IdentityRow.channel == channel, IdentityRow.address == address))

    async def add(self, *, now: datetime, external_id: str | None = None,
                  first_name: str | None = None, phone: str | None = None,
                  email: str | None = None, locale: str | None = None,
                  timezone: str | None = None,
                  attributes: Mapping[str, Any] | None = None) -> CustomerRow:
        row = CustomerRow(external_id=external_id, first_name=first_name, phone=phone,
                          email=email, locale=locale, timezone=timezone,
                          attributes=dict(attributes or {}), created_at=now, updated_at=now)
        self.session.add(row)
        await self.session.flush()
        return row

    async def upsert_identity(self, customer_id: int, channel: str, address: str, *,
                              now: datetime) -> IdentityRow:
        """Bind (channel, address) to the customer, taking it over from another one if need
        be (a deep link names the customer a chat belongs to), and mark it reachable again:
        someone who writes to us can be written to."""
        insert = upsert_insert(self.session, IdentityRow)
        statement = (
            insert.values(customer_id=customer_id, channel=channel, address=address,
                          reachable=True, created_at=now)
            .on_conflict_do_update(
                index_elements=["channel", "address"],
                set_={"customer_id": customer_id, "reachable": True,
                      "unreachable_reason": None})
            .returning(IdentityRow)
            .execution_options(populate_existing=True))
        return (await self.session.scalars(statement)).one()

    async def mark_unreachable(self, channel: str, address: str, reason: str) -> bool:
        """Stop writing to this address (Telegram: the customer blocked the bot); the
        identity stays. False if there is no such identity."""
        result = await self.session.execute(
            update(IdentityRow)
            .where(IdentityRow.channel == channel, IdentityRow.address == address)
            .values(reachable=False, unreachable_reason=reason))
        return bool(getattr(result, "rowcount", 0))

    async def identity(self, channel: str, address: str) -> IdentityRow | None:
        return await self.session.scalar(
            select(IdentityRow).where(IdentityRow.channel == channel,
                                      IdentityRow.address == address))
