"""Repositories: typed queries over one unit of work's session."""

from storage.repositories.alerts import AlertRepository
from storage.repositories.audit import AuditRepository
from storage.repositories.customers import CustomerRepository
from storage.repositories.deliveries import DeliveryRepository
from storage.repositories.dialogues import SessionRepository
from storage.repositories.events import EventRepository
from storage.repositories.rollups import StepCounts
from storage.repositories.scripts import ScriptRepository

__all__ = [
    "AlertRepository",
    "AuditRepository",
    "CustomerRepository",
    "DeliveryRepository",
    "EventRepository",
    "ScriptRepository",
    "SessionRepository",
    "StepCounts",
]
