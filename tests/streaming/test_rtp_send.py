"""The native send path at its boundary: what ``zx_send_frame`` and
``zx_send_group`` put on the wire, and what a viewer remembers for NACK.

Real sockets on loopback and real SRTP: every packet sent is read back and
unprotected with an inbound session of the same key, so the header bytes,
the authentication tag and the payloads are all checked.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pylibsrtp
import pytest
from aiortc.rtp import RtcpPacket, RtcpSdesPacket, RtcpSrPacket

from streaming import aiortc_glue
from streaming.frames import EncodedFrame

aiortc_glue.require_native_send_path()
from streaming._rtp_send import ffi, lib  # noqa: E402

KEY = bytes(range(30))  # AES_CM_128_HMAC_SHA1_80: 16-byte key + 14-byte salt
SSRC = 0x11223344
NTP_UNIX_OFFSET = 2_208_988_800


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    """A non-blocking sender and a receiver that waits 2 s, on loopback."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    receiver.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    receiver.settimeout(2)
    return sender, receiver


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = _udp_pair()
    yield sender, receiver
    sender.close()
    receiver.close()


def _sessions() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    outbound = pylibsrtp.Session(pylibsrtp.Policy(
        key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    inbound = pylibsrtp.Session(pylibsrtp.Policy(
        key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return outbound, inbound


class Viewer:
    """A ``zx_viewer`` towards ``receiver``, keyed like ``outbound``."""

    def __init__(self, sender: socket.socket, address: tuple[Any, ...],
                 outbound: pylibsrtp.Session, sequence: int = 1000,
                 extensions: bytes = b"", abs_send_time_at: int = -1, gso: bool = True) -> None:
        self.outbound = outbound
        self.c = ffi.new("zx_viewer *")
        self.c.fd = sender.fileno()
        self.c.gso = int(gso)
        sockaddr = aiortc_glue._sockaddr(sender, address)
        self.c.address[0:len(sockaddr)] = sockaddr
        self.c.address_length = len(sockaddr)
        self.c.session = ffi.cast("void *", int(aiortc_glue.srtp_ffi.cast(
            "uintptr_t", outbound._srtp[0])))
        self.c.ssrc = SSRC
        self.c.sequence = sequence
        self.c.first_byte = 0x90 if extensions else 0x80
        self.c.payload_type = 96
        self.c.extensions[0:len(extensions)] = extensions
        self.c.extensions_length = len(extensions)
        self.c.abs_send_time_at = abs_send_time_at

    def send(self, payloads: list[bytes], timestamp: int = 123456) -> int:
        frame = EncodedFrame("video", "VP8", b"", 0, 90000, False, payloads)
        native, frame_id = aiortc_glue._native_frame(frame)
        status: int = lib.zx_send_frame(self.c, aiortc_glue._native_protect(), native, timestamp,
                                        frame_id)
        return status


def _receive(receiver: socket.socket, inbound: pylibsrtp.Session, count: int) -> list[bytes]:
    return [inbound.unprotect(receiver.recv(2048)) for _ in range(count)]


def test_headers_payloads_and_tag_of_every_packet(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = sockets
    outbound, inbound = _sessions()
    viewer = Viewer(sender, receiver.getsockname(), outbound, sequence=4242)
    payloads = [bytes([i]) * 1200 for i in range(3)] + [b"tail"]
    assert viewer.send(payloads, timestamp=0xDEADBEEF) == lib.ZX_SENT
    packets = _receive(receiver, inbound, 4)
    for index, packet in enumerate(packets):
        first, second, sequence, timestamp, ssrc = struct.unpack("!BBHLL", packet[:12])
        assert first == 0x80
        assert second == 96 | (0x80 if index == 3 else 0)  # marker on the frame's last
        assert sequence == 4242 + index
        assert timestamp == 0xDEADBEEF
        assert ssrc == SSRC
        assert packet[12:] == payloads[index]
    assert viewer.c.sent == viewer.c.consumed == 4
    assert viewer.c.sequence == 4246
    assert viewer.c.octets == sum(map(len, payloads))
    assert abs(viewer.c.ntp / 2**32 - NTP_UNIX_OFFSET - time.time()) < 1


def test_sequence_numbers_wrap(sockets: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = sockets
    outbound, inbound = _sessions()
    viewer = Viewer(sender, receiver.getsockname(), outbound, sequence=0xFFFE)
    assert viewer.send([b"a" * 100] * 4) == lib.ZX_SENT
    sequences = [struct.unpack("!H", p[2:4])[0] for p in _receive(receiver, inbound, 4)]
    assert sequences == [0xFFFE, 0xFFFF, 0, 1]
    assert viewer.c.sequence == 2
    # The rollover counter moved on with the wrap: the next frame still unprotects.
    assert viewer.send([b"b" * 100]) == lib.ZX_SENT
    [packet] = _receive(receiver, inbound, 1)
    assert struct.unpack("!H", packet[2:4])[0] == 2 and packet[-100:] == b"b" * 100


def test_extension_block_carries_the_send_time(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = sockets
    outbound, inbound = _sessions()
    # RFC 8285 one-byte block: mid "0" (id 1), abs-send-time (id 3, 3 bytes), padding.
    block = struct.pack("!HH", 0xBEDE, 2) + b"\x10" + b"0" + b"\x32" + bytes(3) + b"\x00"
    viewer = Viewer(sender, receiver.getsockname(), outbound, extensions=block,
                    abs_send_time_at=7)
    before = time.time()
    assert viewer.send([b"x" * 50, b"y" * 20]) == lib.ZX_SENT
    for packet in _receive(receiver, inbound, 2):
        assert packet[0] == 0x90  # X bit
        assert packet[12:19] == block[:7]
        abs_send_time = int.from_bytes(packet[19:22], "big")
        expected = int((before + NTP_UNIX_OFFSET) * 262144) & 0xFFFFFF
        assert (abs_send_time - expected) % (1 << 24) < 262144  # within a second
        assert packet[22] == 0
    assert _receive(receiver, inbound, 0) == []


@pytest.mark.parametrize("gso", [True, False])
def test_segmented_and_one_by_one_send_the_same_datagrams(
        sockets: tuple[socket.socket, socket.socket], gso: bool) -> None:
    sender, receiver = sockets
    outbound, inbound = _sessions()
    viewer = Viewer(sender, receiver.getsockname(), outbound, gso=gso)
    # A keyframe's worth: more than one segmented send (64 segments at most).
    payloads = [os.urandom(1100) for _ in range(70)] + [os.urandom(300)]
    assert viewer.send(payloads) == lib.ZX_SENT
    packets = _receive(receiver, inbound, 71)
    assert [p[12:] for p in packets] == payloads
    receiver.setblocking(False)
    with pytest.raises(BlockingIOError):
        receiver.recv(2048)  # nothing more: no datagram was sent twice


def test_packets_of_unequal_sizes_still_go_one_each(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = sockets
    outbound, inbound = _sessions()
    viewer = Viewer(sender, receiver.getsockname(), outbound)
    payloads = [b"a" * 500, b"b" * 900, b"c" * 700]  # H.264 NAL units, say
    assert viewer.send(payloads) == lib.ZX_SENT
    assert [p[12:] for p in _receive(receiver, inbound, 3)] == payloads


def test_a_full_socket_is_reported_and_its_sequence_numbers_are_used_up() -> None:
    # A datagram socket pair whose reader never reads: the kernel refuses
    # datagrams once the queue is full (loopback UDP would drop them instead).
    writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        writer.setblocking(False)
        outbound, _ = _sessions()
        viewer = Viewer(writer, ("127.0.0.1", 9), outbound, sequence=10, gso=False)
        viewer.c.address_length = 0  # connected: no address
        statuses = [viewer.send([b"z" * 1000] * 4) for _ in range(2000)]
        assert lib.ZX_FULL in statuses
        full = statuses.index(lib.ZX_FULL)
        assert set(statuses[:full]) == {lib.ZX_SENT}
        assert viewer.c.sent < 4 and viewer.c.consumed == 4
        assert viewer.c.error in (11, 105)  # EAGAIN, ENOBUFS
        # Every protected number is used, sent or not: never one keystream twice.
        assert viewer.c.sequence == (10 + 4 * len(statuses)) & 0xFFFF
    finally:
        writer.close()
        reader.close()


def test_a_failed_protect_sends_nothing(sockets: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = sockets
    # A session for another SSRC only: libsrtp has no stream for ours.
    other = pylibsrtp.Session(pylibsrtp.Policy(
        key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_SPECIFIC, ssrc_value=SSRC + 1))
    viewer = Viewer(sender, receiver.getsockname(), other, sequence=7)
    assert viewer.send([b"q" * 1000, b"r" * 10]) == lib.ZX_ERROR
    assert viewer.c.sent == 0 and viewer.c.consumed == 0 and viewer.c.error < 0
    assert viewer.c.sequence == 7
    receiver.setblocking(False)
    with pytest.raises(BlockingIOError):
        receiver.recv(2048)


def test_a_group_send_reaches_every_viewer_on_its_own_timeline() -> None:
    senders, receivers, viewers = [], [], []
    try:
        for index in range(3):
            sender, receiver = _udp_pair()
            senders.append(sender)
            receivers.append(receiver)
            outbound, inbound = _sessions()
            viewer = Viewer(sender, receiver.getsockname(), outbound, sequence=100 * index)
            viewer.c.ssrc = SSRC + index
            viewer.c.origin = 1000 * index
            viewers.append((viewer, inbound))
        group = ffi.new("zx_viewer *[]", [viewer.c for viewer, _ in viewers])
        failed = ffi.new("int[]", 3)
        payloads = [b"p" * 1200, b"q" * 1200, b"end"]
        frame = EncodedFrame("video", "VP8", b"", 0, 90000, True, payloads)
        native, frame_id = aiortc_glue._native_frame(frame)
        assert lib.zx_send_group(group, 3, aiortc_glue._native_protect(), native, 5000,
                                 frame_id, failed) == 0
        for index, ((viewer, inbound), receiver) in enumerate(zip(viewers, receivers, strict=True)):
            packets = _receive(receiver, inbound, 3)
            for number, packet in enumerate(packets):
                _, _, sequence, timestamp, ssrc = struct.unpack("!BBHLL", packet[:12])
                assert (sequence, timestamp, ssrc) == (100 * index + number,
                                                      5000 + 1000 * index, SSRC + index)
                assert packet[12:] == payloads[number]
            assert viewer.c.status == lib.ZX_SENT and viewer.c.frames_total == 1
            assert viewer.c.packets_total == 3 and viewer.c.octets_total == 2403
            assert viewer.c.last_timestamp == 5000 + 1000 * index
            # Which frame the second packet was, for a NACK of it.
            found = ffi.new("uint32_t[2]")
            at = ffi.new("int *")
            assert lib.zx_find_packet(viewer.c, 100 * index + 1, found, at, found + 1) == 1
            assert (found[0], at[0], found[1]) == (frame_id, 1, 5000 + 1000 * index)
            assert lib.zx_find_packet(viewer.c, 100 * index + 3, found, at, found + 1) == 0
    finally:
        for sock in senders + receivers:
            sock.close()


def test_a_full_member_is_named_and_the_others_still_get_the_frame(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = sockets
    writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        writer.setblocking(False)
        outbound, inbound = _sessions()
        backed_up = Viewer(writer, ("127.0.0.1", 9), _sessions()[0], gso=False)
        backed_up.c.address_length = 0  # connected: no address
        healthy = Viewer(sender, receiver.getsockname(), outbound, sequence=1)
        group = ffi.new("zx_viewer *[]", [backed_up.c, healthy.c])
        failed = ffi.new("int[]", 2)
        protect = aiortc_glue._native_protect()
        frames = 0
        while True:
            frame = EncodedFrame("video", "VP8", b"", 0, 90000, False, [b"z" * 1000] * 4)
            native, frame_id = aiortc_glue._native_frame(frame)
            failures = lib.zx_send_group(group, 2, protect, native, 90 * frames, frame_id,
                                         failed)
            frames += 1
            assert [p[12:] for p in _receive(receiver, inbound, 4)] == [b"z" * 1000] * 4
            if failures:
                break
            assert frames < 2000
        assert failures == 1 and failed[0] == 0 and backed_up.c.status == lib.ZX_FULL
        assert healthy.c.status == lib.ZX_SENT and healthy.c.frames_total == frames
        assert backed_up.c.frames_total == frames - 1
    finally:
        writer.close()
        reader.close()


def test_a_sender_report_carries_the_counters_and_the_cname(
        sockets: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = sockets
    outbound, inbound = _sessions()
    viewer = Viewer(sender, receiver.getsockname(), outbound)
    cname = b"4f1a2b3c-room"
    viewer.c.cname[0:len(cname)] = cname
    viewer.c.cname_length = len(cname)
    viewer.c.origin = 77
    payloads = [b"m" * 700, b"n" * 300]
    assert viewer.send(payloads, timestamp=9000) == lib.ZX_SENT
    _receive(receiver, inbound, 2)
    group = ffi.new("zx_viewer *[]", [viewer.c])
    failed = ffi.new("int[]", 1)
    assert lib.zx_send_reports(group, 1, aiortc_glue._native_protect("srtp_protect_rtcp"),
                               failed) == 0
    [report, sdes] = RtcpPacket.parse(inbound.unprotect_rtcp(receiver.recv(2048)))
    assert isinstance(report, RtcpSrPacket) and report.ssrc == SSRC
    info = report.sender_info
    assert (info.rtp_timestamp, info.packet_count, info.octet_count) == (9077, 2, 1000)
    assert info.ntp_timestamp == viewer.c.ntp
    assert isinstance(sdes, RtcpSdesPacket)
    assert sdes.chunks[0].ssrc == SSRC and sdes.chunks[0].items == [(1, cname)]
