"""Storage errors: one root, so an edge can map every storage failure in one place."""

from __future__ import annotations


class StorageError(Exception):
    """Root of every error raised by storage/."""


class NotFound(StorageError):
    """A row looked up by its key does not exist."""


class StaleDialogue(StorageError):
    """The dialogue changed since it was read (optimistic lock lost): reload and retry."""


class DuplicateTrigger(StorageError):
    """A trigger with this idempotency key was already recorded."""
