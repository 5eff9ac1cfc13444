"""Keyframe detection on depayloaded frames (no decoding)."""

from __future__ import annotations

from collections.abc import Iterator

H264_NAL_IDR = 5


def is_vp8_keyframe(data: bytes) -> bool:
    """RFC 6386 §9.1: P bit clear in the frame tag, then the start code 9d 01 2a."""
    return len(data) >= 10 and (data[0] & 0x01) == 0 and data[3:6] == b"\x9d\x01\x2a"


def h264_nal_types(data: bytes) -> Iterator[int]:
    """NAL unit types of an Annex-B byte stream (00 00 01 / 00 00 00 01 start codes)."""
    pos = data.find(b"\x00\x00\x01")
    while pos != -1:
        start = pos + 3
        if start >= len(data):
            return
        yield data[start] & 0x1F
        pos = data.find(b"\x00\x00\x01", start)


def is_h264_keyframe(data: bytes) -> bool:
    """An access unit that holds an IDR slice."""
    return any(nal == H264_NAL_IDR for nal in h264_nal_types(data))


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a frame of ``codec`` starts a new decodable sequence.

    Audio codecs have no keyframes: every frame stands alone.
    """
    name = codec.upper()
    if name == "VP8":
        return is_vp8_keyframe(data)
    if name == "H264":
        return is_h264_keyframe(data)
    return True
