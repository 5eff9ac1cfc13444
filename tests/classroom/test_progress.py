"""The played-ranges arithmetic of self-study progress (classroom/learning/progress.py)."""

from __future__ import annotations

import pytest

from classroom.learning.progress import (
    SLACK_S,
    BadReport,
    is_complete,
    merge,
    parse,
    total,
    union,
)


def test_overlapping_ranges_count_once() -> None:
    assert union([(10, 20), (0, 5), (15, 30), (4, 6)]) == [(0, 6), (10, 30)]
    assert total(union([(10, 20), (0, 5), (15, 30), (4, 6)])) == 26


def test_seeking_back_and_forth_adds_only_what_is_new() -> None:
    first = merge([], [(0, 10)], None)
    assert first.played == 10 and first.gained == 10
    # Seek forward to 60, play 10 s, seek back to 5 and play to 15.
    second = merge(first.ranges, [(0, 10), (60, 70), (5, 15)], 12)
    assert second.ranges == [(0, 15), (60, 70)]
    assert second.played == 25 and second.gained == 15


def test_a_report_replayed_twice_adds_nothing() -> None:
    first = merge([], [(0, 8)], None)
    again = merge(first.ranges, [(0, 8)], 0.1)
    assert again.ranges == first.ranges and again.gained == 0


def test_double_speed_is_allowed_and_more_is_refused() -> None:
    # 10 s of wall time at 2×: 20 s of the item.
    kept = merge([], [(0, 20)], None).ranges
    assert merge(kept, [(0, 40)], 10).played == 40
    # 10 s of wall time cannot have played 70 s more.
    with pytest.raises(BadReport) as refused:
        merge(kept, [(0, 90)], 10)
    assert refused.value.reason == "error.progress_too_fast"
    # The first report may hold no more than the slack.
    with pytest.raises(BadReport):
        merge([], [(0, SLACK_S + 5)], None)


def test_ranges_outside_the_item_are_refused() -> None:
    assert parse([[0, 10], [20, 30.5]], 30) == [(0, 10), (20, 30)]  # clipped within tolerance
    for bad in ([[0, 40]], [[-1, 3]], [[5, 5]], [[6, 2]], [[0, "9"]], [[0, float("nan")]],
                [[True, 3]], [[0, 1, 2]], "0-10", [0, 10], [[0, 1]] * 501):
        with pytest.raises(BadReport):
            parse(bad, 30)


def test_complete_at_ninety_percent() -> None:
    assert not is_complete(89.9, 100)
    assert is_complete(90, 100)
    assert not is_complete(0, 0)
