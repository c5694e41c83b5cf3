"""What the admin screens and API look up: customers by any of their addresses, and all
that is stored about one (the export)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select

from storage.models import (
    AlertRow,
    AnswerRow,
    Base,
    CustomerRow,
    DeliveryRow,
    DialogueRow,
    IdentityRow,
    TriggerRow,
)
from storage.repositories.base import Repository


class Admin(Repository):
    def find_customers(self, q: str, *, phone: str | None = None, limit: int = 20
                       ) -> Sequence[CustomerRow]:
        """Customers whose external id, e-mail or channel address is `q` exactly (e-mail
        and address also in lower case), or whose phone is `phone`."""
        matches = [CustomerRow.external_id == q, func.lower(CustomerRow.email) == q.lower(),
                   CustomerRow.id.in_(select(IdentityRow.customer_id)
                                      .where(IdentityRow.address.in_({q, q.lower()})))]
        if phone is not None:
            matches.append(CustomerRow.phone == phone)
        return self.session.scalars(
            select(CustomerRow).where(or_(*matches)).order_by(CustomerRow.id).limit(limit)
        ).all()

    def customer_data(self, customer: CustomerRow) -> dict[str, Any]:
        """Every row stored about the customer, as JSON-ready data, delivery tokens aside:
        they are credentials, not data about anyone."""
        def rows(model: type[Base], *where: Any) -> list[dict[str, Any]]:
            found = self.session.scalars(
                select(model).where(*where).order_by(model.id))  # type: ignore[attr-defined]
            return [_plain(row) for row in found]

        who = customer.id
        deliveries = rows(DeliveryRow, DeliveryRow.customer_id == who)
        for delivery in deliveries:
            delivery.pop("token")
        return {
            "customer": _plain(customer),
            "identities": rows(IdentityRow, IdentityRow.customer_id == who),
            "triggers": rows(TriggerRow, TriggerRow.id.in_(
                d["trigger_id"] for d in deliveries if d["trigger_id"] is not None)),
            "deliveries": deliveries,
            "sessions": rows(DialogueRow, DialogueRow.customer_id == who),
            "answers": rows(AnswerRow, AnswerRow.customer_id == who),
            "alerts": rows(AlertRow, AlertRow.customer_id == who),
        }


def _plain(row: Base) -> dict[str, Any]:
    """A row's columns as JSON-ready values."""
    return {column.key: _json(getattr(row, column.key)) for column in row.__table__.columns}


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value
