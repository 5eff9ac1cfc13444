"""The upstream's pure parts: the codec an origin answered with, and the
jitter buffer that releases a video frame at its last packet."""

from __future__ import annotations

import pytest
from aiortc.rtp import RtpPacket

from streaming.aiortc_glue import _MarkerJitterBuffer
from streaming.upstream import UpstreamRefused, answer_video_codec


def packet(seq: int, timestamp: int, marker: bool, data: bytes) -> RtpPacket:
    made = RtpPacket(sequence_number=seq, timestamp=timestamp, marker=marker)
    made._data = data  # type: ignore[attr-defined]  # what aiortc's depayloader sets
    return made


def test_a_frame_leaves_with_its_last_packet_not_with_the_next_frame() -> None:
    buffer = _MarkerJitterBuffer(capacity=128, is_video=True)
    assert buffer.add(packet(10, 3000, False, b"a")) == (False, None)
    _, frame = buffer.add(packet(11, 3000, True, b"b"))
    assert frame is not None and (frame.data, frame.timestamp) == (b"ab", 3000)
    _, frame = buffer.add(packet(12, 6000, True, b"c"))  # a one-packet frame
    assert frame is not None and (frame.data, frame.timestamp) == (b"c", 6000)


def test_a_frame_with_a_hole_waits_for_it_and_a_late_packet_is_not_sent_twice() -> None:
    buffer = _MarkerJitterBuffer(capacity=128, is_video=True)
    buffer.add(packet(20, 3000, False, b"a"))
    assert buffer.add(packet(22, 3000, True, b"c")) == (False, None)  # 21 missing
    _, frame = buffer.add(packet(21, 3000, False, b"b"))  # the retransmission
    # Released the usual way or at the marker: whole, once.
    assert frame is None or frame.data == b"abc"
    if frame is None:
        _, frame = buffer.add(packet(23, 6000, True, b"d"))
        assert frame is not None and frame.data == b"abc"
    else:
        assert buffer.add(packet(21, 3000, False, b"b")) == (False, None)


def test_a_lost_marker_releases_the_frame_with_the_next_one_as_aiortc_does() -> None:
    buffer = _MarkerJitterBuffer(capacity=128, is_video=True)
    buffer.add(packet(30, 3000, False, b"a"))  # its marker packet (31) lost for good
    _, frame = buffer.add(packet(32, 6000, False, b"x"))
    assert frame is None  # the run 30, _, 32 has a hole: nothing complete
    buffer2 = _MarkerJitterBuffer(capacity=128, is_video=True)
    buffer2.add(packet(40, 3000, False, b"a"))
    _, frame = buffer2.add(packet(41, 6000, False, b"x"))  # no marker on 40
    assert frame is not None and frame.data == b"a"


VP8_ANSWER = """v=0\r
o=- 1 1 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
m=video 9 UDP/TLS/RTP/SAVPF 97\r
c=IN IP4 127.0.0.1\r
a=mid:0\r
a=rtpmap:97 VP8/90000\r
"""


def test_the_answer_names_the_sessions_codec() -> None:
    assert answer_video_codec(VP8_ANSWER) == "VP8"
    assert answer_video_codec(VP8_ANSWER.replace("VP8", "H264")) == "H264"


@pytest.mark.parametrize("answer", [
    "garbage", VP8_ANSWER.replace("VP8", "AV1"),
    VP8_ANSWER.replace("m=video", "m=audio").replace("VP8/90000", "opus/48000/2"),
])
def test_an_answer_the_edge_cannot_relay_is_refused(answer: str) -> None:
    with pytest.raises(UpstreamRefused):
        answer_video_codec(answer)
