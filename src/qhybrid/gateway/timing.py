"""uvicorn's HTTP protocols, stamping when a request's bytes were read, so latency counts the loop's lag.

Under overload a request waits in the event loop between the read of its bytes and
the start of its ASGI task; a timer started in the ASGI app misses that wait. These
subclasses record the read time in the ASGI scope (``RECEIVED_AT``), and the
gateway's middleware times each request from it. What the kernel holds before the
loop reads it is still unseen; the load suite compares the result with the clients'.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

RECEIVED_AT = "qhybrid.received_at"


class _StampReads:
    scope: Any

    def data_received(self, data: bytes) -> None:
        """Read as uvicorn does, then stamp a request begun by these bytes with their read time."""
        received = time.perf_counter()
        super().data_received(data)  # type: ignore[misc]
        scope = getattr(self, "scope", None)
        # The request's task is created by the call above but starts only at the loop's next
        # turn, so the stamp is in place before the app reads it; a later body chunk keeps it.
        if isinstance(scope, dict):
            scope.setdefault(RECEIVED_AT, received)


def timed_protocol() -> type:
    """Return uvicorn's httptools protocol (h11 where httptools is missing), stamping reads."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return type("TimedHttpToolsProtocol", (_StampReads, HttpToolsProtocol), {})
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return type("TimedH11Protocol", (_StampReads, H11Protocol), {})


class LoopLag:
    """How late the event loop runs a short timer: the wait a request's read also sees, unmeasured.

    Under CPU or GIL pressure the loop falls behind; requests then queue before the
    request timer can start, and clients wait longer than the histogram shows. The
    gateway exports this lag and refuses new submits while it is high.
    """

    def __init__(self, interval: float = 0.01, window: float = 1.0) -> None:
        """Sample every ``interval`` seconds; ``recent`` is the largest lag of the last ``window``."""
        self.interval, self.window = interval, window
        self._samples: collections.deque[tuple[float, float]] = collections.deque()

    @property
    def recent(self) -> float:
        """Return the largest lag (seconds) sampled in the last window."""
        return max((lag for _, lag in self._samples), default=0.0)

    async def run(self, observe: Callable[[float], None]) -> None:
        """Sample until cancelled, passing each lag to ``observe``."""
        loop = asyncio.get_running_loop()
        while True:
            planned = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            now = loop.time()
            lag = max(0.0, now - planned)
            self._samples.append((now, lag))
            while self._samples and self._samples[0][0] < now - self.window:
                self._samples.popleft()
            observe(lag)
