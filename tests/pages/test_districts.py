"""A district runs its own training, in Chromium: 北仑区's admin logs in, sees the
console its role may use, imports its town sites, schedules a replay of a city
lecture for them; its rooms watch; its report shows them as extension training
(延伸培训) while the city's report shows the city's training and the district's
side by side."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Dialog

from classroom.db import ROOT_NODE
from tests.pages.test_console_replay import add_item
from tests.support.browser import BrowserPage, Chromium
from tests.support.pages import open_console
from tests.support.service import ADMIN_TOKEN, Service
from tests.support.synthetic import make_lecture
from web.keys import ACCOUNTS

API = "/api/v1"
UI_TIMEOUT = 15.0
FRAMES_TIMEOUT = 30.0
MIN_FRAMES = 20
PASSWORD = "beilun-district-pw"
SITES_CSV = "name,org_path\n新碶街道分课堂,北仑区 / 新碶街道\n大碶街道分课堂,北仑区 / 大碶街道\n"


async def as_city(service: Service, method: str, path: str, body: Any = None) -> Any:
    async with service.http.request(method, f"{service.base}{API}{path}", json=body,
                                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as reply:
        assert reply.status in (200, 201, 204), (path, reply.status, await reply.text())
        return await reply.json() if reply.status != 204 else None


async def city_training_with_rooms(service: Service) -> None:
    """Earlier today the city's own lecture: a room of each district attended."""
    await as_city(service, "POST", "/org", {"name": "鄞州区", "parent_id": ROOT_NODE})
    now = time.time()
    session = await as_city(service, "POST", "/sessions", {
        "title": "市级专题第一讲", "scheduled_start": now - 2 * 3600,
        "scheduled_end": now - 3600})
    db = service.app[ACCOUNTS].db
    for name, path, count in (("北仑区委党校", "北仑区", 50), ("鄞州区委党校", "鄞州区", 60)):
        site = await as_city(service, "POST", "/sites", {"name": name, "org_path": path})
        invitation = await as_city(service, "POST", f"/sessions/{session['id']}/invitations",
                                   {"site_id": site["id"]})
        db.execute("INSERT INTO attendance_intervals (session_id, site_id, invitation_id, "
                   "resource_id, connected_at, disconnected_at, ended_by) "
                   "VALUES (?, ?, ?, ?, ?, ?, 'left')",
                   (session["id"], site["id"], invitation["id"], f"r-{name}", now - 2 * 3600,
                    now - 3600))
        db.execute("INSERT INTO headcount_reports (session_id, site_id, invitation_id, count, "
                   "reported_at) VALUES (?, ?, ?, ?, ?)",
                   (session["id"], site["id"], invitation["id"], count, now - 1.5 * 3600))


async def log_in(chromium: Chromium, base: str, username: str) -> BrowserPage:
    page = await chromium.open(f"{base}/login", f"console-{username}")
    await page.page.fill("[name=username]", username)
    await page.page.fill("[name=password]", PASSWORD)
    await page.page.click("form[action='/login'] button")
    await chromium.wait_for_js(page, "the console is ready",
                               "() => location.pathname === '/admin'"
                               " && document.body.dataset.ready === 'true'", UI_TIMEOUT)
    return page


VISIBLE_TABS = """() => [...document.querySelectorAll('#tabs [data-tab], #tabs a')]
  .filter((node) => node.checkVisibility())
  .map((node) => node.dataset.tab || node.getAttribute('href'))"""


@pytest.mark.browser
@pytest.mark.webrtc
async def test_a_district_replays_a_city_lecture_for_its_towns_and_counts_it_apart(
    admin_service: Service, chromium: Chromium, tmp_path: Path
) -> None:
    service = admin_service
    base = service.base
    lecture = tmp_path / "lecture.mp4"
    make_lecture(str(lecture), 20.0)
    item = add_item(service, lecture, "市级专题：数字经济", "李研究员")  # the city's
    beilun = await as_city(service, "POST", "/org", {"name": "北仑区", "parent_id": ROOT_NODE})
    await as_city(service, "POST", "/accounts", {
        "username": "beilun", "role": "district_admin", "org_node_id": beilun["id"],
        "password": PASSWORD})
    await city_training_with_rooms(service)

    page = await log_in(chromium, base, "beilun")

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.page.on("dialog", accept)
    # The console shows the district admin what it may use, in Chinese.
    assert await page.evaluate(VISIBLE_TABS) == ["sessions", "courses", "sites", "archive",
                                                 "learners", "access", "/admin/reports"]
    who = await page.evaluate("() => document.getElementById('who').textContent")
    assert "beilun" in who and "区县管理员" in who and "北仑区" in who, who
    assert not await page.evaluate("() => document.getElementById('audit').checkVisibility()")
    # The city's session is there, read-only: no edit, no recording, no links.
    rows = await page.evaluate("""() => [...document.querySelectorAll('#sessions-table tbody tr')]
      .map((tr) => [tr.children[0].textContent, tr.children[1].textContent,
                    tr.classList.contains('readonly')])""")
    assert rows == [["市级专题第一讲", "市级培训", True]], rows

    # Its town sites, from a CSV; a row of another district's imports nothing.
    await page.page.click("#tab-sites")
    other = "首南街道分课堂,鄞州区 / 首南街道\n"
    await page.page.fill("#sites-import [name=text]", SITES_CSV + other)
    await page.page.click("#sites-import button[type=submit]")
    await chromium.wait_for_js(page, "the refusal", "() => document.querySelector("
                               "'#sites-import .form-error').textContent !== ''", UI_TIMEOUT)
    await page.page.fill("#sites-import [name=text]", SITES_CSV)
    await page.page.click("#sites-import button[type=submit]")
    await chromium.wait_for_js(page, "the district's three sites", "() => document"
                               ".querySelectorAll('#sites-table tbody tr').length === 3",
                               UI_TIMEOUT)

    # A replay of the city's lecture for them (its 周二夜学).
    await page.page.click("#tab-sessions")
    await page.page.check("#sessions-form [name=source][value=replay]")
    await page.page.select_option("#sessions-form [name=replay_item_id]", item["id"])
    await page.page.fill("#sessions-form [name=title]", "周二夜学：数字经济")
    await page.page.click("#sessions-form button[type=submit]")
    await chromium.wait_for_js(page, "the towns offered for invitation",
                               "() => !document.querySelector('#session-detail').hidden"
                               " && document.querySelectorAll('#invite-sites input').length"
                               " === 3", UI_TIMEOUT)
    for box in await page.page.query_selector_all("#invite-sites input[type=checkbox]"):
        label = await box.evaluate("(b) => b.parentElement.textContent")
        if "街道" in label:
            await box.check()
    await page.page.click("#invite-button")
    await chromium.wait_for_js(page, "two invitations with links", """() => {
      const links = [...document.querySelectorAll('#invitations input.link')];
      return links.length === 2 && links.every((l) => l.value.includes('/join/'));
    }""", UI_TIMEOUT)
    links = await page.evaluate(
        "() => [...document.querySelectorAll('#invitations input.link')].map((i) => i.value)")
    sessions = await as_city(service, "GET", "/sessions")
    replay = next(s for s in sessions["sessions"] if s["title"] == "周二夜学：数字经济")
    assert (replay["organizer"], replay["organizer_name"]) == ("district", "北仑区")

    # Its rooms open their links and watch the lecture.
    rooms = [await chromium.open(link, f"room-{n}") for n, link in enumerate(links)]
    for room in rooms:
        await chromium.wait_for_js(room, "connected while waiting",
                                   "() => window.zhixing.pc?.connectionState === 'connected'",
                                   FRAMES_TIMEOUT)
    await chromium.wait_for_js(page, "the replay's start button",
                               "() => document.querySelector("
                               "'#sessions-table button.replay-start')?.checkVisibility()",
                               UI_TIMEOUT)
    await page.page.click("#sessions-table tr:not(.readonly) button.replay-start")
    for room in rooms:
        await chromium.wait_for_frames(room, MIN_FRAMES, FRAMES_TIMEOUT)
    for link, count in zip(links, (25, 18), strict=True):
        token = link.rsplit("/", 1)[1]
        async with service.http.post(f"{base}{API}/room/headcount", json={"count": count},
                                     headers={"Authorization": f"Bearer {token}"}) as reply:
            assert reply.status == 204, await reply.text()
    await as_city(service, "DELETE", f"/sessions/{replay['id']}")  # the evening is over

    # The district's report: its own rooms, its extension training apart.
    today = dt.date.today()
    days = f"from={today - dt.timedelta(days=1)}&to={today + dt.timedelta(days=1)}"
    reports = await chromium.open(f"{base}/admin/reports?tab=organizer&{days}", "reports-beilun")
    await chromium.wait_for_js(reports, "the report by organizer",
                               "() => !document.getElementById('organizer-result').hidden",
                               UI_TIMEOUT)
    totals = await reports.evaluate("""() => [...document.querySelectorAll(
      '#organizer-table tbody tr.organizer')].map((tr) => [tr.children[0].textContent,
      tr.children[6].textContent])""")
    assert totals == [["市级培训", "50"], ["北仑区 延伸培训", "43"]], totals
    table = await reports.evaluate("() => document.getElementById('organizer-table').textContent")
    assert "鄞州" not in table
    # The city's report shows both: its own training in every district, and 北仑区's.
    city = await as_city(service, "GET", f"/reports/organizers?{days}")
    assert [(o["training"], o["name"], o["person_times"]) for o in city["organizers"]] == [
        ("city", "全市", 110), ("extension", "北仑区", 43)]
    # And the audit log has the district's changes, with who made them.
    audit = await as_city(service, "GET", "/audit")
    made = {(e["username"], e["action"]) for e in audit["entries"]}
    assert {("beilun", "login"), ("beilun", "create /api/v1/sites/import"),
            ("beilun", "create /api/v1/sessions"),
            ("beilun", "create /api/v1/sessions/{session_id}/invitations")} <= made, made


@pytest.mark.browser
async def test_the_console_of_the_city_a_presenter_and_an_auditor(
    admin_service: Service, chromium: Chromium
) -> None:
    service = admin_service
    base = service.base
    city = await open_console(chromium, base, "console-city")

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    city.page.on("dialog", accept)
    assert await city.evaluate(VISIBLE_TABS) == [
        "sessions", "units", "courses", "sites", "archive", "links", "packages", "learners",
        "access", "/admin/reports"]
    await city.page.click("#tab-access")
    # A node from the form, then a CSV whose rows are each other's parents: refused, by row.
    await city.page.fill("#org-form [name=name]", "北仑区")
    await city.page.click("#org-form button[type=submit]")
    await chromium.wait_for_js(city, "the new node", "() => [...document.querySelectorAll("
                               "'#org-table tbody td')].some((td) => td.textContent === '北仑区')",
                               UI_TIMEOUT)
    await city.page.fill("#org-import [name=text]",
                         "code,name,parent,kind\na,甲镇,b,town\nb,乙镇,a,town\n")
    await city.page.click("#org-import button[type=submit]")
    await chromium.wait_for_js(city, "the cycle named per row", "() => document.querySelector("
                               "'#org-import .row-errors').textContent.includes('循环')",
                               UI_TIMEOUT)
    # A presenter account under 北仑区: its password is shown once.
    await city.page.fill("#accounts-form [name=username]", "lecturer")
    await city.page.select_option("#accounts-form [name=role]", "presenter")
    await city.page.select_option("#accounts-form [name=org_node_id]", label="北仑区")
    await city.page.click("#accounts-form button[type=submit]")
    await chromium.wait_for_js(city, "the generated password",
                               "() => !document.getElementById('new-password').hidden",
                               UI_TIMEOUT)
    shown = await city.evaluate("() => document.getElementById('new-password').textContent")
    password = shown.split("：")[1].split("（")[0]
    accounts = (await as_city(service, "GET", "/accounts"))["accounts"]
    presenter = next(a for a in accounts if a["username"] == "lecturer")
    assert presenter["org_path"] == "北仑区"
    session = await as_city(service, "POST", "/sessions",
                            {"title": "第一讲", "presenter_id": presenter["id"]})
    await as_city(service, "POST", "/sessions", {"title": "第二讲"})
    await as_city(service, "POST", "/accounts", {"username": "auditor", "role": "auditor",
                                                 "password": PASSWORD})
    # The audit log, for the city: the account just made is in it.
    await city.page.reload()
    await chromium.wait_for_js(city, "the audit log", "() => [...document.querySelectorAll("
                               "'#audit-table tbody td')].some((td) => td.textContent"
                               " === 'lecturer')", UI_TIMEOUT)

    # The presenter (logging in replaces the city admin's login in this browser):
    # its own session's presenter page, nothing else.
    page = await chromium.open(f"{base}/login", "console-presenter")
    await page.page.fill("[name=username]", "lecturer")
    await page.page.fill("[name=password]", password)
    await page.page.click("form[action='/login'] button")
    await chromium.wait_for_js(page, "the console is ready", "() => location.pathname === "
                               "'/admin' && document.body.dataset.ready === 'true'", UI_TIMEOUT)
    assert await page.evaluate(VISIBLE_TABS) == ["sessions"]
    rows = await page.evaluate("""() => [...document.querySelectorAll('#sessions-table tbody tr')]
      .map((tr) => [tr.children[0].textContent, tr.querySelector('a.present')?.href])""")
    assert rows == [["第一讲", session["presenter_url"]]], rows
    assert not await page.evaluate(
        "() => document.getElementById('sessions-form').checkVisibility()")

    # The auditor reads: sessions, the archive, reports; no form, no links.
    auditor = await log_in(chromium, base, "auditor")
    assert await auditor.evaluate(VISIBLE_TABS) == ["sessions", "archive", "learners",
                                                    "/admin/reports"]
    assert await auditor.evaluate(
        "() => document.querySelectorAll('#sessions-table tbody tr').length") == 2
    assert not await auditor.evaluate(
        "() => document.getElementById('sessions-form').checkVisibility()")
