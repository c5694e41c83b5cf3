from __future__ import annotations

import asyncio

import pytest

from conversations.script import Script, parse_script, script_to_data
from storage.errors import NotFound
from storage.uow import Database, Store
from tests.integration.storage.support import (
    CSAT_YAML,
    NOW,
    Factory,
    begin,
    csat_script,
    load,
    reply,
    store,
)


async def test_a_new_version_leaves_dialogues_in_flight_on_theirs(factory: Factory) -> None:
    assert await store(factory, csat_script("Rate your call")) == 1
    db = Database(factory)
    v1 = Script.model_validate(
        (await db.read(lambda store: store.scripts.get("call_csat", 1))).body)
    in_flight = await begin(factory, v1)

    assert await store(factory, csat_script("Rate our call")) == 2  # the file still says 1

    latest, old, active = await db.read(lambda store: (
        store.scripts.latest("call_csat"), store.scripts.get("call_csat", 1),
        store.scripts.active()))
    assert latest is not None
    assert (latest.version, latest.body["version"], latest.title) == (
        2, 2, {"en": "Rate our call"})
    assert (old.body["version"], old.body["title"]) == (1, {"en": "Rate your call"})
    assert [(row.survey_id, row.version) for row in active] == [("call_csat", 2)]

    # The old dialogue goes on under v1: its stored body still drives the engine.
    assert (await load(factory, in_flight.id)).script_version == 1
    await reply(factory, Script.model_validate(old.body), in_flight.id, "5")
    assert (await load(factory, in_flight.id)).script_version == 1

    fresh = await begin(factory, Script.model_validate(latest.body))
    assert (fresh.script_version, fresh.dialogue_state().version) == (2, 2)


async def test_versions_and_the_active_one(factory: Factory) -> None:
    seven = parse_script(CSAT_YAML.replace("version: 1", "version: 7"))
    assert await store(factory, csat_script()) == 1
    assert await store(factory, seven) == 7  # the body's own version, being higher
    assert await store(factory, seven) == 8

    def check(store: Store) -> None:
        store.scripts.set_active("call_csat", 1)
        assert [r.version for r in store.scripts.active()] == [1]
        assert store.scripts.active_version("call_csat") == 1
        assert store.scripts.active_versions() == [("call_csat", 1)]
        assert [row.version for row in store.scripts.versions("call_csat")] == [1, 7, 8]
        [(latest, active)] = store.scripts.surveys()
        assert (latest.version, active) == (8, 1)
        assert store.scripts.body("call_csat", 7) == store.scripts.get("call_csat", 7).body
        store.scripts.set_active("call_csat", None)
        assert store.scripts.active() == []
        assert store.scripts.active_for("call_csat") is None
        assert store.scripts.surveys()[0][1] is None
        with pytest.raises(NotFound):
            store.scripts.set_active("call_csat", 2)
        with pytest.raises(NotFound):
            store.scripts.get("call_csat", 2)
        assert store.scripts.body("call_csat", 2) is None
        assert store.scripts.latest("nps") is None

    await Database(factory).write(check)


async def test_two_loaders_at_once_take_distinct_versions(factory: Factory) -> None:
    script = csat_script()

    async def add() -> int:
        # Two sessions of their own: Database.write runs one write at a time on SQLite.
        async with factory() as session:
            await session.run_sync(lambda sync: Store(sync).scripts.latest(script.id))
            await asyncio.sleep(0.05)  # let the other loader read the same latest version
            row = await session.run_sync(lambda sync: Store(sync).scripts.add(
                script.id, script_to_data(script), CSAT_YAML, "0" * 64, "tests",
                script.title, now=NOW))
            await session.commit()
            return row.version

    assert sorted(await asyncio.gather(add(), add())) == [1, 2]
