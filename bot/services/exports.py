"""Answers for people and spreadsheets: pages with an opaque keyset cursor, and the same
rows as CSV or XLSX, read page by page (never the whole table in memory, never a transaction
held open while the reader is slow), shared by the HTTP API and the Telegram /export command.
Every cell of either file goes through safe_text.cell: no formulas, no bidi controls."""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import functools
import io
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from bot.services.safe_text import cell
from storage.repositories.answers import AnswerFilters, Position
from storage.uow import Database, Store

__all__ = ["CSV_COLUMNS", "CSV_PAGE", "XLSX_TYPE", "AnswerFilters", "ExportService",
           "decode_cursor", "encode_cursor", "export_filename"]

# An answer as storage reads it: its columns by name, the customer's external_id among them.
Row = Mapping[Any, Any]
CSV_PAGE = 1000  # answers read per unit of work while writing a CSV or an XLSX file
CSV_COLUMNS = ("id", "answered_at", "survey_id", "script_version", "session_id", "customer",
               "step_id", "metric", "score", "choices", "text", "channel", "segment",
               "respondent", "context")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Excel opens a UTF-8 file as UTF-8 (and Cyrillic as such) only when it starts with a BOM.
BOM = "\ufeff"


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
        # A forged one's date or id the database cannot hold is refused as any other.
        usable = (position[0].tzinfo is not None and 0 < position[1] < 2**63
                  and 1900 <= position[0].astimezone(UTC).year <= 9998)
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError, OverflowError):
        usable = False
    if not usable:
        raise ValueError("not a cursor from this API (pass next_cursor as it is)")
    return position


def _item(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "survey_id": row["survey_id"],
            "script_version": row["script_version"], "session_id": row["session_id"],
            "customer": row["external_id"], "step_id": row["step_id"],
            "metric": row["metric"], "score": row["score"], "choices": row["choices"],
            "text": row["text"], "channel": row["channel"], "segment": row["segment"],
            "respondent": row["respondent"], "context": row["context"],
            "answered_at": row["answered_at"]}


class ExportService:
    """Answers read page by page, each page in a read-only transaction of its own."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(self, filters: AnswerFilters, *, cursor: str | None, limit: int
                   ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of answers, newest first, and the cursor of the next (None after the
        last). ValueError for a cursor this module did not make."""
        after = decode_cursor(cursor) if cursor else None
        rows = await self._db.read(functools.partial(_page, filters, after, limit + 1))
        items = [_item(row) for row in rows[:limit]]
        following = None
        if len(rows) > limit:
            following = encode_cursor((items[-1]["answered_at"], items[-1]["id"]))
        return items, following

    async def comments(self, filters: AnswerFilters, limit: int) -> Sequence[Row]:
        """The newest free texts matching `filters`, each with its dialogue's score as
        `dialogue_score` (Answers.comments): the dashboard's latest comments."""
        return await self._db.read(lambda store: store.answers.comments(filters, limit))

    async def _pages(self, filters: AnswerFilters, page_size: int | None
                     ) -> AsyncIterator[Sequence[Row]]:
        """The answers matching `filters`, newest first, a page of `page_size` at a time."""
        size = page_size or CSV_PAGE
        after: Position | None = None
        while True:
            rows = await self._db.read(functools.partial(_page, filters, after, size))
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = rows[-1]["answered_at"], rows[-1]["id"]

    async def csv(self, filters: AnswerFilters, *, page_size: int | None = None
                  ) -> AsyncIterator[bytes]:
        """The answers matching `filters` as CSV in UTF-8 with a BOM, newest first: a chunk
        for the header, then one per page of `page_size` answers."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        yield (BOM + buffer.getvalue()).encode()
        async for rows in self._pages(filters, page_size):
            buffer.seek(0)
            buffer.truncate()
            writer.writerows(_cells(row) for row in rows)
            yield buffer.getvalue().encode()

    async def xlsx(self, filters: AnswerFilters, path: Path, *,
                   page_size: int | None = None) -> None:
        """The CSV's rows as an XLSX workbook at `path`. openpyxl's write-only mode keeps the
        rows in a temporary file, not in memory; its work runs in a thread, off the loop."""
        book = Workbook(write_only=True)
        sheet = book.create_sheet("answers")
        sheet.append(CSV_COLUMNS)
        async for rows in self._pages(filters, page_size):
            await asyncio.to_thread(_append, sheet, rows)
        await asyncio.to_thread(book.save, path)


def _page(filters: AnswerFilters, after: Position | None, limit: int, store: Store
          ) -> Sequence[Row]:
    return store.answers.page(filters, after, limit)


def _append(sheet: WriteOnlyWorksheet, rows: Sequence[Row]) -> None:
    for row in rows:
        sheet.append([_text_cell(sheet, value) if isinstance(value, str) else value
                      for value in _cells(row)])


def _text_cell(sheet: WriteOnlyWorksheet, value: str) -> Cell:
    # Typed as text explicitly: openpyxl would take "=..." for a formula and "#N/A" for an
    # error. XML 1.0 has no place for most C0 controls; openpyxl refuses them.
    text = WriteOnlyCell(sheet, ILLEGAL_CHARACTERS_RE.sub("", value))
    text.data_type = "s"
    return text


def _cells(row: Row) -> list[object]:
    return [cell(value) for value in (
        row["id"], row["answered_at"].isoformat(), row["survey_id"], row["script_version"],
        row["session_id"], row["external_id"], row["step_id"], row["metric"], row["score"],
        ";".join(row["choices"] or ()), row["text"], row["channel"], row["segment"],
        row["respondent"],
        json.dumps(row["context"], ensure_ascii=False) if row["context"] else "")]


def export_filename(filters: AnswerFilters, today: date, extension: str) -> str:
    """answers-<survey>-<date>.<extension> ("all" when not one survey)."""
    survey = re.sub(r"[^A-Za-z0-9_.-]", "_", filters.survey or "all")  # a header value
    return f"answers-{survey}-{today.isoformat()}.{extension}"
