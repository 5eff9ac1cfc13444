"""What the page tests share: plain HTTP calls, an invitation by session id,
logging in (by HTTP, or in Chromium through the login page), reading a page."""

from __future__ import annotations

from typing import Any

from tests.support.browser import BrowserPage, Chromium
from tests.support.service import ADMIN_PASSWORD, ADMIN_TOKEN, Service

API = "/api/v1"
PASSWORD = ADMIN_PASSWORD


async def request(service: Service, method: str, path: str, token: str | None = ADMIN_TOKEN,
                  json: Any = None) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with service.http.request(method, service.base + path, headers=headers,
                                    json=json) as response:
        text = await response.text()
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body, text


async def invite(service: Service, session_id: str, name: str = "新碶街道分课堂",
                 org_path: str = "北仑区 / 新碶街道") -> dict[str, Any]:
    status, site, text = await request(service, "POST", f"{API}/sites",
                                       json={"name": name, "org_path": org_path})
    assert status == 201, text
    status, invitation, text = await request(
        service, "POST", f"{API}/sessions/{session_id}/invitations", json={"site_id": site["id"]})
    assert status == 201, text
    return dict(invitation)


async def log_in(service: Service) -> None:
    async with service.http.post(f"{service.base}/login", allow_redirects=False,
                                 data={"username": "admin", "password": PASSWORD}) as response:
        assert response.status == 303, await response.text()


async def open_console(chromium: Chromium, base: str, name: str) -> BrowserPage:
    """A Chromium page logged in as the admin through the login page, on the
    console once it is ready."""
    page = await chromium.open(f"{base}/login", name)
    await page.page.fill("[name=username]", "admin")
    await page.page.fill("[name=password]", PASSWORD)
    await page.page.click("form[action='/login'] button")
    await chromium.wait_for_js(page, "the console is ready",
                               "() => location.pathname === '/admin'"
                               " && document.body.dataset.ready === 'true'", 15)
    return page


# Video frames decoded on the stage pair (the second video transceiver) of a
# page's connection; -1 while there is none.
STAGE_FRAMES = """
async (name) => {
  const pc = window.zhixing && window.zhixing[name];
  if (!pc) return -1;
  const videos = pc.getTransceivers().filter((t) => t.receiver.track.kind === "video");
  if (videos.length < 2) return -1;
  let frames = 0;
  (await videos[1].receiver.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
  });
  return frames;
}
"""


async def stage_frames(page: BrowserPage, name: str = "pc") -> int:
    value: int = await page.evaluate(STAGE_FRAMES, name)
    return value


async def text(page: BrowserPage, selector: str) -> str:
    value: str = await page.evaluate(
        "(s) => document.querySelector(s)?.textContent ?? ''", selector)
    return value
