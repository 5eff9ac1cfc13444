"""我的学习 in Chromium at phone size: a learner opens its personal link, watches
a self-study video for 30 s (at 2×), closes the tab; the same link in a second
browser context resumes where the server says it stopped; the learner plays
to the end and sees the video ticked. A learner answers a survey and submits a
write-up with an attachment, and sees it returned with the comment. A revoked
link shows its notice page. The console's 学员 tab imports a roster (a bad row
named, nothing written), assigns it to a unit and hands out a link with its
QR code, which opens the learner's page.

The item is a real WebM served with Range; its progress is what the page's
player reported and the server merged, read back from the catalog.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.browser import ARTIFACTS, BrowserPage, Chromium
from tests.support.catalog import call, created
from tests.support.learning import learner_with_link, progress_rows, ready_item
from tests.support.pages import open_console
from tests.support.service import Service
from web.keys import SCHOOL

API = "/api/v1"
PHONE = {"width": 390, "height": 760}
UI_TIMEOUT = 20.0


async def test_a_learner_watches_resumes_on_another_device_and_completes(
        service: Service, chromium: Chromium) -> None:
    unit = created(await call(service, "POST", f"{API}/units", {"name": "基层治理专题"}))
    item = ready_item(service, 40, "案例：网格化管理")
    reply = await call(service, "PUT", f"{API}/learning/units/{unit['id']}/videos",
                       {"item_ids": [item["id"]]})
    assert reply.status == 200, reply.text
    _, token = await learner_with_link(service, "王芳", unit_id=unit["id"])
    url = f"{service.base}/learn/{token}"

    first = await chromium.open(url, "learner-phone")
    await first.page.set_viewport_size(PHONE)
    await chromium.wait_for_js(first, "my study with the unit and its video", """() =>
        window.zhixingLearn && window.zhixingLearn.ready
        && document.querySelector('[data-item-id]') !== null
        && document.body.innerText.includes('基层治理专题')""", UI_TIMEOUT)
    assert await first.evaluate("() => document.documentElement.scrollWidth <= 390"), \
        "the page is wider than the phone"
    await first.page.click(f"[data-item-id='{item['id']}']")
    await chromium.wait_for_js(first, "the player with the video's metadata",
                               "() => document.getElementById('video').readyState >= 1",
                               UI_TIMEOUT)
    await first.page.select_option("#speed", "2")
    await first.evaluate("() => document.getElementById('video').play()")
    await chromium.wait_for_js(first, "30 s of the video played",
                               "() => document.getElementById('video').currentTime >= 30",
                               UI_TIMEOUT + 15)
    rate = await first.evaluate("() => document.getElementById('video').playbackRate")
    assert rate == 2
    await first.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-player.png")
    await first.page.close(run_before_unload=True)  # pagehide: the last report goes

    async def kept() -> list[dict[str, object]]:
        return progress_rows(service)

    rows = await chromium.wait_for(
        "the server kept the position where the tab was closed", kept,
        lambda rows: bool(rows) and float(rows[0]["position"]) >= 29.5, UI_TIMEOUT)  # type: ignore[arg-type]
    position = float(rows[0]["position"])  # type: ignore[arg-type]
    assert position <= 34, rows
    assert 29 <= float(rows[0]["played"]) <= 34 and rows[0]["completed_at"] is None, rows  # type: ignore[arg-type]

    # Another device: a second browser context, nothing shared but the link.
    context = await chromium.browser.new_context(viewport=PHONE)
    try:
        second = BrowserPage(await context.new_page(), "learner-second-device")
        chromium.pages.append(second)
        await second.page.goto(url)
        await chromium.wait_for_js(second, "my study on the second device", """() =>
            window.zhixingLearn && window.zhixingLearn.ready""", UI_TIMEOUT)
        assert not await second.evaluate(
            f"() => document.querySelector(\"[data-item-id='{item['id']}'] .tick\")"
            ".textContent.trim()"), "ticked before it was complete"
        await second.page.click(f"[data-item-id='{item['id']}']")
        resumed = await chromium.wait_for_js(
            second, "resumed at the server's position",
            "() => window.zhixingLearn.resumedFrom", UI_TIMEOUT)
        assert abs(float(resumed) - position) < 0.5, (resumed, position)
        current = await second.evaluate("() => document.getElementById('video').currentTime")
        assert abs(current - position) < 1.5, (current, position)
        assert await second.evaluate("() => !document.getElementById('resumed').hidden")
        await second.page.select_option("#speed", "2")
        await second.evaluate("() => document.getElementById('video').play()")
        await chromium.wait_for_js(second, "played to the end and reported complete",
                                   "() => window.zhixingLearn.lastReport && "
                                   "window.zhixingLearn.lastReport.complete", UI_TIMEOUT + 10)
        await second.page.click("#back")
        await chromium.wait_for_js(second, "the video ticked in my study", f"""() =>
            window.zhixingLearn.ready && document.querySelector(
              "[data-item-id='{item['id']}'] .tick")?.textContent === '✓'""", UI_TIMEOUT)
        await second.page.screenshot(
            path=ARTIFACTS / f"{chromium.artifact_prefix}-ticked.png", full_page=True)
        row = progress_rows(service)[0]
        assert row["completed_at"] is not None and float(row["played"]) >= 36, row
    finally:
        await context.close()


async def test_a_revoked_link_shows_its_notice(service: Service, chromium: Chromium) -> None:
    learner, token = await learner_with_link(service, "赵强")
    assert (await call(service, "DELETE", f"{API}/learners/{learner['id']}/link")).status == 204
    page: BrowserPage = await chromium.open(f"{service.base}/learn/{token}", "revoked")
    await chromium.wait_for_js(page, "the notice that the link no longer works",
                               "() => document.body.innerText.includes('学习链接已停用')",
                               UI_TIMEOUT)
    assert await page.evaluate("() => !document.querySelector('script')")


async def test_a_learner_answers_a_survey_and_submits_a_writeup_on_the_phone(
        service: Service, chromium: Chromium) -> None:
    unit = created(await call(service, "POST", f"{API}/units", {"name": "乡村振兴专题"}))
    survey = created(await call(service, "POST", f"{API}/learning/surveys", {
        "title": "培训需求", "unit_id": unit["id"], "questions": [
            {"kind": "single", "text": "最需要的内容", "choices": ["产业", "人才"]},
            {"kind": "multiple", "text": "学习方式", "choices": ["授课", "视频", "读书"]},
            {"kind": "text", "text": "其他"}]}))
    learner, token = await learner_with_link(service, "刘洋", unit_id=unit["id"])
    await call(service, "POST", f"{API}/learning/surveys/{survey['id']}/recipients",
               {"learner_ids": [learner["id"]]})
    page = await chromium.open(f"{service.base}/learn/{token}", "learner-forms")
    await page.page.set_viewport_size(PHONE)
    form = f"form[data-survey-id='{survey['id']}']"
    await chromium.wait_for_js(page, "the survey", f"() => !!document.querySelector(\"{form}\")",
                               UI_TIMEOUT)
    await page.page.check(f"{form} input[name='s{survey['id']}q0'][value='1']")
    await page.page.check(f"{form} input[name='s{survey['id']}q1'][value='0']")
    await page.page.check(f"{form} input[name='s{survey['id']}q1'][value='2']")
    await page.page.fill(f"{form} textarea", "多讲本地案例")
    await page.page.click(f"{form} button[type=submit]")

    async def probe() -> Any:
        rows = service.app[SCHOOL].db.all("SELECT answers FROM survey_answers")
        return rows[0]["answers"] if rows else None

    kept = await chromium.wait_for("the answers kept", probe, bool, UI_TIMEOUT)
    assert json.loads(kept) == [1, [0, 2], "多讲本地案例"]
    await chromium.wait_for_js(page, "the survey shows it was submitted",
                               "() => document.body.innerText.includes('问卷关闭前可以修改')",
                               UI_TIMEOUT)

    box = f"[data-writeup-unit='{unit['id']}']"
    await page.page.fill(f"{box} textarea", "用网格化的办法解决了村里的矛盾纠纷。")
    await page.page.set_input_files(f"{box} input[type=file]", files=[{
        "name": "成果.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4\n%%EOF\n"}])
    await page.page.click(f"{box} button.submit")
    await chromium.wait_for_js(page, "the write-up waits for review", f"""() =>
        document.querySelector("{box} .state-submitted") !== null""", UI_TIMEOUT)
    row = service.app[SCHOOL].db.one("SELECT * FROM writeups")
    assert row is not None and row["attachment_type"] == "pdf"
    assert row["text"] == "用网格化的办法解决了村里的矛盾纠纷。"
    reply = await call(service, "POST", f"{API}/learning/writeups/{row['id']}/review",
                       {"decision": "return", "comment": "请写明成效"})
    assert reply.status == 200
    await page.page.reload()
    await chromium.wait_for_js(page, "the returned write-up with its comment", f"""() =>
        document.querySelector("{box} .state-returned") !== null
        && document.querySelector("{box} .comment")?.textContent === '请写明成效'""", UI_TIMEOUT)
    assert await page.evaluate("() => document.documentElement.scrollWidth <= 390")
    await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-forms.png",
                               full_page=True)


async def test_the_console_imports_learners_assigns_them_and_hands_out_a_link(
        admin_service: Service, chromium: Chromium, tmp_path: Path) -> None:
    service = admin_service
    created(await call(service, "POST", f"{API}/org", {"name": "北仑区", "parent_id": 1}))
    unit = created(await call(service, "POST", f"{API}/units", {"name": "基层治理专题"}))
    page = await open_console(chromium, service.base, "console-learners")
    await page.page.click("#tab-learners")
    roster = tmp_path / "学员.csv"
    roster.write_text("name,org_path,site,position,phone\r\n张三,北仑区,,科员,\r\n"
                      "李四,不存在区,,,\r\n", encoding="utf-8")
    await page.page.set_input_files("#learners-file", str(roster))
    await page.page.click("#learners-import button[type=submit]")
    await chromium.wait_for_js(page, "the bad row named", """() =>
        document.getElementById('learners-import-result').textContent.includes('row 2')""",
                               UI_TIMEOUT)
    assert service.app[SCHOOL].db.all("SELECT * FROM learners") == []
    roster.write_text("name,org_path,site,position,phone\r\n张三,北仑区,,科员,\r\n"
                      "李四,,,,\r\n", encoding="utf-8")
    await page.page.set_input_files("#learners-file", str(roster))
    await page.page.click("#learners-import button[type=submit]")
    await chromium.wait_for_js(page, "two learners listed",
                               "() => document.querySelectorAll('#learners-table tbody tr')"
                               ".length === 2", UI_TIMEOUT)
    await page.page.select_option("#learners-unit", str(unit["id"]))
    await page.page.click("#learners-assign")
    await chromium.wait_for_js(page, "both in the unit", """() =>
        [...document.querySelectorAll('#learners-table tbody tr')]
          .every((row) => row.textContent.includes('基层治理专题'))""", UI_TIMEOUT)
    first = await page.evaluate(
        "() => document.querySelector('#learners-table tbody tr').dataset.id")
    await page.page.click(f"#learners-table tr[data-id='{first}'] button")
    await chromium.wait_for_js(page, "the link and its QR code", """() =>
        document.getElementById('learner-link-url').value.includes('/learn/')
        && document.getElementById('learner-link-qr').naturalWidth > 0""", UI_TIMEOUT)
    url = await page.evaluate("() => document.getElementById('learner-link-url').value")
    learner_page = await chromium.open(url, "learner-from-console")
    await chromium.wait_for_js(learner_page, "the learner's unit", """() =>
        window.zhixingLearn && window.zhixingLearn.ready
        && document.body.innerText.includes('基层治理专题')""", UI_TIMEOUT)


async def test_an_admin_returns_and_accepts_a_writeup_in_the_console(
        admin_service: Service, chromium: Chromium) -> None:
    service = admin_service
    unit = created(await call(service, "POST", f"{API}/units", {"name": "数字政府专题"}))
    _, token = await learner_with_link(service, "陈静", unit_id=unit["id"])
    reply = await call(service, "PUT", f"/learn/{token}/writeups/{unit['id']}",
                       {"text": "把一网通办用到了窗口服务。"}, token=None)
    assert reply.status == 200, reply.text
    page = await open_console(chromium, service.base, "console-writeups")
    await page.page.click("#tab-learners")
    row = "#writeups-table tbody tr"
    await chromium.wait_for_js(page, "the write-up waiting", f"""() =>
        document.querySelector("{row}")?.textContent.includes('一网通办')""", UI_TIMEOUT)
    await page.page.fill(f"{row} input.comment", "请补充办件数据")
    await page.page.click(f"{row} button.return")
    await chromium.wait_for_js(page, "no write-up waiting any more",
                               "() => !document.getElementById('writeups-empty').hidden",
                               UI_TIMEOUT)
    study = (await call(service, "GET", f"/learn/{token}/study", token=None)).json()
    assert study["units"][0]["writeup"]["state"] == "returned"
    assert study["units"][0]["writeup"]["comment"] == "请补充办件数据"
    await call(service, "PUT", f"/learn/{token}/writeups/{unit['id']}",
               {"text": "把一网通办用到了窗口服务，办件时间缩短一半。"}, token=None)
    await page.page.reload()
    await page.page.click("#tab-learners")
    await chromium.wait_for_js(page, "the write-up waiting again", f"""() =>
        document.querySelector("{row}")?.textContent.includes('缩短一半')""", UI_TIMEOUT)
    await page.page.click(f"{row} button.accept")
    await chromium.wait_for_js(page, "accepted",
                               "() => !document.getElementById('writeups-empty').hidden",
                               UI_TIMEOUT)
    study = (await call(service, "GET", f"/learn/{token}/study", token=None)).json()
    assert study["units"][0]["writeup"]["state"] == "accepted"
