"""What every platform's stand-in shares (testkit/botapi.py for Telegram, testkit/graphapi.py
for WhatsApp, and the channels to come): its API served on a free port of 127.0.0.1, a
client session to post the platform's webhooks to the bot under test, and a close that
ends both. A stand-in says what it serves in `app()`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from aiohttp import ClientSession, ClientTimeout, web


class _Counted(Protocol):
    times: int | None  # None: every matching request until cleared


F = TypeVar("F", bound=_Counted)


class Faults(Generic[F]):
    """Errors a test asks a stand-in to answer with (its `fail`), each for the next `times`
    matching requests, or every one (None) until cleared."""

    def __init__(self) -> None:
        self._faults: list[F] = []

    def add(self, fault: F) -> None:
        if fault.times is not None and fault.times < 1:
            raise ValueError(f"times must be at least 1, or None for every send: "
                             f"{fault.times}")
        self._faults.append(fault)

    def take(self, matches: Callable[[F], bool]) -> F | None:
        """The first fault for this request, counted down (and dropped when used up)."""
        for fault in self._faults:
            if matches(fault):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        self._faults.clear()


class Loopback:
    def __init__(self) -> None:
        self._base_url: str | None = None
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self._changed = asyncio.Condition()
        self.calls: list[Any] = []  # every request the client made, as the stand-in keeps it

    def app(self) -> web.Application:
        """The platform's API: its routes and handlers."""
        raise NotImplementedError

    def sent(self, to: Any) -> list[Any]:
        """What the platform accepted for `to`, in order."""
        raise NotImplementedError

    async def called(self) -> None:
        """A request was served: wake whoever waits for it (wait_sent)."""
        async with self._changed:
            self._changed.notify_all()

    # A timeout argument rather than asyncio.timeout around the call: on expiry the test
    # gets an AssertionError listing what was sent, not a bare TimeoutError.
    async def wait_sent(self, to: Any, count: int,
                        timeout: float = 5.0) -> list[Any]:  # noqa: ASYNC109
        """Wait until at least `count` messages went to `to`; returns them all."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: len(self.sent(to)) >= count)
            except TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {count} message(s) to {to}; "
                    f"calls: {self.calls}") from None
        return self.sent(to)

    async def start(self) -> str:
        """Serve on a free port of 127.0.0.1; returns the base URL."""
        if self._base_url is not None:
            return self._base_url
        # A short shutdown: close() has already released whatever a handler waits for.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self._base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self._base_url

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._base_url

    @property
    def client(self) -> ClientSession:
        """The platform's side of its webhooks: posts to the bot under test."""
        if self._client is None:
            self._client = ClientSession(timeout=ClientTimeout(total=60))
        return self._client
