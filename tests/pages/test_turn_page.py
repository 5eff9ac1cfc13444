"""A room whose network lets no UDP out reaches the relay through coturn, over
TCP and over TLS, with the credentials its page gets with its own link: the
room page in Chromium plays the lecture over a relayed candidate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection

from tests.support.browser import open_chromium
from tests.support.coturn import RELAY_PORTS, Coturn, coturn
from tests.support.media import start_publisher
from tests.support.netns import udp_dropped
from tests.support.service import ADMIN_TOKEN, invite, running
from web.config import Config

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

# The room page's selected candidate pair, as Chromium reports it.
SELECTED_PAIR = """
async () => {
  const pc = window.zhixing && window.zhixing.pc;
  if (!pc) return null;
  const stats = await pc.getStats();
  let pair = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = stats.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  return { type: local.candidateType, relayProtocol: local.relayProtocol || null,
           state: pair.state };
}
"""


@pytest.fixture
async def turn(tmp_path: Path) -> AsyncIterator[Coturn]:
    async with coturn(tmp_path / "coturn") as server:
        yield server


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_a_room_without_udp_plays_through_coturn(
    tmp_path: Path, turn: Coturn, transport: str
) -> None:
    url = turn.tcp_url if transport == "tcp" else turn.tls_url
    config = Config(host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                    ice_hosts=["127.0.0.1"], admin_token=ADMIN_TOKEN,
                    turn_urls=[url], turn_secret=turn.secret)
    async with contextlib.AsyncExitStack() as stack:
        service = await stack.enter_async_context(running(config))
        http = service.http
        session = await service.create_session(video_codec="VP8")
        invitation = await invite(service, session, "大碶街道分课堂")
        publisher = await start_publisher(http, service.base, session["id"],
                                          session["publish_token"])
        stack.push_async_callback(publisher.close)
        # The main classroom's flow stays up; every other UDP datagram is
        # dropped but coturn's relayed ones (which reach the relay).
        port = await _local_port(publisher.pc)
        stack.enter_context(udp_dropped([RELAY_PORTS, (port, port)]))
        # The room's PC trusts the intranet's CA that signed coturn's certificate.
        chromium = await stack.enter_async_context(
            open_chromium(f"turn-{transport}", trusted_ca=turn.ca_certificate))
        page = await chromium.open(invitation["url"], f"turn-room-{transport}")
        await chromium.wait_for_frames(page, 30, 40)
        pair = await page.evaluate(SELECTED_PAIR)
        assert pair == {"type": "relay", "relayProtocol": transport, "state": "succeeded"}, pair


async def _local_port(pc: RTCPeerConnection) -> int:
    """The UDP port of ``pc``'s nominated candidate pair (aioice's private parts)."""
    connection = pc.getTransceivers()[0].sender.transport.transport._connection
    for _ in range(100):
        if connection._nominated:
            return int(connection._nominated[1].local_candidate.port)
        await asyncio.sleep(0.1)
    raise AssertionError("the publisher never connected")
