"""Timestamp re-basing across source switches (streaming/rebase.py)."""

from __future__ import annotations

import itertools

import pytest

from streaming.frames import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE
from streaming.rebase import TimestampRebaser
from tests.support.fakes import FakeClock


def test_the_first_source_starts_at_zero() -> None:
    clock = FakeClock()
    rebaser = TimestampRebaser(VIDEO_CLOCK_RATE, clock)
    assert rebaser.map(3_000_000_000) == 0
    clock.advance(1 / 30)
    assert rebaser.map(3_000_003_000) == 3000
    clock.advance(1 / 30)
    assert rebaser.map(3_000_006_000) == 6000


def test_timestamps_stay_monotonic_across_source_switches() -> None:
    clock = FakeClock()
    rebaser = TimestampRebaser(VIDEO_CLOCK_RATE, clock)
    outputs = []
    for origin in (900_000, 0, 4_000_000_000, 17):
        rebaser.switch_source()
        for index in range(10):
            outputs.append(rebaser.map(origin + index * 3000))
            clock.advance(1 / 30)
        clock.advance(0.5)
    assert all(b > a for a, b in itertools.pairwise(outputs)), outputs
    # Within a source, steps are the source's own.
    assert outputs[11] - outputs[10] == 3000


@pytest.mark.parametrize("clock_rate", [VIDEO_CLOCK_RATE, AUDIO_CLOCK_RATE])
def test_the_gap_across_a_switch_follows_wall_time(clock_rate: int) -> None:
    clock = FakeClock()
    rebaser = TimestampRebaser(clock_rate, clock)
    rebaser.map(50_000)
    clock.advance(0.02)
    last = rebaser.map(50_000 + clock_rate // 50)
    clock.advance(2.5)  # the classroom PC took 2.5 s to come back
    rebaser.switch_source()
    first = rebaser.map(123)
    assert first - last == round(2.5 * clock_rate)
    clock.advance(0.02)
    assert rebaser.map(123 + clock_rate // 50) == first + clock_rate // 50


def test_a_switch_without_wall_time_still_moves_forward() -> None:
    clock = FakeClock()
    rebaser = TimestampRebaser(VIDEO_CLOCK_RATE, clock)
    last = rebaser.map(10_000)
    rebaser.switch_source()
    assert rebaser.map(10_000) > last
    rebaser.switch_source()
    assert rebaser.map(5) > last + 1


def test_a_backwards_jump_within_a_source_is_a_new_source() -> None:
    clock = FakeClock()
    rebaser = TimestampRebaser(VIDEO_CLOCK_RATE, clock)
    rebaser.map(500_000)
    clock.advance(1 / 30)
    last = rebaser.map(503_000)
    clock.advance(0.1)
    jumped = rebaser.map(1_000)  # no switch_source(): the source restarted its clock
    assert jumped == last + round(0.1 * VIDEO_CLOCK_RATE)
    clock.advance(1 / 30)
    assert rebaser.map(4_000) == jumped + 3000  # and continues from its new origin


def test_a_repeated_timestamp_is_not_a_jump() -> None:
    clock = FakeClock()
    rebaser = TimestampRebaser(VIDEO_CLOCK_RATE, clock)
    first = rebaser.map(7_000)
    clock.advance(0.5)
    assert rebaser.map(7_000) == first
