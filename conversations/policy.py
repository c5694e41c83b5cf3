"""When a survey may go out: quiet hours in the customer's time zone. Pure: the caller
passes the time and the zone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from conversations.script import QuietHours


def in_quiet_hours(local: time, quiet: QuietHours) -> bool:
    """Whether a wall-clock time falls in [start, end); the span may wrap midnight."""
    if quiet.start == quiet.end:
        return False
    if quiet.start < quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end


def next_allowed(due: datetime, quiet: QuietHours | None, timezone: str) -> datetime:
    """`due`, or the end of the quiet hours it falls in, in `timezone` (an IANA name), as an
    aware datetime in due's own zone. A wall-clock end that a DST jump skips is taken as the
    first instant after the jump (zoneinfo's fold=0 reading)."""
    if quiet is None:
        return due
    zone = ZoneInfo(timezone)
    local = due.astimezone(zone)
    if not in_quiet_hours(local.timetz().replace(tzinfo=None), quiet):
        return due
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:  # the quiet span wrapped midnight: it ends tomorrow
        end = (local + timedelta(days=1)).replace(hour=quiet.end.hour, minute=quiet.end.minute,
                                                  second=0, microsecond=0)
    # Through UTC, so a DST change between now and the end is counted right.
    return end.astimezone(due.tzinfo)
