from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.errors import NotFound
from storage.models import CustomerRow, IdentityRow
from storage.repositories.base import AsyncRepository, Repository, insert_row

_identities: Table = IdentityRow.__table__  # type: ignore[assignment]

# Built once, for CustomerRepository and for code already running synchronously
# (SurveyService.begin in UnitOfWork.apply). Parameters: k_channel, k_address.
BY_IDENTITY = (select(CustomerRow)
               .join(IdentityRow, IdentityRow.customer_id == CustomerRow.id)
               .where(IdentityRow.channel == bindparam("k_channel"),
                      IdentityRow.address == bindparam("k_address")))


def _bind(insert: Any) -> postgresql.Insert | sqlite.Insert:
    statement = insert(_identities)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=["channel", "address"],
        set_={"customer_id": statement.excluded.customer_id, "reachable": True,
              "unreachable_reason": None})


_BIND = {"postgresql": _bind(postgresql.insert), "sqlite": _bind(sqlite.insert)}


def get(session: Session, customer_id: int) -> CustomerRow:
    """CustomerRepository.get for code already running synchronously."""
    row = session.get(CustomerRow, customer_id)
    if row is None:
        raise NotFound(f"customer {customer_id}")
    return row


def by_identity(session: Session, channel: str, address: str) -> CustomerRow | None:
    """CustomerRepository.by_identity for code already running synchronously."""
    return session.scalar(BY_IDENTITY, {"k_channel": channel, "k_address": address})


def add(session: Session, *, now: datetime, external_id: str | None = None,
        first_name: str | None = None, phone: str | None = None, email: str | None = None,
        locale: str | None = None, timezone: str | None = None,
        attributes: Mapping[str, Any] | None = None) -> CustomerRow:
    """CustomerRepository.add for code already running synchronously."""
    return insert_row(session, CustomerRow, {
        "external_id": external_id, "first_name": first_name, "phone": phone, "email": email,
        "locale": locale, "timezone": timezone, "attributes": dict(attributes or {}),
        "opted_out_at": None, "created_at": now, "updated_at": now, "erased_at": None})


def bind(connection: Connection, customer_id: int, channel: str, address: str, *,
         now: datetime) -> None:
    """CustomerRepository.upsert_identity for code already running synchronously, without
    reading the identity back."""
    connection.execute(_BIND[connection.dialect.name], {
        "customer_id": customer_id, "channel": channel, "address": address,
        "reachable": True, "created_at": now})


class CustomerRepository(AsyncRepository):
    async def get(self, customer_id: int) -> CustomerRow:
        return await self.session.run_sync(get, customer_id)

    async def by_external_id(self, external_id: str) -> CustomerRow | None:
        return await self.session.scalar(
            select(CustomerRow).where(CustomerRow.external_id == external_id))

    async def by_identity(self, channel: str, address: str) -> CustomerRow | None:
        return await self.session.run_sync(by_identity, channel, address)

    async def add(self, *, now: datetime, external_id: str | None = None,
                  first_name: str | None = None, phone: str | None = None,
                  email: str | None = None, locale: str | None = None,
                  timezone: str | None = None,
                  attributes: Mapping[str, Any] | None = None) -> CustomerRow:
        def run(session: Session) -> CustomerRow:
            return add(session, now=now, external_id=external_id, first_name=first_name,
                       phone=phone, email=email, locale=locale, timezone=timezone,
                       attributes=attributes)

        return await self.session.run_sync(run)

    async def upsert_identity(self, customer_id: int, channel: str, address: str, *,
                              now: datetime) -> IdentityRow:
        """Bind (channel, address) to the customer, taking it over from another one if need
        be (a deep link names the customer a chat belongs to), and mark it reachable again:
        someone who writes to us can be written to."""
        def run(session: Session) -> IdentityRow:
            bind(session.connection(), customer_id, channel, address, now=now)
            return session.scalars(
                select(IdentityRow)
                .where(IdentityRow.channel == channel, IdentityRow.address == address)
                .execution_options(populate_existing=True)).one()

        return await self.session.run_sync(run)

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


class Customers(Repository):
    """Customers and their identities (an address in a channel)."""

    def get(self, customer_id: int) -> CustomerRow:
        return get(self.session, customer_id)

    def by_identity(self, channel: str, address: str) -> CustomerRow | None:
        return by_identity(self.session, channel, address)

    def add(self, *, now: datetime, external_id: str | None = None,
            first_name: str | None = None, phone: str | None = None, email: str | None = None,
            locale: str | None = None, timezone: str | None = None,
            attributes: Mapping[str, Any] | None = None) -> CustomerRow:
        return add(self.session, now=now, external_id=external_id, first_name=first_name,
                   phone=phone, email=email, locale=locale, timezone=timezone,
                   attributes=attributes)

    def bind(self, customer_id: int, channel: str, address: str, *, now: datetime) -> None:
        bind(self.connection, customer_id, channel, address, now=now)
