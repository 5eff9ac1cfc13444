"""The admin console (管理后台): /admin, the invitation QR codes, and one Chromium walk-through."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import BrowserPage, Chromium
from tests.support.pages import log_in, open_console
from tests.support.service import Service
from web.pages.console import qr_svg

UI_TIMEOUT = 15.0


async def post(service: Service, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with service.http.post(f"{service.base}/api/v1{path}", json=body,
                                 headers=service.admin) as response:
        assert response.status == 201, await response.text()
        reply: dict[str, Any] = await response.json()
        return reply


async def get(service: Service, path: str,
              headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    async with service.http.get(f"{service.base}{path}", headers=headers,
                                allow_redirects=False) as response:
        return response.status, response.headers.get("Location", response.content_type), \
            await response.read()


async def test_admin_without_login_goes_to_the_login_page(admin_service: Service) -> None:
    status, location, _ = await get(admin_service, "/admin")
    assert (status, location) == (303, "/login")
    # A bearer token is for the API, not for the page.
    status, location, _ = await get(admin_service, "/admin", admin_service.admin)
    assert (status, location) == (303, "/login")
    admin_service.http.cookie_jar.update_cookies({"zhixing_session": "forged"})
    status, location, _ = await get(admin_service, "/admin")
    assert (status, location) == (303, "/login")


async def test_admin_with_login_serves_the_console(admin_service: Service) -> None:
    status, content_type, _ = await get(admin_service, "/")
    assert (status, content_type) == (200, "text/html")  # the start page as before
    await log_in(admin_service)
    status, content_type, body = await get(admin_service, "/admin")
    assert (status, content_type) == (200, "text/html")
    text = body.decode()
    assert "/static/console.js" in text
    assert "http://" not in text and "https://" not in text  # nothing from outside
    status, location, _ = await get(admin_service, "/")
    assert (status, location) == (303, "/admin")


async def make_invitation(service: Service) -> dict[str, Any]:
    session = await service.create_session()
    site = await post(service, "/sites", {"name": "新碶街道分课堂", "org_path": "北仑区"})
    return await post(service, f"/sessions/{session['id']}/invitations", {"site_id": site["id"]})


async def test_the_qr_code_is_an_svg_of_the_invitation_link(admin_service: Service) -> None:
    invitation = await make_invitation(admin_service)
    path = f"/api/v1/invitations/{invitation['id']}/qr.svg"
    status, content_type, body = await get(admin_service, path, admin_service.admin)
    assert (status, content_type) == (200, "image/svg+xml")
    assert body.lstrip().startswith(b"<?xml") and b"<svg" in body
    assert body == qr_svg(invitation["url"])
    assert body != qr_svg(invitation["url"] + "x")
    # With the login cookie (as the console's <img> loads it) too.
    await log_in(admin_service)
    status, content_type, cookie_body = await get(admin_service, path)
    assert (status, cookie_body) == (200, body)


async def test_the_qr_code_is_for_admins_only(service: Service) -> None:
    invitation = await make_invitation(service)
    path = f"/api/v1/invitations/{invitation['id']}/qr.svg"
    for headers in (None, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Bearer {invitation['token']}"}):
        status, content_type, body = await get(service, path, headers)
        assert (status, content_type) == (401, "application/json"), body
    status, content_type, _ = await get(service, "/api/v1/invitations/nope/qr.svg",
                                        service.admin)
    assert (status, content_type) == (404, "application/json")


# --------------------------------------------------------------------------
# Chromium


async def wait_js(chromium: Chromium, page: BrowserPage, what: str, expression: str) -> Any:
    return await chromium.wait_for_js(page, what, expression, UI_TIMEOUT)


async def submit(chromium: Chromium, page: BrowserPage, kind: str, values: dict[str, str],
                 rows: int) -> None:
    await page.page.click(f"#tab-{kind}")
    for name, value in values.items():
        selector = f"#{kind}-form [name={name}]"
        if await page.evaluate(f"() => document.querySelector('{selector}').tagName") == "SELECT":
            await page.page.select_option(selector, label=value)
        else:
            await page.page.fill(selector, value)
    await page.page.click(f"#{kind}-form button[type=submit]")
    await wait_js(chromium, page, f"{rows} row(s) in the {kind} list",
                  f"() => document.querySelectorAll('#{kind}-table tbody tr').length === {rows}")


QR_IMAGES_LOADED = """() => {
  const images = [...document.querySelectorAll('#invitations tbody tr img.qr')];
  return images.length === 2 && images.every((img) => img.complete && img.naturalWidth > 0);
}"""


@pytest.mark.browser
async def test_an_admin_sets_up_a_session_in_the_console(
    admin_service: Service, chromium: Chromium
) -> None:
    base = admin_service.base
    page = await open_console(chromium, base, "console-zh-CN")
    assert await page.evaluate("() => document.querySelector('#tab-units').textContent") == "专题"

    # A 422's field error is shown next to the field, in the page's language.
    await page.page.click("#tab-units")
    await page.page.click("#units-form button[type=submit]")
    await wait_js(chromium, page, "the field error next to the name",
                  "() => document.querySelector('#units-form .field-error[data-field=name]')"
                  ".textContent === '必填'")
    await submit(chromium, page, "units", {"name": "党的创新理论"}, rows=1)
    await submit(chromium, page, "courses", {"title": "新质生产力", "lecturer": "王教授",
                                             "unit_id": "党的创新理论"}, rows=1)
    await submit(chromium, page, "sites", {"name": "新碶街道分课堂", "org_path": "北仑区"}, rows=1)
    await submit(chromium, page, "sites", {"name": "大碶街道分课堂", "org_path": "北仑区"}, rows=2)
    # A CSV import with a bad row imports nothing and names the row.
    await page.page.fill("#sites-import [name=text]",
                         "name,org_path\n霞浦街道分课堂,北仑区\n新碶街道分课堂,北仑区\n")
    await page.page.click("#sites-import button[type=submit]")
    await wait_js(chromium, page, "the row error of the CSV import",
                  "() => document.querySelector('#sites-import .row-errors').textContent"
                  ".includes('第 2 行')")
    assert await page.evaluate("() => document.querySelectorAll('#sites-table tbody tr')"
                               ".length") == 2
    await submit(chromium, page, "sessions", {
        "title": "第一讲（第一批）", "course_id": "新质生产力", "batch": "第一批",
        "scheduled_start": "2030-06-01T09:00", "scheduled_end": "2030-06-01T11:30",
    }, rows=1)

    await wait_js(chromium, page, "both sites offered for invitation",
                  "() => !document.querySelector('#session-detail').hidden"
                  " && document.querySelectorAll('#invite-sites input').length === 2")
    for box in await page.page.query_selector_all("#invite-sites input[type=checkbox]"):
        await box.check()
    await page.page.click("#invite-button")
    await wait_js(chromium, page, "two invitation rows with QR codes", QR_IMAGES_LOADED)

    sessions = (await (await admin_service.http.get(
        f"{base}/api/v1/sessions", headers=admin_service.admin)).json())["sessions"]
    assert len(sessions) == 1
    session = sessions[0]
    assert (session["course_title"], session["batch"]) == ("新质生产力", "第一批")
    assert session["scheduled_end"] - session["scheduled_start"] == 2.5 * 3600
    links = await page.evaluate(
        "() => [...document.querySelectorAll('#invitations input.link')].map((i) => i.value)")
    assert len(links) == 2 and all(link.startswith(f"{base}/join/") for link in links), links
    # The main classroom's link is handed out from here too.
    presenter = await page.evaluate(
        "() => [document.getElementById('presenter-link').value,"
        " document.getElementById('presenter-open').getAttribute('href'),"
        " document.getElementById('presenter-row').hidden]")
    assert presenter == [session["presenter_url"], session["presenter_url"], False], presenter
    assert presenter[0].startswith(f"{base}/present/{session['id']}#token=")

    english = await chromium.open(f"{base}/admin?lang=en", "console-en")
    await wait_js(chromium, english, "the English console is ready",
                  "() => document.body.dataset.ready === 'true'")
    assert await english.evaluate("() => document.querySelector('#tab-units').textContent") \
        == "Units"
    await english.page.click("#sessions-table tbody tr td.actions button")
    await wait_js(chromium, english, "two invitation rows with QR codes", QR_IMAGES_LOADED)
