"""Coalescing keyframe requests: a join storm costs the publisher one keyframe.

Every new sink, every viewer PLI/FIR and every damaged frame asks for a
keyframe; the publisher gets at most one PLI per interval. A request that
arrives inside the interval is not lost: it is sent when the interval ends,
unless a keyframe has arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

# Above 0.3 s: Chromium's encoder drops a PLI that comes within 300 ms of the
# previous one, so a deferred request sent exactly one interval later could
# go unanswered and leave a new sink waiting for a keyframe that never comes.
DEFAULT_INTERVAL = 0.4


class KeyframeRequestThrottle:
    """The pure decision logic, driven by an explicit ``now``."""

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self._last_sent = -math.inf
        self._pending = False

    @property
    def pending(self) -> bool:
        return self._pending

    def request(self, now: float) -> float | None:
        """Returns 0.0 to send now, a delay to send later, or None if covered."""
        if self._pending:
            return None
        wait = self._last_sent + self.interval - now
        if wait <= 0:
            self._last_sent = now
            return 0.0
        self._pending = True
        return wait

    def fire(self, now: float) -> bool:
        """The delayed send is due; returns whether it should still go out."""
        if not self._pending:
            return False
        self._pending = False
        self._last_sent = now
        return True

    def keyframe_arrived(self) -> None:
        """A keyframe answers every request made so far."""
        self._pending = False


class KeyframeRequester:
    """Schedules the throttle's decisions on the event loop."""

    def __init__(
        self,
        send: Callable[[], None],
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._clock = clock
        self._throttle = KeyframeRequestThrottle(interval)
        self._timer: asyncio.TimerHandle | None = None
        self.sent = 0

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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._throttle.fire(self._clock()):
            self._do_send()

    def _do_send(self) -> None:
        self.sent += 1
        self._send()
