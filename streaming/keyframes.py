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


# --------------------------------------------------------------------------
# picture size of a keyframe (a recording needs it for its track header, and
# starts a new segment when it changes)

H264_NAL_SPS = 7
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def vp8_frame_size(data: bytes) -> tuple[int, int] | None:
    """RFC 6386 §9.1: 14-bit width and height after a keyframe's start code."""
    if not is_vp8_keyframe(data):
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


def h264_nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex-B byte stream, without their start codes."""
    starts = []
    pos = data.find(b"\x00\x00\x01")
    while pos != -1:
        starts.append(pos + 3)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(data)
        # A four-byte start code leaves its leading zero on the previous unit.
        yield data[start:end].rstrip(b"\x00") if index + 1 < len(starts) else data[start:end]


class _Bits:
    """An RBSP bit reader with Exp-Golomb codes (H.264 §7.2, §9.1)."""

    def __init__(self, nal: bytes) -> None:
        # Remove emulation prevention bytes (00 00 03 -> 00 00).
        self._data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
        self._pos = 0

    def bit(self) -> int:
        byte = self._pos >> 3
        if byte >= len(self._data):
            raise ValueError("SPS ends early")
        value = (self._data[byte] >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


def h264_sps_size(sps: bytes) -> tuple[int, int]:
    """Width and height (after cropping) from a sequence parameter set NAL unit."""
    bits = _Bits(sps[1:])  # skip the NAL header byte
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.bit()  # separate_colour_plane_flag
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    last = next_scale = 8
                    for _ in range(16 if index < 6 else 64):
                        if next_scale:
                            next_scale = (last + bits.se() + 256) % 256
                        last = next_scale or last
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field_flag
    bits.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    return width, height


def frame_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """The picture size a keyframe announces, or None if it does not say."""
    name = codec.upper()
    if name == "VP8":
        return vp8_frame_size(data)
    if name == "H264":
        for nal in h264_nal_units(data):
            if nal and nal[0] & 0x1F == H264_NAL_SPS:
                try:
                    return h264_sps_size(nal)
                except ValueError:
                    return None
    return None
