"""A slot's fan-out to its viewers' relay tracks: gating, overflow, source
switches, damage (streaming/slot.py, streaming/relay_track.py)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamError

from streaming.frames import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, EncodedFrame
from streaming.keyframe_requests import DEFAULT_INTERVAL
from streaming.relay_track import RelayTrack
from streaming.slot import Slot
from tests.support.fakes import FakeClock, FakeSource

INTERVAL = DEFAULT_INTERVAL  # the slots' keyframe request interval


class FakeWriter:
    """Stands in for a viewer's connected writer: records what it is sent."""

    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []
        self.backed_up = False
        self.ready = True
        self.batchable = False  # one by one, as the Python send path
        self.frames_sent = 0

    def join_batch(self, slot_track: object, owner: object) -> None:
        return None

    def send(self, frame: EncodedFrame) -> bool:
        if self.backed_up:
            return False
        self.frames.append(frame)
        return True


def _started(track: RelayTrack) -> RelayTrack:
    """A viewer's track as a connected viewer runs it."""
    track.bind(FakeWriter())
    track.start()
    track.writer_ready()
    return track


def _writer(track: RelayTrack) -> FakeWriter:
    writer = track._writer
    assert isinstance(writer, FakeWriter)
    return writer


class RecordingSink:
    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []

    def deliver(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)


class Feed:
    """Frames of one source on its own timeline, 30 fps video / 20 ms audio."""

    def __init__(self, slot: Slot, source: FakeSource, clock: FakeClock, origin: int = 0) -> None:
        self.slot, self.source, self.clock = slot, source, clock
        self.video_ts = origin
        self.audio_ts = origin
        self.count = 0

    def video(self, keyframe: bool = False) -> EncodedFrame:
        self.count += 1
        data = (b"K" if keyframe else b"d") + self.count.to_bytes(4, "big")
        frame = EncodedFrame("video", "VP8", data, self.video_ts, VIDEO_CLOCK_RATE, keyframe)
        self.slot.push(self.source, frame)
        self.video_ts += 3000
        self.clock.advance(1 / 30)
        return frame

    def audio(self) -> EncodedFrame:
        frame = EncodedFrame("audio", "opus", b"a", self.audio_ts, AUDIO_CLOCK_RATE, True)
        self.slot.push(self.source, frame)
        self.audio_ts += 960
        return frame


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def packetized() -> list[EncodedFrame]:
    return []


@pytest.fixture
def slot(clock: FakeClock, packetized: list[EncodedFrame]) -> Iterator[Slot]:
    def packetizers(codec: str) -> Callable[[EncodedFrame], list[bytes]]:
        def packetize(frame: EncodedFrame) -> list[bytes]:
            packetized.append(frame)
            return [frame.data]

        return packetize

    slot = Slot("program", "VP8", packetizers, clock)
    yield slot
    slot.close()


def _queued(track: RelayTrack) -> list[EncodedFrame]:
    """What the viewer was sent and has not been looked at yet."""
    return list(_writer(track).frames)


async def _drain(track: RelayTrack) -> list[EncodedFrame]:
    frames = _writer(track).frames[:]
    _writer(track).frames.clear()
    return frames


async def test_a_viewer_starts_on_a_keyframe(slot: Slot, clock: FakeClock) -> None:
    source = FakeSource()
    slot.attach(source)
    feed = Feed(slot, source, clock)
    early = _started(RelayTrack(slot.video))
    feed.video(keyframe=True)
    feed.video()
    late = _started(RelayTrack(slot.video))  # joins mid-stream
    try:
        deltas = [feed.video() for _ in range(3)]
        assert _queued(late) == []  # only interframes so far: gated
        key = feed.video(keyframe=True)
        after = feed.video()
        assert [f.data for f in _queued(late)] == [key.data, after.data]
        got = await _drain(early)
        assert len(got) == 2 + len(deltas) + 2
        assert got[0].keyframe
        assert [f.data for f in await _drain(late)] == [key.data, after.data]
    finally:
        early.stop()
        late.stop()


async def test_joining_asks_the_source_for_a_keyframe(slot: Slot, clock: FakeClock) -> None:
    source = FakeSource()
    slot.attach(source)
    assert source.keyframe_requests == 1  # a new source: the slot needs a keyframe
    clock.advance(1.0)
    track = _started(RelayTrack(slot.video))
    try:
        assert source.keyframe_requests == 2
        clock.advance(1.0)
        track.viewer_requested_keyframe()  # the viewer's PLI
        assert source.keyframe_requests == 3
        assert track.keyframe_requests == 1
    finally:
        track.stop()


async def test_a_join_storm_costs_the_source_one_keyframe(slot: Slot, clock: FakeClock) -> None:
    source = FakeSource()
    slot.attach(source)
    feed = Feed(slot, source, clock)
    tracks = [_started(RelayTrack(slot.video)) for _ in range(100)]
    try:
        assert source.keyframe_requests == 1
        feed.video(keyframe=True)  # answers everyone who joined
        clock.advance(INTERVAL)
        await asyncio.sleep(INTERVAL + 0.1)
        assert source.keyframe_requests == 1
        assert all(len(_queued(t)) == 1 for t in tracks)
        more = [_started(RelayTrack(slot.video)) for _ in range(100)]
        tracks += more
        assert source.keyframe_requests == 2  # the interval has passed: at once
        clock.advance(0.1)
        tracks.append(_started(RelayTrack(slot.video)))
        assert source.keyframe_requests == 2
        clock.advance(INTERVAL)
        await asyncio.sleep(INTERVAL + 0.1)
        assert source.keyframe_requests == 3  # one deferred, no more
    finally:
        for track in tracks:
            track.stop()


async def test_a_backed_up_viewer_regates_and_asks_for_a_keyframe(
    slot: Slot, clock: FakeClock
) -> None:
    source = FakeSource()
    slot.attach(source)
    feed = Feed(slot, source, clock)
    slow = _started(RelayTrack(slot.video))
    fast = _started(RelayTrack(slot.video))
    try:
        clock.advance(1.0)
        feed.video(keyframe=True)
        sent = [feed.video() for _ in range(4)]
        assert len(_queued(slow)) == 5 and slow.overflows == 0
        requests = source.keyframe_requests
        _writer(slow).backed_up = True  # its socket is full
        sent.append(feed.video())
        assert slow.overflows == 1
        assert source.keyframe_requests == requests + 1
        _writer(slow).backed_up = False
        sent += [feed.video() for _ in range(3)]
        assert len(_queued(slow)) == 5  # gated: interframes after the loss are useless
        key = feed.video(keyframe=True)
        assert [f.data for f in _queued(slow)[5:]] == [key.data]
        # The fast viewer lost nothing.
        assert len(await _drain(fast)) == 1 + len(sent) + 1
        assert fast.overflows == 0
    finally:
        slow.stop()
        fast.stop()


async def test_a_viewer_that_is_not_connected_yet_waits_for_a_keyframe(
    slot: Slot, clock: FakeClock
) -> None:
    source = FakeSource()
    slot.attach(source)
    feed = Feed(slot, source, clock)
    track = RelayTrack(slot.video)
    writer = FakeWriter()
    writer.ready = False
    track.bind(writer)
    track.start()
    try:
        feed.video(keyframe=True)
        feed.video()
        assert writer.frames == []  # negotiating: nothing can reach it yet
        writer.ready = True
        clock.advance(1.0)
        requests = source.keyframe_requests
        track.writer_ready()  # connected: it asks for a keyframe to start on
        assert source.keyframe_requests == requests + 1
        feed.video()
        assert writer.frames == []
        key = feed.video(keyframe=True)
        assert [f.data for f in writer.frames] == [key.data]
    finally:
        track.stop()


@pytest.mark.parametrize("new_origin", [0, 3_000_000_000], ids=["earlier", "later"])
async def test_a_source_switch_rebases_so_timestamps_keep_increasing(
    slot: Slot, clock: FakeClock, new_origin: int
) -> None:
    first, second = FakeSource(), FakeSource()
    video = _started(RelayTrack(slot.video))
    audio = _started(RelayTrack(slot.audio))
    try:
        slot.attach(first)
        feed = Feed(slot, first, clock, origin=2_000_000_000)
        feed.video(keyframe=True)
        for _ in range(5):
            feed.video()
            feed.audio()
        clock.advance(1.5)  # the classroom PC reconnects
        slot.attach(second)
        assert slot.source is second
        assert second.keyframe_requests == 1
        again = Feed(slot, second, clock, origin=new_origin)
        held = again.video()  # no keyframe from the new source yet: held back
        again.audio()
        key = again.video(keyframe=True)
        for _ in range(5):
            again.video()
            again.audio()
        frames = await _drain(video)
        assert held.data not in [f.data for f in frames]
        assert key.data in [f.data for f in frames]
        stamps = [f.timestamp for f in frames]
        assert stamps[0] == 0
        assert all(b > a for a, b in itertools.pairwise(stamps)), stamps
        # The gap across the switch follows wall time (about 1.5 s), not the sources' clocks.
        gap = stamps[6] - stamps[5]
        assert 1.5 * VIDEO_CLOCK_RATE <= gap <= 1.7 * VIDEO_CLOCK_RATE, gap
        audio_stamps = [f.timestamp for f in await _drain(audio)]
        assert len(audio_stamps) == 11
        assert all(b > a for a, b in itertools.pairwise(audio_stamps)), audio_stamps
        # The frames a sink sees are restamped copies; the source's frames are untouched.
        assert key.timestamp == new_origin + 3000
        assert next(f for f in frames if f.data == key.data).timestamp == stamps[6]
        assert stamps[6] != key.timestamp
    finally:
        video.stop()
        audio.stop()


async def test_frames_from_a_replaced_source_are_dropped(slot: Slot, clock: FakeClock) -> None:
    old, new = FakeSource(), FakeSource()
    sink = RecordingSink()
    slot.video.subscribe(sink)
    slot.audio.subscribe(sink)
    slot.attach(old)
    old_feed = Feed(slot, old, clock)
    old_feed.video(keyframe=True)
    slot.attach(new)
    new_feed = Feed(slot, new, clock)
    new_feed.video(keyframe=True)
    before = (len(sink.frames), slot.video.stats.frames, slot.audio.stats.frames)
    old_feed.video(keyframe=True)
    old_feed.video()
    old_feed.audio()
    assert (len(sink.frames), slot.video.stats.frames, slot.audio.stats.frames) == before
    slot.detach(old)  # the old source's late goodbye does not empty the slot
    assert slot.source is new
    new_feed.video()
    assert len(sink.frames) == before[0] + 1
    slot.detach(new)
    assert slot.source is None
    new_feed.video(keyframe=True)
    assert len(sink.frames) == before[0] + 1


async def test_damage_holds_frames_until_the_next_keyframe(slot: Slot, clock: FakeClock) -> None:
    source = FakeSource()
    slot.attach(source)
    feed = Feed(slot, source, clock)
    track = _started(RelayTrack(slot.video))
    audio = _started(RelayTrack(slot.audio))
    try:
        feed.video(keyframe=True)
        feed.video()
        clock.advance(1.0)
        requests = source.keyframe_requests
        slot.video.mark_damaged()
        assert source.keyframe_requests == requests + 1
        slot.audio.mark_damaged()  # audio has no keyframes: nothing to hold
        assert source.keyframe_requests == requests + 1
        queued = len(_queued(track))
        feed.video()
        feed.video()
        feed.audio()
        assert len(_queued(track)) == queued
        assert len(_queued(audio)) == 1
        key = feed.video(keyframe=True)
        after = feed.video()
        assert [f.data for f in _queued(track)[queued:]] == [key.data, after.data]
    finally:
        track.stop()
        audio.stop()


async def test_frames_are_packetized_once_and_shared_by_every_sink(
    slot: Slot, clock: FakeClock, packetized: list[EncodedFrame]
) -> None:
    source = FakeSource()
    slot.attach(source)
    feed = Feed(slot, source, clock)
    feed.video(keyframe=True)  # nobody is watching: not packetized
    assert packetized == []
    sinks = [RecordingSink() for _ in range(3)]
    for sink in sinks:
        slot.video.subscribe(sink)
    feed.video(keyframe=True)
    feed.video()
    assert len(packetized) == 2
    for sink in sinks:
        assert [id(f) for f in sink.frames] == [id(f) for f in packetized]
        assert all(f.payloads == [f.data] for f in sink.frames)
    assert slot.video.sink_count == 3


async def test_a_stopped_track_unsubscribes_and_is_push_only(
    slot: Slot, clock: FakeClock
) -> None:
    source = FakeSource()
    slot.attach(source)
    feed = Feed(slot, source, clock)
    track = _started(RelayTrack(slot.video))
    key = feed.video(keyframe=True)
    assert [f.data for f in _queued(track)] == [key.data]
    assert slot.video.sink_count == 1
    with pytest.raises(MediaStreamError):
        await track.recv()  # frames are pushed to the writer, never pulled
    track.stop()
    assert slot.video.sink_count == 0
    feed.video(keyframe=True)
    assert [f.data for f in _queued(track)] == [key.data]


class FakeBatch:
    """A batch as the native send path's: its members' frames in one go."""

    def __init__(self) -> None:
        self.members: list[RelayTrack] = []
        self.frames: list[EncodedFrame] = []

    def __len__(self) -> int:
        return len(self.members)

    def deliver(self, frame: EncodedFrame) -> None:
        if self.members:
            self.frames.append(frame)

    def remove(self, owner: RelayTrack) -> None:
        self.members.remove(owner)

    def close(self) -> None:
        for owner in list(self.members):
            self.remove(owner)
            owner.left_batch(overflowed=False, resubscribe=False)


class BatchingWriter(FakeWriter):
    """A writer that joins its slot track's batch after its first frame."""

    def __init__(self) -> None:
        super().__init__()
        self.batchable = True

    def join_batch(self, slot_track: Any, owner: RelayTrack) -> FakeBatch:
        batch = slot_track.batch(FakeBatch, FakeBatch)
        batch.members.append(owner)
        return batch  # type: ignore[no-any-return]


async def test_a_viewer_moves_into_the_batch_without_a_frame_twice_or_missed(
    slot: Slot, clock: FakeClock, packetized: list[EncodedFrame]
) -> None:
    source = FakeSource()
    slot.attach(source)
    feed = Feed(slot, source, clock)
    plain = RecordingSink()
    slot.video.subscribe(plain)
    tracks = []
    for _ in range(2):
        track = RelayTrack(slot.video)
        track.bind(BatchingWriter())
        track.start()
        track.writer_ready()
        tracks.append(track)
    first = feed.video(keyframe=True)  # sent one by one, then both join the batch
    second = feed.video()
    third = feed.video()
    batch = slot.video.batch(FakeBatch, FakeBatch)
    assert len(batch) == 2 and slot.video.sink_count == 3
    for track in tracks:
        assert [f.data for f in _queued(track)] == [first.data]  # not twice
    assert [f.data for f in batch.frames] == [second.data, third.data]
    # Leaving the batch while it sends did not make the plain sink miss a frame.
    assert [f.data for f in plain.frames] == [first.data, second.data, third.data]
    assert len(packetized) == 3  # payloads made once a frame, for the batch too
    tracks[0].pause()  # sound only: out of the batch, and no frames at all
    assert len(batch) == 1 and slot.video.sink_count == 2
    tracks[1].stop()
    assert len(batch) == 0 and slot.video.sink_count == 1
