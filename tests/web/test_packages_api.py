"""Course packages over HTTP and on the command line: the console's export
(a job with progress, then the file) and upload import between two running
servers, bad input refused with nothing changed, and ``zhixing package
export|import`` run in process."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support.packages import Archived, make_archive, make_media, open_archive
from tests.support.service import ADMIN_TOKEN, Service
from web import cli
from web.app import create_app
from web.config import Config

API = "/api/v1"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def city_archive(tmp_path: Path, media: tuple[Path, Path]) -> Archived:
    return make_archive(tmp_path / "city", media)


@contextlib.asynccontextmanager
async def serve(data_dir: Path) -> AsyncIterator[Service]:
    config = Config(host="127.0.0.1", port=0, data_dir=data_dir, ice_hosts=["127.0.0.1"],
                    admin_token=ADMIN_TOKEN)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Service(str(server.make_url("")).rstrip("/"), http, server.app)
    finally:
        await server.close()


async def call(service: Service, method: str, path: str, *, token: str | None = ADMIN_TOKEN,
               **kwargs: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    async with service.http.request(method, service.base + path, headers=headers,
                                    **kwargs) as response:
        body = await response.read()
        if response.content_type == "application/json":
            return response.status, json.loads(body)
        return response.status, body


async def export(service: Service, **choice: Any) -> tuple[dict[str, Any], bytes]:
    status, job = await call(service, "POST", f"{API}/packages", json=choice)
    assert status == 202, job
    assert job["state"] == "running" and job["download_url"] is None, job
    deadline = time.monotonic() + TIMEOUT
    while job["state"] == "running":
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.1)
        status, job = await call(service, "GET", f"{API}/packages/{job['id']}")
        assert status == 200, job
    assert job["state"] == "ready" and job["progress"] == 1.0, job
    status, data = await call(service, "GET", job["download_url"])
    assert status == 200 and len(data) == job["size"], job
    return job, data


async def upload(service: Service, data: bytes,
                 content_type: str = "application/zip") -> tuple[int, Any]:
    return await call(service, "POST", f"{API}/package-imports", data=io.BytesIO(data),
                      headers={"Content-Type": content_type})


async def items(service: Service) -> list[dict[str, Any]]:
    status, body = await call(service, "GET", f"{API}/archive")
    assert status == 200, body
    return sorted(body["items"], key=lambda item: item["id"])


async def media_digests(service: Service, listed: list[dict[str, Any]]) -> dict[str, str]:
    found = {}
    for item in listed:
        for url in (item["media_url"], item["poster_url"], item["stage_url"]):
            if url:
                status, data = await call(service, "GET", url)
                assert status == 200, url
                found[url] = hashlib.sha256(data).hexdigest()
    return found


@pytest.mark.parametrize("kind", ["zip", "iso"])
async def test_export_in_the_console_and_upload_to_another_server(
        city_archive: Archived, tmp_path: Path, kind: str) -> None:
    unit = city_archive.units[0]
    async with serve(city_archive.data_dir) as city:
        job, data = await export(city, unit_id=unit["id"], format=kind)
        assert (job["title"], job["items"], job["format"]) == (unit["name"], 3, kind)
        status, listed = await call(city, "GET", f"{API}/packages")
        assert status == 200 and [p["id"] for p in listed["packages"]] == [job["id"]]
        async with city.http.get(city.base + job["download_url"],
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                          "Range": "bytes=0-9"}) as response:
            assert response.status == 206 and len(await response.read()) == 10
            disposition = response.headers["Content-Disposition"]
            assert disposition.startswith("attachment;") and f".{kind}" in disposition
        exported = [item for item in await items(city)
                    if item["unit_id"] == unit["id"] and item["state"] == "ready"]
        originals = await media_digests(city, exported)

    async with serve(tmp_path / "district") as district:
        status, report = await upload(district, data, "application/zip" if kind == "zip"
                                      else "application/x-iso9660-image")
        assert status == 200, report
        assert sorted(report["added"]) == [item["id"] for item in exported], report
        assert (report["units_added"], report["courses_added"]) == (1, 2), report
        imported = await items(district)
        fields = ("id", "title", "lecturer", "description", "recorded_at", "duration", "size",
                  "course_title", "unit_name", "state", "stage", "video_codec", "width")
        assert [{k: i[k] for k in fields} for i in imported] == \
            [{k: i[k] for k in fields} for i in exported]
        assert await media_digests(district, imported) == originals
        # The same package again: nothing changes.
        status, again = await upload(district, data, "application/octet-stream")
        assert status == 200 and again["added"] == [] and len(again["present"]) == 3, again
        assert await items(district) == imported
        assert list((tmp_path / "district" / "packages").iterdir()) == []  # upload removed


async def test_bad_exports_and_uploads_are_refused_and_change_nothing(
        city_archive: Archived, tmp_path: Path) -> None:
    async with serve(city_archive.data_dir) as city:
        for body, status in (({}, 422), ({"unit_id": 1, "course_id": 1}, 422),
                             ({"unit_id": "1"}, 422), ({"unit_id": 0}, 422),
                             ({"unit_id": 999}, 404), ({"course_id": 999}, 404),
                             ({"item_ids": []}, 422), ({"item_ids": "abc"}, 422),
                             ({"item_ids": ["0123456789abcdef"]}, 404),
                             ({"unit_id": 1, "format": "rar"}, 422)):
            answer, error = await call(city, "POST", f"{API}/packages", json=body)
            assert answer == status, (body, error)
            assert isinstance(error, dict) and error["error"], error
        assert (await call(city, "POST", f"{API}/packages", data=b"{",
                           headers={"Content-Type": "application/json"}))[0] == 400
        # Admins only: no token, a wrong one, a session's tokens.
        session = await city.create_session()
        ready, _ = await export(city, course_id=city_archive.courses[0]["id"])
        routes = [("POST", f"{API}/packages", {"json": {"unit_id": 1}}),
                  ("GET", f"{API}/packages", {}), ("GET", f"{API}/packages/{ready['id']}", {}),
                  ("GET", f"{API}/packages/{ready['id']}/file", {}),
                  ("POST", f"{API}/package-imports",
                   {"data": b"PK", "headers": {"Content-Type": "application/zip"}})]
        for method, path, extra in routes:
            for token, refused in ((None, 401), ("wrong", 401), (session["view_token"], 403),
                                   (session["publish_token"], 403)):
                status, error = await call(city, method, path, token=token, **extra)
                assert status == refused, (method, path, token, error)
        status, listed = await call(city, "GET", f"{API}/packages")
        assert [job["id"] for job in listed["packages"]] == [ready["id"]]  # nothing started
        assert (await call(city, "GET", f"{API}/packages/nope"))[0] == 404
        assert (await call(city, "GET", f"{API}/packages/nope/file"))[0] == 404
        _, good = await export(city, unit_id=city_archive.units[0]["id"])

    async with serve(tmp_path / "district") as district:
        before = await items(district)
        assert (await upload(district, good, "text/plain"))[0] == 415
        status, error = await call(district, "POST", f"{API}/package-imports",
                                   data=io.BytesIO(good),
                                   token=None, headers={"Content-Type": "application/zip"})
        assert status == 401
        status, error = await upload(district, b"not a package at all")
        assert status == 422 and error["file"] == "the uploaded file", error
        # A flipped byte in a lecture: refused naming it.
        damaged = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(good)) as reading, \
                zipfile.ZipFile(damaged, "w") as writing:
            lecture = next(name for name in reading.namelist() if name.endswith("lecture.mp4"))
            for info in reading.infolist():
                data = reading.read(info)
                if info.filename == lecture:
                    data = data[:1000] + bytes([data[1000] ^ 0x40]) + data[1001:]
                writing.writestr(info.filename, data)
        status, error = await upload(district, damaged.getvalue())
        assert status == 422 and error["file"] == lecture, error
        assert "SHA-256" in error["error"], error
        # A package cut short (a partial download).
        status, error = await upload(district, good[: len(good) // 2])
        assert status == 422, error
        assert await items(district) == before == []
        assert list((tmp_path / "district" / "packages").iterdir()) == []


def test_the_package_commands(city_archive: Archived, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    data = str(city_archive.data_dir)
    course = city_archive.courses[0]
    target = tmp_path / "course.zip"
    assert cli.main(["package", "export", "--course", str(course["id"]), "-o", str(target),
                     "--data", data]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{target}\t2 lectures\t"), out
    db, _ = open_archive(tmp_path / "district")
    db.close()
    district = str(tmp_path / "district")
    assert cli.main(["package", "import", str(target), "--data", district]) == 0
    out = capsys.readouterr().out
    assert "2 lectures imported, 0 already there; 1 units and 1 courses added" in out, out
    assert cli.main(["package", "import", str(target), "--data", district]) == 0
    assert "0 lectures imported, 2 already there" in capsys.readouterr().out

    # Refusals say why, with exit status 1.
    assert cli.main(["package", "export", "--unit", "999", "-o", str(tmp_path / "x.zip"),
                     "--data", data]) == 1
    assert "no such unit" in capsys.readouterr().err
    assert cli.main(["package", "export", "--items", "0123456789abcdef", "-o",
                     str(tmp_path / "x"), "--data", data]) == 1
    assert "no such archive item" in capsys.readouterr().err
    assert cli.main(["package", "export", "--course", str(course["id"]), "-o", str(target),
                     "--data", data]) == 1
    assert "the target exists already" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "x").exists()
    assert cli.main(["package", "import", str(tmp_path / "nothing.zip"), "--data",
                     district]) == 1
    assert "nothing.zip: no such file or folder" in capsys.readouterr().err
    with zipfile.ZipFile(target) as reading, zipfile.ZipFile(tmp_path / "cut.zip", "w") as out_zip:
        for info in reading.infolist():
            if info.filename != "catalog.js":
                out_zip.writestr(info, reading.read(info))
    assert cli.main(["package", "import", str(tmp_path / "cut.zip"), "--data", district]) == 1
    assert "not imported: catalog.js: missing from the package" in capsys.readouterr().err
    assert cli.main(["package", "import", str(target), "--data", str(tmp_path / "none")]) == 1
    assert "no database" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one choice only
        cli.main(["package", "export", "--unit", "1", "--course", "1", "-o", "x"])
    assert "not allowed with argument" in capsys.readouterr().err
