"""Pure units, no sockets: keyframe detection, timestamp re-basing, keyframe
request coalescing, slot fan-out and gating, tokens, trickle ICE fragments."""

from __future__ import annotations

import asyncio
import fractions
import functools
import itertools
from collections.abc import Callable, Iterator

import av
import pytest
from aiohttp.test_utils import make_mocked_request
from aiortc.mediastreams import MediaStreamError

from classroom.access.tokens import Grant, Role, TokenIndex
from streaming.frames import AUDIO_CLOCK_RATE, VIDEO_CLOCK_RATE, EncodedFrame
from streaming.keyframe_requests import KeyframeRequester, KeyframeRequestThrottle
from streaming.keyframes import h264_nal_types, is_h264_keyframe, is_keyframe, is_vp8_keyframe
from streaming.rebase import TimestampRebaser
from streaming.relay_track import RelayTrack
from streaming.slot import Slot
from tests.support.fakes import FakeClock, FakeSource
from web.errors import BadRequest, Forbidden, NotAuthorized, status_of
from web.http import bearer_token
from web.signaling import parse_sdpfrag

INTERVAL = 0.3  # the default keyframe request interval


class FakeWriter:
    """Stands in for a viewer's connected writer: records what it is sent."""

    def __init__(self) -> None:
        self.frames: list[EncodedFrame] = []
        self.backed_up = False
        self.ready = True

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


# --------------------------------------------------------------------------
# keyframe detection


def _test_picture(index: int, width: int = 64, height: int = 48) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for number, plane in enumerate(frame.planes):
        plane.update(bytes((index * 7 + number * 31 + i) % 251 for i in range(plane.buffer_size)))
    frame.pts = index
    return frame


@functools.cache
def _encoded(codec: str) -> tuple[tuple[bytes, bool], ...]:
    """(bytes, PyAV's keyframe flag) of three pictures encoded with ``codec``."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height = 64, 48
    context.pix_fmt = "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    if codec == "libx264":
        context.options = {"preset": "ultrafast", "tune": "zerolatency"}
    else:
        context.options = {"deadline": "realtime", "lag-in-frames": "0"}
    packets = []
    for index in range(3):
        packets += context.encode(_test_picture(index))
    packets += context.encode(None)
    return tuple((bytes(packet), bool(packet.is_keyframe)) for packet in packets)


def test_vp8_keyframe_and_interframe_from_libvpx() -> None:
    (key, key_flag), (inter, inter_flag), *_ = _encoded("libvpx")
    assert key_flag and not inter_flag  # the encoder agrees on which is which
    assert is_vp8_keyframe(key)
    assert is_keyframe("VP8", key)
    assert is_keyframe("vp8", key)
    assert not is_vp8_keyframe(inter)
    assert not is_keyframe("VP8", inter)


VP8_KEY_HEADER = bytes([0x50, 0x10, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x00, 0x30, 0x00])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (VP8_KEY_HEADER, True),  # exactly the 10-byte keyframe header
        (VP8_KEY_HEADER + b"\x00" * 100, True),
        (bytes([0x51]) + VP8_KEY_HEADER[1:], False),  # P bit set: an interframe
        (bytes([0x31, 0x02, 0x00]) + b"\xaa" * 20, False),  # a typical interframe
        (VP8_KEY_HEADER[:3] + b"\x9d\x01\x2b" + VP8_KEY_HEADER[6:], False),  # bad start code
        (VP8_KEY_HEADER[:9], False),  # truncated header
        (VP8_KEY_HEADER[:6], False),
        (b"", False),
    ],
)
def test_vp8_keyframe_on_hand_made_bytes(data: bytes, expected: bool) -> None:
    assert is_vp8_keyframe(data) is expected
    assert is_keyframe("VP8", data) is expected


def test_h264_idr_and_p_frame_from_libx264() -> None:
    (idr, idr_flag), (p_frame, p_flag), *_ = _encoded("libx264")
    assert idr_flag and not p_flag
    idr_types = list(h264_nal_types(idr))
    assert {7, 8, 5} <= set(idr_types), idr_types  # SPS, PPS and an IDR slice
    assert idr_types.index(7) < idr_types.index(5)
    assert is_h264_keyframe(idr)
    assert is_keyframe("H264", idr)
    assert 5 not in list(h264_nal_types(p_frame))
    assert not is_h264_keyframe(p_frame)
    assert not is_keyframe("H264", p_frame)


SPS = b"\x67\x42\xc0\x1f\xda\x01\x40\x16\xe8"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00\x33\xff"
SLICE = b"\x41\x9a\x20\xcb\x01"
SC3 = b"\x00\x00\x01"
SC4 = b"\x00\x00\x00\x01"


@pytest.mark.parametrize(
    ("data", "types", "keyframe"),
    [
        (SC3 + SPS + SC3 + PPS + SC3 + IDR, [7, 8, 5], True),
        (SC4 + SPS + SC4 + PPS + SC4 + IDR, [7, 8, 5], True),
        (SC4 + SPS + SC3 + PPS + SC4 + IDR, [7, 8, 5], True),  # mixed start codes
        (SC4 + IDR, [5], True),
        (SC3 + b"\x25\x88", [5], True),  # nal_ref_idc bits do not change the type
        (SC3 + SLICE, [1], False),
        (SC4 + SLICE + SC4 + SLICE, [1, 1], False),
        (SC4 + SPS + SC4 + PPS, [7, 8], False),  # parameter sets alone are no keyframe
        (SC3 + SLICE + b"\x05\x05\x65", [1], False),  # 0x65 inside a NAL is not a NAL
        (SC4 + SLICE + SC4, [1], False),  # truncated: a start code with nothing after it
        (SC3, [], False),
        (SC4, [], False),
        (b"\x00\x00", [], False),
        (IDR, [], False),  # no start code: not Annex-B
        (b"", [], False),
    ],
)
def test_h264_annex_b_on_hand_made_bytes(data: bytes, types: list[int], keyframe: bool) -> None:
    assert list(h264_nal_types(data)) == types
    assert is_h264_keyframe(data) is keyframe
    assert is_keyframe("H264", data) is keyframe
    assert is_keyframe("h264", data) is keyframe


def test_audio_frames_are_always_keyframes() -> None:
    assert is_keyframe("opus", b"\xfc\xff\xfe")
    assert is_keyframe("OPUS", b"")


# --------------------------------------------------------------------------
# timestamp re-basing


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


# --------------------------------------------------------------------------
# keyframe request coalescing


def test_throttle_sends_at_most_once_per_interval() -> None:
    throttle = KeyframeRequestThrottle(INTERVAL)
    assert throttle.request(10.0) == 0.0  # the first one goes out at once
    delay = throttle.request(10.1)
    assert delay == pytest.approx(0.2)  # inside the interval: deferred, not lost
    assert throttle.pending
    assert throttle.request(10.2) is None  # covered by the deferred one
    assert throttle.fire(10.3)
    assert not throttle.pending
    assert throttle.request(10.35) == pytest.approx(0.25)
    assert throttle.fire(10.6)
    assert throttle.request(10.95) == 0.0  # a quiet interval later: at once again


def test_throttle_a_keyframe_answers_the_pending_request() -> None:
    throttle = KeyframeRequestThrottle(INTERVAL)
    assert throttle.request(0.0) == 0.0
    assert throttle.request(0.1) is not None
    throttle.keyframe_arrived()
    assert not throttle.pending
    assert not throttle.fire(0.3)
    # The interval still counts from the last send.
    assert throttle.request(0.31) == 0.0


def test_throttle_join_storm_costs_one_request_and_one_deferred() -> None:
    throttle = KeyframeRequestThrottle(INTERVAL)
    decisions = [throttle.request(5.0 + i * 0.001) for i in range(100)]
    assert decisions[0] == 0.0
    deferred = [d for d in decisions[1:] if d is not None]
    assert len(deferred) == 1 and deferred[0] > 0
    assert throttle.fire(5.3)
    assert not throttle.fire(5.3)


async def test_requester_coalesces_to_one_send_per_interval() -> None:
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []
    requester = KeyframeRequester(lambda: sent_at.append(loop.time()), INTERVAL, loop.time)
    try:
        start = loop.time()
        while loop.time() - start < 1.0:
            requester.request()
            await asyncio.sleep(0.01)
        await asyncio.sleep(INTERVAL + 0.1)
    finally:
        requester.close()
    assert requester.sent == len(sent_at)
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(gap >= INTERVAL - 1e-3 for gap in gaps), gaps
    # Requests inside intervals are not lost: a send every interval, not just one.
    assert 3 <= len(sent_at) <= 1.0 / INTERVAL + 2, sent_at


async def test_requester_sends_a_request_from_inside_the_interval_when_it_ends() -> None:
    clock = FakeClock()
    sends: list[float] = []
    requester = KeyframeRequester(lambda: sends.append(clock()), INTERVAL, clock)
    try:
        requester.request()
        assert sends == [clock.now]
        clock.advance(0.1)
        requester.request()
        requester.request()
        assert len(sends) == 1  # not yet
        clock.advance(0.2)
        await asyncio.sleep(0.2 + 0.1)  # the loop's timer: 0.2 s on the loop clock
        assert len(sends) == 2
        assert sends[1] - sends[0] == pytest.approx(INTERVAL)
        await asyncio.sleep(INTERVAL + 0.1)
        assert len(sends) == 2  # one request, one deferred send: nothing more
    finally:
        requester.close()


async def test_requester_a_keyframe_cancels_the_pending_request() -> None:
    clock = FakeClock()
    requester = KeyframeRequester(lambda: None, INTERVAL, clock)
    try:
        requester.request()
        clock.advance(0.05)
        requester.request()
        requester.keyframe_arrived()
        clock.advance(INTERVAL)
        await asyncio.sleep(INTERVAL + 0.1)
        assert requester.sent == 1
    finally:
        requester.close()


async def test_requester_join_storm_of_100_is_one_send_and_one_deferred() -> None:
    clock = FakeClock()
    requester = KeyframeRequester(lambda: None, INTERVAL, clock)
    try:
        for _ in range(100):
            requester.request()
            clock.advance(0.0005)
        assert requester.sent == 1
        clock.advance(INTERVAL)
        await asyncio.sleep(INTERVAL + 0.1)
        assert requester.sent == 2
        await asyncio.sleep(INTERVAL)
        assert requester.sent == 2
    finally:
        requester.close()


async def test_requester_close_cancels_the_deferred_send() -> None:
    clock = FakeClock()
    requester = KeyframeRequester(lambda: None, INTERVAL, clock)
    requester.request()
    requester.request()
    requester.close()
    clock.advance(INTERVAL)
    await asyncio.sleep(INTERVAL + 0.1)
    assert requester.sent == 1


# --------------------------------------------------------------------------
# slot fan-out, gating, overflow and source switches


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


# --------------------------------------------------------------------------
# tokens


@pytest.fixture
def tokens() -> TokenIndex:
    index = TokenIndex()
    index.add("admin-token", Grant(Role.ADMIN, None))
    index.add("publish-a", Grant(Role.PUBLISH, "a"))
    index.add("view-a", Grant(Role.VIEW, "a"))
    index.add("publish-b", Grant(Role.PUBLISH, "b"))
    index.add("view-b", Grant(Role.VIEW, "b"))
    return index


def test_a_valid_token_is_granted(tokens: TokenIndex) -> None:
    assert tokens.require("publish-a", Role.PUBLISH, "a") == Grant(Role.PUBLISH, "a")
    assert tokens.require("view-a", Role.VIEW, "a") == Grant(Role.VIEW, "a")
    assert tokens.require("admin-token", Role.ADMIN, None) == Grant(Role.ADMIN, None)


@pytest.mark.parametrize("token", ["wrong", "", "publish-a ", "Publish-a", "publish-", "\udcff"])
def test_a_token_valid_nowhere_is_401(tokens: TokenIndex, token: str) -> None:
    assert tokens.lookup(token) is None
    with pytest.raises(NotAuthorized) as raised:
        tokens.require(token, Role.PUBLISH, "a")
    assert status_of(raised.value) == 401


@pytest.mark.parametrize(
    ("token", "role", "session_id"),
    [
        ("publish-b", Role.PUBLISH, "a"),  # another session
        ("view-b", Role.VIEW, "a"),
        ("view-a", Role.PUBLISH, "a"),  # another role
        ("publish-a", Role.VIEW, "a"),
        ("view-a", Role.ADMIN, None),
        ("publish-a", Role.ADMIN, None),
        ("admin-token", Role.PUBLISH, "a"),  # the admin token is for the API only
    ],
)
def test_a_real_token_for_something_else_is_403(
    tokens: TokenIndex, token: str, role: Role, session_id: str | None
) -> None:
    with pytest.raises(Forbidden) as raised:
        tokens.require(token, role, session_id)
    assert status_of(raised.value) == 403


def test_a_removed_token_is_401(tokens: TokenIndex) -> None:
    tokens.remove("publish-a")
    tokens.remove("never-added")
    with pytest.raises(NotAuthorized):
        tokens.require("publish-a", Role.PUBLISH, "a")
    assert tokens.require("view-a", Role.VIEW, "a").session_id == "a"


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER x.y-z", "x.y-z")],
)
def test_bearer_token_is_read_from_the_header(header: str, token: str) -> None:
    request = make_mocked_request("GET", "/", headers={"Authorization": header})
    assert bearer_token(request) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "abc"])
def test_a_missing_or_other_authorization_is_401(header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    request = make_mocked_request("GET", "/", headers=headers)
    with pytest.raises(NotAuthorized):
        bearer_token(request)


# --------------------------------------------------------------------------
# trickle ICE fragments (RFC 8840)


def test_parse_sdpfrag_reads_ufrag_candidates_and_end() -> None:
    fragment = (
        "a=ice-options:trickle ice2\r\n"
        "a=group:BUNDLE 0 1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=mid:0\r\n"
        "a=ice-ufrag:EsAw\r\n"
        "a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n"
        "a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active\r\n"
        "a=end-of-candidates\r\n"
    )
    ufrag, candidates, end = parse_sdpfrag(fragment)
    assert ufrag == "EsAw"
    assert candidates == [
        ("0", "1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0"),
        ("0", "473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active"),
    ]
    assert end


def test_parse_sdpfrag_tracks_the_mid_of_each_media_section() -> None:
    fragment = (
        "a=candidate:1 1 udp 1 192.0.2.1 1 typ host\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\n"
        "c=IN IP4 0.0.0.0\n"
        "a=mid:a\n"
        "a=candidate:2 1 udp 1 192.0.2.1 2 typ host\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\n"
        "a=candidate:3 1 udp 1 192.0.2.1 3 typ host\n"
        "a=mid:v\n"
        "a=candidate:4 1 udp 1 192.0.2.1 4 typ host\n"
        "\n"
        "   \n"
    )
    ufrag, candidates, end = parse_sdpfrag(fragment)
    assert ufrag is None
    assert [mid for mid, _ in candidates] == [None, "a", None, "v"]
    assert [line.split()[0] for _, line in candidates] == ["1", "2", "3", "4"]
    assert not end


def test_parse_sdpfrag_of_nothing() -> None:
    assert parse_sdpfrag("") == (None, [], False)
    assert parse_sdpfrag("a=end-of-candidates") == (None, [], True)


@pytest.mark.parametrize(
    "fragment",
    [
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n",
        "hello",
        "a=mid:0\r\ncandidate:1 1 udp 1 1.2.3.4 5 typ host",
    ],
)
def test_parse_sdpfrag_rejects_what_is_not_a_fragment(fragment: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_sdpfrag(fragment)
    assert raised.value.status == 400
