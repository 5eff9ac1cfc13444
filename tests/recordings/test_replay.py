"""The archive source: pacing, control, keyframes for joiners, bad files."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recordings.replay import (
    ArchiveSource,
    MediaReader,
    ReplayError,
    StageFollower,
    Turn,
    check_replayable,
)
from streaming import aiortc_glue
from streaming.frames import EncodedFrame
from streaming.slot import Slot
from tests.support.synthetic import make_lecture


class FakeTime:
    """A clock that only moves when the source sleeps."""

    def __init__(self) -> None:
        self.now = 500.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def inline(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


class Sink:
    def __init__(self, time: FakeTime | None = None) -> None:
        self.frames: list[tuple[float, EncodedFrame]] = []
        self._time = time

    def deliver(self, frame: EncodedFrame) -> None:
        self.frames.append((self._time.now if self._time else 0.0, frame))


@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "lecture.mp4"
    make_lecture(str(path), 60.0)
    return path


def new_slot(time: FakeTime, codec: str = "H264") -> Slot:
    return Slot("program", codec, aiortc_glue.make_packetizer, clock=time.clock)


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline
        await asyncio.sleep(0.01)


async def test_frames_are_pushed_at_their_media_times(lecture: Path) -> None:
    time = FakeTime()
    slot = new_slot(time)
    sink = Sink(time)
    slot.video.subscribe(sink, request_keyframe=False)
    ended = asyncio.Event()
    source = ArchiveSource(slot, lecture, on_end=ended.set, clock=time.clock, sleep=time.sleep,
                           run_blocking=inline)
    start = time.now
    await source.start()
    await asyncio.wait_for(ended.wait(), 30)
    assert source.state == "ended"
    assert len(sink.frames) == 1800
    first = sink.frames[0][0]
    assert first - start == pytest.approx(0.0065, abs=1e-6)  # after Opus's pre-skip audio
    for index, (pushed_at, _) in enumerate(sink.frames):
        # Frame n of a 30 fps file is due n/30 s after the first.
        assert pushed_at - first == pytest.approx(index / 30, abs=1e-6)
    # The last frame (audio, 59.98 s) goes out at its time: no drift at all.
    assert time.now - start == pytest.approx(60.0, abs=0.03)
    assert slot.source is None
    slot.close()


async def test_pause_resume_and_seek(lecture: Path) -> None:
    time = FakeTime()
    slot = new_slot(time)
    sink = Sink(time)
    slot.video.subscribe(sink, request_keyframe=False)
    source = ArchiveSource(slot, lecture, clock=time.clock, sleep=time.sleep, run_blocking=inline)
    await source.start(position=10.0)
    await wait_for(lambda: source.position >= 12.0)
    await source.pause()
    assert source.state == "paused"
    count, paused_at = len(sink.frames), source.position
    time.now += 30  # half a minute of nothing
    await asyncio.sleep(0.05)
    assert len(sink.frames) == count
    await source.resume()
    await wait_for(lambda: len(sink.frames) > count + 10)
    # Resumed from the keyframe at or before where it paused (2 s GOPs).
    first_after = sink.frames[count][1]
    assert first_after.keyframe
    assert paused_at - 2.0 <= source.position
    await source.seek(40.0)
    await wait_for(lambda: source.position >= 41.0)
    assert source.position >= 40.0
    # The viewers' timeline never goes back, whatever the operator does.
    stamps = [frame.timestamp for _, frame in sink.frames]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    await source.stop()
    assert source.state == "stopped" and slot.source is None
    slot.close()


async def test_a_viewer_joining_mid_replay_gets_the_frames_since_the_keyframe(
        tmp_path: Path) -> None:
    path = tmp_path / "long-gop.mp4"
    make_lecture(str(path), 12.0, gop_seconds=10.0)  # a keyframe only every 10 s
    time = FakeTime()
    slot = new_slot(time)
    early = Sink(time)
    slot.video.subscribe(early, request_keyframe=False)
    source = ArchiveSource(slot, path, clock=time.clock, sleep=time.sleep, run_blocking=inline)
    await source.start()
    await wait_for(lambda: source.position >= 4.0)
    await source.pause()
    late = Sink(time)
    slot.video.subscribe(late, request_keyframe=False)
    assert slot.video.catch_up(late)
    caught = [frame for _, frame in late.frames]
    assert caught[0].keyframe and caught[0].payloads
    # Every frame from the keyframe (0 s) up to now, at once, in order.
    assert len(caught) == len(early.frames) > 4 * 30
    assert [f.timestamp for f in caught] == [f.timestamp for _, f in early.frames]
    await source.stop()
    slot.close()


def test_a_live_source_gets_no_cache() -> None:
    time = FakeTime()
    slot = new_slot(time)

    class Live:
        def request_keyframe(self) -> None:
            pass

    slot.attach(Live())
    assert not slot.video.catch_up(Sink())
    slot.close()


def ffmpeg_lecture(path: Path, codec_args: list[str]) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=25:duration=2", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=2", *codec_args, str(path)], check=True)


def test_items_that_cannot_be_sent_to_rooms_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.webm"
    make_lecture(str(good), 2.0, "VP8")
    info = check_replayable(good)
    assert (info.video_codec, info.has_audio) == ("VP8", True)
    aac = tmp_path / "aac.mp4"
    make_lecture(str(aac), 1.0, audio="aac")
    assert check_replayable(aac).has_audio  # converted to Opus as it plays
    for name, args, reason in (
            ("mpeg4.mp4", ["-c:v", "mpeg4", "-c:a", "aac"], "mpeg4"),
            ("bframes.mp4", ["-c:v", "libx264", "-bf", "2", "-c:a", "aac"], "B-frames"),
            ("pcm.mkv", ["-c:v", "libx264", "-bf", "0", "-c:a", "pcm_s16le"], "pcm")):
        path = tmp_path / name
        ffmpeg_lecture(path, args)
        with pytest.raises(ReplayError, match=reason):
            check_replayable(path)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(ReplayError, match="unreadable"):
        check_replayable(garbage)
    with pytest.raises(ReplayError):
        MediaReader(garbage)


def truncate(lecture: Path, broken: Path) -> None:
    """Keep the index (faststart: it is at the front) and half the media,
    then garbage where the rest should be."""
    data = lecture.read_bytes()
    broken.write_bytes(data[: len(data) // 2] + b"\xff\x00" * 5000)


async def test_a_truncated_file_ends_or_fails_cleanly(lecture: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    truncate(lecture, broken)
    time = FakeTime()
    slot = new_slot(time)
    sink = Sink(time)
    slot.video.subscribe(sink, request_keyframe=False)
    outcome: list[str] = []
    source = ArchiveSource(slot, broken, on_end=lambda: outcome.append("end"),
                           on_error=outcome.append, clock=time.clock, sleep=time.sleep,
                           run_blocking=inline)
    await source.start()
    await wait_for(lambda: bool(outcome))
    assert source.state in ("ended", "failed")
    assert sink.frames  # what could be read was sent
    assert slot.source is None
    await source.stop()
    slot.close()


async def test_a_coarsely_interleaved_file_is_still_paced_in_time_order(
        tmp_path: Path) -> None:
    """Muxers may put seconds of one track before the other (Matroska allows
    10 s): frames still go out at their own times, none early, none late."""
    path = tmp_path / "coarse.webm"
    make_lecture(str(path), 16.0, "VP8", width=160, height=120)
    reader = MediaReader(path)
    order = [f.kind for f in reader.read(30.0)]
    reader.close()
    assert order[:20].count("audio") == 0  # the first second of data is all video
    time = FakeTime()
    slot = new_slot(time, "VP8")
    sinks = {"video": Sink(time), "audio": Sink(time)}
    slot.video.subscribe(sinks["video"], request_keyframe=False)
    slot.audio.subscribe(sinks["audio"], request_keyframe=False)
    ended = asyncio.Event()
    source = ArchiveSource(slot, path, on_end=ended.set, clock=time.clock, sleep=time.sleep,
                           run_blocking=inline)
    start = time.now
    await source.start()
    await asyncio.wait_for(ended.wait(), 30)
    assert source.stalls == 0
    first = min(frame.timestamp / frame.clock_rate for sink in sinks.values()
                for _, frame in sink.frames[:1])
    for kind, sink in sinks.items():
        assert sink.frames, kind
        for pushed_at, frame in sink.frames:
            # Due at its own place on the file's timeline (the slot re-bases
            # each track from 0, so compare within a track).
            media = frame.timestamp / frame.clock_rate
            assert pushed_at - start == pytest.approx(
                media + (sink.frames[0][0] - start), abs=1e-6), (kind, media)
    assert first == 0
    assert time.now - start == pytest.approx(16.0, abs=0.05)
    slot.close()


class Program:
    """Stands for a replay's program source: where it is and whether it plays."""

    def __init__(self) -> None:
        self.state = "playing"
        self.position = 0.0


async def test_the_stage_follows_the_program_through_its_turns(lecture: Path) -> None:
    """Turns start when the program plays into them, stop when it leaves them
    or pauses, are left out when entered late (a resume mid-turn), and play
    again when the program comes back to their start."""
    stage = Slot("stage", "H264", aiortc_glue.make_packetizer)
    program = Program()
    shown: list[str | None] = []
    live_room = [False]
    turns = [Turn(at=30.0, offset=0.0, duration=4.0, name="新碶街道分课堂"),
             Turn(at=50.0, offset=10.0, duration=4.0, name="大碶街道分课堂")]
    follower = StageFollower(program, stage, lecture, turns,  # type: ignore[arg-type]
                             on_turn=lambda turn: shown.append(turn.name if turn else None),
                             allowed=lambda: not live_room[0])
    sink = Sink()
    stage.video.subscribe(sink, request_keyframe=False)
    settle = StageFollower.POLL * 4

    async def at(position: float, state: str = "playing") -> None:
        program.position, program.state = position, state
        await asyncio.sleep(settle)

    follower.start()
    try:
        await at(29.0)
        assert stage.source is None and shown == []
        await at(30.1)  # played into the first turn
        assert isinstance(stage.source, ArchiveSource) and shown == ["新碶街道分课堂"]
        await wait_for(lambda: len(sink.frames) > 3)
        assert sink.frames[0][1].keyframe  # from the turn's start, a keyframe
        await at(31.0, "paused")
        assert stage.source is None and shown[-1] is None
        await at(31.0)  # resumed 1 s into the turn: its start is gone, left out
        assert stage.source is None and shown[-1] is None
        await at(29.5)  # sought back before it, then played into it again
        await at(30.2)
        assert isinstance(stage.source, ArchiveSource) and shown[-1] == "新碶街道分课堂"
        await at(34.5)  # past its end
        assert stage.source is None and shown[-1] is None
        live_room[0] = True  # a live room on stage comes first
        await at(50.1)
        assert stage.source is None
        live_room[0] = False
        await at(50.2)
        assert isinstance(stage.source, ArchiveSource) and shown[-1] == "大碶街道分课堂"
        assert follower.turns_shown == 3
    finally:
        await follower.stop()
        stage.close()
    assert shown[-1] is None and stage.source is None
