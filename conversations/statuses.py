"""The product's vocabulary of states: plain values every layer may name (storage stores
them, services decide them, handlers show them)."""

from enum import StrEnum


class Channel(StrEnum):
    TELEGRAM = "telegram"
    EMAIL = "email"
    PHONE = "phone"
    WEB = "web"


class DeliveryStatus(StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    ANSWERED = "answered"
    COMPLETED = "completed"
    REMINDED = "reminded"
    EXPIRED = "expired"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class DialogueStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    EXPIRED = "expired"
    ABANDONED = "abandoned"


class Respondent(StrEnum):
    """Whose answers: a customer the product knows (through a trigger, the API, an import,
    a delivery's link or a messenger chat), or a visitor of /w/{survey} or the widget whom
    nobody knows. Fixed when the dialogue starts: one dialogue is never split."""

    KNOWN = "known"
    ANONYMOUS = "anonymous"


class AlertStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
