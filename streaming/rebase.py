"""Timestamp re-basing: one monotonic timeline per slot track across sources.

A slot's source changes (the classroom PC reconnects, an archive replay
starts) while viewers stay connected. Every source starts its own timeline
near zero; viewers must see one timeline that only moves forward and that
advances with wall time across the gap, so their jitter buffers and lip sync
keep working.
"""

from __future__ import annotations

from collections.abc import Callable


class TimestampRebaser:
    """Maps source timestamps (ticks of ``clock_rate``) onto the output timeline.

    ``now`` is wall time in seconds from an injected clock.
    """

    def __init__(self, clock_rate: int, clock: Callable[[], float]) -> None:
        self.clock_rate = clock_rate
        self._clock = clock
        self._offset: int | None = None
        self._last_in: int | None = None
        self._last_out: int | None = None
        self._last_wall = 0.0

    def switch_source(self) -> None:
        """The next timestamp comes from a new source (its own origin)."""
        self._offset = None

    def map(self, timestamp: int) -> int:
        now = self._clock()
        if self._offset is not None and self._last_in is not None and timestamp < self._last_in:
            # A source that jumps backwards is treated as a new source rather
            # than sending viewers a timestamp from the past.
            self._offset = None
        if self._offset is None:
            if self._last_out is None:
                self._offset = -timestamp
            else:
                gap = max(1, round((now - self._last_wall) * self.clock_rate))
                self._offset = self._last_out + gap - timestamp
        out = timestamp + self._offset
        self._last_in = timestamp
        self._last_out = out
        self._last_wall = now
        return out
