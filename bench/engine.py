"""Engine benchmark: replies/s through `advance` over a 6-step script, and answers/s recorded
through the unit of work on SQLite, each as a ratio to a plain baseline in the same run.

Run: python -m bench.engine [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from conversations.engine import Reply, Turn, advance, start
from conversations.script import Script, parse_script, script_to_data
from storage.db import SQLITE_PRAGMAS, create_engine, session_factory
from storage.migrate import upgrade_async
from storage.models import DialogueRow
from storage.repositories.dialogues import BY_ID
from storage.uow import Stepped, UnitOfWork

SCRIPT = """
id: bench
default_locale: en
title: {en: Bench}
steps:
  - {id: score, type: nps, text: {en: "Recommend {context.shop|us}?"}}
  - {id: reason, type: text, optional: true, text: {en: "Why?"}}
  - {id: csat, type: csat, text: {en: "Satisfied?"},
     next: [{when: {step: csat, lte: 2}, goto: fix}, {goto: channel}]}
  - {id: fix, type: yes_no, text: {en: "Shall we call you?"}}
  - id: channel
    type: choice
    text: {en: "How did you contact us?"}
    options: [{id: phone, text: {en: Phone}}, {id: chat, text: {en: Chat}}]
  - {id: thanks, type: message, text: {en: "Thanks!"}}
"""
REPLIES = ("9", "Quick and friendly", "4", "2")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rate(work: Callable[[], int], seconds: float,
         clock: Callable[[], float] = time.process_time) -> float:
    """Units of work per second of `clock`, over at least `seconds` of repeated calls.
    CPU time by default: "per core" figures should not depend on what else the machine runs."""
    done, began = 0, clock()
    while (elapsed := clock() - began) < seconds:
        done += work()
    return done / elapsed


def engine_dialogues(script: Script) -> int:
    turn: Turn = start(script, now=NOW, context={"shop": "Downtown"})
    for text in REPLIES:
        turn = advance(script, turn.state, Reply.typed(text), NOW)
    assert turn.finished
    return len(REPLIES)


def plain_dialogues() -> int:
    """The least any survey bot does per reply: parse, check the range, move an index."""
    checks: list[Callable[[str], object]] = [
        lambda s: 0 <= int(s) <= 10, lambda s: len(s) <= 2000,
        lambda s: 1 <= int(s) <= 5, lambda s: s in ("1", "2"),
    ]
    step, answers = 0, {}
    for text in REPLIES:
        if checks[step](text.strip()):
            answers[step] = text
            step += 1
    assert step == len(REPLIES)
    return len(REPLIES)


def bench_engine(seconds: float) -> list[str]:
    script = parse_script(SCRIPT, "bench.yaml")
    engine = rate(lambda: engine_dialogues(script), seconds)
    plain = rate(plain_dialogues, seconds)
    return [
        f"advance: {engine:,.0f} replies/s on one core (target >= 50,000)",
        f"  baseline, hand-written parse-and-step loop: {plain:,.0f} replies/s; "
        f"ratio {engine / plain:.3f}",
    ]


async def record_answers(url: str, dialogues: int) -> float:
    """Answers/s the way the product records them: per reply one unit of work that reads
    the session, advances, writes answer + rollup + state, and commits (UnitOfWork.step)."""
    await upgrade_async(url)
    engine = create_engine(url)
    factory = session_factory(engine)
    script = parse_script(SCRIPT, "bench.yaml")
    async with UnitOfWork(factory) as uow:
        await uow.scripts.add(script.id, script_to_data(script), SCRIPT, "0" * 64, "bench",
                              script.title, now=NOW)
        customer = await uow.customers.add(now=NOW, external_id="bench")
        ids = []
        for _ in range(dialogues):
            turn = start(script, now=NOW)
            row = await uow.sessions.start(customer.id, "web", script.id, 1,
                                           turn.state.to_json(), now=NOW)
            ids.append(row.id)
        await uow.commit()
    answers, began = 0, time.perf_counter()
    for session_id in ids:
        for text in REPLIES:
            def step(_: Session, dialogue: DialogueRow, text: str = text) -> tuple[Turn, str]:
                return advance(script, dialogue.dialogue_state(), Reply.typed(text), NOW), "UTC"

            async with UnitOfWork(factory) as uow:
                stepped = await uow.step(BY_ID, {"k_id": session_id}, step, now=NOW)
                assert isinstance(stepped, Stepped)
                answers += len(stepped.recorded)
    elapsed = time.perf_counter() - began
    await engine.dispose()
    return answers / elapsed


async def plain_inserts(path: Path, rows: int) -> float:
    """The baseline: a bare INSERT per row, one transaction each, same SQLite settings."""
    async with aiosqlite.connect(path, isolation_level=None) as db:
        for pragma in SQLITE_PRAGMAS:
            await db.execute(pragma)
        await db.execute("CREATE TABLE answers (id INTEGER PRIMARY KEY, session_id INTEGER, "
                         "step_id TEXT, score INTEGER, text TEXT, answered_at TEXT)")
        began = time.perf_counter()
        for n in range(rows):
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO answers (session_id, step_id, score, text, "
                             "answered_at) VALUES (?, ?, ?, ?, ?)",
                             (n // 4, f"step{n % 4}", n % 11, None, NOW.isoformat()))
            await db.execute("COMMIT")
        return rows / (time.perf_counter() - began)


async def engine_inserts(url: str, rows: int) -> float:
    """The same bare INSERT per transaction, through the product's own engine (SQLAlchemy
    Core on the same driver and pool): what the unit of work adds beyond writing a row."""
    engine = create_engine(url)
    table = "CREATE TABLE answers (id INTEGER PRIMARY KEY, session_id INTEGER, step_id TEXT, " \
            "score INTEGER, text TEXT, answered_at TEXT)"
    insert = sql("INSERT INTO answers (session_id, step_id, score, text, answered_at) "
                  "VALUES (:session, :step, :score, NULL, :at)")
    async with engine.begin() as connection:
        await connection.execute(sql(table))
    began = time.perf_counter()
    for n in range(rows):
        async with engine.begin() as connection:
            await connection.execute(insert, {"session": n // 4, "step": f"step{n % 4}",
                                              "score": n % 11, "at": NOW.isoformat()})
    elapsed = time.perf_counter() - began
    await engine.dispose()
    return rows / elapsed


def bench_storage(dialogues: int, rounds: int) -> list[str]:
    """Medians over `rounds` rounds, each measuring all three on fresh files one after the
    other, so a slow spell of the machine weighs on the figures alike."""
    rows = dialogues * len(REPLIES)
    recorded, same_stack, raw = [], [], []
    for n in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            recorded.append(asyncio.run(record_answers(f"sqlite+aiosqlite:///{tmp}/uow.db",
                                                       dialogues)))
            same_stack.append(asyncio.run(engine_inserts(f"sqlite+aiosqlite:///{tmp}/core.db",
                                                         rows)))
            raw.append(asyncio.run(plain_inserts(Path(tmp) / f"plain{n}.db", rows)))
    answers, same, plain = (statistics.median(r) for r in (recorded, same_stack, raw))
    return [
        f"recorded answers (unit of work: answer + rollup + state, SQLite file): "
        f"{answers:,.0f} answers/s (median of {rounds} rounds)",
        f"  baseline, bare INSERT per transaction through the product's engine: "
        f"{same:,.0f} rows/s; ratio {answers / same:.2f} (target >= 0.5)",
        f"  baseline, bare INSERT per transaction on raw aiosqlite (no SQLAlchemy): "
        f"{plain:,.0f} rows/s; ratio {answers / plain:.2f}",
    ]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dialogues", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    lines = bench_engine(args.seconds) + bench_storage(args.dialogues, args.rounds)
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
