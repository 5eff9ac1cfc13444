"""Course packages in Debian's Chromium: the offline player opened from
``file://`` with no server (it lists the units, courses and lectures, finds
lectures by title, plays one with frames decoded, shows the room on stage as
a picture-in-picture, jumps to a turn and resumes where it stopped; it reads
nothing but the package's own files, in Chinese first and in English), and
the console's 课程包 tab (export with progress and download, upload import, a
damaged package refused)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from classroom.packages import exporter
from classroom.packages.exporter import Selection
from tests.support.browser import Chromium
from tests.support.packages import TURN, make_archive, make_media, open_archive
from tests.support.pages import API, open_console, request
from tests.support.service import Service
from web.package_player import player_files

UI_TIMEOUT = 15.0

# Frames decoded and the position of the lecture and of the stage picture.
PLAYBACK = """() => {
  const video = document.getElementById("video");
  const stage = document.getElementById("stage-video");
  const frames = (v) => v.getVideoPlaybackQuality().totalVideoFrames;
  return { frames: frames(video), time: video.currentTime, paused: video.paused,
           width: video.videoWidth, stage_frames: frames(stage), stage_time: stage.currentTime,
           stage_shown: !document.getElementById("stage").hidden,
           turn: window.zhixingPackage.turn, error: window.zhixingPackage.error };
}"""


@pytest.mark.browser
async def test_the_package_plays_from_file_with_no_server(tmp_path: Path,
                                                          chromium: Chromium) -> None:
    source = make_archive(tmp_path / "city", make_media(tmp_path / "media"))
    package = tmp_path / "disc"
    db, archive = open_archive(source.data_dir)
    try:
        exporter.export(db, archive.recordings, Selection(unit_id=source.units[0]["id"]),
                        package, player_files(), created_at=1.77e9)
    finally:
        db.close()
    requested: list[str] = []
    chromium.context.on("request", lambda request: requested.append(request.url))

    page = await chromium.open((package / "index.html").as_uri(), "package")
    await chromium.wait_for_js(page, "the player ready", "window.zhixingPackage?.ready",
                               UI_TIMEOUT)
    shown = await page.evaluate("""() => ({
        lang: document.documentElement.lang,
        title: document.getElementById('package-title').textContent,
        count: document.getElementById('count').textContent,
        groups: [...document.querySelectorAll('.course-group h2')].map((h) => h.textContent),
        units: [...document.querySelectorAll('#unit option')].map((o) => o.textContent),
        cards: [...document.querySelectorAll('.card .title')].map((c) => c.textContent),
        posters: [...document.querySelectorAll('.card img')].map((i) => i.naturalWidth) })""")
    assert shown["lang"] == "zh-CN" and shown["title"] == "第三专题：法治政府", shown
    assert shown["count"] == "共 3 个录像", shown
    assert shown["groups"] == ["第三专题：法治政府 · 行政复议法解读",
                               "第三专题：法治政府 · 行政执法规范"], shown
    assert shown["units"] == ["全部专题", "第三专题：法治政府"], shown
    assert sorted(shown["cards"]) == ["执法规范化", "第一讲 复议范围", "第二讲 复议程序"], shown
    await chromium.wait_for_js(page, "the posters shown", """() =>
        [...document.querySelectorAll('.card img')].every((i) => i.complete && i.naturalWidth > 0)
        && document.querySelectorAll('.card img').length === 3""", UI_TIMEOUT)

    # Search by title; a search that finds nothing says so.
    for query, count in (("复议", 2), ("执法", 1), ("没有这一讲", 0), ("", 3)):
        await page.page.fill("#q", query)
        await chromium.wait_for_js(
            page, f"{count} lectures for {query!r}",
            f"window.zhixingPackage.shown.length === {count}", UI_TIMEOUT)
    await page.page.fill("#q", "没有这一讲")
    await chromium.wait_for_js(page, "the empty line",
                               "!document.getElementById('empty').hidden", UI_TIMEOUT)
    assert await page.evaluate("document.getElementById('empty').textContent") == \
        "没有找到符合条件的录像。"
    await page.page.fill("#q", "范围")
    await chromium.wait_for_js(page, "one lecture", "window.zhixingPackage.shown.length === 1",
                               UI_TIMEOUT)

    # Open the lecture with a room on stage and play it.
    await page.page.click(".card a")
    await chromium.wait_for_js(page, "the lecture open", "window.zhixingPackage.item?.title "
                               "=== '第一讲 复议范围'", UI_TIMEOUT)
    meta = await page.evaluate("""() => ({
        hash: location.hash, heading: document.getElementById('title').textContent,
        meta: document.getElementById('meta').textContent,
        turns: [...document.querySelectorAll('#turn-list button')].map((b) => b.textContent) })""")
    assert meta["hash"] == f"#/watch/{source.items[0]['id']}", meta
    assert "主讲：王教授" in meta["meta"] and "行政复议法解读" in meta["meta"], meta
    assert meta["turns"] == ["0:03 新碶街道分课堂（0:03）"], meta
    await page.evaluate("document.getElementById('video').play()")
    await chromium.wait_for(
        "the lecture plays: frames decoded, time moving", lambda: page.evaluate(PLAYBACK),
        lambda v: v["frames"] > 10 and v["time"] > 0.5 and v["width"] == 320, UI_TIMEOUT)

    # Jump to the turn: the lecture goes there and the room's picture shows.
    await page.evaluate("document.getElementById('video').pause()")
    await page.evaluate("document.getElementById('video').currentTime = 0")
    await page.page.click("#turn-list button")
    state = await chromium.wait_for(
        "the turn on stage: the stage picture decoded beside the lecture",
        lambda: page.evaluate(PLAYBACK),
        lambda v: v["turn"] == 0 and v["stage_shown"] and v["stage_frames"] > 5
        and v["time"] >= TURN["at"] and not v["paused"], UI_TIMEOUT)
    assert state["time"] < TURN["at"] + TURN["duration"], state
    assert abs(state["stage_time"] - (state["time"] - TURN["at"])) < 1.0, state
    assert await page.evaluate("document.getElementById('stage-name').textContent") == \
        "研讨发言：新碶街道分课堂"
    # After the turn the picture goes away; the lecture plays on to its end.
    await chromium.wait_for("the stage picture gone after the turn",
                            lambda: page.evaluate(PLAYBACK),
                            lambda v: v["turn"] is None and not v["stage_shown"], UI_TIMEOUT)

    # Stopped there, the lecture resumes there when opened again.
    await page.evaluate("document.getElementById('video').pause()")
    stopped = await page.evaluate("document.getElementById('video').currentTime")
    await page.page.reload()
    await chromium.wait_for_js(page, "the player ready again", "window.zhixingPackage?.ready",
                               UI_TIMEOUT)
    resumed = await chromium.wait_for_js(
        page, "resumed where it stopped", "window.zhixingPackage.resumedFrom", UI_TIMEOUT)
    assert abs(resumed - stopped) < 0.5, (resumed, stopped)
    note = await page.evaluate("document.getElementById('resume').hidden ? null : "
                               "document.getElementById('resume-text').textContent")
    assert note == f"已从上次看到的 0:{int(resumed):02d} 处继续。", note
    await page.page.click("#restart")
    await chromium.wait_for(
        "played from the start", lambda: page.evaluate(PLAYBACK),
        lambda v: v["time"] < TURN["at"] and not v["paused"], UI_TIMEOUT)

    # Back to the list, then English.
    await page.page.click("#back")
    await chromium.wait_for_js(page, "the list again",
                               "!document.getElementById('browse').hidden", UI_TIMEOUT)
    await page.page.fill("#q", "")
    await page.page.click("#lang")
    english = await chromium.wait_for_js(
        page, "English", "document.documentElement.lang === 'en' && "
        "document.getElementById('count').textContent", UI_TIMEOUT)
    assert english == "Recordings: 3"
    assert await page.evaluate("document.querySelector('#unit option').textContent") == \
        "All units"
    assert await page.evaluate("document.getElementById('lang').textContent") == "中文"

    # Everything came from the package: no server, no CDN.
    assert requested and all(url.startswith(package.as_uri() + "/") for url in requested), \
        requested
    errors = [line for line in page.console if "pageerror" in line or "error:" in line]
    assert not errors, errors


@pytest.mark.browser
async def test_the_console_exports_with_progress_and_imports_an_upload(
        admin_service: Service, tmp_path: Path, chromium: Chromium) -> None:
    """The console's 课程包 tab: a unit exported as a ZIP file (progress, then
    a download link), uploaded back after its lectures were deleted here (they
    return with their files), then a damaged copy refused naming the file."""
    service = admin_service
    source = make_archive(tmp_path / "data", make_media(tmp_path / "media"))
    page = await open_console(chromium, service.base, "console")
    await page.page.click("#tab-packages")
    await page.page.select_option("#packages-form [name=unit_id]", str(source.units[0]["id"]))
    await page.page.click("#packages-form button[type=submit]")
    job = await chromium.wait_for_js(
        page, "the package ready",
        "() => { const job = window.zhixingConsole.packages.job; "
        "return job?.state === 'ready' && job; }",
        UI_TIMEOUT)
    assert job["items"] == 3 and job["format"] == "zip", job
    shown = await page.evaluate("""() => ({
        status: document.getElementById('package-status').textContent,
        href: document.getElementById('package-download').getAttribute('href'),
        visible: !document.getElementById('package-download').hidden })""")
    assert shown["status"].startswith("课程包已生成") and "3 个录像" in shown["status"], shown
    assert shown["visible"] and shown["href"] == f"/api/v1/packages/{job['id']}/file", shown
    async with page.page.expect_download() as waiting:
        await page.page.click("#package-download")
    download = await waiting.value
    package = tmp_path / "downloaded.zip"
    await download.save_as(package)
    assert package.stat().st_size == job["size"]
    with zipfile.ZipFile(package) as opened:
        assert "index.html" in opened.namelist() and "manifest.json" in opened.namelist()

    # Delete the unit's lectures here, then upload the package: they come back.
    exported = sorted(item["id"] for item in source.items[:3])
    for item_id in exported:
        status, _, text = await request(service, "DELETE", f"{API}/archive/{item_id}")
        assert status == 204, text
    await page.page.set_input_files("#package-import-form [name=file]", str(package))
    await page.page.click("#package-import-form button[type=submit]")
    imported = await chromium.wait_for_js(
        page, "the package imported", "window.zhixingConsole.packages.imported", UI_TIMEOUT)
    assert sorted(imported["added"]) == exported, imported
    assert await page.evaluate("document.getElementById('package-import-status').textContent") \
        == "已导入 3 个录像（已有 0 个未重复导入），新建专题 0 个、课程 0 个。"
    status, listed, _ = await request(service, "GET", f"{API}/archive?state=ready")
    assert sorted(i["id"] for i in listed["items"] if i["id"] in exported) == exported

    # A damaged copy: refused, naming the file.
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(package) as reading, zipfile.ZipFile(damaged, "w") as writing:
        for info in reading.infolist():
            data = reading.read(info)
            if info.filename == "player/player.css":
                data = data.replace(b"#a3191e", b"#a3191f", 1)
            writing.writestr(info, data)
    await page.page.set_input_files("#package-import-form [name=file]", str(damaged))
    await page.page.click("#package-import-form button[type=submit]")
    refused = await chromium.wait_for_js(
        page, "the package refused", "window.zhixingConsole.packages.refused", UI_TIMEOUT)
    assert refused["file"] == "player/player.css", refused
    status_text = await page.evaluate(
        "document.getElementById('package-import-status').textContent")
    assert status_text == \
        "课程包未导入：文件 player/player.css 已损坏（SHA-256 校验值与清单不符）", status_text
