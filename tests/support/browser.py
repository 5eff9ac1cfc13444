"""Headless Chromium (Debian's package) driven by Playwright, for end-to-end tests.

``open_chromium()`` starts Playwright, one browser and one context, and ends all
of them (pages first) when the block is left, so a suite can run twice in a row.
Every page gets an init script that records each ``RTCPeerConnection`` it
creates, so a failure message can show ICE states and candidates even when the
page never got as far as ``window.zhixing.pc``. See shared/TESTING.md for
why each flag is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",  # fake camera (moving pattern) and mic (beeps)
    "--use-fake-ui-for-media-stream",  # grant getUserMedia without a prompt
    "--allow-loopback-in-peer-connection",  # else no 127.0.0.1 candidate at all
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--disable-quic",
    "--no-sandbox",  # tests run as root
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

EVALUATE_TIMEOUT = 5.0  # a hung renderer must not hang the test or its report
POLL_INTERVAL = 0.2
CONSOLE_LINES = 60

T = TypeVar("T")

# Keeps every RTCPeerConnection a page creates in window.__zhixingPcs.
TRACK_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || Native.__zhixingTracked) return;
  const created = [];
  window.__zhixingPcs = created;
  class Tracked extends Native {
    constructor(...args) { super(...args); created.push(this); }
  }
  Tracked.__zhixingTracked = true;
  window.RTCPeerConnection = Tracked;
})();
"""

# Everything a human needs to see why a page's WebRTC did not work.
DESCRIBE_PAGE = """
async () => {
  const z = window.zhixing || {};
  const out = { zhixing_state: z.state ?? null, zhixing_error: z.error ?? null,
                has_zhixing_pc: !!z.pc, peer_connections: [] };
  const candidateLines = (d) => d ? d.sdp.split(/\\r?\\n/)
      .filter((l) => l.startsWith("a=candidate:")).map((l) => l.slice(12)) : null;
  for (const pc of window.__zhixingPcs || []) {
    const info = {
      is_zhixing_pc: pc === z.pc, connection: pc.connectionState,
      ice_connection: pc.iceConnectionState, ice_gathering: pc.iceGatheringState,
      signaling: pc.signalingState,
      local_sdp_candidates: candidateLines(pc.localDescription),
      remote_sdp_candidates: candidateLines(pc.remoteDescription),
      local_candidates: [], remote_candidates: [], candidate_pairs: [], rtp: [],
    };
    try {
      const stats = await pc.getStats();
      const codecs = {};
      stats.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
      stats.forEach((s) => {
        const cand = `${s.candidateType} ${s.protocol} ${s.address}:${s.port}`;
        if (s.type === "local-candidate") info.local_candidates.push(cand);
        else if (s.type === "remote-candidate") info.remote_candidates.push(cand);
        else if (s.type === "candidate-pair") {
          info.candidate_pairs.push(`${s.state}${s.nominated ? " nominated" : ""} ` +
            `sent=${s.bytesSent} received=${s.bytesReceived}`);
        } else if (s.type === "inbound-rtp") {
          info.rtp.push(`in ${s.kind} ${codecs[s.codecId] || "?"} packets=${s.packetsReceived} ` +
            `lost=${s.packetsLost} frames_decoded=${s.framesDecoded ?? "-"} ` +
            `keyframes=${s.keyFramesDecoded ?? "-"} plis=${s.pliCount ?? "-"}`);
        } else if (s.type === "outbound-rtp") {
          info.rtp.push(`out ${s.kind} ${codecs[s.codecId] || "?"} packets=${s.packetsSent} ` +
            `frames_encoded=${s.framesEncoded ?? "-"} encoder=${s.encoderImplementation ?? "-"} ` +
            `plis=${s.pliCount ?? "-"}`);
        }
      });
    } catch (e) {
      info.stats_error = String(e);
    }
    out.peer_connections.push(info);
  }
  const video = document.querySelector("video");
  if (video) {
    out.video_element = { width: video.videoWidth, height: video.videoHeight,
                          current_time: video.currentTime, paused: video.paused,
                          ready_state: video.readyState };
  }
  out.status_text = document.getElementById("status")?.textContent ?? null;
  return out;
}
"""

# Decoded frames, codec and whether a picture is shown, of the page's own connection.
VIDEO_RECEIVED = """
async () => {
  const pc = window.zhixing && window.zhixing.pc;
  if (!pc) return null;
  const stats = await pc.getStats();
  let framesDecoded = 0, codec = null, codecId = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      framesDecoded = s.framesDecoded || 0; codecId = s.codecId;
    }
  });
  if (codecId) stats.forEach((s) => { if (s.id === codecId) codec = s.mimeType; });
  return { framesDecoded, codec, connection: pc.connectionState,
           videoWidth: document.querySelector("video")?.videoWidth || 0 };
}
"""


class BrowserPage:
    """One tab: its console output and its WebRTC diagnostics."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name
        self.console: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self._log(f"pageerror: {error}"))
        page.on("crash", lambda _: self._log("renderer crashed"))
        page.on("response", self._on_response)
        page.on("requestfailed", lambda request: self._log(
            f"request failed: {request.method} {request.url} {request.failure}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        source = message.location.get("url") or ""
        self._log(f"{message.type}: {message.text}" + (f" ({source})" if source else ""))

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self._log(f"HTTP {response.status}: {response.request.method} {response.url}")

    def _log(self, line: str) -> None:
        self.console.append(f"{time.strftime('%H:%M:%S')} {line}")

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        return await asyncio.wait_for(self.page.evaluate(expression, arg), EVALUATE_TIMEOUT)

    async def video_received(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = await self.evaluate(VIDEO_RECEIVED)
        return value

    async def describe(self) -> str:
        """The page's WebRTC state and console, for an assertion message."""
        try:
            details = json.dumps(await self.evaluate(DESCRIBE_PAGE), indent=1,
                                 ensure_ascii=False)
        except (PlaywrightError, TimeoutError) as exc:
            details = f"(could not inspect the page: {exc!r})"
        console = "\n  ".join(self.console[-CONSOLE_LINES:]) or "(nothing)"
        return (f"--- page {self.name} {self.page.url}\n{details}\n"
                f"console ({len(self.console)} lines, last {CONSOLE_LINES}):\n  {console}")


class Chromium:
    """Pages of one browser context, and waits whose failures explain themselves."""

    def __init__(self, browser: Browser, context: BrowserContext, artifact_prefix: str) -> None:
        self.browser = browser
        self.context = context
        self.artifact_prefix = artifact_prefix
        self.pages: list[BrowserPage] = []

    async def open(self, url: str, name: str) -> BrowserPage:
        page = BrowserPage(await self.context.new_page(), name)
        self.pages.append(page)
        await page.page.goto(url, wait_until="load")
        return page

    async def report(self) -> str:
        """All pages' WebRTC state and console output."""
        parts = [await page.describe() for page in self.pages]
        return "\n".join(parts) or "(no pages)"

    async def wait_for(
        self,
        what: str,
        probe: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        timeout: float,
    ) -> T:
        """Poll ``probe()`` until ``done(value)``; on timeout fail with a full report."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = await probe()
            except (PlaywrightError, TimeoutError) as exc:
                # A page may be navigating or briefly busy: keep polling.
                last = f"error {exc!r}"
            else:
                if done(value):
                    return value
                last = repr(value)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout:.0f} s (last value: {last})\n"
                    + await self.report()
                )
            await asyncio.sleep(POLL_INTERVAL)

    async def wait_for_js(self, page: BrowserPage, what: str, expression: str,
                          timeout: float) -> Any:
        """Wait until ``expression`` (a JS function or expression) is truthy on ``page``."""
        return await self.wait_for(f"{page.name}: {what}", lambda: page.evaluate(expression),
                                   bool, timeout)

    async def wait_for_frames(self, page: BrowserPage, count: int,
                              timeout: float) -> dict[str, Any]:
        """Wait until ``page`` has decoded more than ``count`` video frames."""
        value: dict[str, Any] = await self.wait_for(
            f"{page.name}: more than {count} video frames decoded",
            page.video_received,
            lambda v: v is not None and v["framesDecoded"] > count,
            timeout,
        )
        return value

    async def screenshots(self) -> None:
        """One PNG per open page in test-artifacts/ (best effort)."""
        ARTIFACTS.mkdir(exist_ok=True)
        for page in self.pages:
            if page.page.is_closed():
                continue
            path = ARTIFACTS / f"{self.artifact_prefix}-{page.name}.png"
            with contextlib.suppress(PlaywrightError):
                await page.page.screenshot(path=path, full_page=True, timeout=10_000)


def artifact_name(node_name: str) -> str:
    """A file-name-safe version of a pytest node name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name).strip("_")


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/install-system-deps "
                           "(Debian's chromium package), or deselect with -m 'not browser'")


def _trust(home: Path, ca: Path) -> None:
    """An NSS database under ``home`` (where Chromium on Linux looks for the
    user's certificates) that trusts ``ca`` for TLS servers."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True)
    for argv in (["certutil", "-N", "-d", f"sql:{database}", "--empty-password"],
                 ["certutil", "-A", "-d", f"sql:{database}", "-n", "zhixing-test-ca",
                  "-t", "C,,", "-i", str(ca)]):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()} (Debian's "
                               "libnss3-tools: scripts/install-system-deps)")


@contextlib.asynccontextmanager
async def open_chromium(artifact_prefix: str,
                        trusted_ca: Path | None = None) -> AsyncIterator[Chromium]:
    """Playwright, a headless Chromium and one context; all ended on exit.

    ``trusted_ca``: a CA certificate the browser trusts besides the system's,
    as an intranet's PCs trust its own CA (an NSS database in a HOME of the
    browser's own, which goes with it).

    Screenshots of the pages still open are saved on exit, pass or fail.
    """
    _require_chromium()
    async with contextlib.AsyncExitStack() as stack:
        playwright = await async_playwright().start()
        stack.push_async_callback(playwright.stop)
        env = None
        if trusted_ca is not None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chromium-home-")))
            _trust(home, trusted_ca)
            env = {**os.environ, "HOME": str(home)}
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, env=env)
        stack.push_async_callback(browser.close)
        context = await browser.new_context(viewport={"width": 800, "height": 640})
        stack.push_async_callback(context.close)
        await context.add_init_script(TRACK_PEER_CONNECTIONS)
        chromium = Chromium(browser, context, artifact_prefix)
        try:
            yield chromium
        finally:
            await chromium.screenshots()
            for page in chromium.pages:
                with contextlib.suppress(PlaywrightError):
                    await page.page.close()
