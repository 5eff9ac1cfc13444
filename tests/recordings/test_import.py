"""``zhixing archive import``: lecture files become archive items.

The inputs are made with the ffmpeg binary (4 s of test picture and tone);
the command runs for real (``cli.main`` in process, like the tests of
``admin set-password``, and the installed ``zhixing`` script in a child
process) against a data folder under tmp_path.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from classroom.catalog import Catalog
from classroom.db import Database
from recordings import importer
from tests.support.probe import decode_errors, ffprobe
from tests.support.service import ADMIN_TOKEN, Service
from web import cli
from web.app import ARCHIVE_DIR, DATABASE_FILE, create_app
from web.config import Config
from web.keys import CONFIG

SECONDS = 4
PICTURE = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"]
TONE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]  # with B-frames
INPUTS: dict[str, list[str]] = {
    "h264-aac.mp4": [*PICTURE, *TONE, *H264, "-c:a", "aac"],
    # Matroska stores no decoding times: the first B-frames arrive without one.
    "h264-opus.mkv": [*PICTURE, *TONE, *H264, "-c:a", "libopus"],
    "vp8-opus.webm": [*PICTURE, *TONE, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
                      "-c:a", "libopus"],
    # MPEG-TS starts at 1.4 s, with Annex B H.264 and ADTS AAC.
    "h264-aac.ts": [*PICTURE, *TONE, *H264, "-c:a", "aac"],
    # Two audio tracks and a subtitle track: only the first audio stays.
    "two-tracks.mkv": [*PICTURE, *TONE, "-f", "lavfi", "-i", "sine=frequency=880",
                       "-f", "srt", "-i", "{subtitles}", "-map", "0", "-map", "1", "-map", "2",
                       "-map", "3", *H264, "-c:a", "aac", "-c:s", "srt"],
    "mpeg4-mp3.avi": [*PICTURE, *TONE, "-c:v", "mpeg4", "-c:a", "libmp3lame"],
    # AVI keeps no presentation times: B-frames cannot be copied in order.
    "h264-bframes.avi": [*PICTURE, *TONE, *H264, "-c:a", "aac"],
    "hevc-aac.mp4": [*PICTURE, *TONE, "-c:v", "libx265", "-preset", "ultrafast",
                      "-x265-params", "log-level=error", "-c:a", "aac"],
    "tone-only.m4a": [*TONE, "-c:a", "aac"],
}
SUBTITLES = "1\n00:00:00,500 --> 00:00:02,000\n第一讲\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    subtitles = folder / "subtitles.srt"
    subtitles.write_text(SUBTITLES, encoding="utf-8")
    made: dict[str, Path] = {}
    for name, args in INPUTS.items():
        path = folder / name
        args = [arg.replace("{subtitles}", str(subtitles)) for arg in args]
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args, "-t", str(SECONDS), str(path)],
                       check=True)
        made[name] = path
    # A playlist must not make the import read another file.
    playlist = folder / "playlist.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nh264-aac.ts\n"
                        "#EXT-X-ENDLIST\n", encoding="utf-8")
    made[playlist.name] = playlist
    text = folder / "notes.mp4"  # a text file with a video's name
    text.write_text("第一讲 讲义\n", encoding="utf-8")
    made[text.name] = text
    return made


def make_data(folder: Path) -> Path:
    """A data folder as the service leaves it, with course 1."""
    folder.mkdir(exist_ok=True)
    db = Database(folder / DATABASE_FILE)
    db.migrate()
    Catalog(db).create_course({"title": "新时代党的建设", "lecturer": "王老师"})
    db.close()
    return folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_data(tmp_path / "data")


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str | Path) -> tuple[int, str,
                                                                                   str]:
    status = cli.main(["archive", "import", "--data", str(data), *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def rows(data: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(data / DATABASE_FILE) as conn:
        conn.row_factory = sqlite3.Row
        found = [dict(row) for row in conn.execute("SELECT * FROM archive_items")]
    conn.close()
    return found


def item_folders(data: Path) -> list[str]:
    archive = data / ARCHIVE_DIR
    return sorted(path.name for path in archive.iterdir()) if archive.exists() else []


def video_hash(path: Path) -> str:
    """A hash of the video packets' bytes: equal when nothing was transcoded."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy",
                           "-f", "hash", "-hash", "md5", "-"], capture_output=True, text=True,
                          check=True).stdout.strip()


def mp4_boxes(path: Path) -> list[str]:
    """The top-level boxes of an MP4 file, in order."""
    data = path.read_bytes()
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        elif size == 0:
            size = len(data) - pos
        assert size >= 8, boxes
        pos += size
    return boxes


def _vint(data: bytes, pos: int, marker: bool) -> tuple[int, int]:
    length = 9 - data[pos].bit_length()
    value = data[pos] if marker else data[pos] & (0xFF >> length)
    for byte in data[pos + 1:pos + length]:
        value = value << 8 | byte
    return value, pos + length


CUES, CLUSTER, SEGMENT = 0x1C53BB6B, 0x1F43B675, 0x18538067


def webm_elements(path: Path) -> list[int]:
    """The ids of the Segment's children, in order (EBML)."""
    data = path.read_bytes()
    _, pos = _vint(data, 0, True)  # the EBML header
    size, pos = _vint(data, pos, False)
    element, pos = _vint(data, pos + size, True)
    assert element == SEGMENT
    _, pos = _vint(data, pos, False)
    children = []
    while pos < len(data):
        element, pos = _vint(data, pos, True)
        size, pos = _vint(data, pos, False)
        children.append(element)
        pos += size
    return children


def check_playable(item_dir: Path, row: dict[str, Any], source: Path,
                   container: str) -> dict[str, Any]:
    media = item_dir / row["media_file"]
    assert sorted(path.name for path in item_dir.iterdir()) == sorted(
        [media.name, "poster.jpg"])  # no .partial left
    assert (item_dir / "poster.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert row["has_poster"] == 1
    assert row["size"] == media.stat().st_size
    assert (row["width"], row["height"]) == (320, 240)
    probe = ffprobe(media)
    assert sorted(s["codec_type"] for s in probe["streams"]) == ["audio", "video"], probe
    assert abs(float(probe["format"]["start_time"])) < 0.05, probe["format"]
    assert abs(row["duration"] - float(ffprobe(source)["format"]["duration"])) < 0.2, row
    assert decode_errors(media) == ""
    if container == "mp4":
        boxes = mp4_boxes(media)
        assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart
    else:
        children = webm_elements(media)
        assert CUES in children and children.index(CUES) < children.index(CLUSTER), children
    return probe


# --------------------------------------------------------------------------
# files the library plays as they are: remuxed


@pytest.mark.parametrize(("name", "media_file", "video", "audio"), [
    ("h264-aac.mp4", "lecture.mp4", "h264", "aac"),
    ("h264-opus.mkv", "lecture.mp4", "h264", "opus"),
    ("vp8-opus.webm", "lecture.webm", "vp8", "opus"),
    ("h264-aac.ts", "lecture.mp4", "h264", "aac"),
    ("two-tracks.mkv", "lecture.mp4", "h264", "aac"),
])
def test_a_playable_file_is_remuxed_into_a_ready_item(
        inputs: dict[str, Path], data: Path, capsys: pytest.CaptureFixture[str],
        name: str, media_file: str, video: str, audio: str) -> None:
    source = inputs[name]
    status, out, err = run(capsys, data, "--course", "1", source)
    assert status == 0, err
    [row] = rows(data)
    assert out == f"{row['id']}\t{source.stem}\n"
    assert f"{name}: 100%" in err  # the progress, as lines: stderr is not a terminal
    assert row["state"] == "ready" and row["origin"] == "import" and row["failure"] is None
    assert (row["title"], row["course_id"], row["lecturer"]) == (source.stem, 1, "王老师")
    assert row["recorded_at"] == pytest.approx(source.stat().st_mtime)
    assert (row["media_file"], row["video_codec"], row["audio_codec"]) == \
        (media_file, video, audio)
    assert item_folders(data) == [row["id"]]
    item_dir = data / ARCHIVE_DIR / row["id"]
    # The files' SHA-256, kept for course packages.
    digests = json.loads(row["file_digests"])
    assert sorted(digests) == sorted([media_file, "poster.jpg"])
    for file_name, digest in digests.items():
        assert digest["sha256"] == hashlib.sha256((item_dir / file_name).read_bytes()).hexdigest()
    probe = check_playable(item_dir, row, source, media_file.rsplit(".", 1)[1])
    assert [s["codec_name"] for s in probe["streams"]] == [video, audio]
    if not name.endswith(".ts"):  # (TS carries H.264 in another framing)
        assert video_hash(item_dir / media_file) == video_hash(source)  # not transcoded
    # Decoding times strictly increase; the pictures stay 1/25 s apart.
    packets = ffprobe(item_dir / media_file, "-show_packets", "-select_streams", "v")
    dts = [float(p["dts_time"]) for p in packets["packets"]]
    assert all(a < b for a, b in itertools.pairwise(dts)), dts
    pts = sorted(float(p["pts_time"]) for p in packets["packets"])
    assert len(pts) == SECONDS * 25
    assert all(abs(b - a - 0.04) < 0.002 for a, b in itertools.pairwise(pts)), pts


# --------------------------------------------------------------------------
# refused files


@pytest.mark.parametrize(("name", "message"), [
    ("mpeg4-mp3.avi", "video MPEG-4 part 2 [mpeg4], audio MP3"),
    ("hevc-aac.mp4", "video HEVC"),
    ("h264-bframes.avi", "with B-frames in an AVI file"),
    ("tone-only.m4a", "no video in it"),
    ("notes.mp4", "not a media file"),
    ("playlist.m3u8", "not a media file"),
    ("missing.mp4", "no such file"),
])
def test_a_file_that_cannot_be_played_is_refused_and_leaves_nothing(
        inputs: dict[str, Path], data: Path, capsys: pytest.CaptureFixture[str],
        name: str, message: str) -> None:
    source = inputs.get(name, data.parent / name)
    status, out, err = run(capsys, data, source)
    assert status == 1
    assert out == ""
    assert f"{source}: not imported: " in err and message in err, err
    transcodable = name in ("mpeg4-mp3.avi", "hevc-aac.mp4", "h264-bframes.avi")
    assert ("--transcode" in err) == transcodable, err
    assert rows(data) == []
    assert item_folders(data) == []


@pytest.mark.parametrize("name", ["mpeg4-mp3.avi", "h264-bframes.avi"])
def test_transcode_turns_a_refused_file_into_playable_h264(
        inputs: dict[str, Path], data: Path, capsys: pytest.CaptureFixture[str],
        name: str) -> None:
    source = inputs[name]
    status, out, err = run(capsys, data, "--transcode", source)
    assert status == 0, err
    [row] = rows(data)
    assert out == f"{row['id']}\t{source.stem}\n"
    assert (row["state"], row["media_file"], row["video_codec"], row["audio_codec"]) == \
        ("ready", "lecture.mp4", "h264", "aac")
    assert (row["course_id"], row["lecturer"]) == (None, "")
    probe = check_playable(data / ARCHIVE_DIR / row["id"], row, source, "mp4")
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert video["pix_fmt"] == "yuv420p"
    assert int(video["nb_frames"]) == SECONDS * 25  # no picture lost


def test_transcode_keeps_a_playable_file_as_it_is(
        inputs: dict[str, Path], data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = inputs["h264-aac.mp4"]
    status, _, err = run(capsys, data, "--transcode", source)
    assert status == 0, err
    [row] = rows(data)
    assert video_hash(data / ARCHIVE_DIR / row["id"] / "lecture.mp4") == video_hash(source)


# --------------------------------------------------------------------------
# the command


def test_an_unknown_course_is_refused(inputs: dict[str, Path], data: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, data, "--course", "999", inputs["h264-aac.mp4"])
    assert status == 1 and out == ""
    assert "no course with id 999" in err
    assert rows(data) == [] and item_folders(data) == []


def test_no_database_is_refused(inputs: dict[str, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, tmp_path / "elsewhere", inputs["h264-aac.mp4"])
    assert status == 1 and "no database" in err
    assert not (tmp_path / "elsewhere").exists()


def test_the_options_set_the_item(inputs: dict[str, Path], data: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, data, "--course", "1", "--title", " 第三讲 ",
                           "--lecturer", "李老师", "--recorded-at", "2024-03-05",
                           inputs["vp8-opus.webm"])
    assert status == 0, err
    [row] = rows(data)
    assert out == f"{row['id']}\t第三讲\n"
    assert (row["title"], row["lecturer"], row["course_id"]) == ("第三讲", "李老师", 1)
    assert row["recorded_at"] == pytest.approx(datetime.datetime(2024, 3, 5).timestamp())


@pytest.mark.parametrize("args", [["--recorded-at", "2024-13-01"], ["--course", "one"]])
def test_bad_option_values_are_usage_errors(inputs: dict[str, Path], data: Path,
                                            args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["archive", "import", "--data", str(data), *args, str(inputs["h264-aac.mp4"])])
    assert exit_info.value.code == 2
    assert rows(data) == []


def test_two_files_at_once_and_a_bad_one_between(inputs: dict[str, Path], data: Path) -> None:
    """The installed script: what can be imported is, each failure is reported."""
    zhixing = Path(sys.executable).with_name("zhixing")
    files = [inputs["h264-aac.mp4"], inputs["notes.mp4"], inputs["vp8-opus.webm"]]
    done = subprocess.run([str(zhixing), "archive", "import", "--data", str(data),
                           *map(str, files)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ZHIXING_DATA": "/nonexistent"})
    assert done.returncode == 1, done.stderr
    found = {row["title"]: row for row in rows(data)}
    assert sorted(found) == ["h264-aac", "vp8-opus"]
    assert all(row["state"] == "ready" for row in found.values())
    assert done.stdout.splitlines() == [f"{found['h264-aac']['id']}\th264-aac",
                                        f"{found['vp8-opus']['id']}\tvp8-opus"]
    assert f"{files[1]}: not imported: not a media file" in done.stderr
    assert "1 of 3 files not imported" in done.stderr
    assert item_folders(data) == sorted(row["id"] for row in found.values())


@pytest.mark.parametrize(("failure", "status"), [
    (KeyboardInterrupt(), 130),
    (importer.ImportFailed("the disk is full"), 1),
])
def test_an_import_that_fails_half_way_leaves_nothing(
        inputs: dict[str, Path], data: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, failure: BaseException, status: int) -> None:
    real = importer.import_file
    seen: list[Path] = []

    def failing(source: Path, item_dir: Path, **kwargs: Any) -> Any:
        def progress(share: float) -> None:
            seen.extend(item_dir.iterdir())  # the .partial file is being written
            if share > 0.3:
                raise failure

        return real(source, item_dir, **{**kwargs, "progress": progress})

    monkeypatch.setattr(cli, "import_file", failing)
    result, out, err = run(capsys, data, "--transcode", inputs["mpeg4-mp3.avi"])
    assert result == status and out == ""
    assert any(path.name == "lecture.mp4.partial" for path in seen)
    assert str(inputs["mpeg4-mp3.avi"]) in err
    assert rows(data) == [] and item_folders(data) == []


# --------------------------------------------------------------------------
# progress on stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_on_a_terminal() -> None:
    stream = Terminal()
    bar = cli.ProgressBar("第一讲.mp4", stream)
    for share in (0.0, 0.004, 0.5, 0.5, 1.0):
        bar(share)
    bar.close()
    assert stream.getvalue() == (
        "\r第一讲.mp4 [..............................]   0%"
        "\r第一讲.mp4 [###############...............]  50%"
        "\r第一讲.mp4 [##############################] 100%\n")


def test_the_progress_is_occasional_lines_elsewhere() -> None:
    stream = io.StringIO()
    now = [0.0]
    bar = cli.ProgressBar("a.mp4", stream, interval=10, clock=lambda: now[0])
    for second, share in enumerate((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)):
        now[0] = second * 4.0
        bar(share)
    bar.close()
    assert stream.getvalue() == "a.mp4: 40%\na.mp4: 70%\na.mp4: 100%\n"


# --------------------------------------------------------------------------
# the service sees the imports


async def test_a_running_service_lists_an_import(inputs: dict[str, Path],
                                                 service: Service) -> None:
    data = service.app[CONFIG].data_dir
    zhixing = Path(sys.executable).with_name("zhixing")
    process = await asyncio.create_subprocess_exec(
        str(zhixing), "archive", "import", "--data", str(data), str(inputs["h264-aac.mp4"]),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    item_id = out.decode().split("\t")[0]
    async with service.http.get(f"{service.base}/api/v1/archive",
                                headers=service.admin) as response:
        assert response.status == 200
        [item] = (await response.json())["items"]
    assert (item["id"], item["state"], item["origin"]) == (item_id, "ready", "import")
    assert item["mime_type"] == "video/mp4"
    async with service.http.get(f"{service.base}{item['media_url']}", headers={
            **service.admin, "Range": "bytes=0-99"}) as response:
        assert response.status == 206
        assert (await response.read())[4:8] == b"ftyp"
    async with service.http.get(f"{service.base}{item['poster_url']}",
                                headers=service.admin) as response:
        assert response.status == 200 and response.content_type == "image/jpeg"


@pytest.fixture
def imported(inputs: dict[str, Path], tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> Iterator[Path]:
    data = make_data(tmp_path / "data")
    status, _, err = run(capsys, data, "--course", "1", inputs["h264-aac.mp4"],
                         inputs["vp8-opus.webm"])
    assert status == 0, err
    yield data


async def test_a_service_started_afterwards_lists_the_imports(imported: Path) -> None:
    config = Config(host="127.0.0.1", port=0, data_dir=imported, ice_hosts=["127.0.0.1"],
                    admin_token=ADMIN_TOKEN)
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http, http.get(
                server.make_url("/api/v1/archive"),
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as response:
            assert response.status == 200
            items = (await response.json())["items"]
    finally:
        await server.close()
    assert sorted((i["title"], i["state"], i["course_title"], i["mime_type"]) for i in items) == [
        ("h264-aac", "ready", "新时代党的建设", "video/mp4"),
        ("vp8-opus", "ready", "新时代党的建设", "video/webm")]
