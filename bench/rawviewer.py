"""The cheapest viewer that still is a real WebRTC peer to the relay.

ICE (aioice), a DTLS-SRTP handshake (pyOpenSSL, as aiortc does it), then only
the RTP headers of what arrives are read: SRTP encrypts payloads, not headers,
so a frame is counted when the packet carrying the RTP marker bit arrives,
without decrypting, depayloading or decoding anything. It sends an RTCP
receiver report per second, as a browser would; no NACK, PLI or REMB.

It offers to a WHEP relay (:class:`RawViewer`) or answers the offer of a Janus
VideoRoom subscription (:class:`bench.janus_api.JanusRawViewer`); either way
the media path below is the same. :class:`BrowserLikeViewer` adds the RTCP a
Chromium receiver sends (REMB with every report, NACK on loss, PLI when a
loss is not repaired), losing a share of the video packets on purpose.

An aiortc ``RTCPeerConnection`` costs the load generator 1-2 % of a core per
viewer even with its decoder tapped off: 200 of them do not fit on the one
core left beside the relay on a 2-core machine. This one costs a fraction.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from functools import cache

import aiohttp
from aioice import Candidate, Connection
from aiortc.rtcdtlstransport import SRTP_PROFILES, certificate_digest, generate_certificate
from aiortc.rtp import (
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    pack_remb_fci,
)
from aiortc.sdp import SessionDescription
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from pylibsrtp import Policy, Session

from bench.peers import OfferRejected

VIDEO_PT, RTX_PT, AUDIO_PT = 97, 98, 111
REPORT_INTERVAL = 1.0
CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
           b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")

OFFER_MEDIA = {
    "video": [
        "m=video 9 UDP/TLS/RTP/SAVPF {video} {rtx}",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=rtpmap:{video} VP8/90000",
        "a=rtcp-fb:{video} nack", "a=rtcp-fb:{video} nack pli",
        "a=rtcp-fb:{video} goog-remb",
        "a=rtpmap:{rtx} rtx/90000", "a=fmtp:{rtx} apt={video}",
    ],
    "audio": [
        "m=audio 9 UDP/TLS/RTP/SAVPF {audio}",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=rtpmap:{audio} opus/48000/2",
    ],
}


@cache
def _context() -> tuple[SSL.Context, str]:
    """One DTLS client context and certificate fingerprint per process."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = generate_certificate(key)
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_options(SSL.OP_NO_TICKET)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *args: True)
    ctx.use_certificate(cert)
    ctx.use_privatekey(key)
    ctx.set_cipher_list(CIPHERS)
    ctx.set_tlsext_use_srtp(b":".join(p.openssl_profile for p in SRTP_PROFILES))
    return ctx, certificate_digest(cert, "sha-256")


class _Stream:
    """Receive statistics of one SSRC, for the receiver reports."""

    __slots__ = ("cycles", "highest", "received")

    def __init__(self, seq: int) -> None:
        self.highest = seq
        self.cycles = 0
        self.received = 0

    def add(self, seq: int) -> int:
        """Count a packet; returns how many packets before it went missing."""
        self.received += 1
        delta = (seq - self.highest) & 0xFFFF
        if delta == 0 or delta >= 0x8000:  # a duplicate or an old packet
            return 0
        if seq < self.highest:
            self.cycles += 1 << 16
        self.highest = seq
        return delta - 1

    def report(self, ssrc: int) -> RtcpReceiverInfo:
        return RtcpReceiverInfo(ssrc=ssrc, fraction_lost=0, packets_lost=0,
                                highest_sequence=self.cycles | self.highest, jitter=0,
                                lsr=0, dlsr=0)


class RawViewer:
    """Counts video frames and audio packets from RTP headers alone."""

    def __init__(self, controlling: bool = True) -> None:
        self.ice = Connection(ice_controlling=controlling, components=1, use_ipv6=False)
        self.video_frames = 0
        self.audio_frames = 0
        self.lost = 0
        self.connected = False
        self.video_pt, self.audio_pt, self.rtx_pt = VIDEO_PT, AUDIO_PT, RTX_PT
        self._ssl: SSL.Connection | None = None
        self._srtcp: Session | None = None
        self._srtp_in: Session | None = None  # only BrowserLikeViewer decrypts (RTX)
        self._streams: dict[int, _Stream] = {}
        self._ssrc = random.getrandbits(32)
        self._tasks: list[asyncio.Task[None]] = []

    def _offer(self) -> str:
        _, fingerprint = _context()
        candidates = [f"a=candidate:{c.to_sdp()}" for c in self.ice.local_candidates]
        transport = [*candidates, "a=end-of-candidates",
                     f"a=ice-ufrag:{self.ice.local_username}",
                     f"a=ice-pwd:{self.ice.local_password}",
                     f"a=fingerprint:sha-256 {fingerprint}", "a=setup:active"]
        lines = ["v=0", f"o=- {secrets.randbits(62)} 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
                 "a=group:BUNDLE 0 1", "a=msid-semantic:WMS *"]
        for mid, kind in enumerate(("video", "audio")):
            media = [line.format(video=VIDEO_PT, rtx=RTX_PT, audio=AUDIO_PT)
                     for line in OFFER_MEDIA[kind]]
            lines += [media[0], "c=IN IP4 0.0.0.0", "a=recvonly", f"a=mid:{mid}",
                      "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp-mux", *media[1:], *transport]
        return "\r\n".join(lines) + "\r\n"

    async def connect(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        await self.ice.gather_candidates()
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
        async with http.post(url, data=self._offer(), headers=headers) as response:
            answer = await response.text()
            if response.status != 201:
                raise OfferRejected(f"{url} answered {response.status}: {answer[:200]}")
        await self._establish(answer)

    def _take_payload_types(self, description: SessionDescription) -> None:
        for section in description.media:
            for codec in section.rtp.codecs:
                if codec.payloadType is None:
                    continue
                if codec.mimeType.lower() == "video/vp8":
                    self.video_pt = codec.payloadType
                elif codec.mimeType.lower() == "video/rtx":
                    self.rtx_pt = codec.payloadType
                elif codec.mimeType.lower() == "audio/opus":
                    self.audio_pt = codec.payloadType

    async def _establish(self, remote_sdp: str) -> None:
        """ICE and DTLS towards the peer whose description is ``remote_sdp``."""
        description = SessionDescription.parse(remote_sdp)
        self._take_payload_types(description)
        media = description.media[0]
        assert media.ice is not None
        self.ice.remote_username = media.ice.usernameFragment
        self.ice.remote_password = media.ice.password
        for line in remote_sdp.splitlines():
            if line.startswith("a=candidate:"):
                await self.ice.add_remote_candidate(Candidate.from_sdp(line[12:]))
        await self.ice.add_remote_candidate(None)
        await self.ice.connect()
        await self._handshake()
        self.connected = True
        # aioice hands each datagram to its connection's data_received(), which
        # queues it for recv(): a future and a task switch per packet. Taking
        # the callback instead halves this viewer's cost.
        self.ice.data_received = self._datagram  # type: ignore[method-assign]
        self._tasks = [asyncio.ensure_future(self._report()), asyncio.ensure_future(self._watch())]

    async def _flush(self) -> None:
        assert self._ssl is not None
        while True:
            try:
                data = self._ssl.bio_read(1500)
            except SSL.WantReadError:
                return
            await self.ice.send(data)

    async def _handshake(self) -> None:
        ctx, _ = _context()
        self._ssl = ssl = SSL.Connection(ctx)
        ssl.set_connect_state()
        while True:
            try:
                ssl.do_handshake()
                break
            except SSL.WantReadError:
                pass
            await self._flush()
            try:
                data = await asyncio.wait_for(self.ice.recv(), ssl.DTLSv1_get_timeout() or 1.0)
            except TimeoutError:
                ssl.DTLSv1_handle_timeout()
                continue
            if 20 <= data[0] <= 63:
                ssl.bio_write(data)
        await self._flush()
        selected = ssl.get_selected_srtp_profile()
        profile = next(p for p in SRTP_PROFILES if p.openssl_profile == selected)
        material = ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length))
        policy = Policy(key=profile.get_key_and_salt(material, 0),
                        ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile.libsrtp_profile)
        self._srtcp = Session(policy)
        if self.decrypts:
            self._srtp_in = Session(Policy(
                key=profile.get_key_and_salt(material, 1), ssrc_type=Policy.SSRC_ANY_INBOUND,
                srtp_profile=profile.libsrtp_profile))

    decrypts = False  # whether received SRTP is ever decrypted (here: never)

    def _datagram(self, data: bytes, component: int) -> None:
        """One datagram from the relay, straight from the ICE socket."""
        second = data[1]
        if not 128 <= data[0] <= 191 or 192 <= second <= 223 or len(data) < 12:
            return  # DTLS, or RTCP from the relay
        payload_type = second & 0x7F
        if payload_type != self.video_pt and payload_type != self.audio_pt:
            return  # retransmissions
        seq = (data[2] << 8) | data[3]
        ssrc = int.from_bytes(data[8:12])
        stream = self._streams.get(ssrc)
        if stream is None:
            self._streams[ssrc] = stream = _Stream(seq)
        missing = stream.add(seq)
        if payload_type == self.audio_pt:
            self.audio_frames += 1
        else:
            self.lost += missing
            if second & 0x80:
                self.video_frames += 1

    async def _watch(self) -> None:
        """Notice when ICE closes (consent lost, relay gone)."""
        with contextlib.suppress(Exception):
            while await self.ice.get_event() is not None:
                pass
        self.connected = False

    async def _report(self) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await asyncio.sleep(REPORT_INTERVAL)
                if self._streams and self._srtcp is not None:
                    await self.ice.send(self._srtcp.protect_rtcp(self._report_packet()))

    def _report_packet(self) -> bytes:
        """The RTCP sent each second: a receiver report on every stream."""
        return bytes(RtcpRrPacket(ssrc=self._ssrc, reports=[
            stream.report(ssrc) for ssrc, stream in self._streams.items()]))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._ssl is not None:
            with contextlib.suppress(SSL.Error, ConnectionError):
                self._ssl.shutdown()
                await self._flush()
        await self.ice.close()
        self.connected = False


class BrowserLikeViewer(RawViewer):
    """A raw viewer whose RTCP is a Chromium receiver's, with some loss to repair.

    Chromium sends, for a VP8 + Opus subscription without transport-wide
    feedback negotiated: a compound receiver report with REMB about once a
    second, a NACK as soon as a gap in the video sequence numbers shows, and a
    PLI when a lost packet is still missing after a while (it then gives up on
    the frame and asks for a keyframe). This viewer drops ``loss`` of the video
    packets it receives as if the network had lost them, NACKs each one at
    once, NACKs it again every ``RENACK`` seconds, and sends a PLI (at most one
    per ``PLI_AFTER``) for a packet not repaired within ``PLI_AFTER``.
    Retransmissions (RTX, or the original payload type again, as Janus sends
    them when RTX is not negotiated) are never dropped; an RTX packet is
    decrypted for its original sequence number, and a sender report for its
    time (the receiver reports carry LSR/DLSR, as Chromium's do); nothing
    else is decrypted.
    """

    RENACK = 0.1
    PLI_AFTER = 1.0
    REMB_BITRATE = 2_500_000  # what Chromium estimates on a clean LAN: above the stream
    decrypts = True

    def __init__(self, controlling: bool = True, loss: float = 0.01, seed: int | None = None
                 ) -> None:
        super().__init__(controlling)
        self.loss = loss
        self.nacks = self.plis = self.repaired = 0
        self._random = random.Random(seed)
        self._missing: dict[int, tuple[float, float]] = {}  # seq -> (lost at, last NACK)
        self._sending: set[asyncio.Future[None]] = set()
        self._reports: dict[int, tuple[int, float]] = {}  # ssrc -> (LSR, when it came)
        self._video_ssrc: int | None = None
        self._last_pli = 0.0
        self._loop = asyncio.get_event_loop()

    def _datagram(self, data: bytes, component: int) -> None:
        second = data[1]
        if second == 200 and 128 <= data[0] <= 191:
            self._sender_report(data)
            return
        if not 128 <= data[0] <= 191 or 192 <= second <= 223 or len(data) < 12:
            return
        payload_type = second & 0x7F
        if payload_type == self.video_pt:
            seq = (data[2] << 8) | data[3]
            self._video_ssrc = ssrc = int.from_bytes(data[8:12])
            stream = self._streams.get(ssrc)
            if seq in self._missing:
                self._repair(seq)
                if second & 0x80:
                    self.video_frames += 1
                return
            if stream is not None and ((seq - stream.highest) & 0xFFFF) < 0x8000 \
                    and self._random.random() < self.loss:
                stream.highest = seq  # as if it had come and gone: seen as lost
                stream.received += 1
                self._lose(seq)
                return
        elif payload_type == self.rtx_pt and self._srtp_in is not None:
            self._rtx(data)
            return
        super()._datagram(data, component)

    def _lose(self, seq: int) -> None:
        now = self._loop.time()
        self._missing[seq] = (now, now)
        self._send_rtcp(bytes(RtcpRtpfbPacket(fmt=1, ssrc=self._ssrc,
                                              media_ssrc=self._video_ssrc or 0, lost=[seq])))
        self.nacks += 1

    def _repair(self, seq: int) -> None:
        del self._missing[seq]
        self.repaired += 1

    def _rtx(self, data: bytes) -> None:
        assert self._srtp_in is not None
        try:
            plain = self._srtp_in.unprotect(data)
        except Exception:
            return  # a replay or a damaged packet: as a browser, ignore it
        header = 12 + 4 * (plain[0] & 0x0F)
        if plain[0] & 0x10:
            header += 4 + 4 * int.from_bytes(plain[header + 2:header + 4])
        original = int.from_bytes(plain[header:header + 2])
        if original in self._missing:
            self._repair(original)
            if plain[1] & 0x80:
                self.video_frames += 1

    def _sender_report(self, data: bytes) -> None:
        """Note when a sender report came, for the LSR/DLSR of the next
        receiver report: a relay computes its RTT from them, and Janus keeps
        no packets for retransmission until it knows one."""
        if self._srtp_in is None:
            return
        try:
            plain = self._srtp_in.unprotect_rtcp(data)
        except Exception:
            return
        if len(plain) >= 20:
            ssrc = int.from_bytes(plain[4:8])
            self._reports[ssrc] = (int.from_bytes(plain[10:14]), self._loop.time())

    def _report_of(self, ssrc: int, stream: _Stream) -> RtcpReceiverInfo:
        report = stream.report(ssrc)
        last = self._reports.get(ssrc)
        if last is not None:
            report.lsr = last[0]
            report.dlsr = int((self._loop.time() - last[1]) * 65536)
        return report

    def _video_report(self) -> bytes:
        """A receiver report on the video stream alone. Chromium sends one
        compound packet per stream it receives; Janus files a compound packet
        under the stream of its first report block, so a NACK behind an audio
        report would never be served."""
        media = self._video_ssrc
        reports = [self._report_of(ssrc, s) for ssrc, s in self._streams.items()
                   if ssrc == media]
        return bytes(RtcpRrPacket(ssrc=self._ssrc, reports=reports))

    def _send_rtcp(self, packet: bytes) -> None:
        """A feedback packet in a compound packet behind a receiver report, as
        RFC 4585 asks without reduced-size RTCP."""
        packet = self._video_report() + packet
        if self._srtcp is not None and self.connected:
            task = asyncio.ensure_future(self._send_quietly(self._srtcp.protect_rtcp(packet)))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            await self.ice.send(data)

    def _report_packet(self) -> bytes:
        """RR + REMB each second; NACKs again, and a PLI for what stays missing."""
        now = self._loop.time()
        media = self._video_ssrc or 0
        packets = [bytes(RtcpPsfbPacket(fmt=15, ssrc=self._ssrc, media_ssrc=0,
                                        fci=pack_remb_fci(self.REMB_BITRATE, [media])))]
        given_up = [seq for seq, (lost_at, _) in self._missing.items()
                    if now - lost_at > self.PLI_AFTER]
        for seq in given_up:
            del self._missing[seq]
            self.lost += 1
        if given_up and now - self._last_pli >= self.PLI_AFTER:
            self._last_pli = now
            self.plis += 1
            packets.append(bytes(RtcpPsfbPacket(fmt=1, ssrc=self._ssrc, media_ssrc=media)))
        self._send_rtcp(b"".join(packets))  # video: RR + REMB (+ PLI)
        audio = [self._report_of(ssrc, s) for ssrc, s in self._streams.items()
                 if ssrc != media]
        return bytes(RtcpRrPacket(ssrc=self._ssrc, reports=audio))

    async def _renack(self) -> None:
        while True:
            await asyncio.sleep(self.RENACK)
            now = self._loop.time()
            again = [seq for seq, (lost_at, last) in self._missing.items()
                     if now - last >= self.RENACK]
            if again and self._video_ssrc is not None:
                for seq in again:
                    self._missing[seq] = (self._missing[seq][0], now)
                self.nacks += 1
                self._send_rtcp(bytes(RtcpRtpfbPacket(
                    fmt=1, ssrc=self._ssrc, media_ssrc=self._video_ssrc, lost=sorted(again))))

    async def _establish(self, remote_sdp: str) -> None:
        await super()._establish(remote_sdp)
        self._tasks.append(asyncio.ensure_future(self._renack()))
