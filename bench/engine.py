"""Engine benchmark: replies/s through `advance` over a 6-step script, and answers/s recorded
through Database.write on SQLite, each as a ratio to a plain baseline in the same run,
with the CPU time per reply and per answer beside each rate.

Rounds alternate product and baselines (advance, then the hand-written loop; recorded
answers, then bare INSERTs through the product's engine, then on raw aiosqlite); each figure
is the median of the rounds, with their min–max beside it. CPU time is this process's
(user + sys, all threads: SQLite's included) over the phase, per reply or answer.

Run: python -m bench.engine [--seconds S] [--rounds N] [--dialogues N]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import aiosqlite
from sqlalchemy import text as sql

from bench.stats import ROUNDS, Spread, spread_note
from conversations.engine import Reply, Turn, advance, start
from conversations.script import Script, parse_script, script_to_data
from storage.db import SQLITE_PRAGMAS, create_engine, session_factory
from storage.migrate import upgrade_async
from storage.uow import Database, Store

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


def bench_engine(seconds: float, rounds: int) -> list[str]:
    """Replies per CPU second, so CPU per reply is its inverse."""
    script = parse_script(SCRIPT, "bench.yaml")
    engine_rates, plain_rates = [], []
    for _ in range(rounds):  # alternating: a slow spell of the machine weighs on both
        engine_rates.append(rate(lambda: engine_dialogues(script), seconds))
        plain_rates.append(rate(plain_dialogues, seconds))
    engine, plain = Spread.of(engine_rates), Spread.of(plain_rates)
    engine_cpu = Spread.of(1 / r for r in engine_rates)
    plain_cpu = Spread.of(1 / r for r in plain_rates)
    return [
        f"advance: {engine.show()} replies/s on one core, CPU "
        f"{engine_cpu.us()} per reply (target >= 50,000 replies/s: "
        f"{'met' if engine.median >= 50_000 else 'MISSED'})",
        f"  baseline, hand-written parse-and-step loop: {plain.show()} replies/s, "
        f"CPU {plain_cpu.us()} per reply; ratio {engine.median / plain.median:.3f}",
    ]


class Timed(NamedTuple):
    rate: float  # operations per wall second
    cpu: float  # CPU seconds of this process per operation

    @classmethod
    def since(cls, operations: int, wall: float, cpu: float) -> Timed:
        """From the perf_counter() and process_time() read when the operations began."""
        return cls(operations / (time.perf_counter() - wall),
                   (time.process_time() - cpu) / operations)


async def record_answers(url: str, dialogues: int) -> Timed:
    """Answers/s the way the product records a reply: per reply one Database.write that
    reads the dialogue, advances it, and records answer + rollup + state (Dialogues.record)."""
    await upgrade_async(url)
    engine = create_engine(url)
    db = Database(session_factory(engine))
    script = parse_script(SCRIPT, "bench.yaml")

    def prepare(store: Store) -> list[int]:
        store.scripts.add(script.id, script_to_data(script), SCRIPT, "0" * 64, "bench",
                          script.title, now=NOW)
        customer = store.customers.add(now=NOW, external_id="bench")
        return [store.dialogues.start(customer.id, "web", script.id, 1,
                                      start(script, now=NOW).state.to_json(), now=NOW).id
                for _ in range(dialogues)]

    def reply(store: Store, dialogue_id: int, text: str) -> int:
        dialogue = store.dialogues.get(dialogue_id)
        assert dialogue is not None
        turn = advance(script, dialogue.dialogue_state(), Reply.typed(text), NOW)
        return len(store.dialogues.record(dialogue, turn.state, turn.answers, turn.retracted,
                                          turn.ending, NOW, "UTC"))

    ids = await db.write(prepare)
    answers, began, cpu = 0, time.perf_counter(), time.process_time()
    for dialogue_id in ids:
        for text in REPLIES:
            answers += await db.write(functools.partial(reply, dialogue_id=dialogue_id,
                                                        text=text))
    timed = Timed.since(answers, began, cpu)
    await engine.dispose()
    return timed


async def plain_inserts(path: Path, rows: int) -> Timed:
    """The baseline: a bare INSERT per row, one transaction each, same SQLite settings."""
    async with aiosqlite.connect(path, isolation_level=None) as db:
        for pragma in SQLITE_PRAGMAS:
            await db.execute(pragma)
        await db.execute("CREATE TABLE answers (id INTEGER PRIMARY KEY, session_id INTEGER, "
                         "step_id TEXT, score INTEGER, text TEXT, answered_at TEXT)")
        began, cpu = time.perf_counter(), time.process_time()
        for n in range(rows):
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO answers (session_id, step_id, score, text, "
                             "answered_at) VALUES (?, ?, ?, ?, ?)",
                             (n // 4, f"step{n % 4}", n % 11, None, NOW.isoformat()))
            await db.execute("COMMIT")
        return Timed.since(rows, began, cpu)


async def engine_inserts(url: str, rows: int) -> Timed:
    """The same bare INSERT per transaction, through the product's own engine (SQLAlchemy
    Core on the same driver and pool): what the unit of work adds beyond writing a row."""
    engine = create_engine(url)
    table = "CREATE TABLE answers (id INTEGER PRIMARY KEY, session_id INTEGER, step_id TEXT, " \
            "score INTEGER, text TEXT, answered_at TEXT)"
    insert = sql("INSERT INTO answers (session_id, step_id, score, text, answered_at) "
                  "VALUES (:session, :step, :score, NULL, :at)")
    async with engine.begin() as connection:
        await connection.execute(sql(table))
    began, cpu = time.perf_counter(), time.process_time()
    for n in range(rows):
        async with engine.begin() as connection:
            await connection.execute(insert, {"session": n // 4, "step": f"step{n % 4}",
                                              "score": n % 11, "at": NOW.isoformat()})
    timed = Timed.since(rows, began, cpu)
    await engine.dispose()
    return timed


def bench_storage(dialogues: int, rounds: int) -> list[str]:
    """Medians over `rounds` rounds, each measuring all three on fresh files one after the
    other, so a slow spell of the machine weighs on the figures alike."""
    rows = dialogues * len(REPLIES)
    recorded: list[Timed] = []
    same_stack: list[Timed] = []
    raw: list[Timed] = []
    for n in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            recorded.append(asyncio.run(record_answers(f"sqlite+aiosqlite:///{tmp}/uow.db",
                                                       dialogues)))
            same_stack.append(asyncio.run(engine_inserts(f"sqlite+aiosqlite:///{tmp}/core.db",
                                                         rows)))
            raw.append(asyncio.run(plain_inserts(Path(tmp) / f"plain{n}.db", rows)))
    answers, same, plain = (Spread.of(rate for rate, _ in r)
                            for r in (recorded, same_stack, raw))
    answers_cpu, same_cpu, plain_cpu = (Spread.of(cpu for _, cpu in r)
                                        for r in (recorded, same_stack, raw))
    ratio = answers.median / same.median
    return [
        f"recorded answers (one Database.write per reply: answer + rollup + state, SQLite "
        f"file): "
        f"{answers.show()} answers/s, CPU {answers_cpu.us()} per answer",
        f"  baseline, bare INSERT per transaction through the product's engine: "
        f"{same.show()} rows/s, CPU {same_cpu.us()} per row; ratio "
        f"{ratio:.2f} (target >= 0.5: {'met' if ratio >= 0.5 else 'MISSED'})",
        f"  baseline, bare INSERT per transaction on raw aiosqlite (no SQLAlchemy): "
        f"{plain.show()} rows/s, CPU {plain_cpu.us()} per row; ratio "
        f"{answers.median / plain.median:.2f}",
    ]


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="CPU seconds of `advance` and of its baseline per round")
    parser.add_argument("--dialogues", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=max(ROUNDS, 7))
    args = parser.parse_args(argv)
    lines = [spread_note(args.rounds), *bench_engine(args.seconds, args.rounds),
             *bench_storage(args.dialogues, args.rounds)]
    for line in lines:
        print(line)
    return lines


if __name__ == "__main__":
    main()
