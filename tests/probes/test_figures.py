"""The finding: an NPS card said "0 answered of 0 delivered" beside five anonymous answers,
as if a survey nobody was sent had a response rate. Now no survey sent is said as such,
the rate is null, and the anonymous answers are counted beside it, never in it."""

from __future__ import annotations

from tests.e2e.dashboard_support import log_in
from tests.e2e.test_figures_api import visitors
from tests.e2e.trigger_support import serving


async def test_no_survey_sent_is_no_rate_and_the_anonymous_answers_stand_beside_it(
        db_url: str) -> None:
    async with serving(db_url) as api:
        await visitors(api, [10, 9, 9, 3, 7])

        status, body = await api.get("/api/v1/metrics?survey=nps")
        assert status == 200
        assert body["response_rate"] == {"of": 0, "count": 0, "percent": None,
                                         "anonymous_answers": 5}
        assert (await log_in(api)).status == 303
        overview = await (await api.client.get("/admin/")).text()
        card = overview.split('data-survey="nps"', 1)[1].split("</section>", 1)[0]
        assert "0 answered of 0" not in card
        assert "Response rate: no surveys sent" in card
        assert "5 anonymous answers" in card
