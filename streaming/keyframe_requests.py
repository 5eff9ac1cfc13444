"""Coalescing keyframe requests: a join storm costs the publisher one keyframe.

Every new sink, every viewer PLI/FIR and every damaged frame asks for a
keyframe; the publisher gets at most one PLI per interval. A request that
arrives inside the interval is not lost: it is sent when the interval ends,
unless a keyframe has arrived meanwhile.

A PLI can go unanswered: lost on a lossy uplink, or ignored by an encoder
that takes at most one request per interval of its own (Chromium's drops a
PLI within 300 ms of the previous one). A sink waiting for a keyframe would
then wait for the encoder's next periodic one, which WebRTC encoders may
never send. So a PLI that no keyframe answers within ``RETRY_AFTER`` is sent
again, up to ``MAX_RETRIES`` times in a row.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

DEFAULT_INTERVAL = 0.3
RETRY_AFTER = 1.0  # seconds without a keyframe after a PLI before it is sent again
MAX_RETRIES = 10  # in a row; a keyframe starts the count again


class KeyframeRequestThrottle:
    """The pure decision logic, driven by an explicit ``now``."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, retry_after: float = RETRY_AFTER,
                 max_retries: int = MAX_RETRIES) -> None:
        self.interval = interval
        self.retry_after = retry_after
        self.max_retries = max_retries
        self._last_sent = -math.inf
        self._pending = False
        self._unanswered = False  # a PLI went out and no keyframe came since
        self._retries = 0

    @property
    def pending(self) -> bool:
        return self._pending

    def request(self, now: float) -> float | None:
        """Returns 0.0 to send now, a delay to send later, or None if covered."""
        if self._pending:
            return None
        wait = self._last_sent + self.interval - now
        if wait <= 0:
            self._sent(now)
            return 0.0
        self._pending = True
        return wait

    def fire(self, now: float) -> bool:
        """The delayed send is due; returns whether it should still go out."""
        if not self._pending:
            return False
        self._pending = False
        self._sent(now)
        return True

    def retry(self, now: float) -> bool:
        """A retry check is due; returns whether the unanswered PLI goes out again."""
        if (not self._unanswered or self._pending or self._retries >= self.max_retries
                or now - self._last_sent < self.retry_after):
            return False
        self._retries += 1
        self._sent(now)
        return True

    def _sent(self, now: float) -> None:
        self._last_sent = now
        self._unanswered = True

    def keyframe_arrived(self) -> None:
        """A keyframe answers every request made so far."""
        self._pending = False
        self._unanswered = False
        self._retries = 0


class KeyframeRequester:
    """Schedules the throttle's decisions on the event loop."""

    def __init__(
        self,
        send: Callable[[], None],
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = RETRY_AFTER,
    ) -> None:
        self._send = send
        self._clock = clock
        self._throttle = KeyframeRequestThrottle(interval, retry_after)
        self._timer: asyncio.TimerHandle | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self.sent = 0
        self.retried = 0

    def request(self) -> None:
        decision = self._throttle.request(self._clock())
        if decision is None:
            return
        if decision == 0.0:
            self._do_send()
        else:
            self._timer = asyncio.get_running_loop().call_later(decision, self._fire)

    def keyframe_arrived(self) -> None:
        self._throttle.keyframe_arrived()
        for timer in (self._timer, self._retry_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._retry_timer = None

    def close(self) -> None:
        for timer in (self._timer, self._retry_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._retry_timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._throttle.fire(self._clock()):
            self._do_send()

    def _retry(self) -> None:
        self._retry_timer = None
        if self._throttle.retry(self._clock()):
            self.retried += 1
            self._do_send()

    def _do_send(self) -> None:
        self.sent += 1
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # a caller outside the event loop (a unit test): no retry
        if loop is not None:
            self._retry_timer = loop.call_later(self._throttle.retry_after, self._retry)
        self._send()
