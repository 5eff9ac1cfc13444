"""The rules that move a viewer between the picture and sound only."""

from __future__ import annotations

from streaming.quality import THREE_LEVELS, Level, QualityController, QualityRules, Sample
from tests.support.fakes import FakeClock

BAD = Sample(0.2)
GOOD = Sample(0.0)
MIDDLING = Sample(0.05)
STALE = Sample(None)


def run(controller: QualityController, clock: FakeClock, sample: Sample,
        seconds: int) -> list[tuple[int, Level]]:
    """Feed one sample a second; the (second, level) of every change."""
    changes = []
    for second in range(1, seconds + 1):
        clock.advance(1)
        if controller.observe(sample):
            changes.append((second, controller.level))
    return changes


def test_three_bad_seconds_move_down_and_ten_good_ones_back_up() -> None:
    clock = FakeClock()
    controller = QualityController(clock=clock)
    assert run(controller, clock, BAD, 2) == []
    assert run(controller, clock, BAD, 3) == [(2, Level.AUDIO)]  # 3 s after the first bad
    assert run(controller, clock, GOOD, 20) == [(11, Level.FULL)]  # 10 s after the first good


def test_a_stale_or_middling_second_starts_both_streaks_again() -> None:
    clock = FakeClock()
    controller = QualityController(clock=clock)
    for interruption in (STALE, MIDDLING):
        run(controller, clock, BAD, 2)
        run(controller, clock, interruption, 1)
        assert controller.level is Level.FULL
    run(controller, clock, BAD, 4)
    assert controller.level is Level.AUDIO
    run(controller, clock, GOOD, 9)
    run(controller, clock, MIDDLING, 1)
    run(controller, clock, GOOD, 9)
    assert controller.level is Level.AUDIO


def until_change(controller: QualityController, clock: FakeClock, sample: Sample) -> int:
    """Seconds of ``sample`` until the level changes."""
    for second in range(1, 1000):
        clock.advance(1)
        if controller.observe(sample):
            return second
    raise AssertionError("the level never changed")


def test_a_relapse_doubles_the_wait_and_a_quiet_minute_forgives_it() -> None:
    clock = FakeClock()
    controller = QualityController(clock=clock)
    until_change(controller, clock, BAD)
    ups = []
    for _ in range(3):  # up, then down again within a minute: each wait doubles
        ups.append(until_change(controller, clock, GOOD))
        assert until_change(controller, clock, BAD) == 4  # 3 s after the first bad one
    assert ups == [11, 21, 41]
    run(controller, clock, STALE, 61)  # a quiet minute after the last move down
    assert until_change(controller, clock, GOOD) == 11


def test_the_wait_never_exceeds_its_ceiling() -> None:
    clock = FakeClock()
    controller = QualityController(QualityRules(max_up_after=30), clock=clock)
    until_change(controller, clock, BAD)
    ups = []
    for _ in range(4):
        ups.append(until_change(controller, clock, GOOD))
        until_change(controller, clock, BAD)
    assert ups == [11, 21, 31, 31]


def test_a_bandwidth_estimate_below_half_the_picture_is_bad() -> None:
    clock = FakeClock()
    controller = QualityController(clock=clock)
    run(controller, clock, Sample(0.0, remb_bps=400_000, needed_bps=1_000_000), 4)
    assert controller.level is Level.AUDIO
    # With the picture off, the estimate (of a link carrying sound only) is no measure.
    assert run(controller, clock, Sample(0.0, remb_bps=60_000, needed_bps=1_000_000), 11) \
        == [(11, Level.FULL)]
    # Back on the picture, an estimate above half of what it needs is not bad.
    run(controller, clock, Sample(0.0, remb_bps=800_000, needed_bps=1_000_000), 30)
    assert controller.level is Level.FULL


def test_the_rooms_own_choice_wins_and_the_link_is_still_judged() -> None:
    clock = FakeClock()
    controller = QualityController(clock=clock)
    controller.chosen_audio_only = True
    assert controller.effective is Level.AUDIO and controller.level is Level.FULL
    run(controller, clock, BAD, 4)
    assert controller.level is Level.AUDIO
    controller.chosen_audio_only = False
    assert controller.effective is Level.AUDIO  # the link still cannot take the picture


def test_with_a_lower_rendition_a_move_is_one_step() -> None:
    clock = FakeClock()
    controller = QualityController(clock=clock, ladder=THREE_LEVELS)
    assert until_change(controller, clock, BAD) == 4 and controller.level is Level.LOW
    assert until_change(controller, clock, BAD) == 4 and controller.level is Level.AUDIO
    assert until_change(controller, clock, GOOD) == 11 and controller.level is Level.LOW
    assert until_change(controller, clock, GOOD) == 11 and controller.level is Level.FULL
