"""The soak (bench/soak.py) in short, as a test: the whole product as `otklik run` runs it,
customers answering in Telegram, by e-mail and on the web at once, killed with SIGKILL twice
at random moments and restarted; afterwards every answer a customer saw taken is stored once
with its value, nothing is stored that nobody gave, the rollups equal a recount, and no
delivery reached its customer twice. On PostgreSQL as the README's deployment runs it: two
processes behind one URL, each request to either."""

from __future__ import annotations

from pathlib import Path

from bench.soak import Config, soak

SECONDS, RATE = 15.0, 4.0


async def test_a_short_soak_with_two_kills_keeps_every_invariant(db_url: str,
                                                                  tmp_path: Path) -> None:
    processes = 2 if db_url.startswith("postgresql") else 1
    result = await soak(Config(db_url, SECONDS, customers=40, rate=RATE, think=(0.1, 0.6),
                               kills=2, processes=processes, sample=1.0), tmp_path)

    assert result.violations == []
    assert not result.ledger.errors, result.ledger.first_errors
    assert len(result.ledger.kills) == 2
    surveys = result.ledger.surveys
    assert set(surveys) == {"telegram", "email", "web"}, surveys
    assert sum(surveys.values()) >= 0.8 * SECONDS * RATE, surveys  # the load was kept up
    assert result.stored >= 2 * sum(surveys.values())
    # Each process sampled; two killed and restarted, each a new process.
    assert len({pid for _, _, pid, _, _ in result.ledger.samples}) == processes + 2
