"""Probe: a link scanner on the score links of an e-mail.

Found: GET /e/{token}/{score} recorded the score, so a mail gateway or link preview that
fetches every link of a message answered the survey (with whichever link it fetched first)
before the customer saw it. Here a real invitation goes through the product's e-mail
channel to an SMTP server on loopback; a scanner (a client of its own, no cookies) sends
HEAD and GET to each of its score links (and its page and unsubscribe links), three times,
following redirects and not: no table of the database changes. Then the customer's Send on
the page stores the score and the follow-up once, and the same form sent again stores
nothing more."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from sqlalchemy import select

from storage.models import AnswerRow, Base, OutboxRow
from tests.e2e.test_email import SCORE_LINK, World, by_email, parts, score_form, world

SCANS = 3  # a gateway, an antivirus, a preview: each fetches every link
SECONDS = 60  # the whole probe; 11 links x 2 methods x 2 redirect modes x SCANS requests


async def database(w: World) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the product, by table: what a GET must leave alone."""
    async with w.api.services.factory() as session:
        return {table.name: [tuple(row) for row in await session.execute(
                    select(table).order_by(*table.primary_key.columns))]
                for table in Base.metadata.sorted_tables}


async def scan(w: World, links: list[str]) -> list[int]:
    """What a scanner does with the message's links; the statuses it got."""
    statuses = []
    async with aiohttp.ClientSession() as scanner:
        for _ in range(SCANS):
            for link in links:
                for method in ("HEAD", "GET"):
                    for follow in (False, True):
                        async with scanner.request(method, link,
                                                   allow_redirects=follow) as response:
                            await response.read()
                            statuses.append(response.status)
    return statuses


async def test_a_scanner_on_every_score_link_records_nothing(db_url: str) -> None:
    async with asyncio.timeout(SECONDS), world(
            db_url, outbound_webhook_url="http://127.0.0.1:9/hooks") as w:
        await w.api.post("/api/v1/triggers", by_email())
        await w.dispatcher.tick()
        [message] = w.mailbox.messages
        text, html = parts(message)
        base = str(w.api.client.make_url("/"))
        links = [base + w.path(link).lstrip("/") for link in SCORE_LINK.findall(text)]
        assert len(links) == 11
        assert all(w.path(link) in html for link in SCORE_LINK.findall(text))
        page = re.search(r"Answer on the web: (\S+)", text)
        assert page is not None
        # The message's other links of ours, its page and its unsubscribe link, as well.
        others = [base + w.path(link).lstrip("/")
                  for link in (page[1], message["List-Unsubscribe"].strip("<>"))]
        sent = await database(w)

        assert set(await scan(w, links + others)) == {200}
        assert await database(w) == sent

        # The customer taps 2 in the e-mail, types why on the page and sends it.
        two = next(link for link in links if link.endswith("/2"))
        customer = w.api.client.session
        form = await score_form(customer, two, "The parcel came broken")
        response = await customer.post(two, data=form, allow_redirects=False)
        assert response.status == 200
        assert "Thank you for your feedback!" in await response.text()
        again = await customer.post(two, data=form)  # sent twice, or from another tab
        assert again.status == 200
        assert "Your answers are saved" in await again.text()
        async with w.api.services.factory() as session:
            answers = list(await session.scalars(select(AnswerRow).order_by(AnswerRow.id)))
            outbox = list(await session.scalars(select(OutboxRow)))
        assert [(a.step_id, a.score, a.text) for a in answers] == [
            ("score", 2, None), ("reason", None, "The parcel came broken")]
        assert outbox  # what the scanner did not cause, the customer's Send did
        after = await database(w)
        assert after["deliveries"] != sent["deliveries"]  # completed

        # A scanner that comes back later finds the survey answered, and changes nothing.
        assert set(await scan(w, links)) <= {200, 303}
        assert await database(w) == after
