"""A stock GStreamer ``webrtcbin`` as a WHIP publisher or a WHEP viewer.

Run with Debian's own Python (``/usr/bin/python3``, which has ``python3-gi``
and ``python3-gst-1.0``), not the project's venv:

    python3 gstreamer_peer.py publish URL TOKEN --codec VP8 --seconds 10
    python3 gstreamer_peer.py view URL TOKEN --seconds 10

Nothing here is tuned for the relay: webrtcbin's defaults (its own RSA
certificate, its own bundle policy, libnice for ICE), the offer sent once ICE
gathering is complete, as a WHIP/WHEP client without trickle does. The viewer
decodes what it receives and prints one line per second on stdout:
``frames <video frames decoded> audio <audio buffers decoded>``; both print
``connected`` once webrtcbin's connection state says so, and ``error <text>``
before exiting 1 on a failure.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

# What a publisher's payloader produces, and what a viewer asks for.
VIDEO_CAPS = {
    "VP8": "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
    "H264": "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000",
}
RECEIVE_CAPS = {
    "VP8": VIDEO_CAPS["VP8"],
    "H264": VIDEO_CAPS["H264"] + (",packetization-mode=(string)1,"
                                  "profile-level-id=(string)42e01f"),
}
AUDIO_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"

ENCODE = {
    "VP8": "vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=500000 ! rtpvp8pay pt=96",
    "H264": ("x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=500 "
             "! video/x-h264,profile=constrained-baseline "
             "! rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency"),
}


def say(line: str) -> None:
    print(line, flush=True)


class Peer:
    def __init__(self, mode: str, url: str, token: str, codec: str) -> None:
        self.mode, self.url, self.token = mode, url, token
        self.loop = GLib.MainLoop()
        self.failed: str | None = None
        self.frames = 0
        self.audio = 0
        if mode == "publish":
            self.pipeline = Gst.parse_launch(
                "webrtcbin name=webrtc "
                "videotestsrc is-live=true pattern=ball "
                "! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert "
                f"! {ENCODE[codec]} ! {VIDEO_CAPS[codec]} ! webrtc. "
                "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample "
                f"! opusenc ! rtpopuspay pt=111 ! {AUDIO_CAPS} ! webrtc.")
            self.webrtc = self.pipeline.get_by_name("webrtc")
        else:
            self.pipeline = Gst.Pipeline.new("viewer")
            self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
            self.pipeline.add(self.webrtc)
            recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
            self.webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(RECEIVE_CAPS[codec]))
            self.webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(AUDIO_CAPS))
            self.webrtc.connect("pad-added", self.on_pad)
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        self.offered = False

    # --- negotiation: one offer, complete with candidates, POSTed once ---
    def on_negotiation_needed(self, _element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(self.on_offer, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer(self, promise: Gst.Promise, _data: object) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            self.fail(f"create-offer: {reply.to_string() if reply is not None else 'no reply'}")
            return
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, _element: Gst.Element, _spec: object) -> None:
        state = self.webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.offered:
            self.offered = True
            GLib.idle_add(self.post_offer)

    def post_offer(self) -> bool:
        offer = self.webrtc.get_property("local-description").sdp.as_text()
        request = urllib.request.Request(
            self.url, data=offer.encode(), method="POST",
            headers={"Content-Type": "application/sdp",
                     "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer_text = response.read().decode()
        except urllib.error.HTTPError as exc:
            self.fail(f"HTTP {exc.code} {exc.read().decode(errors='replace')[:200]}")
            return False
        except OSError as exc:
            self.fail(f"POST failed: {exc}")
            return False
        _, sdp = GstSdp.SDPMessage.new_from_text(answer_text)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        return False

    def on_connection(self, _element: Gst.Element, _spec: object) -> None:
        state = self.webrtc.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            say("connected")
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self.fail("connection failed")

    # --- the viewer decodes what arrives ---
    def on_pad(self, _element: Gst.Element, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded)
        self.pipeline.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded(self, _element: Gst.Element, pad: Gst.Pad) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        video = caps.get_structure(0).get_name().startswith("video")
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        sink.set_property("signal-handoffs", True)
        sink.connect("handoff", self.on_video if video else self.on_audio)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_video(self, *_args: object) -> None:
        self.frames += 1

    def on_audio(self, *_args: object) -> None:
        self.audio += 1

    def report(self) -> bool:
        if self.mode == "view":
            say(f"frames {self.frames} audio {self.audio}")
        return True

    # --- ending ---
    def on_error(self, _bus: Gst.Bus, message: Gst.Message) -> None:
        error, _debug = message.parse_error()
        self.fail(f"pipeline: {error.message}")

    def fail(self, text: str) -> None:
        if self.failed is None:
            self.failed = text
            say(f"error {text}")
        self.loop.quit()

    def run(self, seconds: float) -> int:
        self.pipeline.set_state(Gst.State.PLAYING)
        GLib.timeout_add(1000, self.report)
        GLib.timeout_add(int(seconds * 1000), self.loop.quit)
        try:
            self.loop.run()
        finally:
            self.report()
            self.pipeline.set_state(Gst.State.NULL)
        return 1 if self.failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["publish", "view"])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--codec", choices=sorted(VIDEO_CAPS), default="VP8")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    Gst.init(None)
    return Peer(args.mode, args.url, args.token, args.codec).run(args.seconds)


if __name__ == "__main__":
    sys.exit(main())
