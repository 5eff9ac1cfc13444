"""The offline player of a course package, in Debian's Chromium, opened from
``file://`` with no server: it lists the units, courses and lectures, finds
lectures by title, plays one (frames decoded), shows the room on stage as a
picture-in-picture and jumps to a turn; it reads nothing but the package's
own files, in Chinese first and in English."""

from __future__ import annotations

from pathlib import Path

import pytest

from classroom.packages import exporter
from classroom.packages.exporter import Selection
from tests.support.browser import Chromium
from tests.support.packages import TURN, make_archive, make_media, open_archive
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
