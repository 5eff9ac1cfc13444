"""Stand-ins for the clock and for a frame source in unit tests."""

from __future__ import annotations


class FakeClock:
    """Seconds that only move when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSource:
    """A FrameSource that counts the keyframe requests it gets."""

    def __init__(self) -> None:
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
