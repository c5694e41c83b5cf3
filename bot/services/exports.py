"""Answers for people and spreadsheets: pages with an opaque keyset cursor, and a CSV
streamed page by page (never the whole table in memory, never a transaction held open
while the reader is slow), shared by the HTTP API and the Telegram /export command."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.repositories.answers import AnswerFilters, Position
from storage.uow import UnitOfWork

__all__ = ["CSV_COLUMNS", "CSV_PAGE", "AnswerFilters", "answers_csv", "answers_page",
           "csv_filename", "decode_cursor", "encode_cursor"]

Factory = async_sessionmaker[AsyncSession]
CSV_PAGE = 1000  # answers read per unit of work while streaming a CSV
CSV_COLUMNS = ("id", "answered_at", "survey_id", "script_version", "session_id", "customer",
               "step_id", "metric", "score", "choices", "text", "channel", "segment",
               "respondent", "context")
# Excel opens a UTF-8 file as UTF-8 (and Cyrillic as such) only when it starts with a BOM.
BOM = "\ufeff"
# A cell starting with one of these is a formula to a spreadsheet: a customer's "=1+1", or
# worse a HYPERLINK, must stay text (OWASP's CSV injection advice).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def encode_cursor(position: Position) -> str:
    at, answer_id = position
    raw = json.dumps([at.isoformat(), answer_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """ValueError unless `cursor` is a next_cursor this module made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, answer_id = json.loads(raw)
        position = datetime.fromisoformat(at), int(answer_id)
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
        raise ValueError("not a cursor from this API (pass next_cursor as it is)") from None
    if position[0].tzinfo is None:
        raise ValueError("not a cursor from this API (pass next_cursor as it is)")
    return position


def _item(row: RowMapping) -> dict[str, Any]:
    return {"id": row["id"], "survey_id": row["survey_id"],
            "script_version": row["script_version"], "session_id": row["session_id"],
            "customer": row["external_id"], "step_id": row["step_id"],
            "metric": row["metric"], "score": row["score"], "choices": row["choices"],
            "text": row["text"], "channel": row["channel"], "segment": row["segment"],
            "respondent": row["respondent"], "context": row["context"],
            "answered_at": row["answered_at"]}


async def answers_page(factory: Factory, filters: AnswerFilters, *, cursor: str | None,
                       limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """A page of answers, newest first, and the cursor of the next (None after the last).
    ValueError for a cursor this module did not make."""
    after = decode_cursor(cursor) if cursor else None
    async with UnitOfWork(factory, read_only=True) as uow:
        rows = await uow.answers.page(filters, after, limit + 1)
    items = [_item(row) for row in rows[:limit]]
    following = None
    if len(rows) > limit:
        following = encode_cursor((items[-1]["answered_at"], items[-1]["id"]))
    return items, following


async def answers_csv(factory: Factory, filters: AnswerFilters, *,
                      page_size: int | None = None) -> AsyncIterator[bytes]:
    """The answers matching `filters` as CSV in UTF-8 with a BOM, newest first: a chunk for
    the header, then one per page of `page_size` answers, each read in a unit of work of
    its own."""
    size = page_size or CSV_PAGE
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield (BOM + buffer.getvalue()).encode()
    after: Position | None = None
    while True:
        async with UnitOfWork(factory, read_only=True) as uow:
            rows = await uow.answers.page(filters, after, size)
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(_cells(row) for row in rows)
        yield buffer.getvalue().encode()
        if len(rows) < size:
            return
        after = rows[-1]["answered_at"], rows[-1]["id"]


def _cells(row: RowMapping) -> list[object]:
    text = row["text"]
    if text and text.startswith(_FORMULA):
        text = "'" + text
    return [row["id"], row["answered_at"].isoformat(), row["survey_id"], row["script_version"],
            row["session_id"], row["external_id"] or "", row["step_id"], row["metric"],
            "" if row["score"] is None else row["score"], ";".join(row["choices"] or ()),
            text or "", row["channel"], row["segment"], row["respondent"],
            json.dumps(row["context"], ensure_ascii=False) if row["context"] else ""]


def csv_filename(filters: AnswerFilters, today: date) -> str:
    """answers-<survey>-<date>.csv ("all" when not one survey)."""
    survey = re.sub(r"[^A-Za-z0-9_.-]", "_", filters.survey or "all")  # a header value
    return f"answers-{survey}-{today.isoformat()}.csv"
