"""Every reach into aiortc's and aioice's private parts, in one place.

The relay forwards encoded frames; aiortc's public API only deals in decoded
ones. This module takes reassembled, undecoded frames out of a receiver (after
SRTP, NACK/RTX, the jitter buffer and timestamp mapping have run, so feedback
to the publisher keeps working) and feeds pre-packetized frames to senders
(which keep their own SSRC, sequence numbers, NACK history and sender
reports). It also makes ICE usable on an intranet and on loopback, lets DTLS
peers with RSA certificates in, and says why a connection failed.

The versions below are pinned exactly in ``pyproject.toml``;
:func:`check_internals` verifies at start-up that everything used here still
exists and fails with a message naming what moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import random
import socket
import struct
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import aioice.ice
import pylibsrtp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpSendParameters
from aiortc.rtp import (
    RtcpByePacket,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
)
from aiortc.utils import uint16_add
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from streaming.frames import EncodedFrame

logger = logging.getLogger(__name__)

PINNED_VERSIONS = {"aiortc": "1.16.0", "aioice": "0.13.0", "pylibsrtp": "1.0.0"}

# Name-mangled private attributes used below.
_RECEIVER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RECEIVER_JITTER = "_RTCRtpReceiver__jitter_buffer"
_RECEIVER_RTX = "_RTCRtpReceiver__rtx_ssrc"
_RECEIVER_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_SENDER_ENCODER = "_RTCRtpSender__encoder"
_SENDER_RTP_STARTED = "_RTCRtpSender__rtp_started"
_SENDER_RTP_EXITED = "_RTCRtpSender__rtp_exited"
_SENDER_NTP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_SENDER_OCTETS = "_RTCRtpSender__octet_count"
_SENDER_PACKETS = "_RTCRtpSender__packet_count"
_SENDER_CNAME = "_RTCRtpSender__cname"
_SENDER_LSR = "_RTCRtpSender__lsr"
_SENDER_LSR_TIME = "_RTCRtpSender__lsr_time"
_SENDER_RTCP_STARTED = "_RTCRtpSender__rtcp_started"
_SENDER_RTCP_EXITED = "_RTCRtpSender__rtcp_exited"
_DTLS_LOG_DEBUG = "_RTCDtlsTransport__log_debug"

# (codec name, frame bytes, timestamp, capture time on the sender's clock or None)
FrameCallback = Callable[[str, bytes, int, float | None], None]


class InternalsChanged(RuntimeError):
    """The installed aiortc/aioice no longer has what the relay reaches into."""


# --------------------------------------------------------------------------
# start-up check


async def check_internals() -> None:
    """Fail early, with a clear message, if a private attribute we use moved."""
    problems = []
    for package, wanted in PINNED_VERSIONS.items():
        installed = version(package)
        if installed != wanted:
            problems.append(f"{package} {installed} is installed, the relay is built for {wanted}")
    for owner, name in (
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_handle_rtp_packet"),
        (RTCRtpReceiver, "_handle_rtcp_packet"),
        (RTCRtpSender, "_send_keyframe"),
        (RTCRtpSender, "_handle_rtcp_packet"),
        (RTCRtpSender, "_retransmit"),
        (RTCRtpSender, "_run_rtp"),
        (RTCRtpSender, "_run_rtcp"),
        (RTCRtpSender, "_send_rtcp"),
        (RTCRtpSender, "send"),
        (Vp8Encoder, "_packetize"),
        (H264Encoder, "_packetize"),
        (H264Encoder, "_split_bitstream"),
        (aioice.ice.StunProtocol, "datagram_received"),
        (aioice.ice.StunProtocol, "send_data"),
        (aioice.ice.CandidatePair, "remote_addr"),
        (aioice.ice.Connection, "data_received"),
        (RTCCertificate, "_create_ssl_context"),
        (RTCDtlsTransport, _DTLS_LOG_DEBUG),
    ):
        if not hasattr(owner, name):
            problems.append(f"{owner.__module__}.{owner.__name__}.{name} is missing")
    for name in ("Error", "SRTP_MAX_TRAILER_LEN"):
        if not hasattr(pylibsrtp, name):
            problems.append(f"pylibsrtp.{name} is missing")
    for function in ("srtp_protect", "srtp_protect_rtcp"):
        if not hasattr(srtp_lib, function):
            problems.append(f"pylibsrtp's binding has no {function}")
        elif str(srtp_ffi.typeof(getattr(srtp_lib, function))) != \
                f"<ctype '{_SRTP_PROTECT_TYPE}'>":
            # The native send path calls it through a pointer of this type (libsrtp 2).
            problems.append(f"pylibsrtp's {function} is "
                            f"{srtp_ffi.typeof(getattr(srtp_lib, function))}, "
                            f"not {_SRTP_PROTECT_TYPE}")
    session = pylibsrtp.Session(pylibsrtp.Policy(
        key=bytes(30), ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    for name in ("_srtp", "_cdata", "_buffer"):
        if not hasattr(session, name):
            problems.append(f"pylibsrtp.Session has no attribute {name}")
    if not hasattr(aioice.ice, "get_host_addresses"):
        problems.append("aioice.ice.get_host_addresses is missing")

    # Instance attributes only exist on live objects: build one of each.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("audio", direction="sendrecv")
    for obj, name in (
        (transceiver.receiver, _RECEIVER_QUEUE),
        (transceiver.receiver, _RECEIVER_JITTER),
        (transceiver.receiver, _RECEIVER_RTX),
        (transceiver.receiver, _RECEIVER_MAPPER),
        (transceiver.sender, _SENDER_ENCODER),
        (transceiver.sender, _SENDER_RTP_STARTED),
        (transceiver.sender, _SENDER_RTP_EXITED),
        (transceiver.sender, _SENDER_NTP),
        (transceiver.sender, _SENDER_RTP_TIMESTAMP),
        (transceiver.sender, _SENDER_OCTETS),
        (transceiver.sender, _SENDER_PACKETS),
        (transceiver.sender, _SENDER_CNAME),
        (transceiver.sender, _SENDER_LSR),
        (transceiver.sender, _SENDER_LSR_TIME),
        (transceiver.sender, _SENDER_RTCP_STARTED),
        (transceiver.sender, _SENDER_RTCP_EXITED),
        (transceiver.sender, "_ssrc"),
        (transceiver.sender, "_rtx_ssrc"),
        (transceiver.sender, "_enabled"),
        (transceiver.sender.transport, "_state"),
        (transceiver.sender.transport, "_tx_srtp"),
        (transceiver.sender.transport, "_ssl"),
        (transceiver.sender.transport.transport, "_connection"),
        (transceiver.sender.transport.transport._connection, "_nominated"),
    ):
        if not hasattr(obj, name):
            problems.append(f"{type(obj).__name__} has no attribute {name}")
    jitter = getattr(transceiver.receiver, _RECEIVER_JITTER, None)
    for name in ("_prefetch", "_origin", "_packets", "_capacity", "_is_video", "remove"):
        if jitter is not None and not hasattr(jitter, name):
            problems.append(f"JitterBuffer has no attribute {name}")
    mapper = getattr(transceiver.receiver, _RECEIVER_MAPPER, None)
    if mapper is not None and not hasattr(mapper, "_origin"):
        problems.append("TimestampMapper has no attribute _origin")
    await pc.close()
    if problems:
        raise InternalsChanged(
            "aiortc internals used by streaming/aiortc_glue.py changed: " + "; ".join(problems)
        )


# --------------------------------------------------------------------------
# ICE


def configure_ice(host_addresses: Iterable[str] | None) -> None:
    """Which local addresses ICE offers as host candidates (process-wide).

    aioice offers every interface address except loopback. An intranet box may
    need to offer exactly its LAN address, and tests offer 127.0.0.1. ``None``
    restores aioice's own choice.
    """
    original = _original_get_host_addresses
    if host_addresses is None:
        aioice.ice.get_host_addresses = original
        return
    chosen = list(host_addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


_original_get_host_addresses = aioice.ice.get_host_addresses


def default_host_addresses() -> list[str]:
    """The addresses aioice offers by itself (every interface's but loopback),
    whatever :func:`configure_ice` set for this process."""
    return list(_original_get_host_addresses(use_ipv4=True, use_ipv6=True))
_original_datagram_received = aioice.ice.StunProtocol.datagram_received


def _demuxed_datagram_received(
    self: aioice.ice.StunProtocol, data: bytes | str, addr: tuple[Any, ...]
) -> None:
    # RFC 7983: only a first byte of 0-3 can be STUN. Everything else (DTLS,
    # SRTP, SRTCP) goes straight to the data queue: aioice would otherwise try
    # to parse every media packet as STUN, which costs CPU and occasionally
    # misparses and drops a packet whose bytes happen to look like STUN.
    if data and isinstance(data, bytes) and data[0] > 3:
        self.receiver.data_received(data, self.local_candidate.component)
        return
    _original_datagram_received(self, data, addr)


def install_rfc7983_demux() -> None:
    """Route non-STUN datagrams around aioice's STUN parser (process-wide)."""
    aioice.ice.StunProtocol.datagram_received = _demuxed_datagram_received  # type: ignore[method-assign]


# --------------------------------------------------------------------------
# DTLS: peers with RSA certificates, and why a handshake failed

# aiortc offers only ECDHE-ECDSA suites as a DTLS client. Peers whose DTLS
# certificate is RSA (GStreamer's webrtcbin, some SIP gateways and
# hardware encoders) then answer "no shared cipher" and the connection fails.
# The list below is what Chromium offers over DTLS: ECDSA first (aiortc's own
# certificate is ECDSA), the RSA twin of each suite next, AEAD before CBC.
DTLS_CIPHERS = b":".join((
    b"ECDHE-ECDSA-AES128-GCM-SHA256", b"ECDHE-RSA-AES128-GCM-SHA256",
    b"ECDHE-ECDSA-AES256-GCM-SHA384", b"ECDHE-RSA-AES256-GCM-SHA384",
    b"ECDHE-ECDSA-CHACHA20-POLY1305", b"ECDHE-RSA-CHACHA20-POLY1305",
    b"ECDHE-ECDSA-AES128-SHA", b"ECDHE-RSA-AES128-SHA",
    b"ECDHE-ECDSA-AES256-SHA", b"ECDHE-RSA-AES256-SHA",
))

_SSL_CB_READ_ALERT = 0x4004  # OpenSSL's SSL_CB_ALERT | SSL_CB_READ
_SSL_CB_WRITE_ALERT = 0x4008  # SSL_CB_ALERT | SSL_CB_WRITE
# RFC 8446 §6: the alerts a failed handshake ends with.
_ALERTS = {
    10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
    44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
    47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
    51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
    80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
    109: "missing_extension", 110: "unsupported_extension", 120: "no_application_protocol",
}
# The last fatal alert each DTLS connection sent or received ("sent"/"received", name).
_alerts: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()
_CAUSE = "_zhixing_dtls_failure"  # set on an RTCDtlsTransport whose handshake failed


def _on_ssl_info(connection: Any, where: int, value: int) -> None:
    if where & _SSL_CB_READ_ALERT == _SSL_CB_READ_ALERT:
        direction = "received"
    elif where & _SSL_CB_WRITE_ALERT == _SSL_CB_WRITE_ALERT:
        direction = "sent"
    else:
        return
    if value >> 8 == 2:  # fatal
        code = value & 0xFF
        _alerts[connection] = (direction, _ALERTS.get(code, f"alert {code}"))


_original_create_ssl_context = RTCCertificate._create_ssl_context


def _create_ssl_context(self: RTCCertificate, srtp_profiles: Any) -> Any:
    context = _original_create_ssl_context(self, srtp_profiles)
    context.set_cipher_list(DTLS_CIPHERS)
    context.set_info_callback(_on_ssl_info)
    return context


_original_dtls_log_debug = getattr(RTCDtlsTransport, _DTLS_LOG_DEBUG)


def _dtls_log_debug(self: RTCDtlsTransport, msg: str, *args: object) -> None:
    # aiortc names the cause of a failed handshake only in a debug line:
    # keep it on the transport for failure_cause().
    if msg.startswith("x DTLS handshake failed"):
        setattr(self, _CAUSE, _dtls_cause(self, msg % args if args else msg))
    _original_dtls_log_debug(self, msg, *args)


def _dtls_cause(transport: RTCDtlsTransport, message: str) -> str:
    detail = message.removeprefix("x DTLS handshake failed").strip(" ()")
    alert = _alerts.get(transport._ssl) if transport._ssl is not None else None
    if "fingerprint" in detail:
        return ("DTLS: the peer's certificate does not match the a=fingerprint of its SDP "
                "(a proxy that rewrites SDP, or a certificate changed between offer and handshake)")
    if "SRTP" in detail:
        return ("DTLS: no SRTP protection profile in common "
                "(the peer offers no DTLS-SRTP profile we take)")
    if "connection" in detail:
        return "DTLS: the ICE path went away during the handshake"
    reason = detail.removeprefix("error").strip(" []")
    if alert is not None and alert[1] == "handshake_failure":
        side = "the peer refused" if alert[0] == "received" else "we refused"
        return (f"DTLS: {side} the handshake (alert handshake_failure): no cipher suite or "
                f"curve in common{f' ({reason})' if reason else ''}")
    if alert is not None:
        side = "the peer sent" if alert[0] == "received" else "we sent"
        return f"DTLS: {side} alert {alert[1]}{f' ({reason})' if reason else ''}"
    return f"DTLS: handshake failed ({reason or 'no reason given by OpenSSL'})"


def install_dtls() -> None:
    """DTLS suites for RSA-certificate peers and kept failure causes (process-wide)."""
    RTCCertificate._create_ssl_context = _create_ssl_context  # type: ignore[method-assign]
    setattr(RTCDtlsTransport, _DTLS_LOG_DEBUG, _dtls_log_debug)


def failure_cause(pc: RTCPeerConnection) -> str:
    """Why ``pc`` failed (or has not connected), in words an operator can act on:
    the ICE candidates tried, or the DTLS alert and reason."""
    causes: list[str] = []
    transports = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
    for dtls in transports.values():
        ice = dtls.transport
        cause = getattr(dtls, _CAUSE, None)
        if cause is not None:
            causes.append(cause)
        elif ice.state in ("new", "checking", "failed"):
            connection = ice._connection
            remote = [f"{c.host}:{c.port} {c.transport} {c.type}"
                      for c in connection.remote_candidates[:4]]
            local = sorted({c.host for c in connection.local_candidates})
            verb = "failed" if ice.state == "failed" else f"still {ice.state}"
            causes.append(
                f"ICE {verb}: no answer between our {', '.join(local) or 'no addresses'} and "
                f"the peer's {', '.join(remote) or 'no candidates'}"
                + (" (the peer may offer only addresses we cannot reach)" if remote else ""))
        elif dtls.state in ("new", "connecting"):
            causes.append(f"DTLS handshake not finished (state {dtls.state}); ICE {ice.state}")
    return "; ".join(dict.fromkeys(causes)) or f"connection {pc.connectionState}"


# --------------------------------------------------------------------------
# packetizing once for all viewers


def make_packetizer(codec: str) -> Callable[[EncodedFrame], list[bytes]]:
    """RTP payloads of a frame, computed once and shared by every viewer."""
    name = codec.upper()
    if name == "VP8":
        picture_id = random.randint(0, (1 << 15) - 1)

        def vp8(frame: EncodedFrame) -> list[bytes]:
            nonlocal picture_id
            payloads: list[bytes] = Vp8Encoder._packetize(frame.data, picture_id)
            picture_id = (picture_id + 1) % (1 << 15)
            return payloads

        return vp8
    if name == "H264":

        def h264(frame: EncodedFrame) -> list[bytes]:
            payloads: list[bytes] = H264Encoder._packetize(
                H264Encoder._split_bitstream(frame.data)
            )
            return payloads

        return h264
    if name == "OPUS":
        return lambda frame: [frame.data]
    raise ValueError(f"no packetizer for codec {codec}")


class _RembRecorder:
    """Stands in for a sender's encoder, which only REMB still reaches.

    aiortc hands a viewer's bandwidth estimate to the encoder; with no
    encoder to steer, it is recorded for the viewer's stats.
    """

    def __init__(self, counters: SenderCounters) -> None:
        self._counters = counters

    @property
    def target_bitrate(self) -> int:
        return self._counters.remb_bitrate or 0

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._counters.remb_bitrate = bitrate


@dataclass
class SenderCounters:
    """Feedback from one viewer that aiortc would otherwise swallow."""

    keyframe_requests: int = 0
    nacked_packets: int = 0
    retransmitted_packets: int = 0
    remb_bitrate: int | None = None
    # From the viewer's latest receiver report on this sender's SSRC: the
    # fraction (0..1) of packets lost since its previous one, and when it came.
    fraction_lost: float | None = None
    report_at: float | None = None  # time.monotonic()


_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900 to 1970
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_HISTORY = 128  # packets kept per viewer for NACK/RTX, as aiortc keeps


def _rebased_origin(last_timestamp: int, last_sent_at: float, timestamp: int,
                    clock_rate: int) -> int:
    """The offset that puts a frame stamped ``timestamp`` (another timeline)
    right after the last one sent, advanced by the wall time since."""
    elapsed = max(1, round((time.time() - last_sent_at) * clock_rate))
    return (last_timestamp + elapsed - timestamp) & 0xFFFFFFFF


class ViewerWriter:
    """A viewer sender's RTP path: frames are sent the moment they arrive.

    Replaces ``RTCRtpSender._run_rtp`` (a task per sender that awaits a
    track, builds an ``RtpPacket`` object and reads the clock through
    ``datetime`` for every packet) and ``_retransmit``. The slot calls
    :meth:`send` for every frame, synchronously: SRTP-protect and ``sendto``
    per packet, header extensions packed once per frame, no task switch per
    viewer. The sender keeps its SSRC, its RTCP task (sender reports from the
    counters updated here) and its SRTP session.

    A viewer whose socket cannot take more (the kernel refuses a datagram)
    gets ``False`` from :meth:`send`: its frames are dropped, never queued.
    """

    def __init__(self, sender: RTCRtpSender, counters: SenderCounters,
                 on_ready: Callable[[], None]) -> None:
        self._sender = sender
        self._counters = counters
        self._on_ready = on_ready
        self._configured = False
        self._mid_element = b""
        self._abs_send_time_id: int | None = None
        self._payload_type = 0
        self._rtx_payload_type: int | None = None
        self._sequence = random.getrandbits(16)
        self._origin = random.getrandbits(32)
        self._last_timestamp = 0
        self._last_sent_at: float | None = None
        self._rtx_sequence = random.getrandbits(16)
        self._octets = 0
        self._packets = 0
        self._relayed: set[asyncio.Future[None]] = set()  # sends in flight via TURN
        self._relay_protocol: Any = None
        self._dtls: Any = None  # set with the route once the viewer is connected
        self._protect: Callable[[bytes], bytes] = bytes
        self._sendto: Callable[[bytes, tuple[str, int]], Any] = self._send_relayed
        self._address: tuple[str, int] = ("", 0)
        self._ext_prefix = b""
        self._ext_suffix = b""
        self._first_byte = 0x80
        # seq % _HISTORY -> (seq, timestamp, marker, extension block, payload)
        self._history: list[tuple[int, int, int, bytes, bytes] | None] = [None] * _HISTORY

    def rebase(self, timestamp: int, clock_rate: int) -> None:
        """The next frame (``timestamp``) comes from another timeline (the
        viewer switched between live and timeshift): continue this viewer's
        RTP timestamps from the last one sent, advanced by the wall time
        since, so its jitter buffer sees one steady timeline."""
        if self._last_sent_at is None:
            return
        self._origin = _rebased_origin(self._last_timestamp, self._last_sent_at, timestamp,
                                       clock_rate)

    def configure(self, parameters: RTCRtpSendParameters) -> None:
        for extension in parameters.headerExtensions:
            if extension.uri == _MID_URI and parameters.muxId:
                mid = parameters.muxId.encode()[:16]
                self._mid_element = bytes([(extension.id << 4) | (len(mid) - 1)]) + mid
            elif extension.uri == _ABS_SEND_TIME_URI:
                self._abs_send_time_id = extension.id
        self._payload_type = parameters.codecs[0].payloadType or 0
        for codec in parameters.codecs:
            if is_rtx(codec) and codec.parameters.get("apt") == self._payload_type:
                self._rtx_payload_type = codec.payloadType
        self._ext_prefix, self._ext_suffix = self._extension_parts()
        self._first_byte = 0x90 if self._ext_prefix else 0x80  # version 2, X bit
        self._configured = True
        self._on_ready()

    @property
    def ready(self) -> bool:
        """Negotiated and connected: frames sent now reach the viewer."""
        return self._configured and self._sender.transport._state is DtlsState.CONNECTED

    @property
    def batchable(self) -> bool:
        return False  # only the native path sends in batches

    @property
    def frames_sent(self) -> int:
        return 0

    def join_batch(self, slot_track: Any, owner: Any) -> Any:
        return None

    def _extension_parts(self) -> tuple[bytes, bytes]:
        """The RFC 8285 one-byte-header block around the abs-send-time value.

        Returns (prefix, suffix): the block is prefix + 3 bytes of
        abs-send-time + suffix, or just prefix when abs-send-time is not
        negotiated (then prefix is the whole block, possibly empty).
        """
        elements = self._mid_element
        if self._abs_send_time_id is None:
            if not elements:
                return b"", b""
            padding = b"\x00" * (-len(elements) % 4)
            return struct.pack("!HH", 0xBEDE, (len(elements) + len(padding)) // 4) + \
                elements + padding, b""
        elements += bytes([self._abs_send_time_id << 4 | 2])
        padding = b"\x00" * (-(len(elements) + 3) % 4)
        words = (len(elements) + 3 + len(padding)) // 4
        return struct.pack("!HH", 0xBEDE, words) + elements, padding

    def _connect_route(self) -> bool:
        """Resolve where packets go: the SRTP session and the socket.

        Done once when the viewer connects (aioice never changes a nominated
        pair), then only the DTLS state is checked per frame.
        """
        dtls = self._sender.transport
        if dtls._state is not DtlsState.CONNECTED:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return False
        protocol = pair.protocol
        self._dtls = dtls
        self._protect = _FastProtect(dtls._tx_srtp)
        self._address = pair.remote_addr
        if type(protocol) is aioice.ice.StunProtocol:
            # The selector transport's own socket: a datagram the kernel
            # refuses raises BlockingIOError here instead of being buffered
            # without bound by the transport.
            sock = getattr(protocol.transport, "_sock", None)
            self._sendto = sock.sendto if sock is not None else protocol.transport.sendto
        else:
            # A relayed (TURN) pair wraps data itself: take aioice's async path.
            self._relay_protocol = protocol
            self._sendto = self._send_relayed
        return True

    def send(self, frame: EncodedFrame) -> bool:
        """Send one frame now; False if the viewer is backed up (frame dropped)."""
        payloads = frame.payloads
        if not payloads or not self._sender._enabled:
            return True
        dtls = self._dtls
        if dtls is None:
            if not self._connect_route():
                return True
        elif dtls._state is not DtlsState.CONNECTED:
            return True
        now = time.time()
        timestamp = (self._origin + frame.timestamp) & 0xFFFFFFFF
        self._last_timestamp = timestamp
        self._last_sent_at = now
        if self._abs_send_time_id is None:
            extensions = self._ext_prefix
        else:
            abs_send_time = int((now + _NTP_UNIX_OFFSET) * 262144) & 0xFFFFFF
            extensions = self._ext_prefix + abs_send_time.to_bytes(3, "big") + self._ext_suffix
        pack = _RTP_HEADER.pack
        first_byte = self._first_byte
        payload_type = self._payload_type
        ssrc = self._sender._ssrc
        history = self._history
        protect = self._protect
        sendto = self._sendto
        address = self._address
        sequence = self._sequence
        octets = self._octets
        last = len(payloads) - 1
        try:
            for index, payload in enumerate(payloads):
                marker = 0x80 if index == last else 0
                history[sequence % _HISTORY] = (sequence, timestamp, marker, extensions, payload)
                data = protect(pack(first_byte, marker | payload_type, sequence, timestamp, ssrc)
                               + extensions + payload)
                sendto(data, address)
                octets += len(payload)
                sequence = (sequence + 1) & 0xFFFF
        except BlockingIOError:
            # The kernel's socket buffer is full: this viewer cannot keep up.
            return False
        except OSError as exc:
            logger.debug("send to viewer failed: %s", exc)
            return True
        finally:
            # Locals on the per-packet path; the counters are written once a frame.
            self._packets += (sequence - self._sequence) & 0xFFFF
            self._sequence = sequence
            self._octets = octets
            # What the sender's RTCP task puts in its sender reports.
            sender = self._sender
            setattr(sender, _SENDER_NTP, int((now + _NTP_UNIX_OFFSET) * (1 << 32)))
            setattr(sender, _SENDER_RTP_TIMESTAMP, timestamp)
            setattr(sender, _SENDER_OCTETS, self._octets)
            setattr(sender, _SENDER_PACKETS, self._packets)
        return True

    def _sent_packet(self, sequence: int) -> tuple[int, int, bytes, bytes] | None:
        """(timestamp, marker, extension block, payload) of a packet still in
        the history, for a retransmission."""
        entry = self._history[sequence % _HISTORY]
        if entry is None or entry[0] != sequence:
            return None
        return entry[1:]

    def _extensions(self, now: float) -> bytes:
        """The header extension block of a packet sent at ``now``."""
        if self._abs_send_time_id is None:
            return self._ext_prefix
        abs_send_time = int((now + _NTP_UNIX_OFFSET) * 262144) & 0xFFFFFF
        return self._ext_prefix + abs_send_time.to_bytes(3, "big") + self._ext_suffix

    def _send_relayed(self, data: bytes, address: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._relay_protocol.send_data(data, address))
        self._relayed.add(task)
        task.add_done_callback(self._relayed.discard)

    async def run(self, codec: RTCRtpCodecParameters) -> None:
        """Stands in for the sender's RTP task: frames come through send()."""
        sender = self._sender
        getattr(sender, _SENDER_RTP_STARTED).set()
        try:
            await asyncio.Future()  # until stop() cancels it
        except asyncio.CancelledError:
            pass
        finally:
            if sender.track is not None:
                sender.track.stop()
            getattr(sender, _SENDER_RTP_EXITED).set()

    async def retransmit(self, sequence_number: int) -> None:
        self._counters.nacked_packets += 1
        entry = self._sent_packet(sequence_number)
        if entry is None:
            return  # too old: the viewer will ask for a keyframe instead
        timestamp, marker, extensions, payload = entry
        first_byte = 0x90 if extensions else 0x80
        sender = self._sender
        if self._rtx_payload_type is not None:
            header = struct.pack("!BBHLL", first_byte, marker | self._rtx_payload_type,
                                 self._rtx_sequence, timestamp, sender._rtx_ssrc)
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
            payload = struct.pack("!H", sequence_number) + payload
        else:
            header = struct.pack("!BBHLL", first_byte, marker | self._payload_type,
                                 sequence_number, timestamp, sender._ssrc)
        self._counters.retransmitted_packets += 1
        with contextlib.suppress(ConnectionError):
            await sender.transport._send_rtp(header + extensions + payload)


_RTP_HEADER = struct.Struct("!BBHLL")


class _FastProtect:
    """``pylibsrtp.Session.protect`` without its per-call allocations.

    The session's own buffer and C handle are used as ``Session`` uses them;
    only the ``int *`` for the length is made once instead of per packet.
    """

    def __init__(self, session: pylibsrtp.Session) -> None:
        self._srtp = session._srtp[0]
        self._cdata = session._cdata
        self._buffer = session._buffer
        self._limit = len(session._cdata) - pylibsrtp.SRTP_MAX_TRAILER_LEN
        self._length = srtp_ffi.new("int *")

    def __call__(self, packet: bytes) -> bytes:
        size = len(packet)
        if size > self._limit:
            raise ValueError("packet is too long")
        length = self._length
        length[0] = size
        self._buffer[0:size] = packet
        status = srtp_lib.srtp_protect(self._srtp, self._cdata, length)
        if status:
            raise pylibsrtp.Error(f"srtp_protect failed with status {status}")
        result: bytes = self._buffer[0:length[0]]
        return result


# --------------------------------------------------------------------------
# the native send path (streaming/rtp_send.c)

try:
    from streaming._rtp_send import ffi as _native_ffi
    from streaming._rtp_send import lib as _native_lib
except ImportError as exc:
    _native_ffi = _native_lib = None
    _NATIVE_MISSING: str | None = str(exc)
else:
    _NATIVE_MISSING = None

_FRAMES = 128  # frames kept per viewer for NACK/RTX: at least the 128 packets aiortc keeps
_OWN_FRAMES = 16  # frames a native writer sent one by one, kept for NACK/RTX
_SWEEP_EVERY = 32  # frames between two checks of a batch's members


class NativeSendPathMissing(RuntimeError):
    """The native send path was asked for but is not built."""


def require_native_send_path() -> None:
    """Fail with what to do if ``streaming/_rtp_send`` is not built."""
    if _NATIVE_MISSING is not None:
        raise NativeSendPathMissing(
            "the native send path (streaming/rtp_send.c) is not built "
            f"({_NATIVE_MISSING}): run 'make install', which builds it with gcc and "
            "Python's headers (scripts/install-system-deps --build installs them), "
            "or start with --send-path python (about 1.6 times the CPU per viewer)")


def _native_protect(function: str = "srtp_protect") -> Any:
    """pylibsrtp's own ``srtp_protect`` (or ``srtp_protect_rtcp``), as the
    native module calls it: the sessions it protects belong to pylibsrtp's
    statically linked libsrtp."""
    address = int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, function)))
    return _native_ffi.cast("zx_protect_fn", address)


_SRTP_PROTECT_TYPE = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


_frame_ids = itertools.count(1)


def _native_frame(frame: EncodedFrame) -> tuple[Any, int]:
    """The frame's payloads in one buffer with offsets, and the frame's id
    (the native viewers' NACK history names frames by it), made once per frame."""
    payloads = frame.payloads
    assert payloads is not None
    blob = b"".join(payloads)
    offsets = [0]
    for payload in payloads:
        offsets.append(offsets[-1] + len(payload))
    data = _native_ffi.from_buffer("unsigned char[]", blob)
    offset_array = _native_ffi.new("int[]", offsets)
    native = _native_ffi.new("zx_frame *")
    native.data = data
    native.offsets = offset_array
    native.count = len(payloads)
    native.largest = max(map(len, payloads))
    frame_id = next(_frame_ids) & 0xFFFFFFFF
    frame.native = (native, frame_id, data, offset_array)  # the buffers live as long as the frame
    return native, frame_id


def _sockaddr(sock: socket.socket, address: tuple[Any, ...]) -> bytes:
    """``struct sockaddr_in``/``sockaddr_in6`` of ``address`` for ``sock``."""
    host, port = address[0], address[1]
    if sock.family == socket.AF_INET6:
        if ":" not in host:
            host = "::ffff:" + host
        return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0)
                + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", 0))
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_aton(host) + bytes(8))


class NativeViewerWriter(ViewerWriter):
    """A viewer's RTP path in one native call per frame (streaming/rtp_send.c).

    Headers, SRTP (the viewer's own pylibsrtp session, through pylibsrtp's
    ``srtp_protect``) and the send (one segmented ``sendmsg``, or
    ``sendmmsg``) happen in C, and so do the counters of its sender reports
    and the history of which sequence numbers carried which frame. Once
    connected, the viewer joins its slot track's :class:`NativeBatch`, which
    sends each frame to all its members in one call; frames go one by one
    (:meth:`send`) only until then, or after it backed up. Python keeps
    what only Python uses: the payloads of recent frames, for NACK/RTX. A
    viewer reached through TURN keeps the Python path (aioice wraps its data).
    """

    def __init__(self, sender: RTCRtpSender, counters: SenderCounters,
                 on_ready: Callable[[], None]) -> None:
        super().__init__(sender, counters, on_ready)
        require_native_send_path()
        self._viewer: Any = None  # zx_viewer *, once a direct route is known
        self._session: Any = None  # the pylibsrtp session it protects with, kept alive
        self._lost = False  # its socket is closing: never send on that number again
        self._batch: NativeBatch | None = None
        # The batch it was in before (live before a timeshift, the program
        # before the lower rendition): a NACK for a packet lost just before
        # the switch still finds its payload there.
        self._previous_batch: NativeBatch | None = None
        self._protect_fn = _native_protect()
        # Frames sent one by one: their ids and payloads (a batch keeps its own).
        self._own_ids = [0] * _OWN_FRAMES
        self._own_payloads: list[list[bytes]] = [[]] * _OWN_FRAMES
        self._own_at = 0
        self._found = _native_ffi.new("uint32_t[2]")  # frame id, timestamp
        self._found_index = _native_ffi.new("int *")
        # What the sender reports say while frames take the Python path (TURN).
        self._report = (0, 0, 0, 0)  # ntp, rtp timestamp, octets, packets

    def _connect_route(self) -> bool:
        if not super()._connect_route():
            return False
        if self._relay_protocol is not None:
            return True  # TURN: the Python path
        pair = self._dtls.transport._connection._nominated.get(1)
        protocol = pair.protocol
        sock = getattr(protocol.transport, "_sock", None)
        if sock is None:
            return True
        address = _sockaddr(sock, self._address)
        viewer = _native_ffi.new("zx_viewer *")
        viewer.fd = sock.fileno()
        viewer.gso = 1
        viewer.address[0:len(address)] = address
        viewer.address_length = len(address)
        self._session = self._dtls._tx_srtp
        viewer.session = _native_ffi.cast(
            "void *", int(srtp_ffi.cast("uintptr_t", self._session._srtp[0])))
        viewer.ssrc = self._sender._ssrc
        viewer.sequence = self._sequence
        viewer.origin = self._origin
        viewer.first_byte = self._first_byte
        viewer.payload_type = self._payload_type
        block = self._ext_prefix + (bytes(3) + self._ext_suffix
                                    if self._abs_send_time_id is not None else b"")
        viewer.extensions[0:len(block)] = block
        viewer.extensions_length = len(block)
        viewer.abs_send_time_at = (len(self._ext_prefix)
                                   if self._abs_send_time_id is not None else -1)
        cname = (getattr(self._sender, _SENDER_CNAME, None) or "").encode()
        if len(cname) <= 64:
            viewer.cname[0:len(cname)] = cname
            viewer.cname_length = len(cname)
        self._viewer = viewer
        # The socket closes right after its protocol hears connection_lost
        # (asyncio's transport): from then on its number may be another
        # socket's, so this viewer leaves its batch and sends nothing more.
        heard = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            self._socket_closing()
            heard(exc)

        protocol.connection_lost = connection_lost
        return True

    def _socket_closing(self) -> None:
        self._lost = True
        batch = self._batch
        if batch is not None:
            batch.evict(self, overflowed=False)

    @property
    def batchable(self) -> bool:
        return (self._viewer is not None and not self._lost and self._sender._enabled
                and self._dtls._state is DtlsState.CONNECTED)

    @property
    def frames_sent(self) -> int:
        viewer = self._viewer
        return 0 if viewer is None else int(viewer.frames_total)

    def join_batch(self, slot_track: Any, owner: Any) -> NativeBatch | None:
        if not self.batchable:
            return None
        batch = slot_track.batch(NativeBatch, NativeBatch)
        assert isinstance(batch, NativeBatch)
        batch.add(owner, self)
        self._batch = batch
        return batch

    def rebase(self, timestamp: int, clock_rate: int) -> None:
        viewer = self._viewer
        if viewer is None:
            super().rebase(timestamp, clock_rate)
            return
        if not viewer.ntp:
            return
        viewer.origin = _rebased_origin(viewer.last_timestamp,
                                        viewer.ntp / 4294967296.0 - _NTP_UNIX_OFFSET,
                                        timestamp, clock_rate)

    def send(self, frame: EncodedFrame) -> bool:
        viewer = self._viewer
        if viewer is None:
            if self._dtls is None and not self._connect_route():
                return True
            viewer = self._viewer
            if viewer is None:
                return super().send(frame)  # relayed
        payloads = frame.payloads
        if not payloads or not self._sender._enabled:
            return True
        if self._lost or self._dtls._state is not DtlsState.CONNECTED:
            return True
        native = frame.native
        native, frame_id = _native_frame(frame) if native is None else native[:2]
        status = _native_lib.zx_send_frame(viewer, self._protect_fn, native, frame.timestamp,
                                           frame_id)
        if viewer.consumed:
            at = self._own_at
            self._own_ids[at] = frame_id
            self._own_payloads[at] = payloads
            self._own_at = (at + 1) % _OWN_FRAMES
        return self.settle(status)

    def settle(self, status: int) -> bool:
        """What a send's status means for the viewer: False if backed up."""
        if status == _native_lib.ZX_SENT:
            return True
        if status == _native_lib.ZX_FULL:
            return False  # the kernel's socket buffer is full: this viewer cannot keep up
        logger.debug("send to viewer failed: %s", _send_error(self._viewer.error))
        return True

    async def run_rtcp(self) -> None:
        """Stands in for the sender's RTCP task: its sender reports go out
        with every other native viewer's, from one timer (:class:`SenderReports`)."""
        sender = self._sender
        getattr(sender, _SENDER_RTCP_STARTED).set()
        reports = SenderReports.running()
        reports.add(self)
        try:
            await asyncio.Future()  # until stop() cancels it
        except asyncio.CancelledError:
            pass
        finally:
            reports.discard(self)
        with contextlib.suppress(ConnectionError):
            await sender._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        getattr(sender, _SENDER_RTCP_EXITED).set()

    @property
    def report_interval(self) -> float:
        """libwebrtc's: a second for video, five for sound."""
        return 1.0 if self._sender.kind == "video" else 5.0

    def report_sent(self, ntp: int) -> None:
        """A sender report with ``ntp`` went out: the viewer's receiver
        reports answer it (LSR), which is how aiortc measures the RTT."""
        setattr(self._sender, _SENDER_LSR, (ntp >> 16) & 0xFFFFFFFF)
        setattr(self._sender, _SENDER_LSR_TIME, time.time())

    def sender_report(self) -> tuple[int, int, int, int]:
        """(NTP time, RTP timestamp, octets, packets) of its last frame."""
        viewer = self._viewer
        if viewer is None:
            return self._report
        return (int(viewer.ntp), int(viewer.last_timestamp), int(viewer.octets_total),
                int(viewer.packets_total))

    def _sent_packet(self, sequence: int) -> tuple[int, int, bytes, bytes] | None:
        viewer = self._viewer
        if viewer is None:
            return super()._sent_packet(sequence)
        found = self._found
        if not _native_lib.zx_find_packet(viewer, sequence, found, self._found_index, found + 1):
            return None
        frame_id, timestamp, index = int(found[0]), int(found[1]), int(self._found_index[0])
        payloads = None
        for at, own in enumerate(self._own_ids):
            if own == frame_id:
                payloads = self._own_payloads[at]
        for batch in (self._batch, self._previous_batch):
            if payloads is None and batch is not None:
                payloads = batch.payloads(frame_id)
        if payloads is None or index >= len(payloads):
            return None
        marker = 0x80 if index == len(payloads) - 1 else 0
        return timestamp, marker, self._extensions(time.time()), payloads[index]


class NativeBatch:
    """One slot track's frames to every native viewer on it, in one C call.

    A sink of the slot track, first among its sinks. Its members are
    viewers whose writer has a direct route: each frame goes to all of them
    in one ``zx_send_group`` (per viewer: headers, SRTP, one ``sendmsg``),
    with no Python per viewer. A member whose socket is full, or whose
    writer can no longer send (its DTLS closed, its sender disabled, its
    socket closing), is let go: its track takes frames one by one again,
    from a keyframe. The payloads of the last frames are kept here for the
    members' NACKs.
    """

    wants_payloads = True

    def __init__(self) -> None:
        require_native_send_path()
        self._owners: list[Any] = []  # RelayTracks, in the order of the array
        self._writers: list[NativeViewerWriter] = []
        self._array: Any = _native_ffi.new("zx_viewer *[]", 0)
        self._failed: Any = _native_ffi.new("int[]", 0)
        self._changed = False
        self._protect_fn = _native_protect()
        self._ids = [0] * _FRAMES
        self._payloads: list[list[bytes]] = [[]] * _FRAMES
        self._at = 0
        self._until_sweep = _SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._writers)

    def add(self, owner: Any, writer: NativeViewerWriter) -> None:
        if writer in self._writers:
            return
        self._owners.append(owner)
        self._writers.append(writer)
        self._changed = True

    def remove(self, owner: Any) -> None:
        """``owner`` leaves of its own accord (paused, switched, stopped)."""
        if owner in self._owners:
            index = self._owners.index(owner)
            del self._owners[index]
            writer = self._writers.pop(index)
            writer._batch = None
            writer._previous_batch = self
            self._changed = True

    def evict(self, writer: NativeViewerWriter, overflowed: bool) -> None:
        """Let ``writer``'s viewer go; its track takes frames one by one again."""
        if writer not in self._writers:
            return
        owner = self._owners[self._writers.index(writer)]
        self.remove(owner)
        owner.left_batch(overflowed=overflowed)

    def payloads(self, frame_id: int) -> list[bytes] | None:
        for at, kept in enumerate(self._ids):
            if kept == frame_id:
                return self._payloads[at]
        return None

    def _rebuild(self) -> None:
        count = len(self._writers)
        self._array = _native_ffi.new("zx_viewer *[]", count)
        for index, writer in enumerate(self._writers):
            self._array[index] = writer._viewer
        self._failed = _native_ffi.new("int[]", count)
        self._changed = False

    def _sweep(self) -> None:
        self._until_sweep = _SWEEP_EVERY
        for writer in [w for w in self._writers if not w.batchable]:
            self.evict(writer, overflowed=False)

    def deliver(self, frame: EncodedFrame) -> None:
        if not self._writers:
            return
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep()
        if self._changed:
            self._rebuild()
        count = len(self._writers)
        payloads = frame.payloads
        if not count or not payloads:
            return
        native = frame.native
        native, frame_id = _native_frame(frame) if native is None else native[:2]
        failures = _native_lib.zx_send_group(self._array, count, self._protect_fn, native,
                                             frame.timestamp, frame_id, self._failed)
        at = self._at
        self._ids[at] = frame_id
        self._payloads[at] = payloads
        self._at = (at + 1) % _FRAMES
        if failures:
            writers = self._writers
            backed_up = [writers[index] for index in self._failed[0:failures]
                         if not writers[index].settle(writers[index]._viewer.status)]
            for writer in backed_up:
                self.evict(writer, overflowed=True)

    def close(self) -> None:
        """The slot track closes: every member is let go, none resubscribed."""
        for owner in list(self._owners):
            self.remove(owner)
            owner.left_batch(overflowed=False, resubscribe=False)


class SenderReports:
    """One timer for the sender reports of every native viewer.

    aiortc runs a task per sender that wakes every 0.5–1.5 s to send a
    report; at hundreds of viewers those wake-ups and the Python that builds
    each report were a tenth of the relay's time. Here the reports that are
    due go out together, built, protected (``srtp_protect_rtcp`` of the
    viewer's own session) and sent by one call into ``rtp_send.c``. Each
    sender keeps libwebrtc's interval (1 s video, 5 s sound, each time
    0.5–1.5 times that); its first report goes within half a second. A
    viewer on the Python path (TURN) gets its report built as aiortc does.
    """

    _instance: SenderReports | None = None
    SLACK = 0.05  # reports due this soon go with the ones due now

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: list[tuple[float, int, NativeViewerWriter]] = []
        self._writers: set[NativeViewerWriter] = set()
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._protect_fn = _native_protect("srtp_protect_rtcp")
        self._pending: set[asyncio.Future[None]] = set()

    @classmethod
    def running(cls) -> SenderReports:
        """The running loop's (one per loop; tests start several loops)."""
        loop = asyncio.get_running_loop()
        instance = cls._instance
        if instance is None or instance._loop is not loop:
            instance = cls._instance = cls(loop)
        return instance

    def __len__(self) -> int:
        return len(self._writers)

    def add(self, writer: NativeViewerWriter) -> None:
        self._writers.add(writer)
        self._schedule(writer, self._loop.time() + random.random() * 0.5)

    def discard(self, writer: NativeViewerWriter) -> None:
        self._writers.discard(writer)  # its entry in the heap is skipped when due

    def _schedule(self, writer: NativeViewerWriter, at: float) -> None:
        heapq.heappush(self._due, (at, next(self._order), writer))
        if self._timer is None or at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        due = self._due
        native: list[NativeViewerWriter] = []
        while due and due[0][0] <= now + self.SLACK:
            _, _, writer = heapq.heappop(due)
            if writer not in self._writers:
                continue
            writer_ready = writer._dtls is not None and \
                writer._dtls._state is DtlsState.CONNECTED
            viewer = writer._viewer
            if writer_ready and viewer is not None and not writer._lost:
                if viewer.ntp:  # nothing to report before its first frame
                    native.append(writer)
            elif writer_ready:
                self._send_in_python(writer)
            heapq.heappush(due, (now + writer.report_interval * (0.5 + random.random()),
                                 next(self._order), writer))
        if native:
            self._send_native(native)
        if due:
            self._timer_at = due[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._fire)

    def _send_native(self, writers: list[NativeViewerWriter]) -> None:
        count = len(writers)
        viewers = _native_ffi.new("zx_viewer *[]", [w._viewer for w in writers])
        failed = _native_ffi.new("int[]", count)
        failures = _native_lib.zx_send_reports(viewers, count, self._protect_fn, failed)
        missed = set(failed[0:failures])
        for index, writer in enumerate(writers):
            if index in missed:
                logger.debug("sender report to viewer failed: %s",
                             _send_error(writer._viewer.error))
            else:
                writer.report_sent(int(writer._viewer.ntp))

    def _send_in_python(self, writer: NativeViewerWriter) -> None:
        sender = writer._sender
        ntp, timestamp, octets, packets = writer.sender_report()
        reports: list[Any] = [RtcpSrPacket(ssrc=sender._ssrc, sender_info=RtcpSenderInfo(
            ntp_timestamp=ntp, rtp_timestamp=timestamp, packet_count=packets & 0xFFFFFFFF,
            octet_count=octets & 0xFFFFFFFF))]
        cname = getattr(sender, _SENDER_CNAME, None)
        if cname is not None:
            reports.append(RtcpSdesPacket(chunks=[RtcpSourceInfo(
                ssrc=sender._ssrc, items=[(1, cname.encode("utf8"))])]))
        writer.report_sent(ntp)
        task = asyncio.ensure_future(sender._send_rtcp(reports))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _send_error(error: int) -> str:
    if error < 0:
        return f"srtp_protect failed with status {-error}"
    return os.strerror(error)


def _report_field(index: int) -> property:
    def read(sender: Any) -> int:
        return int(sender._zx_writer.sender_report()[index])

    def write(sender: Any, value: int) -> None:
        writer = sender.__dict__.get("_zx_writer")
        if writer is not None:  # the Python path (TURN) sets them as aiortc would
            report = list(writer._report)
            report[index] = value
            writer._report = tuple(report)

    return property(read, write)


class _NativeSender(RTCRtpSender):
    """A sender whose packet and octet counts (``getStats``, the viewers'
    stats) are read from the native writer (kept in C) when asked, instead
    of attributes set for every frame; its sender reports are
    :class:`SenderReports`'."""

    _zx_writer: NativeViewerWriter
    _RTCRtpSender__ntp_timestamp = _report_field(0)
    _RTCRtpSender__rtp_timestamp = _report_field(1)
    _RTCRtpSender__octet_count = _report_field(2)
    _RTCRtpSender__packet_count = _report_field(3)


def attach_sender(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_ready: Callable[[], None],
    native: bool = False,
) -> tuple[ViewerWriter, SenderCounters]:
    """Take over ``sender``'s RTP path; returns the writer to send frames with.

    Must be called before the sender starts (before the answer is applied).
    ``on_ready`` runs once the sender is negotiated and connected. In pack
    mode a viewer's PLI/FIR would only set a flag that nothing reads; it is
    routed to ``on_keyframe_request`` instead. ``native``: send through
    :class:`NativeViewerWriter` (which needs the native module built).
    """
    counters = SenderCounters()
    writer: ViewerWriter
    if native:
        writer = NativeViewerWriter(sender, counters, on_ready)
        sender.__class__ = _NativeSender
        sender._zx_writer = writer  # type: ignore[attr-defined]
        sender._run_rtcp = writer.run_rtcp  # type: ignore[method-assign]
    else:
        writer = ViewerWriter(sender, counters, on_ready)
    setattr(sender, _SENDER_ENCODER, _RembRecorder(counters))
    original_send = sender.send

    async def send(parameters: RTCRtpSendParameters) -> None:
        await original_send(parameters)
        writer.configure(parameters)

    def send_keyframe() -> None:
        counters.keyframe_requests += 1
        on_keyframe_request()

    original_rtcp = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == sender._ssrc:
                    counters.fraction_lost = report.fraction_lost / 256
                    counters.report_at = time.monotonic()
        await original_rtcp(packet)

    sender.send = send  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    sender._run_rtp = writer.run  # type: ignore[method-assign]
    sender._retransmit = writer.retransmit  # type: ignore[method-assign]
    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]
    return writer, counters


# --------------------------------------------------------------------------
# taking frames out of a receiver


class _SenderClock:
    """The sender's wall clock for one receiver, from its RTCP sender reports.

    A sender report pairs an NTP time with an RTP timestamp; a frame's
    capture time is that NTP time plus the distance of its RTP timestamp.
    The receiver hands frames on with timestamps rebased to its first packet
    (``TimestampMapper``); its origin gives the RTP timestamp back.
    """

    def __init__(self, receiver: RTCRtpReceiver, clock_rate: int) -> None:
        self._receiver = receiver
        self._clock_rate = clock_rate
        self._report: tuple[float, int] | None = None  # (NTP seconds, RTP timestamp)
        self._mapper = getattr(receiver, _RECEIVER_MAPPER)
        handle = receiver._handle_rtcp_packet

        async def handle_rtcp_packet(packet: Any) -> None:
            if isinstance(packet, RtcpSrPacket) and \
                    packet.ssrc not in getattr(receiver, _RECEIVER_RTX):
                info = packet.sender_info
                self._report = (info.ntp_timestamp / (1 << 32), info.rtp_timestamp)
            await handle(packet)

        receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]

    def capture_time(self, timestamp: int) -> float | None:
        report = self._report
        origin: int | None = self._mapper._origin
        if report is None or origin is None:
            return None
        ntp, rtp = report
        delta = (timestamp + origin - rtp) & 0xFFFFFFFF
        if delta >= 1 << 31:
            delta -= 1 << 32
        return float(ntp + delta / self._clock_rate)


class _FrameTap:
    """Replaces a receiver's decoder queue: frames go to us, not to a decoder.

    The receiver ``put``s ``(codec, JitterFrame)`` on the event loop right
    after the jitter buffer completes a frame. Its decoder thread, started in
    ``receive()``, ``get``s from this object once, receives the end marker and
    exits at once, so a publisher costs no thread.
    """

    def __init__(self, on_frame: FrameCallback, sender_clock: _SenderClock) -> None:
        self._on_frame = on_frame
        self._sender_clock = sender_clock
        self.closed = False

    def put(self, item: Any) -> None:
        if item is None:
            self.closed = True
            return
        codec, jitter_frame = item
        timestamp = jitter_frame.timestamp
        self._on_frame(codec.name, jitter_frame.data, timestamp,
                       self._sender_clock.capture_time(timestamp))

    def get(self) -> None:
        return None


class _MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, releasing a frame as soon as its last
    packet (the RTP marker) is in, every packet before it present.

    aiortc releases frame k only when the first packet of frame k+1 comes: a
    frame interval later (33 ms at 30 fps). Once per hop is the relay's
    measured latency; a cascade (origin → edge) would pay it again at the
    edge, so the edge's upstream releases on the marker. A frame whose
    marker is lost is released the usual way, by the next frame.
    """

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if frame is None and packet.marker and self._origin is not None:
            frame = self._complete(packet)
        return pli_flag, frame

    def _complete(self, last: RtpPacket) -> JitterFrame | None:
        assert self._origin is not None
        count = uint16_add(last.sequence_number, -self._origin) + 1
        if count > self._capacity:
            return None
        packets = []
        for index in range(count):
            packet = self._packets[(self._origin + index) % self._capacity]
            if packet is None or packet.timestamp != last.timestamp:
                return None  # a packet missing, or the run starts in another frame
            packets.append(packet)
        self.remove(count)
        return JitterFrame(data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                           timestamp=last.timestamp)


class ReceiverTap:
    """Undecoded frames out of one ``RTCRtpReceiver``, keyframe requests in.

    ``release_on_marker``: a video frame leaves the jitter buffer with its
    last packet rather than with the next frame's first (one frame interval
    sooner; see ``_MarkerJitterBuffer``).
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        clock_rate: int,
        on_frame: FrameCallback,
        on_damage: Callable[[], None],
        audio_prefetch: int = 0,
        release_on_marker: bool = False,
    ) -> None:
        self._receiver = receiver
        setattr(receiver, _RECEIVER_QUEUE, _FrameTap(on_frame, _SenderClock(receiver, clock_rate)))
        if release_on_marker:
            current = getattr(receiver, _RECEIVER_JITTER)
            if current._is_video:
                setattr(receiver, _RECEIVER_JITTER,
                        _MarkerJitterBuffer(capacity=current.capacity, is_video=True))
        if audio_prefetch >= 0:
            jitter = getattr(receiver, _RECEIVER_JITTER)
            if not jitter._is_video:
                # aiortc holds 4 audio packets (80 ms) before releasing one,
                # which puts audio behind video at the viewer.
                jitter._prefetch = audio_prefetch
        self._send_pli = receiver._send_rtcp_pli

        async def send_rtcp_pli(media_ssrc: int) -> None:
            # The receiver asks for a keyframe only when its jitter buffer
            # was reset: the next frames may be partial. Tell the slot, which
            # holds frames until a keyframe and sends the (throttled) PLI.
            on_damage()

        receiver._send_rtcp_pli = send_rtcp_pli  # type: ignore[method-assign]

    async def request_keyframe(self) -> None:
        """Send a PLI for every media SSRC heard in the last 10 s."""
        rtx = getattr(self._receiver, _RECEIVER_RTX)
        for source in self._receiver.getSynchronizationSources():
            if source.source not in rtx:
                await self._send_pli(source.source)

