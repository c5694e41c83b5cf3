"""bench/web.py's core on a few deliveries, in one process (the bench puts the load client in
a process of its own): every page is opened and re-rendered with question 1's form, every
answer is answered 303 and committed once, the baseline answers "hello", a refused request
is a failure and not a figure, and the report names ratios and targets."""

from __future__ import annotations

from pathlib import Path

from bench import web


async def test_pages_open_render_and_answers_commit(tmp_path: Path) -> None:
    opens, renders, answers = await web.otklik_round(
        tmp_path / "web.db", web.LocalClient(), seconds=0.2, deliveries=6, concurrency=3)

    # otklik_round raises unless 6 pages opened with their dialogue ids, every page held
    # question 1's form, and 6 POSTs were answered 303 with 6 answers committed.
    assert min(opens.rate, renders.rate, answers.rate) > 0
    assert min(opens.cpu, renders.cpu, answers.cpu) > 0


async def test_the_baseline_says_hello_to_gets_and_posts() -> None:
    got, posted = await web.hello_round(web.LocalClient(), seconds=0.2, deliveries=10,
                                        concurrency=3, warmup=5)

    assert got.rate > 0
    assert posted.rate > 0


async def test_a_refused_answer_is_a_failure_not_a_figure(tmp_path: Path) -> None:
    async with web.otklik_site(tmp_path / "web.db", 1) as site:
        unknown = await web.load(web.Job(site.url, "answer", ("no-such-token",), (1,),
                                         concurrency=1))
        opened = await web.load(web.Job(site.url, "open", site.tokens, concurrency=1))

    assert (unknown.ok, unknown.failures) == (0, 1)
    assert unknown.first_failure is not None
    assert unknown.first_failure.startswith("POST 410")
    assert (opened.ok, opened.failures) == (1, 0)
    assert opened.sessions[0] > 0


def test_the_report_names_ratios_and_targets() -> None:
    def round_(scale: float) -> web.Round:  # every rate times scale, every CPU time over it
        def phase(rate: float, cpu: float) -> web.Phase:
            return web.Phase(rate * scale, cpu / scale)

        return web.Round(opens=phase(150.0, 0.006), renders=phase(1200.0, 0.0008),
                         answers=phase(250.0, 0.003), hello_get=phase(3000.0, 0.0002),
                         hello_post=phase(2000.0, 0.0002))

    lines = web.report([round_(1.0), round_(0.5), round_(2.0), round_(1.25), round_(0.8)])

    assert lines[0].endswith("1,200 (600–2,400) renders/s, server CPU 0.800 ms (0.400–1.600) "
                             "per request (target <= 0.80 ms per render: met)")
    assert lines[1].endswith("3,000 (1,500–6,000) requests/s, server CPU 0.200 ms (0.100–0.400) "
                             "per request; ratio 0.40 (target >= 0.3: met)")
    assert lines[2].endswith("150 (75–300) pages/s, server CPU 6.00 ms (3.00–12.00) per "
                             "request; ratio 0.05")
    assert lines[3].endswith("250 (125–500) answers/s, server CPU 3.00 ms (1.50–6.00) per "
                             "request (target >= 300 answers/s: MISSED)")
    assert lines[4].endswith("ratio 0.12 (target >= 0.1: met)")
