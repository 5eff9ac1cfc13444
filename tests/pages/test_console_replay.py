"""Replay sessions (重播) in the admin console, in Chromium.

An admin picks 重播录像 and a ready archive item in the session form (the
picker filters a long list), sees the session waiting with its start time,
starts it now, watches the position advance with the console's refresh,
pauses, seeks (validated in the page) and resumes. A stale choice (an item
that is no longer ready when the form is sent) gets the server's field error
next to the picker, in Chinese. The items hold real lecture files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Dialog

from recordings.finish import describe
from tests.support.browser import ARTIFACTS, BrowserPage, Chromium
from tests.support.pages import open_console
from tests.support.service import Service
from tests.support.synthetic import make_lecture
from web.keys import ARCHIVE

UI_TIMEOUT = 15.0
LECTURE_SECONDS = 24.0
FILLERS = 6  # with the two items below: a list long enough for the picker's filter
FORM = "#sessions-form"


@pytest.fixture(scope="module")
def lectures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("console-lectures")
    made = {"main": folder / "main.mp4", "short": folder / "short.mp4"}
    make_lecture(str(made["main"]), LECTURE_SECONDS)
    make_lecture(str(made["short"]), 2.0)
    return made


def add_item(service: Service, source: Path, title: str, lecturer: str = "",
             recorded_at: float = 1_760_000_000.0) -> dict[str, Any]:
    """A ready archive item holding ``source`` (as finishing or import leaves one)."""
    archive = service.app[ARCHIVE]
    item = archive.create_item(title=title, recorded_at=recorded_at, origin="import",
                               state="finishing")
    folder = archive.recordings.item_dir(item["id"])
    folder.mkdir(parents=True)
    (folder / "lecture.mp4").write_bytes(source.read_bytes())
    archive.record_result(item["id"], describe(folder, "lecture.mp4"))
    if lecturer:
        archive.update_item(item["id"], {"lecturer": lecturer})
    found: dict[str, Any] = archive.item(item["id"])
    assert found["state"] == "ready", found
    return found


async def api(service: Service, path: str) -> Any:
    async with service.http.get(f"{service.base}/api/v1{path}",
                                headers=service.admin) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_js(chromium: Chromium, page: BrowserPage, what: str, expression: str,
                  timeout: float = UI_TIMEOUT) -> Any:
    return await chromium.wait_for_js(page, what, expression, timeout)


def seconds(clock: str) -> int:
    """A console clock ("01:02" or "1:02:03") in seconds."""
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    return total


@pytest.mark.browser
@pytest.mark.webrtc
async def test_an_admin_schedules_and_drives_a_replay_in_the_console(
    admin_service: Service, chromium: Chromium, lectures: dict[str, Path]
) -> None:
    service = admin_service
    item = add_item(service, lectures["main"], "第三讲：数字经济", "李研究员",
                    recorded_at=1_760_100_000.0)
    stale = add_item(service, lectures["short"], "第四讲：乡村振兴", "赵教授")
    for number in range(FILLERS):
        add_item(service, lectures["short"], f"往期讲座 {number + 1}", "王教授")

    page = await open_console(chromium, service.base, "console-replay")
    confirms: list[str] = []

    async def accept(dialog: Dialog) -> None:
        confirms.append(dialog.message)
        await dialog.accept()

    page.page.on("dialog", accept)

    def shown(selector: str) -> str:
        return f"document.querySelector('{selector}').checkVisibility()"

    # Live is the default: the codec is asked, the picker is not.
    assert await page.evaluate(f"() => {shown(FORM + ' [name=video_codec]')}"
                               f" && !{shown(FORM + ' .replay-pick')}")
    await page.page.check(f"{FORM} [name=source][value=replay]")
    await wait_js(chromium, page, "the picker instead of the codec",
                  f"() => {shown(FORM + ' [name=replay_item_id]')}"
                  f" && !{shown(FORM + ' [name=video_codec]')}"
                  f" && {shown(FORM + ' .replay-start-hint')}")
    options = ("() => [...document.querySelectorAll('#sessions-form [name=replay_item_id]"
               " option')].map((o) => o.textContent)")
    listed = await page.evaluate(options)
    assert len(listed) == 1 + 2 + FILLERS, listed
    assert listed[0] == "（请选择录像）"
    assert "第三讲：数字经济 · 李研究员 · 00:24" in listed, listed

    # The list is long: a filter narrows it (by lecturer here).
    assert await page.evaluate(f"() => {shown(FORM + ' [name=replay_filter]')}")
    await page.page.fill(f"{FORM} [name=replay_filter]", "李研究员")
    await page.page.keyboard.press("Enter")  # filters; does not send the form
    assert await page.evaluate(options) == ["（请选择录像）", "第三讲：数字经济 · 李研究员 · 00:24"]
    await page.page.fill(f"{FORM} [name=replay_filter]", "")
    assert len(await page.evaluate(options)) == 1 + 2 + FILLERS

    # No item chosen: said in the page, nothing sent.
    await page.page.click(f"{FORM} button[type=submit]")
    error_slot = f"{FORM} .field-error[data-field=replay_item_id]"
    await wait_js(chromium, page, "the page asks for an item",
                  f"() => document.querySelector('{error_slot}').textContent"
                  " === '请选择要重播的录像'")

    # A stale choice: the item went back to processing after the list was
    # loaded. The server refuses it; its field error shows in Chinese.
    service.app[ARCHIVE].db.execute("UPDATE archive_items SET state = 'finishing' WHERE id = ?",
                                    (stale["id"],))
    await page.page.select_option(f"{FORM} [name=replay_item_id]", stale["id"])
    await page.page.click(f"{FORM} button[type=submit]")
    await wait_js(chromium, page, "the server's field error next to the picker",
                  f"() => document.querySelector('{error_slot}').textContent"
                  " === '该录像尚未处理完成（或已失败），不能重播'")
    assert (await api(service, "/sessions"))["sessions"] == []
    ARTIFACTS.mkdir(exist_ok=True)
    await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-form.png",
                               full_page=True)

    # The real choice: the title is left empty (the item's is offered), and a start time.
    await page.page.select_option(f"{FORM} [name=replay_item_id]", item["id"])
    assert await page.evaluate(f"() => document.querySelector('{FORM} [name=title]')"
                               ".placeholder") == "第三讲：数字经济"
    await page.page.fill(f"{FORM} [name=scheduled_start]", "2030-06-01T09:00")
    await page.page.click(f"{FORM} button[type=submit]")
    await wait_js(chromium, page, "one session listed",
                  "() => document.querySelectorAll('#sessions-table tbody tr').length === 1")
    [session] = (await api(service, "/sessions"))["sessions"]
    assert (session["title"], session["video_codec"], session["state"]) == (
        "第三讲：数字经济", "H264", "scheduled")
    assert session["replay"]["item_id"] == item["id"]
    assert session["replay"]["starts_at"] == session["scheduled_start"]
    # The form is back to its default, live.
    assert await page.evaluate(f"() => {shown(FORM + ' [name=video_codec]')}")

    row = f"#sessions-table tr[data-id='{session['id']}']"

    async def cell() -> dict[str, Any]:
        found: dict[str, Any] = await page.evaluate(f"""() => {{
            const box = document.querySelector("{row} .replay");
            const visible = (name) => box.querySelector(name).checkVisibility();
            return {{
                badge: box.querySelector('.badge-replay').textContent,
                item: box.querySelector('.replay-item').textContent,
                state: box.querySelector('.replay-state').textContent,
                detail: box.querySelector('.replay-detail').textContent,
                clock: box.querySelector('.replay-clock').textContent,
                start: visible('.replay-start'), toggle: visible('.replay-toggle'),
                toggle_text: box.querySelector('.replay-toggle').textContent,
                seek: visible('.replay-seek'),
            }}; }}""")
        return found

    waiting = await cell()
    assert (waiting["badge"], waiting["item"], waiting["state"]) == ("重播", "第三讲：数字经济",
                                                                     "等待开始")
    assert re.fullmatch(r"2030/0?6/0?1 09:00 自动开始", waiting["detail"]), waiting
    assert waiting["clock"] == "00:00 / 00:24"
    assert (waiting["start"], waiting["toggle"], waiting["seek"]) == (True, False, False)
    assert not await page.evaluate(f"() => document.querySelector(\"{row} td.actions "
                                   "button.start\")")  # no bare "start" for a replay

    def position_at_least(value: float) -> str:
        return f"""() => {{
            const box = document.querySelector("{row} .replay");
            const clock = box.querySelector('.replay-clock').textContent.split(' / ')[0];
            const [m, s] = clock.split(':').map(Number);
            return box.querySelector('.replay-state').textContent === '播放中'
              && m * 60 + s >= {value}; }}"""

    # Start now: playing, and the keyboard focus goes on to the pause button.
    await page.page.click(f"{row} button.replay-start")
    await wait_js(chromium, page, "playing", f"() => document.querySelector(\"{row} "
                  ".replay-state\").textContent === '播放中'")
    assert confirms and "第三讲：数字经济" in confirms[-1]
    assert await page.evaluate("() => document.activeElement.classList.contains('replay-toggle')")
    await wait_js(chromium, page, "the position past 1 s", position_at_least(1))
    first = seconds((await cell())["clock"].split(" / ")[0])
    await wait_js(chromium, page, "the position advancing", position_at_least(first + 1))
    playing = await cell()
    assert (playing["start"], playing["toggle"], playing["toggle_text"], playing["seek"]) == (
        False, True, "暂停", True)
    await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-playing.png",
                               full_page=True)

    # Pause: the position holds through the next refresh.
    await page.page.click(f"{row} button.replay-toggle")
    await wait_js(chromium, page, "paused", f"() => document.querySelector(\"{row} "
                  ".replay-state\").textContent === '已暂停'")
    paused = await cell()
    assert paused["toggle_text"] == "继续"
    await page.evaluate("() => { window.__beforePoll = window.zhixingConsole.sessions; }")
    await wait_js(chromium, page, "the next refresh",
                  "() => window.zhixingConsole.sessions !== window.__beforePoll")
    assert (await cell())["clock"] == paused["clock"]

    # Seek: bad times are caught in the page; 0:10 (sent with Enter) plays from 10 s.
    seek_input = f"{row} input.seek-to"
    seek_error = f"{row} .seek-error"
    await page.page.fill(seek_input, "1:75")
    await page.page.press(seek_input, "Enter")
    await wait_js(chromium, page, "the bad time refused",
                  f"() => document.querySelector(\"{seek_error}\").textContent"
                  " === '请按 分:秒 或 时:分:秒 填写，例如 12:30'")
    await page.page.fill(seek_input, "0:30")
    await page.page.press(seek_input, "Enter")
    await wait_js(chromium, page, "the time past the end refused",
                  f"() => document.querySelector(\"{seek_error}\").textContent"
                  " === '超出录像时长 00:24'")
    assert await page.evaluate(f"() => document.querySelector(\"{seek_input}\")"
                               ".getAttribute('aria-invalid')") == "true"
    await page.page.fill(seek_input, "0:10")
    await page.page.press(seek_input, "Enter")
    # Seeking a paused replay plays it from there (as the API does).
    await wait_js(chromium, page, "the position at 10 s or later", position_at_least(10))
    assert await page.evaluate(f"() => document.querySelector(\"{seek_error}\").textContent") \
        == ""
    assert (await api(service, f"/sessions/{session['id']}"))["replay"]["position"] >= 10

    # Pause and resume with the one toggle button.
    await page.page.click(f"{row} button.replay-toggle")
    await wait_js(chromium, page, "paused again", f"() => document.querySelector(\"{row} "
                  ".replay-state\").textContent === '已暂停'")
    held = seconds((await cell())["clock"].split(" / ")[0])
    await page.page.click(f"{row} button.replay-toggle")
    await wait_js(chromium, page, "playing on", position_at_least(held + 1))
    resumed = await cell()
    assert resumed["toggle_text"] == "暂停", resumed
    await page.page.screenshot(path=ARTIFACTS / f"{chromium.artifact_prefix}-resumed.png",
                               full_page=True)
    replay = (await api(service, f"/sessions/{session['id']}"))["replay"]
    assert replay["state"] == "playing" and replay["position"] >= held, replay
