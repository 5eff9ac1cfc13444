"""What a viewer's link can take: the full picture, the lower rendition, or sound only.

Each viewer has a :class:`QualityController`, fed once a second with what the
viewer reports in RTCP (the fraction of packets lost since its previous
receiver report, and its REMB estimate, if any). It moves the viewer one step
down its ladder (高清 → 流畅 → 仅声音; without a lower rendition, 高清 →
仅声音) when the link stays bad, and one step back up when it has stayed good
long enough; a room may also choose sound only itself. Sound never stops.

The rules, chosen so that a level does not flap:

* **bad**: loss ≥ 10 %, or a REMB estimate below half of what the picture
  at this level needs. One step down after 3 s of bad samples in a row.
* **good**: loss ≤ 2 %. (Not the REMB estimate: a delay-based estimate
  follows what the link carries now, so at a lower level it cannot show room
  for the higher one.) One step up after ``up_after`` of good samples in a
  row: 10 s at first; a move down within 60 s of a move up doubles it (up to
  80 s), since the link just showed it cannot carry the picture yet; a
  minute without such a relapse brings it back to 10 s.
* A sample with no fresh report (none in the last 3 s) counts as neither:
  RTCP itself lost is bad news only once it shows in the reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    FULL = "full"  # 高清: the picture and the sound
    LOW = "low"  # 流畅: the lower rendition (streaming/transcoder.py) and the sound
    AUDIO = "audio"  # 仅声音: sound only


TWO_LEVELS = (Level.FULL, Level.AUDIO)
THREE_LEVELS = (Level.FULL, Level.LOW, Level.AUDIO)


@dataclass(frozen=True)
class QualityRules:
    down_loss: float = 0.10
    up_loss: float = 0.02
    down_after: float = 3.0
    up_after: float = 10.0
    max_up_after: float = 80.0
    relapse_window: float = 60.0
    remb_down: float = 0.5  # REMB below this × the picture's bitrate is bad
    stale_after: float = 3.0


@dataclass(frozen=True)
class Sample:
    """One second of a viewer's feedback."""

    fraction_lost: float | None  # 0..1 from its latest receiver report, None: none fresh
    remb_bps: float | None = None  # its bandwidth estimate, if it sends REMB
    needed_bps: float | None = None  # what the picture takes now


class QualityController:
    def __init__(self, rules: QualityRules | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 ladder: tuple[Level, ...] = TWO_LEVELS) -> None:
        self.rules = rules or QualityRules()
        self._clock = clock
        self.ladder = ladder  # best first; a move goes one step
        self.level = Level.FULL  # what the link can take, by the rules
        self.chosen_audio_only = False  # the room asked for sound only
        self._bad_since: float | None = None
        self._good_since: float | None = None
        self._up_after = self.rules.up_after
        self._last_up: float | None = None
        self._last_down: float | None = None

    @property
    def effective(self) -> Level:
        """What the viewer gets: the room's own choice wins over the link's."""
        return Level.AUDIO if self.chosen_audio_only else self.level

    def observe(self, sample: Sample) -> bool:
        """Take one sample; True if :attr:`level` changed."""
        now = self._clock()
        rules = self.rules
        if self._last_down is not None and now - self._last_down > rules.relapse_window:
            self._up_after = rules.up_after  # a quiet minute: forgive earlier relapses
        verdict = self._judge(sample)
        if verdict is None:
            # Stale, or between good and bad: both streaks start again.
            self._bad_since = self._good_since = None
            return False
        if verdict == "bad":
            self._good_since = None
            if self._bad_since is None:
                self._bad_since = now
            step = self.ladder.index(self.level) + 1
            if step < len(self.ladder) and now - self._bad_since >= rules.down_after:
                self._move(self.ladder[step], now)
                return True
            return False
        self._bad_since = None
        if self._good_since is None:
            self._good_since = now
        step = self.ladder.index(self.level) - 1
        if step >= 0 and now - self._good_since >= self._up_after:
            self._move(self.ladder[step], now)
            return True
        return False

    def _judge(self, sample: Sample) -> str | None:
        """The verdict on one sample: "bad", "good", or None (stale, or in between)."""
        rules = self.rules
        if sample.fraction_lost is None:
            return None
        picture_flows = self.effective is not Level.AUDIO
        remb, needed = sample.remb_bps, sample.needed_bps
        if sample.fraction_lost >= rules.down_loss:
            return "bad"
        if picture_flows and remb is not None and needed and remb < rules.remb_down * needed:
            return "bad"
        if sample.fraction_lost > rules.up_loss:
            return None
        return "good"

    def _move(self, level: Level, now: float) -> None:
        if self.ladder.index(level) > self.ladder.index(self.level):  # down
            if self._last_up is not None and now - self._last_up < self.rules.relapse_window:
                self._up_after = min(self._up_after * 2, self.rules.max_up_after)
            self._last_down = now
        else:
            self._last_up = now
        self.level = level
        self._bad_since = self._good_since = None
