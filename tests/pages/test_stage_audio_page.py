"""A room's page hears the room on stage (Chromium).

The lecturer (an aiortc publisher) sends 440 Hz, room A's uplink 1500 Hz.
Room C's page follows the session; once the presenter puts A on stage, the
page's stage audio track must carry A's tone, measured in the page with Web
Audio, and its program track the lecturer's.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.archive_helpers import LECTURER_HZ, ROOM_HZ
from tests.support.browser import Chromium
from tests.support.discussion import connect
from tests.support.media import start_publisher
from tests.support.service import Service, invite

pytestmark = [pytest.mark.browser, pytest.mark.webrtc]

TIMEOUT = 20.0

# Start analysing the page's audio tracks (program = the first audio
# transceiver, stage = the second) with one AnalyserNode each.
LISTEN = """
() => {
  const pc = window.zhixing && window.zhixing.pc;
  if (!pc) return false;
  const audios = pc.getTransceivers().filter((t) => t.receiver.track.kind === "audio");
  if (audios.length < 2) return false;
  const context = new AudioContext();
  const analysers = audios.map((t) => {
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0.5;
    context.createMediaStreamSource(new MediaStream([t.receiver.track])).connect(analyser);
    return analyser;
  });
  context.resume();
  window.testEars = { context, program: analysers[0], stage: analysers[1] };
  return true;
}
"""

# The level (dB) of each frequency asked for, on the program and stage tracks.
LEVELS = """
(frequencies) => {
  const ears = window.testEars;
  const out = { state: ears.context.state };
  for (const name of ["program", "stage"]) {
    const analyser = ears[name];
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    const hz = ears.context.sampleRate / analyser.fftSize;
    out[name] = frequencies.map((f) => {
      const at = Math.round(f / hz);
      return Math.max(bins[at - 1], bins[at], bins[at + 1]);
    });
  }
  return out;
}
"""

HEARD_DB = -45.0  # the peers' tones arrive near -25 dB; silence is below -100


async def test_a_room_page_hears_the_room_on_stage(service: Service, chromium: Chromium) -> None:
    session = await service.create_session()
    sid = session["id"]
    room_a = await invite(service, session, "新碶街道分课堂")
    room_c = await invite(service, session, "大碶街道分课堂")
    program = await start_publisher(service.http, service.base, sid, session["publish_token"],
                                    width=160, height=96, tone=LECTURER_HZ)
    uplink = await start_publisher(service.http, service.base, sid, room_a["token"],
                                   width=160, height=96, tone=ROOM_HZ)
    presenter = None
    try:
        page = await chromium.open(room_c["url"], "room-c")
        await chromium.wait_for_js(page, "the program and the discussion",
                                   "() => window.zhixing.pc?.connectionState === 'connected'"
                                   " && window.zhixing.events === 'open'", TIMEOUT)
        assert await page.evaluate(LISTEN)

        async def levels() -> Any:
            return await page.evaluate(LEVELS, [LECTURER_HZ, ROOM_HZ])

        await chromium.wait_for("the page hears the lecturer on the program track", levels,
                                lambda lv: lv["program"][0] > HEARD_DB, TIMEOUT)
        presenter = await connect(service, sid, session["publish_token"])
        await presenter.wait_for("A's uplink connected", lambda st: [
            u["connected"] for u in st["uplinks"]] == [True])
        assert (await presenter.call("stage", invitation_id=room_a["id"]))["type"] == "ack"
        heard = await chromium.wait_for(
            "the page hears room A on the stage track", levels,
            lambda lv: lv["stage"][1] > HEARD_DB, TIMEOUT)
        # Each track its own source: A on the stage, the lecturer on the program.
        assert heard["stage"][0] < HEARD_DB, heard
        assert heard["program"][0] > HEARD_DB, heard
        assert heard["program"][1] < HEARD_DB, heard
    finally:
        if presenter is not None:
            await presenter.close()
        await uplink.close()
        await program.close()
