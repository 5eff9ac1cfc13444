"""The recorder and finishing on synthetic encoded streams, in a temp folder.

Real encoders make the frames, a real slot fans them out to the recorder, the
real finishing code remuxes them, and ffprobe/ffmpeg judge the result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from recordings.finish import finish
from recordings.recorder import FREE_CHECK_INTERVAL, STAGE_PATTERN, Recorder
from streaming import aiortc_glue
from streaming.frames import EncodedFrame
from streaming.slot import Slot
from tests.support.fakes import FakeClock as Clock
from tests.support.fakes import FakeSource as Source
from tests.support.probe import decode_errors, ffprobe
from tests.support.synthetic import Timed, measure_av_offsets, stream, tone_levels


class Counter:
    """Another sink of the slot: stands for the viewers."""

    def __init__(self) -> None:
        self.frames = 0

    def deliver(self, frame: EncodedFrame) -> None:
        self.frames += 1


def packet_times(path: Path, kind: str) -> list[float]:
    """dts of every packet of one stream ("v" or "a"), in seconds."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", kind, "-show_entries",
                          "packet=dts_time", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout.split()
    return [float(value) for value in out]


def rising(values: list[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


def feed(slot: Slot, source: Source, clock: Clock, frames: list[Timed],
         epoch: float = 1000.0) -> None:
    for timed in frames:
        clock.now = epoch + timed.arrival
        slot.push(source, timed.frame)


@pytest.fixture
def slot_and_clock() -> Iterator[tuple[Slot, Source, Clock]]:
    clock = Clock()
    slot = Slot("program", "H264", aiortc_glue.make_packetizer, clock=clock)
    source = Source()
    slot.attach(source)
    yield slot, source, clock
    slot.close()


def make_slot(codec: str, clock: Clock) -> tuple[Slot, Source]:
    slot = Slot("program", codec, aiortc_glue.make_packetizer, clock=clock)
    source = Source()
    slot.attach(source)
    return slot, source


def check_offsets(path: Path, flashes_expected: int, tolerance: float = 0.020) -> list[float]:
    flashes, beeps = measure_av_offsets(str(path))
    assert len(flashes) >= flashes_expected, flashes
    assert len(beeps) >= flashes_expected, beeps
    offsets = []
    for flash in flashes:
        nearest = min(beeps, key=lambda beep: abs(beep - flash))
        offsets.append(nearest - flash)
    assert all(abs(offset) <= tolerance for offset in offsets), offsets
    return offsets


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_recording_a_stream_gives_a_clean_file_in_sync(tmp_path: Path, codec: str) -> None:
    clock = Clock()
    slot, source = make_slot(codec, clock)
    frames, flashes = stream(codec, 8.0)
    recorder = Recorder(tmp_path / "item", slot, clock=clock)
    recorder.start()
    feed(slot, source, clock, frames)
    recorder.stop()
    slot.close()
    assert recorder.stats.segments == 1
    result = finish(tmp_path / "item")
    media = tmp_path / "item" / result.media_file
    assert media.suffix == (".mp4" if codec == "H264" else ".webm")
    probe = ffprobe(media)
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
    assert {s["codec_name"] for s in probe["streams"]} == {codec.lower(), "opus"}
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (320, 240)
    if codec == "H264":
        # The track header carries the sender's parameter sets, not an encoder's.
        assert "Baseline" in video["profile"], video["profile"]
    # The video starts at the first keyframe, 0.3 s after audio began: 7.7 s.
    assert abs(float(probe["format"]["duration"]) - 7.7) < 0.2, probe["format"]
    assert abs(result.duration - float(probe["format"]["duration"])) < 0.05
    assert decode_errors(media) == ""
    assert result.poster and (tmp_path / "item" / "poster.jpg").stat().st_size > 1000
    # Video arrived 100 ms later than audio: only the sender's clock puts
    # the beeps on the flashes.
    check_offsets(media, len(flashes) - 1)


async def test_sender_reports_that_come_late_still_align_the_finished_file(
        tmp_path: Path) -> None:
    """Aligned by arrival at first (100 ms off), corrected at finishing."""
    clock = Clock()
    slot, source = make_slot("H264", clock)
    frames, flashes = stream("H264", 8.0, reports_after=3.0)
    recorder = Recorder(tmp_path / "item", slot, clock=clock)
    recorder.start()
    feed(slot, source, clock, frames)
    recorder.stop()
    slot.close()
    sidecar = tmp_path / "item" / "parts" / "seg-0001.json"
    shift = json.loads(sidecar.read_text())["audio_shift"]
    # Video arrived 100 ms later than audio, so by arrival audio was placed
    # 100 ms too early.
    assert shift == pytest.approx(0.1, abs=0.01)
    result = finish(tmp_path / "item")
    check_offsets(tmp_path / "item" / result.media_file, len(flashes) - 1)


def heard_at(levels: list[tuple[float, float]], threshold: float = 0.1) -> list[float]:
    """Onsets of a tone: the first loud window after a quiet one."""
    onsets: list[float] = []
    quiet = True
    for start, level in levels:
        if level > threshold and quiet:
            onsets.append(start)
        quiet = level <= threshold
    return onsets


@pytest.mark.parametrize("codec", ["H264", "VP8"])
async def test_the_stage_is_heard_in_the_lecture_and_seen_in_its_own_file(
        tmp_path: Path, codec: str) -> None:
    """A room's turn on stage: its voice is mixed into the lecture's audio over
    its turn only, its picture goes into the stage file, named by the room."""
    clock = Clock()
    program, lecturer = make_slot(codec, clock)
    stage = Slot("stage", codec, aiortc_glue.make_packetizer, clock=clock)
    room = Source()
    room.tag = "invitation-a"  # type: ignore[attr-defined]
    item = tmp_path / "item"
    recorder = Recorder(item, program, clock=clock)
    stage_recorder = Recorder(item, stage, clock=clock, pattern=STAGE_PATTERN,
                              origin=lambda: recorder.started_at,
                              label=lambda source: getattr(source, "tag", None))
    recorder.start()
    stage_recorder.start()
    # The lecture: 12 s with 1 kHz beeps; the room: 4 s with 2.5 kHz beeps,
    # brought on stage 4 s after the lecture's first picture.
    lecture, lecture_flashes = stream(codec, 12.0)
    turn, turn_flashes = stream(codec, 4.0, tone=2500.0)
    timeline = [(1000.0 + t.arrival, program, lecturer, t) for t in lecture]
    timeline += [(1004.0 + t.arrival, stage, room, t) for t in turn]
    timeline.sort(key=lambda entry: entry[0])
    stage.attach(room)
    for at, slot, source, timed in timeline:
        clock.now = at
        slot.push(source, timed.frame)
    stage_recorder.stop()
    recorder.stop()
    program.close()
    stage.close()
    assert stage_recorder.stats.segments == 1
    result = finish(item)
    media = item / result.media_file
    assert decode_errors(media) == ""
    # The lecture's first picture arrived at 1000.42 s, the room's at 1004.42 s.
    assert len(result.stage) == 1
    turn_info = result.stage[0]
    assert turn_info["at"] == pytest.approx(4.0, abs=0.05)
    assert turn_info["offset"] == 0.0
    assert turn_info["source"] == "invitation-a"
    assert turn_info["duration"] == pytest.approx(3.7, abs=0.15)
    # The room's voice is in the lecture's audio at its beeps, and nowhere
    # else; onsets are read by counting decoded samples (as a player plays
    # them) in 5 ms windows.
    room_beeps = heard_at(tone_levels(str(media), 2500.0, window=0.005))
    expected = [4.0 + flash - 0.3 for flash in turn_flashes]
    assert len(room_beeps) == len(expected), room_beeps
    for heard, at in zip(room_beeps, expected, strict=True):
        assert heard == pytest.approx(at, abs=0.008), (room_beeps, expected)
    # The lecturer is heard throughout, every beep where it was: the mixed
    # stretch decodes to exactly the samples it replaced (no drift after it).
    lecturer_beeps = heard_at(tone_levels(str(media), 1000.0, window=0.005))
    expected = [flash - 0.3 for flash in lecture_flashes if flash - 0.3 < result.duration]
    assert len(lecturer_beeps) == len(expected), lecturer_beeps
    for heard, at in zip(lecturer_beeps, expected, strict=True):
        assert heard == pytest.approx(at, abs=0.008), (lecturer_beeps, expected)
    # Only the turn was decoded and encoded again.
    assert 3.4 < result.mixed_seconds < 4.5, result.mixed_seconds
    # The stage file holds the room's picture and sound from 0.
    assert result.stage_file == ("stage.mp4" if codec == "H264" else "stage.webm")
    stage_file = item / result.stage_file
    assert decode_errors(stage_file) == ""
    # The files' digests, for course packages: as the files are.
    assert set(result.digests) == {result.media_file, "poster.jpg", result.stage_file}
    for name, digest in result.digests.items():
        data = (item / name).read_bytes()
        assert digest["size"] == len(data) and digest["crc32"] == zlib.crc32(data), name
        assert digest["sha256"] == hashlib.sha256(data).hexdigest(), name
    probe = ffprobe(stage_file)
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"]
    assert float(probe["format"]["duration"]) == pytest.approx(3.7, abs=0.2)
    stage_beeps = heard_at(tone_levels(str(stage_file), 2500.0))
    assert [round(beep, 1) for beep in stage_beeps] == [
        round(flash - 0.3, 1) for flash in turn_flashes], stage_beeps


async def test_a_lecture_without_a_stage_is_only_remuxed(tmp_path: Path) -> None:
    clock = Clock()
    program, lecturer = make_slot("H264", clock)
    stage = Slot("stage", "H264", aiortc_glue.make_packetizer, clock=clock)
    recorder = Recorder(tmp_path / "item", program, clock=clock)
    stage_recorder = Recorder(tmp_path / "item", stage, clock=clock, pattern=STAGE_PATTERN,
                              origin=lambda: recorder.started_at)
    recorder.start()
    stage_recorder.start()
    feed(program, lecturer, clock, stream("H264", 4.0)[0])
    stage_recorder.stop()
    recorder.stop()
    program.close()
    stage.close()
    result = finish(tmp_path / "item")
    assert (result.stage_file, result.stage, result.mixed_seconds) == (None, [], 0.0)
    assert not list((tmp_path / "item").glob("stage*"))


async def test_a_new_source_continues_the_same_item_in_a_new_segment(tmp_path: Path) -> None:
    clock = Clock()
    slot, first = make_slot("H264", clock)
    viewers = Counter()
    slot.video.subscribe(viewers, request_keyframe=False)
    recorder = Recorder(tmp_path / "item", slot, clock=clock)
    recorder.start()
    part_one, _ = stream("H264", 5.0)
    feed(slot, first, clock, part_one, epoch=1000.0)
    # The classroom PC reconnects 3 s later, with another picture size.
    second = Source()
    slot.attach(second)
    part_two, _ = stream("H264", 5.0, width=640, height=360)
    feed(slot, second, clock, part_two, epoch=1008.0)
    recorder.stop()
    slot.close()
    assert recorder.stats.segments == 2
    result = finish(tmp_path / "item")
    media = tmp_path / "item" / result.media_file
    assert decode_errors(media) == ""
    # Wall time from the first keyframe (1000.42) to the last frame (≈1013.1).
    assert result.duration == pytest.approx(12.7, abs=0.3)
    assert result.segments == 2
    # Video timestamps only go up across the join.
    assert rising(packet_times(media, "v"))
    assert viewers.frames > 0


async def test_a_picture_size_change_starts_a_new_segment(tmp_path: Path) -> None:
    clock = Clock()
    slot, source = make_slot("VP8", clock)
    recorder = Recorder(tmp_path / "item", slot, clock=clock)
    recorder.start()
    small, _ = stream("VP8", 3.0)
    feed(slot, source, clock, small, epoch=1000.0)
    # Same source, new size (a browser adapting its resolution): its
    # timestamps go on from where they were.
    large, _ = stream("VP8", 3.0, width=640, height=480)
    for timed in large:
        timed.frame.timestamp += (3 * 90_000 if timed.frame.kind == "video" else 3 * 48_000)
    feed(slot, source, clock, large, epoch=1003.0)
    recorder.stop()
    slot.close()
    assert recorder.stats.segments == 2
    result = finish(tmp_path / "item")
    assert decode_errors(tmp_path / "item" / result.media_file) == ""


async def test_timestamps_stay_strictly_increasing_whatever_comes_in(tmp_path: Path) -> None:
    clock = Clock()
    slot, source = make_slot("H264", clock)
    frames, _ = stream("H264", 4.0)
    recorder = Recorder(tmp_path / "item", slot, clock=clock)
    recorder.start()
    # Repeat a timestamp now and then (a sender bug): the file's timestamps
    # must still go strictly up, and every frame must decode.
    video = [t for t in frames if t.frame.kind == "video"]
    for previous, timed in zip(video[::10], video[1::10], strict=False):
        timed.frame.timestamp = previous.frame.timestamp
    feed(slot, source, clock, frames)
    recorder.stop()
    slot.close()
    result = finish(tmp_path / "item")
    media = tmp_path / "item" / result.media_file
    assert rising(packet_times(media, "v")) and rising(packet_times(media, "a"))
    with av.open(str(media)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == len(video)


async def test_a_failed_writer_is_restarted_and_the_recording_goes_on(tmp_path: Path) -> None:
    clock = Clock()
    slot, source = make_slot("H264", clock)
    events: list[tuple[str, str]] = []
    recorder = Recorder(tmp_path / "item", slot, on_event=lambda k, d: events.append((k, d)),
                        clock=clock)
    recorder.start()
    frames, _ = stream("H264", 6.0)
    half = len(frames) // 2
    feed(slot, source, clock, frames[:half])
    # Pull the file out from under the writer: its next cluster cannot be written.
    writer = recorder._writer
    assert writer is not None
    os.close(writer.fileno())
    feed(slot, source, clock, frames[half:])
    recorder.stop()
    slot.close()
    assert ("restart" in [kind for kind, _ in events]), events
    assert recorder.stats.restarts == 1 and recorder.stats.failure is None
    assert recorder.stats.segments == 2
    assert source.keyframe_requests >= 1
    result = finish(tmp_path / "item")
    assert result.duration > 4.5
    assert decode_errors(tmp_path / "item" / result.media_file) == ""


async def test_a_full_disk_stops_the_recording_but_not_the_relay(tmp_path: Path) -> None:
    clock = Clock()
    slot, source = make_slot("H264", clock)
    viewers = Counter()
    slot.video.subscribe(viewers, request_keyframe=False)
    free = [10 * 1024**3]
    events: list[tuple[str, str]] = []
    recorder = Recorder(tmp_path / "item", slot, on_event=lambda k, d: events.append((k, d)),
                        clock=clock, free_space=lambda path: free[0])
    recorder.start()
    frames, _ = stream("H264", 12.0)
    video = [t for t in frames]
    feed(slot, source, clock, video[: len(video) // 2])
    free[0] = 10 * 1024 * 1024  # 10 MiB left: below the 64 MiB reserve
    before = viewers.frames
    feed(slot, source, clock, video[len(video) // 2:])
    assert not recorder.running
    assert recorder.stats.failure is not None and "disk full" in recorder.stats.failure
    assert events[-1][0] == "failed"
    assert viewers.frames > before + 100  # the viewers kept getting pictures
    # Free space is checked every few seconds (and a write that meets a full
    # disk stops it at once): what was written is intact and finishes cleanly.
    result = finish(tmp_path / "item")
    half = 12.0 / 2 - 0.3
    assert half - 0.5 < result.duration < half + FREE_CHECK_INTERVAL + 0.5
    assert decode_errors(tmp_path / "item" / result.media_file) == ""
    slot.close()


async def test_a_segment_cut_short_by_a_crash_finishes_up_to_its_last_cluster(
        tmp_path: Path) -> None:
    clock = Clock()
    slot, source = make_slot("H264", clock)
    recorder = Recorder(tmp_path / "item", slot, clock=clock)
    recorder.start()
    frames, _ = stream("H264", 8.0)
    feed(slot, source, clock, frames)
    # No stop(): the process "dies" here. What is on disk is what a SIGKILL
    # leaves (clusters are written as they close; no cues, no duration).
    segment = tmp_path / "item" / "parts" / "seg-0001.mkv"
    crashed = tmp_path / "crashed"
    (crashed / "parts").mkdir(parents=True)
    data = segment.read_bytes()
    (crashed / "parts" / "seg-0001.mkv").write_bytes(data[: len(data) - 1234])
    recorder.stop()
    slot.close()
    result = finish(crashed)
    assert 6.0 < result.duration <= 7.8
    assert decode_errors(crashed / result.media_file) == ""


async def test_nothing_recorded_is_a_clear_failure(tmp_path: Path) -> None:
    from recordings.finish import FinishError

    (tmp_path / "item" / "parts").mkdir(parents=True)
    (tmp_path / "item" / "parts" / "seg-0001.mkv").write_bytes(b"not a matroska file")
    with pytest.raises(FinishError, match="nothing was recorded"):
        finish(tmp_path / "item")


async def test_the_slot_packetizes_only_when_a_sink_sends_rtp(tmp_path: Path) -> None:
    clock = Clock()
    slot, source = make_slot("H264", clock)
    frames = [t for t in stream("H264", 1.5)[0] if t.frame.kind == "video"]
    seen: list[EncodedFrame] = []

    class Viewer:
        def deliver(self, frame: EncodedFrame) -> None:
            seen.append(frame)

    class Recording:
        wants_payloads = False

        def deliver(self, frame: EncodedFrame) -> None:
            seen.append(frame)

    recording = Recording()
    slot.video.subscribe(recording, request_keyframe=False)
    feed(slot, source, clock, frames[:10])
    assert seen and all(frame.payloads is None for frame in seen)
    seen.clear()
    viewer = Viewer()
    slot.video.subscribe(viewer, request_keyframe=False)
    feed(slot, source, clock, frames[10:20])
    assert seen and all(frame.payloads for frame in seen)
    seen.clear()
    slot.video.unsubscribe(viewer)
    feed(slot, source, clock, frames[20:30])
    assert seen and all(frame.payloads is None for frame in seen)
    slot.close()


@pytest.mark.parametrize("jump", [3600.0, -3600.0], ids=["forward", "back"])
async def test_the_senders_clock_jumping_an_hour_keeps_the_file_in_sync(
    tmp_path: Path, jump: float
) -> None:
    """The presenter PC's clock is corrected by an hour mid-lecture (its RTCP
    sender reports jump): the lecture keeps its length and its sound stays on
    its pictures."""
    clock = Clock()
    slot, source = make_slot("H264", clock)
    frames, flashes = stream("H264", 8.0)
    jumped = [
        Timed(dataclasses.replace(t.frame, capture_time=t.frame.capture_time + jump), t.arrival)
        if t.frame.capture_time is not None and t.arrival >= 4.0 else t
        for t in frames]
    recorder = Recorder(tmp_path / "item", slot, clock=clock)
    recorder.start()
    feed(slot, source, clock, jumped)
    recorder.stop()
    slot.close()
    result = finish(tmp_path / "item")
    media = tmp_path / "item" / result.media_file
    assert abs(result.duration - 7.7) < 0.2, result.duration
    assert decode_errors(media) == ""
    check_offsets(media, len(flashes) - 1)
