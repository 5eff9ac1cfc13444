"""What a learner has played of an item: the union of the ranges reported.

Pure arithmetic, no I/O, the clock passed in as the time since the previous
report. A player reports the ranges it actually played (the browser's own
``video.played``); the union of everything reported is kept, so seeking back
and playing a part again, or a report sent twice, adds nothing. The gain of a
report — what it adds to the union — cannot be more than the wall time since
the previous report at the fastest allowed speed (2×), plus a slack for the
first report and for a report that arrives late: a report that claims more
is refused whole, nothing kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Range = tuple[float, float]

COMPLETE_SHARE = 0.9  # an item is complete at 90 % of its length played
MAX_RATE = 2.0  # the fastest playback speed the player offers
SLACK_S = 30.0  # on top of MAX_RATE × the wall time since the previous report
END_TOLERANCE_S = 1.0  # a container's length and the player's may differ a little
JOIN_GAP_S = 0.25  # two ranges this close are one (the player's time granularity)
MAX_RANGES = 500  # in one report, and kept per learner and item


class BadReport(ValueError):
    """A report that is refused whole; ``reason`` is a message key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def union(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint ranges covering exactly what ``ranges`` cover (ranges
    closer than JOIN_GAP_S are joined)."""
    merged: list[list[float]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + JOIN_GAP_S:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def total(ranges: Iterable[Range]) -> float:
    return sum(end - start for start, end in ranges)


def parse(raw: object, duration: float) -> list[Range]:
    """The ranges of a report, checked against the item's length: pairs of
    finite numbers with 0 ≤ start < end ≤ length (+ a second's tolerance,
    then clipped); anything else refuses the report."""
    if not isinstance(raw, list) or len(raw) > MAX_RANGES:
        raise BadReport("error.progress_ranges")
    ranges: list[Range] = []
    for pair in raw:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise BadReport("error.progress_ranges")
        start, end = pair
        if any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
               for v in (start, end)):
            raise BadReport("error.progress_ranges")
        if not 0 <= start < end or end > duration + END_TOLERANCE_S:
            raise BadReport("error.progress_outside")
        ranges.append((float(start), min(float(end), duration)))
    return ranges


@dataclass(frozen=True)
class Merged:
    ranges: list[Range]
    played: float  # seconds of the item played, counted once
    gained: float  # what this report added

    def complete(self, duration: float) -> bool:
        return is_complete(self.played, duration)


def merge(kept: Sequence[Range], reported: Sequence[Range], elapsed: float | None) -> Merged:
    """The union of what was kept and what is reported; BadReport when the
    report adds more than MAX_RATE × ``elapsed`` (the seconds since the
    previous accepted report; None for the first) + SLACK_S."""
    before = total(kept)
    ranges = union([*kept, *reported])
    if len(ranges) > MAX_RANGES:
        raise BadReport("error.progress_ranges")
    played = total(ranges)
    gained = played - before
    allowed = MAX_RATE * max(0.0, elapsed or 0.0) + SLACK_S
    if gained > allowed + 1e-6:
        raise BadReport("error.progress_too_fast")
    return Merged(ranges, played, gained)


def is_complete(played: float, duration: float) -> bool:
    return duration > 0 and played >= COMPLETE_SHARE * duration - 1e-6
