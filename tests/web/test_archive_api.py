"""The archive's HTTP interface: states, validation, who may do what, media paths."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from recordings.finish import describe, make_poster
from tests.support.service import Service
from web.keys import ARCHIVE

API = "/api/v1"


async def call(service: Service, method: str, path: str, body: Any = None,
               token: str | None = "admin", headers: dict[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, Any, Any]:
    sent = dict(headers or {})
    if token == "admin":
        sent.update(service.admin)
    elif token is not None:
        sent["Authorization"] = f"Bearer {token}"
    kwargs: dict[str, Any] = {"headers": sent}
    if body is not None:
        kwargs["json"] = body
    if raw is not None:
        kwargs["data"] = raw
    async with service.http.request(method, f"{service.base}{path}", **kwargs) as response:
        data = await response.read()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return response.status, parsed, response.headers


def make_media(path: Path, seconds: int = 3) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=320x240:rate=25:duration={seconds}", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "libopus", "-movflags",
                    "+faststart", str(path)], check=True)


def ready_item(service: Service, title: str = "中国式现代化") -> dict[str, Any]:
    """An item with a real (small) lecture file, as finishing leaves it."""
    archive = service.app[ARCHIVE]
    item = archive.create_item(title=title, recorded_at=1_760_000_000.0, origin="import",
                               state="finishing")
    folder = archive.recordings.item_dir(item["id"])
    folder.mkdir(parents=True)
    make_media(folder / "lecture.mp4")
    result = describe(folder, "lecture.mp4")
    result.poster = make_poster(folder / "lecture.mp4", folder / "poster.jpg", result.duration)
    archive.record_result(item["id"], result)
    found: dict[str, Any] = archive.item(item["id"])
    return found


async def new_link(service: Service, label: str = "北仑区干部") -> dict[str, Any]:
    status, link, _ = await call(service, "POST", f"{API}/library-links", {"label": label})
    assert status == 201, link
    return link  # type: ignore[no-any-return]


# --------------------------------------------------------------------------
# recording control


async def test_recording_states_are_enforced(service: Service) -> None:
    session = await service.create_session()
    path = f"{API}/sessions/{session['id']}/recording"
    assert (await call(service, "GET", path))[0] == 404
    assert (await call(service, "DELETE", path))[0] == 409
    status, item, headers = await call(service, "POST", path)
    assert status == 201 and item["state"] == "recording"
    assert headers["Location"] == f"{API}/archive/{item['id']}"
    status, body, _ = await call(service, "POST", path)
    assert status == 409 and "already" in body["error"]
    listed = (await call(service, "GET", f"{API}/archive"))[1]["items"]
    assert [i["id"] for i in listed] == [item["id"]]  # the second start made nothing
    status, live, _ = await call(service, "GET", path)
    assert status == 200 and live["item_id"] == item["id"]
    session_view = (await call(service, "GET", f"{API}/sessions/{session['id']}"))[1]
    assert session_view["recording"]["item_id"] == item["id"]
    # Deleting a recording item is refused while it records.
    assert (await call(service, "DELETE", f"{API}/archive/{item['id']}"))[0] == 409
    # Nothing was published: stopping finds nothing to finish, and says so.
    status, stopped, _ = await call(service, "DELETE", path)
    assert status == 200 and stopped["state"] in ("finishing", "failed")
    await service.app[ARCHIVE].wait_finished()
    failed = (await call(service, "GET", f"{API}/archive/{item['id']}"))[1]
    assert failed["state"] == "failed" and "nothing was recorded" in failed["failure"]
    assert (await call(service, "DELETE", path))[0] == 409


async def test_an_ended_session_cannot_be_recorded(service: Service) -> None:
    session = await service.create_session()
    assert (await call(service, "DELETE", f"{API}/sessions/{session['id']}"))[0] == 204
    status, body, _ = await call(service, "POST", f"{API}/sessions/{session['id']}/recording")
    assert status == 409 and "ended" in body["error"]
    assert (await call(service, "GET", f"{API}/archive"))[1]["items"] == []
    assert (await call(service, "POST", f"{API}/sessions/nope/recording"))[0] == 404


async def test_ending_a_session_stops_its_recording(service: Service) -> None:
    session = await service.create_session()
    item = (await call(service, "POST", f"{API}/sessions/{session['id']}/recording"))[1]
    assert (await call(service, "DELETE", f"{API}/sessions/{session['id']}"))[0] == 204
    found = (await call(service, "GET", f"{API}/archive/{item['id']}"))[1]
    assert found["state"] in ("finishing", "failed")
    assert service.app[ARCHIVE].recording_of(session["id"]) is None
    await service.app[ARCHIVE].wait_finished()


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_recording_control_is_for_admins_only(service: Service, method: str) -> None:
    session = await service.create_session()
    path = f"{API}/sessions/{session['id']}/recording"
    link = await new_link(service)
    for token in (None, "wrong", link["token"]):
        assert (await call(service, method, path, token=token))[0] == 401, token
    for token in (session["view_token"], session["publish_token"]):
        assert (await call(service, method, path, token=token))[0] == 403, token
    assert (await call(service, "GET", f"{API}/archive"))[1]["items"] == []


# --------------------------------------------------------------------------
# items


async def test_item_metadata_is_validated_and_all_or_nothing(service: Service) -> None:
    item = ready_item(service)
    path = f"{API}/archive/{item['id']}"
    bad = [
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"course_id": 999}, "course_id"),
        ({"course_id": "abc"}, "course_id"),
        ({"recorded_at": "yesterday"}, "recorded_at"),
        ({"recorded_at": None}, "recorded_at"),
        ({"state": "ready"}, "state"),
        ({"media_file": "../../etc/passwd"}, "media_file"),
        ({"title": "新标题", "duration": 1}, "duration"),
    ]
    for body, field in bad:
        status, reply, _ = await call(service, "PATCH", path, body)
        assert status == 422 and field in reply["error"], (body, reply)
    assert (await call(service, "PATCH", path, raw=b"title=x",
                       headers={"Content-Type": "application/x-www-form-urlencoded"}))[0] == 415
    # Nothing changed (an account's reply says whether it may change the item).
    assert (await call(service, "GET", path))[1] == {**item, "manageable": True}
    unit = (await call(service, "POST", f"{API}/units", {"name": "第一专题"}))[1]
    course = (await call(service, "POST", f"{API}/courses",
                          {"title": "中国式现代化", "lecturer": "王教授",
                           "unit_id": unit["id"]}))[1]
    status, changed, _ = await call(service, "PATCH", path,
                                    {"title": " 第一讲 <b>新</b> ", "lecturer": "王教授",
                                     "course_id": course["id"], "description": "重播用"})
    assert status == 200
    assert changed["title"] == "第一讲 <b>新</b>"  # stored as text; pages escape it
    assert (changed["course_title"], changed["unit_name"]) == ("中国式现代化", "第一专题")
    found = (await call(service, "GET", f"{API}/archive?unit_id={unit['id']}"))[1]["items"]
    assert [i["id"] for i in found] == [item["id"]]
    assert (await call(service, "GET", f"{API}/archive?q=王教"))[1]["items"][0]["id"] == \
        item["id"]
    assert (await call(service, "GET", f"{API}/archive?q=%25"))[1]["items"] == []
    assert (await call(service, "GET", f"{API}/archive?unit_id=x"))[0] == 422
    assert (await call(service, "GET", f"{API}/archive?state=gone"))[0] == 422


async def test_deleting_an_item_removes_its_files(service: Service) -> None:
    item = ready_item(service)
    folder = service.app[ARCHIVE].recordings.item_dir(item["id"])
    assert (folder / "lecture.mp4").exists()
    link = await new_link(service)
    assert (await call(service, "DELETE", f"{API}/archive/{item['id']}",
                       token=link["token"]))[0] == 401
    assert (await call(service, "DELETE", f"{API}/archive/{item['id']}"))[0] == 204
    assert not folder.exists()
    assert (await call(service, "GET", f"{API}/archive/{item['id']}"))[0] == 404
    assert (await call(service, "DELETE", f"{API}/archive/{item['id']}"))[0] == 404


@pytest.mark.parametrize("item_id", ["..", "%2e%2e", "..%2f..%2fzhixing.sqlite3",
                                     "0123456789ABCDEF", "0123456789abcdef0", "x" * 16,
                                     "%00", "0123456789abcde%2F"])
async def test_ill_formed_item_ids_are_404(service: Service, item_id: str) -> None:
    ready_item(service)
    for method, path in (("GET", f"{API}/archive/{item_id}"),
                         ("PATCH", f"{API}/archive/{item_id}"),
                         ("DELETE", f"{API}/archive/{item_id}"),
                         ("GET", f"/archive/{item_id}/media"),
                         ("GET", f"/archive/{item_id}/stage"),
                         ("GET", f"/archive/{item_id}/poster.jpg")):
        status, _, _ = await call(service, method, path, {"title": "x"}
                                  if method == "PATCH" else None)
        assert status == 404, (method, path, status)


# --------------------------------------------------------------------------
# media


async def test_media_is_served_with_ranges(service: Service) -> None:
    item = ready_item(service)
    size = item["size"]
    assert item["media_url"] == f"/archive/{item['id']}/media"
    status, body, headers = await call(service, "GET", item["media_url"],
                                       headers={"Range": "bytes=0-99"})
    assert status == 206 and len(body) == 100
    assert headers["Content-Range"] == f"bytes 0-99/{size}"
    assert headers["Content-Type"] == "video/mp4"
    assert headers["Accept-Ranges"] == "bytes"
    status, body, headers = await call(service, "GET", item["media_url"],
                                       headers={"Range": f"bytes={size - 10}-"})
    assert status == 206 and len(body) == 10
    assert headers["Content-Range"] == f"bytes {size - 10}-{size - 1}/{size}"
    status, _, headers = await call(service, "GET", item["media_url"],
                                    headers={"Range": f"bytes={size + 10}-"})
    assert status == 416
    status, body, _ = await call(service, "GET", item["media_url"])
    assert status == 200 and len(body) == size
    status, body, headers = await call(service, "GET", item["poster_url"])
    assert status == 200 and body[:3] == b"\xff\xd8\xff"  # a JPEG
    # A lecture without rooms on stage has no stage file.
    assert (item["stage_url"], item["stage"]) == (None, [])
    assert (await call(service, "GET", f"/archive/{item['id']}/stage"))[0] == 404


async def test_media_of_an_unfinished_item_is_404(service: Service) -> None:
    item = service.app[ARCHIVE].create_item(title="录制中", recorded_at=1_760_000_000.0)
    assert (await call(service, "GET", f"/archive/{item['id']}/media"))[0] == 404


async def test_a_symlink_out_of_the_archive_is_never_served(service: Service,
                                                            tmp_path: Path) -> None:
    item = ready_item(service)
    folder = service.app[ARCHIVE].recordings.item_dir(item["id"])
    secret = tmp_path / "secret.txt"
    secret.write_text("not for you")
    (folder / "lecture.mp4").unlink()
    os.symlink(secret, folder / "lecture.mp4")
    status, body, _ = await call(service, "GET", item["media_url"])
    assert status == 404 and b"not for you" not in (body if isinstance(body, bytes) else b"")
    # Nor a folder that is itself a link.
    (folder / "lecture.mp4").unlink()
    os.symlink(tmp_path, folder / "lecture.mp4")
    assert (await call(service, "GET", item["media_url"]))[0] == 404


async def test_the_data_folder_is_not_listed(service: Service) -> None:
    ready_item(service)
    for path in ("/archive/", "/archive", "/static/../data/zhixing.sqlite3",
                 "/static/%2e%2e/%2e%2e/data/zhixing.sqlite3"):
        status, _, _ = await call(service, "GET", path)
        assert status in (403, 404), (path, status)


# --------------------------------------------------------------------------
# readers (library links)


async def test_readers_see_ready_items_only_and_change_nothing(service: Service) -> None:
    ready = ready_item(service)
    service.app[ARCHIVE].create_item(title="录制中", recorded_at=1_760_000_000.0)
    link = await new_link(service)
    status, body, _ = await call(service, "GET", f"{API}/archive?state=recording",
                                 token=link["token"])
    assert status == 200 and [i["id"] for i in body["items"]] == [ready["id"]]
    assert (await call(service, "GET", ready["media_url"], token=link["token"]))[0] == 200
    for method, path, body in (("PATCH", f"{API}/archive/{ready['id']}", {"title": "x"}),
                               ("DELETE", f"{API}/archive/{ready['id']}", None),
                               ("POST", f"{API}/library-links", {"label": "x"}),
                               ("GET", f"{API}/library-links", None),
                               ("GET", f"{API}/sessions", None)):
        status, _, _ = await call(service, method, path, body, token=link["token"])
        assert status == 401, (method, path, status)
    # Anonymous: nothing at all.
    for path in (f"{API}/archive", f"{API}/archive/{ready['id']}", ready["media_url"],
                 ready["poster_url"]):
        assert (await call(service, "GET", path, token=None))[0] == 401, path


async def test_a_library_link_sets_a_cookie_and_stops_working_when_revoked(
        service: Service) -> None:
    ready = ready_item(service)
    link = await new_link(service)
    assert link["url"].endswith(f"/library/k/{link['token']}")
    async with service.http.get(link["url"], allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/library"
        cookie = response.cookies["zhixing_library"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    # (The test client keeps no cookies for an IP address: send it as a browser would.)
    jar = {"Cookie": f"zhixing_library={cookie.value}"}
    status, body, _ = await call(service, "GET", f"{API}/archive", token=None, headers=jar)
    assert status == 200 and body["items"][0]["id"] == ready["id"]
    assert (await call(service, "GET", ready["media_url"], token=None, headers=jar))[0] == 200
    assert (await call(service, "DELETE", f"{API}/library-links/{link['id']}"))[0] == 204
    assert (await call(service, "GET", f"{API}/archive", token=None, headers=jar))[0] == 401
    assert (await call(service, "GET", ready["media_url"], token=None, headers=jar))[0] == 401
    async with service.http.get(link["url"], allow_redirects=False) as response:
        assert response.status == 401
    listed = (await call(service, "GET", f"{API}/library-links"))[1]["links"]
    assert listed[0]["revoked_at"] is not None and "token" not in listed[0]


async def test_library_links_are_validated(service: Service) -> None:
    for body, field in (({}, "label"), ({"label": ""}, "label"),
                        ({"label": "x", "expires_at": 1_000_000_000}, "expires_at"),
                        ({"label": "x", "expires_at": "soon"}, "expires_at")):
        status, reply, _ = await call(service, "POST", f"{API}/library-links", body)
        assert status == 422 and field in reply["error"], (body, reply)
    assert (await call(service, "GET", f"{API}/library-links"))[1]["links"] == []
    assert (await call(service, "DELETE", f"{API}/library-links/nope"))[0] == 404
