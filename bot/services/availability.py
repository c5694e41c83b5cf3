"""Whether the database can be reached: what the channels need to know to answer "try
again" (a 503, an update handled again later) instead of failing. Storage tells the kinds
of failure apart; this is its word to the handlers."""

from storage.db import Outage, outage, patiently

__all__ = ["Outage", "outage", "patiently"]
