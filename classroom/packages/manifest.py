"""A course package's manifest: what it holds, and the checks on reading one.

A package (课程包) is a folder, a ZIP file or an ISO image with this layout::

    index.html  player/…        the offline player (opens from file://)
    catalog.js                  the catalog for the player, as a script
    manifest.json               this: catalog metadata and every file's SHA-256
    media/<item id>/lecture.mp4 | lecture.webm, poster.jpg, stage.mp4 | stage.webm

The manifest lists every other file with its size and SHA-256. Reading one
trusts nothing in it: a path must be a plain relative path inside the
package, every field has its type and bounds, and the items' files are
named by the archive's own rules. A refusal names the file or field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from classroom.catalog import MAX_NAME, MAX_TEXT
from classroom.errors import Invalid
from recordings.finish import MEDIA_NAMES, POSTER_NAME, STAGE_NAMES
from recordings.manager import valid_item_id

FORMAT = "zhixing-course-package"
VERSION = 1
MANIFEST_NAME = "manifest.json"
CATALOG_SCRIPT = "catalog.js"
MAX_MANIFEST = 16 * 1024 * 1024  # bytes: thousands of lectures fit in far less
MAX_PATH = 200
SHA256 = re.compile(r"[0-9a-f]{64}")
PATH_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ITEM_FILES = {"media": set(MEDIA_NAMES.values()), "poster": {POSTER_NAME},
              "stage": set(STAGE_NAMES.values())}


class PackageRefused(Invalid):
    """The package is partial, damaged or not a package: nothing was imported.

    ``path`` names the file (or the manifest field) at fault."""

    KINDS = ("manifest", "missing", "incomplete", "damaged", "outside", "not_package")

    def __init__(self, path: str, reason: str, kind: str = "manifest") -> None:
        super().__init__({"package": "error.package_refused"})
        assert kind in self.KINDS, kind
        self.path = path
        self.reason = reason
        self.kind = kind  # for a message in the reader's language
        self.message = f"package refused: {path}: {reason}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class PackageFile:
    path: str  # relative, '/'-separated, checked by safe_path
    size: int
    sha256: str


@dataclass
class Manifest:
    """The parsed manifest; ``units``, ``courses`` and ``items`` are the
    catalog rows as exported (ids are the exporting server's)."""

    created_at: float
    title: str
    units: list[dict[str, Any]]
    courses: list[dict[str, Any]]
    items: list[dict[str, Any]]
    files: list[PackageFile] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "created_at": self.created_at,
                "title": self.title, "units": self.units, "courses": self.courses,
                "items": self.items,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256}
                          for f in self.files]}

    def dumps(self) -> bytes:
        return json.dumps(self.json(), ensure_ascii=False, indent=1).encode("utf-8")


def item_paths(item: dict[str, Any]) -> dict[str, str]:
    """The package paths of an item's files: {"media": …, "poster": …, "stage": …}."""
    paths = {"media": f"media/{item['id']}/{item['media_file']}"}
    if item.get("poster_file"):
        paths["poster"] = f"media/{item['id']}/{item['poster_file']}"
    if item.get("stage_file"):
        paths["stage"] = f"media/{item['id']}/{item['stage_file']}"
    return paths


def safe_path(path: object) -> str:
    """``path`` if it is a plain relative path inside the package, else refuse."""
    if not isinstance(path, str):
        raise PackageRefused(MANIFEST_NAME, "a file's path is not text")
    parts = path.split("/")
    if (not path or len(path) > MAX_PATH or path.startswith("/")
            or any(not PATH_PART.fullmatch(part) for part in parts)):
        raise PackageRefused(path[:MAX_PATH] or "(empty)", "the path leads outside the package "
                             "or is not a plain file name", "outside")
    return path


# ---------------------------------------------------------------------- reading


def _refuse(what: str) -> PackageRefused:
    return PackageRefused(MANIFEST_NAME, what)


def _text(row: dict[str, Any], name: str, where: str, *, required: bool = False,
          max_length: int = MAX_NAME) -> str:
    value = row.get(name, "")
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > max_length or (required and not value.strip()):
        raise _refuse(f"{where}: {name} is not a valid text")
    return value


def _number(row: dict[str, Any], name: str, where: str, *, optional: bool = False,
            whole: bool = False) -> Any:
    value = row.get(name)
    if value is None and optional:
        return None
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0 or value >= 2**63:
        raise _refuse(f"{where}: {name} is not a valid number")
    return value


def _row_id(row: dict[str, Any], name: str, where: str, known: set[int | None] | None
            ) -> int | None:
    value = row.get(name)
    if value is None and known is not None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise _refuse(f"{where}: {name} is not a valid id")
    if known is not None and value not in known:
        raise _refuse(f"{where}: {name} names no {name[:-3]} of the package")
    return value


def _list(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    rows = data.get(name)
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise _refuse(f"{name} is not a list of objects")
    return rows


def _turns(raw: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > 10_000:
        raise _refuse(f"{where}: stage_turns is not a list")
    turns = []
    for turn in raw:
        if not isinstance(turn, dict):
            raise _refuse(f"{where}: a stage turn is not an object")
        turns.append({"at": _number(turn, "at", where), "offset": _number(turn, "offset", where),
                      "duration": _number(turn, "duration", where),
                      "site_name": _text(turn, "site_name", where) or None,
                      "org_path": _text(turn, "org_path", where, max_length=MAX_TEXT) or None})
    return turns


def _item(row: dict[str, Any], courses: set[int | None]) -> dict[str, Any]:
    item_id = row.get("id")
    if not isinstance(item_id, str) or not valid_item_id(item_id):
        raise _refuse("an item's id is not an archive id")
    where = f"item {item_id}"
    item = {"id": item_id, "course_id": _row_id(row, "course_id", where, courses),
            "title": _text(row, "title", where, required=True),
            "lecturer": _text(row, "lecturer", where),
            "description": _text(row, "description", where, max_length=MAX_TEXT),
            "recorded_at": _number(row, "recorded_at", where),
            "origin": row.get("origin"),
            "duration": _number(row, "duration", where),
            "size": _number(row, "size", where, whole=True),
            "video_codec": _text(row, "video_codec", where),
            "audio_codec": _text(row, "audio_codec", where) or None,
            "width": _number(row, "width", where, whole=True),
            "height": _number(row, "height", where, whole=True),
            "media_file": row.get("media_file"), "poster_file": row.get("poster_file"),
            "stage_file": row.get("stage_file"),
            "stage_turns": _turns(row.get("stage_turns", []), where)}
    if item["origin"] not in ("recording", "import"):
        raise _refuse(f"{where}: origin is not recording or import")
    for kind, column in (("media", "media_file"), ("poster", "poster_file"),
                         ("stage", "stage_file")):
        name = item[column]
        if (name is not None or kind == "media") and name not in ITEM_FILES[kind]:
            raise _refuse(f"{where}: {column} is not one of the archive's file names")
    if item["stage_turns"] and not item["stage_file"]:
        raise _refuse(f"{where}: stage turns without a stage file")
    return item


def parse(raw: bytes) -> Manifest:
    """The manifest of a package, checked; raises PackageRefused."""
    if len(raw) > MAX_MANIFEST:
        raise _refuse("too large")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _refuse("not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _refuse("not a Zhixing course package")
    if data.get("version") != VERSION:
        raise _refuse(f"format version {data.get('version')!r}; this server reads {VERSION}")
    units: list[dict[str, Any]] = []
    for row in _list(data, "units"):
        where = f"unit {row.get('id')}"
        units.append({"id": _row_id(row, "id", where, None),
                      "name": _text(row, "name", where, required=True),
                      "description": _text(row, "description", where, max_length=MAX_TEXT)})
    unit_ids = {unit["id"] for unit in units}
    courses: list[dict[str, Any]] = []
    for row in _list(data, "courses"):
        where = f"course {row.get('id')}"
        courses.append({"id": _row_id(row, "id", where, None),
                        "unit_id": _row_id(row, "unit_id", where, unit_ids),
                        "title": _text(row, "title", where, required=True),
                        "lecturer": _text(row, "lecturer", where)})
    course_ids = {course["id"] for course in courses}
    items = [_item(row, course_ids) for row in _list(data, "items")]
    if len(unit_ids) != len(units) or len(course_ids) != len(courses) \
            or len({item["id"] for item in items}) != len(items):
        raise _refuse("a unit, course or item is listed twice")
    files: dict[str, PackageFile] = {}
    for row in _list(data, "files"):
        path = safe_path(row.get("path"))
        size, digest = row.get("size"), row.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 \
                or not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise PackageRefused(path, "the manifest gives no valid size and SHA-256")
        if path in files or path == MANIFEST_NAME:
            raise PackageRefused(path, "listed twice in the manifest")
        files[path] = PackageFile(path, size, digest)
    for item in items:
        for path in item_paths(item).values():
            if path not in files:
                raise PackageRefused(path, "an item's file is missing from the manifest")
    created = _number(data, "created_at", "package")
    return Manifest(created_at=float(created), title=_text(data, "title", "package"),
                    units=units, courses=courses, items=items, files=list(files.values()))
