"""The library (课程回放): the poster grid at /library and the player at
/library/watch/{item_id}.

Readers are cadres who opened a library link (``/library/k/{token}`` sets the
``zhixing_library`` cookie, see web/api/archive.py); a logged-in admin may
look too. Without either, both pages answer 401 with a page that says a
library link is needed, never a listing. The pages are static templates
filled with the language (and the item id); their scripts read
``/api/v1/archive`` and play ``/archive/{id}/media``, which check the same
credentials on every request, so a revoked link stops the media too.
"""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import web

from classroom.errors import DomainError, Missing
from web import i18n
from web.auth import Caller, reader_role
from web.errors import AppError, status_of
from web.http import STATIC_DIR
from web.keys import ARCHIVE

LIBRARY_TEMPLATE = STATIC_DIR / "library.html"
WATCH_TEMPLATE = STATIC_DIR / "watch.html"
LANG_MARK = "{{lang}}"
ITEM_MARK = "{{item_id}}"
# The page's address may hold a library link (web/headers.py adds the rest).
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def routes() -> list[web.RouteDef]:
    return [web.get("/library", library), web.get("/library/watch/{item_id}", watch)]


def _role(request: web.Request) -> tuple[str, Caller | None] | None:
    """('admin', the account) or ('reader', None); None for anyone without a
    valid link or a login that may read the archive."""
    try:
        caller = reader_role(request)
    except (AppError, DomainError) as exc:
        if status_of(exc) in (401, 403):
            return None
        raise
    return ("reader", None) if caller is None else ("admin", caller)


def _page(request: web.Request, template: Path, item_id: str = "") -> web.Response:
    text = template.read_text(encoding="utf-8")
    text = text.replace(LANG_MARK, i18n.language_of(request))
    text = text.replace(ITEM_MARK, html.escape(item_id, quote=True))
    return web.Response(text=text, content_type="text/html", charset="utf-8",
                        headers=PAGE_HEADERS)


def _notice_page(request: web.Request, status: int, title_key: str,
                 lines: list[str]) -> web.Response:
    """A short server-rendered page in the chosen language (no script)."""
    title = i18n.text(request, title_key)
    headers = dict(PAGE_HEADERS)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="zhixing"'
    library_title = i18n.text(request, "library.title")
    return i18n.notice_page(request, status, title=f"{title} · {library_title}",
                            heading=title, lines=lines, stylesheet="library.css",
                            switch_key="library.lang.other", headers=headers)


def _link_needed(request: web.Request) -> web.Response:
    def text(key: str) -> str:
        return html.escape(i18n.text(request, key))

    return _notice_page(request, 401, "library.denied.title", [
        f'<p class="reason">{text("library.denied.body")}</p>',
        f"<p>{text('library.denied.ask')}</p>",
        f'<p class="admin"><a href="/login">{text("library.denied.admin")}</a></p>',
    ])


async def library(request: web.Request) -> web.Response:
    if _role(request) is None:
        return _link_needed(request)
    return _page(request, LIBRARY_TEMPLATE)


async def watch(request: web.Request) -> web.Response:
    found = _role(request)
    if found is None:
        return _link_needed(request)
    role, caller = found
    item_id = request.match_info["item_id"]
    try:
        item = request.app[ARCHIVE].item(item_id)
    except Missing:
        item = None
    # Readers see ready items only; an admin may open one still being made
    # (the page says it cannot be played yet).
    if item is None or (role == "reader" and item["state"] != "ready") or (
            caller is not None and not caller.scope.reads_item(item)):
        return _notice_page(request, 404, "library.missing.title", [
            f'<p class="reason">{html.escape(i18n.text(request, "library.missing.body"))}</p>',
            f'<p><a href="/library">{html.escape(i18n.text(request, "library.back"))}</a></p>',
        ])
    return _page(request, WATCH_TEMPLATE, item["id"])
