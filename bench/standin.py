"""The platform's side of a channel benchmark: its stand-in (testkit's Bot API, Graph API or
Twilio stub) and the load client that posts its webhooks, in a helper process of their own
for the figures (forked before any event loop exists), or in the bench's process for the
tests.

    META = StandIn("Meta", GraphApiStub, stub_count, webhook)
    child = Child(META.process)  # before any event loop or thread exists
    meta = META.remote(child)    # or META.local(api) on a stand-in of this process
    phase = await replies(meta, Job(url, customers, "9"), "'9'")  # a Phase, checked
    child.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from testkit.loopback import Loopback

CONCURRENCY = 32  # webhooks in flight

S = TypeVar("S", bound=Loopback)
Webhook = tuple[bytes | dict[str, str], dict[str, str]]  # a POST's data and headers


class Child:
    """A helper process that answers what it is sent through a pipe; None stops it. Forked,
    so it starts with every module already imported (a fresh interpreter spends seconds
    importing aiogram): create it before any event loop or thread exists."""

    def __init__(self, target: Callable[[Pipe], None]) -> None:
        context = multiprocessing.get_context("fork")
        self._pipe, theirs = context.Pipe()
        self._process = context.Process(target=target, args=(theirs,), daemon=True)
        self._process.start()
        theirs.close()

    def receive(self) -> Any:
        return self._pipe.recv()

    async def ask(self, message: object) -> Any:
        self._pipe.send(message)
        # In a thread: the event loop goes on serving while the child works.
        return await asyncio.to_thread(self._pipe.recv)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._pipe.send(None)
        self._process.join(30)
        if self._process.is_alive():
            self._process.terminate()
        self._pipe.close()


@dataclass(frozen=True, slots=True)
class StubCount:
    sent: int  # messages the stand-in accepted
    errors: int
    first_error: str | None


@dataclass(frozen=True, slots=True)
class Job:
    """Each customer in `customers` writes `text` once to `url`, `concurrency` at a time;
    `signed_url`: the address the signature covers, where the platform signs one (Twilio)."""

    url: str
    customers: tuple[str, ...]
    text: str
    concurrency: int = CONCURRENCY
    signed_url: str = ""


@dataclass(frozen=True, slots=True)
class Load:
    """What the client saw: webhooks answered 200, the wall time, and any failures."""

    ok: int
    seconds: float
    failures: int = 0
    first_failure: str | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


@dataclass(frozen=True, slots=True)
class Phase:
    """Webhooks/s as the client saw them, and the server's CPU seconds per webhook (this
    process, all its threads)."""

    rate: float
    cpu: float


async def post_all(job: Job, webhook: Callable[[str], Webhook]) -> Load:
    """POST each customer's webhook. Requests are built and signed as they go: this process
    has its own core."""
    todo = iter(job.customers)
    ok = failures = 0
    first_failure: str | None = None

    async def post(http: aiohttp.ClientSession, customer: str) -> None:
        nonlocal ok, failures, first_failure
        data, headers = webhook(customer)
        try:
            async with http.post(job.url, data=data, headers=headers) as response:
                answer = await response.read()
        except aiohttp.ClientError as error:
            failures += 1
            first_failure = first_failure or f"{customer}: {type(error).__name__} {error}"
            return
        if response.status == 200:
            ok += 1
        else:
            failures += 1
            first_failure = first_failure or f"{customer}: {response.status} {answer[:300]!r}"

    async def worker(http: aiohttp.ClientSession) -> None:
        for customer in todo:
            await post(http, customer)

    connector = aiohttp.TCPConnector(limit=job.concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        began = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(job.concurrency):
                group.create_task(worker(http))
        elapsed = time.perf_counter() - began
    return Load(ok, elapsed, failures, first_failure)


class Platform(Protocol):
    """The platform's side: in its own process for the figures, in this one for the tests."""

    base_url: str

    async def post(self, job: Job) -> Load: ...

    async def count(self) -> StubCount: ...


@dataclass(frozen=True)
class StandIn(Generic[S]):
    """A platform's stand-in: its class, what it accepted so far, and a customer's webhook
    as the platform builds and signs it (None: it posts none)."""

    name: str  # whose process: "Meta", "Twilio"
    stub: type[S]
    count: Callable[[S], StubCount]
    webhook: Callable[[S, Job, str], Webhook] | None = None

    async def post(self, api: S, job: Job) -> Load:
        webhook = self.webhook
        if webhook is None:
            raise TypeError(f"{self.name} posts no webhooks")
        return await post_all(job, lambda customer: webhook(api, job, customer))

    def process(self, pipe: Pipe) -> None:
        """The stand-in's process: sends its base URL, then answers each Job with a Load and
        each "count" with a StubCount, until None."""
        asyncio.run(self._serve(pipe))

    async def _serve(self, pipe: Pipe) -> None:
        async with self.stub() as api:
            pipe.send(api.base_url)
            # The pipe is read on a thread: the stand-in goes on answering meanwhile.
            while (request := await asyncio.to_thread(pipe.recv)) is not None:
                try:
                    pipe.send(self.count(api) if request == "count"
                              else await self.post(api, request))
                except Exception:
                    pipe.send(RuntimeError(traceback.format_exc()))  # any exception's text pickles

    def remote(self, child: Child) -> Remote:
        """The side served by `child`, forked with `self.process`."""
        return Remote(child, self.name)

    def local(self, api: S) -> Local[S]:
        """The side on `api`, a stand-in served by this process."""
        return Local(self, api)


class Remote:
    def __init__(self, child: Child, name: str) -> None:
        self._child, self._name = child, name
        self.base_url: str = child.receive()

    async def _ask(self, request: object) -> Any:
        answer = await self._child.ask(request)
        if isinstance(answer, BaseException):
            raise RuntimeError(f"{self._name}'s process failed") from answer
        return answer

    async def post(self, job: Job) -> Load:
        load: Load = await self._ask(job)
        return load

    async def count(self) -> StubCount:
        stubbed: StubCount = await self._ask("count")
        return stubbed


class Local(Generic[S]):
    def __init__(self, standin: StandIn[S], api: S) -> None:
        self._standin, self._api = standin, api
        self.base_url = api.base_url

    async def post(self, job: Job) -> Load:
        return await self._standin.post(self._api, job)

    async def count(self) -> StubCount:
        return self._standin.count(self._api)


def accepted(what: str, before: StubCount, after: StubCount, expected: int) -> None:
    """Raises unless the stand-in accepted `expected` messages between the two counts, and
    refused none."""
    if after.errors > before.errors:
        raise RuntimeError(f"{what}: the stand-in answered {after.errors - before.errors} "
                           f"error(s), the first: {after.first_error}")
    if after.sent - before.sent != expected:
        raise RuntimeError(f"{what}: {after.sent - before.sent} messages accepted by the "
                           f"stand-in for {expected}")


async def replies(platform: Platform, job: Job, what: str) -> Phase:
    """One webhook from each customer, checked: every one answered 200, and one message
    accepted by the stand-in for each."""
    before = await platform.count()
    began = time.process_time()
    load = await platform.post(job)
    cpu = time.process_time() - began
    after = await platform.count()
    if load.failures or load.ok != len(job.customers):
        raise RuntimeError(f"{what}: {load.ok} of {len(job.customers)} webhooks answered 200, "
                           f"the first failure: {load.first_failure}")
    accepted(what, before, after, len(job.customers))
    return Phase(load.rate, cpu / load.ok)
