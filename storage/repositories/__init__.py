"""Repositories: typed queries over one transaction's Session, reached through the Store
(storage.uow)."""

from storage.repositories.rollups import StepCounts

__all__ = ["StepCounts"]
