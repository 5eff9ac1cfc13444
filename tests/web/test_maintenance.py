"""``zhixing backup`` and ``zhixing restore`` (web/maintenance.py) as IT
staff use them: a backup of a running service, restored into a fresh data
folder, serves the same links and lectures."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support.archive_helpers import record_item
from tests.support.pages import invite
from tests.support.probe import decode_errors
from tests.support.service import ADMIN_TOKEN, Service, call_json
from web import cli
from web.app import create_app
from web.config import Config


@pytest.mark.webrtc
async def test_a_backup_of_the_running_service_restores_into_a_fresh_folder(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    item = await record_item(service, 2.0)
    session = await service.create_session("第二讲")
    room = await invite(service, session["id"])

    lean, full = tmp_path / "lean.tar", tmp_path / "full.tar"
    # Taken while the service runs (and holds the catalog open).
    assert cli.main(["backup", str(lean), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "未包含" in out and "not included" in out and "server secret" in out
    assert cli.main(["backup", str(full), "--data", str(data), "--include-archive"]) == 0
    capsys.readouterr()
    assert cli.main(["backup", str(full), "--data", str(data)]) == 1  # never overwritten
    assert "exists" in capsys.readouterr().err

    # Without the lecture files: the catalog is back, the files are named missing.
    lean_target = tmp_path / "lean"
    assert cli.main(["restore", str(lean), "--data", str(lean_target)]) == 1
    out = capsys.readouterr().out
    assert f"archive/{item['id']}/" in out and "缺少 missing" in out and "Fix" in out
    # Into a folder that has a catalog: refused, and it stays as it was.
    assert cli.main(["restore", str(full), "--data", str(lean_target)]) == 1
    assert "holds a catalog" in capsys.readouterr().err

    fresh = tmp_path / "fresh"
    assert cli.main(["restore", str(full), "--data", str(fresh)]) == 0
    assert "present: " in capsys.readouterr().out

    config = Config(host="127.0.0.1", port=0, data_dir=fresh, ice_hosts=["127.0.0.1"],
                    admin_token=ADMIN_TOKEN)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            restored = Service(str(server.make_url("")).rstrip("/"), http, server.app)
            # The room's link still works: the server secret came back with the catalog.
            async with http.get(f"{restored.base}/join/{room['token']}") as response:
                assert response.status == 200, await response.text()
            status, again = await call_json(restored, "GET", f"/api/v1/archive/{item['id']}")
            assert status == 200 and again["state"] == "ready" and again["title"] == "第一讲"
            async with http.get(f"{restored.base}{again['media_url']}",
                                headers=restored.admin) as response:
                assert response.status == 200
                size = len(await response.read())
            assert size == item["size"]
    finally:
        await server.close()
    media = next((fresh / "archive" / item["id"]).glob("lecture.*"))
    assert decode_errors(media) == ""


def test_backup_and_restore_explain_a_wrong_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["backup", str(tmp_path / "b.tar"), "--data", str(tmp_path / "no")]) == 1
    assert "备份失败 backup failed" in capsys.readouterr().err
    assert not (tmp_path / "b.tar").exists()
    assert cli.main(["restore", str(tmp_path / "none.tar"), "--data", str(tmp_path / "d")]) == 1
    assert "恢复失败 restore failed" in capsys.readouterr().err
