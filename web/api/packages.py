"""HTTP for course packages (课程包): the console's export and import.

An export is a job: ``POST /api/v1/packages`` checks the choice (a unit, a
course or items) and answers ``202`` at once; the console polls the job's
progress and downloads the file when it is ready. An import is an upload of
the package file (ZIP or ISO) as the request body, streamed to the data
folder, verified file by file and imported before the answer: ``200`` with
what was added, or ``422`` naming the missing or damaged file (nothing is
imported then). Admins only.
"""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import Field

from classroom.errors import StateConflict
from classroom.packages.exporter import Selection
from classroom.packages.manifest import PackageRefused
from web.api.spec import ABSENT, JSON_BODY_ERRORS, Reply, Shape, Validated, operation, read_model
from web.auth import require_city
from web.errors import UnsupportedMediaType
from web.http import receive_file
from web.keys import PACKAGES
from web.package_player import player_files

ADMIN = (401, 403)
UPLOAD_TYPES = ("application/zip", "application/x-iso9660-image", "application/octet-stream")
FREE_MARGIN = 256 * 1024 * 1024  # bytes an upload leaves free on the data folder's disk


class PackageExportInput(Validated):
    """What to export: exactly one of unit_id, course_id, item_ids."""

    unit_id: int = Field(ABSENT, ge=1)
    course_id: int = Field(ABSENT, ge=1)
    item_ids: list[str] = Field(ABSENT, min_length=1, max_length=1000,
                                description="archive item ids (ready lectures)")
    format: Literal["zip", "iso"] = Field("zip", description="a ZIP file, or an ISO image "
                                                             "to burn on a disc")
    refusals: ClassVar[dict[str, str]] = {"unit_id": "error.not_a_number",
                                          "course_id": "error.not_a_number",
                                          "item_ids": "error.package_selection",
                                          "format": "error.bad_choice"}


class PackageExport(Shape):
    """课程包: an export, running or ready to download"""

    component: ClassVar[bool] = True
    id: str
    format: Literal["zip", "iso"]
    title: str = Field(description="the unit's or course's name; empty for chosen items")
    items: int = Field(description="lectures in the package")
    unit_id: int | None
    course_id: int | None
    item_ids: list[str]
    created_at: float
    state: Literal["running", "ready", "failed"]
    progress: float = Field(description="0 to 1")
    size: int | None = Field(description="bytes of the file, once ready")
    error: str | None
    download_url: str | None = Field(description="the file, once ready")


class PackageImported(Shape):
    title: str
    added: list[str] = Field(description="ids of the lectures new to this archive")
    present: list[str] = Field(description="ids of the lectures it had already (left as is)")
    units_added: int
    courses_added: int


def routes() -> list[web.RouteDef]:
    return [
        web.post("/api/v1/packages", start_export),
        web.get("/api/v1/packages", list_exports),
        web.get("/api/v1/packages/{package_id}", get_export),
        web.get("/api/v1/packages/{package_id}/file", download),
        web.post("/api/v1/package-imports", import_package),
    ]


def _described(job: dict[str, object]) -> dict[str, object]:
    ready = job["state"] == "ready"
    return {**job, "download_url": f"/api/v1/packages/{job['id']}/file" if ready else None}


@operation("Export a unit, a course or chosen lectures as a course package (in the "
           "background)", body=PackageExportInput,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={202: Reply("the export, running", PackageExport),
                    409: Reply("another export is running")})
async def start_export(request: web.Request) -> web.Response:
    require_city(request)
    data = await read_model(request, PackageExportInput)
    selection = Selection(unit_id=data.unit_id, course_id=data.course_id,
                          item_ids=tuple(data.item_ids or ()))
    job = request.app[PACKAGES].start_export(selection, data.format, player_files())
    return web.json_response(_described(job), status=202,
                             headers={"Location": f"/api/v1/packages/{job['id']}"})


@operation("The exports kept for download, newest first", errors=ADMIN,
           replies={200: Reply("{packages: [PackageExport]}", PackageExport,
                               listed="packages")})
async def list_exports(request: web.Request) -> web.Response:
    require_city(request)
    return web.json_response(
        {"packages": [_described(job) for job in request.app[PACKAGES].jobs()]})


@operation("One export and its progress", errors=(*ADMIN, 404),
           replies={200: Reply("the export", PackageExport)})
async def get_export(request: web.Request) -> web.Response:
    require_city(request)
    return web.json_response(_described(request.app[PACKAGES].job(
        request.match_info["package_id"])))


@operation("The package file (ZIP or ISO) once ready; supports Range", errors=(*ADMIN, 404),
           replies={200: Reply("the file"), 206: Reply("the requested range"),
                    416: Reply("range out of bounds")})
async def download(request: web.Request) -> web.StreamResponse:
    require_city(request)
    path, job = request.app[PACKAGES].file(request.match_info["package_id"])
    day = datetime.date.fromtimestamp(float(str(job["created_at"]))).isoformat()
    name = f"{job['title'] or '课程包'}-{day}.{job['format']}"
    fallback = f"zhixing-package-{day}.{job['format']}"
    return web.FileResponse(path, headers={
        "Content-Disposition": f"attachment; filename=\"{fallback}\"; "
                               f"filename*=UTF-8''{quote(name, safe='')}",
        "Content-Type": "application/zip" if job["format"] == "zip"
        else "application/x-iso9660-image",
        "Cache-Control": "no-store"})


async def _receive(request: web.Request, target: Path) -> None:
    """The body into ``target``, refused (413) past what the disk can spare."""
    room = shutil.disk_usage(target.parent).free - FREE_MARGIN
    await receive_file(request, target, room,
                       refusal="the package is larger than the free disk space")


@operation("Import a course package (the ZIP or ISO file as the body): every file is "
           "verified first; a partial or damaged package is refused naming the file, with "
           "nothing imported; lectures already in the archive are left as they are",
           body_media={kind: {"schema": {"type": "string", "format": "binary"}}
                       for kind in UPLOAD_TYPES},
           errors=(*ADMIN, 413, 415,
                   (422, "not a package, or partial or damaged: the error names the file")),
           replies={200: Reply("imported", PackageImported),
                    409: Reply("not enough free disk space")})
async def import_package(request: web.Request) -> web.Response:
    require_city(request)
    if request.content_type not in UPLOAD_TYPES:
        raise UnsupportedMediaType("Content-Type must be application/zip, "
                                   "application/x-iso9660-image or application/octet-stream")
    packages = request.app[PACKAGES]
    upload = packages.upload_path()
    try:
        await _receive(request, upload)
        try:
            report = await packages.import_file(upload)
        except PackageRefused as exc:
            name = exc.path if exc.path != upload.name else "the uploaded file"
            return web.json_response({"error": f"package refused: {name}: {exc.reason}",
                                      "file": name, "reason": exc.reason, "kind": exc.kind},
                                     status=422)
        except OSError as exc:
            raise StateConflict(f"the package could not be imported: {exc.strerror}") from exc
    finally:
        upload.unlink(missing_ok=True)
    return web.json_response(report.json())
