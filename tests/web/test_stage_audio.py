"""A room on stage is heard, not only seen, by every room (aiortc peers).

The lecturer sends a 440 Hz tone, room A's uplink a 1500 Hz tone. Viewers
offer the program and the stage pair (audio + video each), in the browsers'
order and in the other one; while A is on stage every viewer must decode A's
tone on its stage audio track, and the lecturer's (never A's) on the program
track. aiortc's default bundle policy left the second audio section on a
transport that the offer's BUNDLE group dropped: its sender never started
and the stage audio track got nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import av
import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
)

from streaming import peers
from streaming.peers import PeerSettings
from tests.support.archive_helpers import LECTURER_HZ, ROOM_HZ, ROOM_NAME
from tests.support.discussion import connect, view_slots
from tests.support.media import close_peer, new_pc, start_publisher
from tests.support.service import Service, invite
from web.keys import SESSIONS

pytestmark = pytest.mark.webrtc

SAMPLE_RATE = 48000
LISTEN = 1.5  # seconds of each track's sound to analyse


@dataclass
class Ears:
    """A viewer that keeps the decoded sound of each audio track, by slot."""

    pc: RTCPeerConnection
    order: Sequence[str]
    sound: dict[str, list[tuple[float, np.ndarray]]] = field(
        default_factory=lambda: {"program": [], "stage": []})
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def since(self, slot: str, start: float) -> np.ndarray:
        chunks = [samples for at, samples in self.sound[slot] if at >= start]
        return np.concatenate(chunks) if chunks else np.zeros(0)

    async def close(self) -> None:
        await close_peer(self.pc, self.tasks)


async def listen(service: Service, session_id: str, token: str,
                 order: Sequence[str]) -> Ears:
    ears = Ears(new_pc(), order)

    async def consume(track: MediaStreamTrack, slot: str | None) -> None:
        while True:
            frame = await track.recv()
            if slot is not None and isinstance(frame, av.AudioFrame):
                mono = frame.to_ndarray().astype(np.float32).reshape(-1, len(frame.layout.channels))
                ears.sound[slot].append((time.monotonic(), mono.mean(axis=1)))

    _, ears.tasks = await view_slots(service, session_id, token, order, consume, ears.pc)
    return ears


def level(samples: np.ndarray, frequency: float) -> float:
    """The amplitude of ``frequency`` in ``samples`` (a windowed DFT bin)."""
    if len(samples) < SAMPLE_RATE // 10:
        return 0.0
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window)) / (window.sum() / 2)
    freqs = np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)
    near = np.abs(freqs - frequency) < 15
    return float(spectrum[near].max())


HEARD = 500.0  # the peers send an amplitude of 8000; silence and leakage stay far below


async def wait_heard(ears: Sequence[Ears], slot: str, frequency: float, since: float,
                     timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        levels = [level(e.since(slot, since)[-int(LISTEN * SAMPLE_RATE):], frequency)
                  for e in ears]
        heard = [lv > HEARD for lv in levels]
        enough = all(len(e.since(slot, since)) >= LISTEN * SAMPLE_RATE for e in ears)
        if all(heard) and enough:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{frequency} Hz on the {slot} track: levels {levels} "
                f"({[len(e.since(slot, since)) for e in ears]} samples, orders "
                f"{[list(e.order) for e in ears]})")
        await asyncio.sleep(0.2)


async def test_every_room_hears_the_room_on_stage(
        service: Service, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streaming")
    session = await service.create_session()
    sid = session["id"]
    room_a = await invite(service, session, ROOM_NAME)
    program = await start_publisher(service.http, service.base, sid, session["publish_token"],
                                    width=160, height=96, tone=LECTURER_HZ)
    uplink = await start_publisher(service.http, service.base, sid, room_a["token"],
                                   width=160, height=96, tone=ROOM_HZ)
    browsers_order = ("video", "audio", "video", "audio")
    listeners: list[Ears] = []
    presenter = None
    try:
        for order in (browsers_order, browsers_order, ("audio", "video", "audio", "video")):
            listeners.append(await listen(service, sid, session["view_token"], order))
        presenter = await connect(service, sid, session["publish_token"])
        await presenter.wait_for("A's uplink connected", lambda st: [
            u["connected"] for u in st["uplinks"]] == [True])
        start = time.monotonic()
        await wait_heard(listeners, "program", LECTURER_HZ, start)

        assert (await presenter.call("stage", invitation_id=room_a["id"]))["type"] == "ack"
        on_stage = time.monotonic()
        await wait_heard(listeners, "stage", ROOM_HZ, on_stage)
        await asyncio.sleep(LISTEN)
        for ears in listeners:
            stage = ears.since("stage", on_stage)[-int(LISTEN * SAMPLE_RATE):]
            program_sound = ears.since("program", on_stage)[-int(LISTEN * SAMPLE_RATE):]
            assert level(stage, ROOM_HZ) > HEARD
            assert level(program_sound, LECTURER_HZ) > HEARD
            # Each track carries its own source: A is not mixed into the program.
            assert level(program_sound, ROOM_HZ) < HEARD / 10, ears.order
            assert level(stage, LECTURER_HZ) < HEARD / 10, ears.order

        # The server's side agrees: every viewer's stage audio sender sends.
        live = service.app[SESSIONS].get(sid)
        assert live is not None
        assert len(live.broadcast.viewers) == len(listeners)
        for viewer in live.broadcast.viewers.values():
            stats = await viewer.stats()
            assert stats["stage_audio"]["frames_sent"] > 0, stats
            assert stats["stage_audio"]["packets_sent"] > 0, stats

        assert (await presenter.call("stage", invitation_id=None))["type"] == "ack"
        messages = [r.getMessage() for r in caplog.records if r.name == "streaming.broadcast"]
        assert any(m.endswith(f"{room_a['id']} on stage") for m in messages), messages
        assert any(m.endswith(f"{room_a['id']} off stage") for m in messages), messages
        never_started = [r.getMessage() for r in caplog.records
                         if "never started" in r.getMessage()]
        assert never_started == []
    finally:
        if presenter is not None:
            await presenter.close()
        for ears in listeners:
            await ears.close()
        await uplink.close()
        await program.close()


async def test_a_sender_that_never_starts_is_logged(
        service: Service, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault itself, brought back on purpose (aiortc's balanced bundling):
    the stage audio sender never starts, and the server says so."""
    balanced = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.BALANCED)
    monkeypatch.setattr(PeerSettings, "configuration", lambda self, bundle=True: balanced)
    monkeypatch.setattr(peers, "SENDER_START_GRACE", 0.5)
    caplog.set_level(logging.WARNING, logger="streaming.peers")
    session = await service.create_session()
    ears = await listen(service, session["id"], session["view_token"],
                        ("video", "audio", "video", "audio"))
    try:
        deadline = time.monotonic() + 10
        while not any("never started" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            await asyncio.sleep(0.1)
        warnings = [r.getMessage() for r in caplog.records if "never started" in r.getMessage()]
        assert any("stage audio sender" in w for w in warnings), warnings
        assert not any("program" in w for w in warnings), warnings
    finally:
        await ears.close()
