"""Keyframe detection (streaming/keyframes.py) on real and hand-made VP8, H.264 and audio frames."""

from __future__ import annotations

import fractions
import functools

import av
import pytest

from streaming.keyframes import h264_nal_types, is_h264_keyframe, is_keyframe, is_vp8_keyframe


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
