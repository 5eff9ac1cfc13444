"""Message catalogs: zh-CN first, English second.

Each language is a folder of JSON files under ``web/i18n/`` (one file per
page or area, so pages can be worked on apart); all files of a language are
merged into one flat ``{key: text}`` catalog. Pages fetch
``/i18n/{lang}.json``; the server uses the same catalogs for the few texts it
renders itself. A key missing in English falls back to Chinese.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path

from aiohttp import web

from web.api.spec import Reply, operation
from web.errors import NotFound

CATALOG_DIR = Path(__file__).parent / "i18n"
LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
COOKIE = "zhixing_lang"


@cache
def catalog(language: str) -> dict[str, str]:
    """The merged catalog of ``language`` (read once per process)."""
    messages: dict[str, str] = {}
    if language != DEFAULT_LANGUAGE:
        messages.update(catalog(DEFAULT_LANGUAGE))
    for path in sorted((CATALOG_DIR / language).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object")
        messages.update({str(k): str(v) for k, v in data.items()})
    return messages


def language_of(request: web.Request) -> str:
    """?lang=, then the language cookie, then zh-CN (never guessed from the browser:
    the users' PCs are Chinese-first whatever they are set to)."""
    wanted = request.query.get("lang") or request.cookies.get(COOKIE) or DEFAULT_LANGUAGE
    return wanted if wanted in LANGUAGES else DEFAULT_LANGUAGE


def text(request: web.Request, key: str) -> str:
    return catalog(language_of(request)).get(key, key)


def notice_page(request: web.Request, status: int, *, title: str, heading: str,
                lines: list[str], stylesheet: str, switch_key: str,
                headers: dict[str, str]) -> web.Response:
    """A short server-rendered page for a person, in the reader's language,
    with a link to the other one (no script). ``title`` and ``heading`` are
    plain text; ``lines`` are HTML the caller escaped."""
    language = language_of(request)
    other = "en" if language == "zh-CN" else "zh-CN"
    switch = html.escape(catalog(language).get(switch_key, switch_key))
    body = "\n".join(lines)
    page = f"""<!doctype html>
<html lang="{language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="/static/{stylesheet}">
</head>
<body class="notice-page">
<main class="notice">
<h1>{html.escape(heading)}</h1>
{body}
<p class="lang"><a href="?lang={other}" hreflang="{other}">{switch}</a></p>
</main>
</body>
</html>
"""
    return web.Response(status=status, text=page, content_type="text/html",
                        charset="utf-8", headers=headers)


@operation("The message catalog of a language (zh-CN, en) used by the pages", security=None,
           errors=(404,), replies={200: Reply("{key: text}")})
async def messages(request: web.Request) -> web.Response:
    language = request.match_info["lang"]
    if language not in LANGUAGES:
        raise NotFound("no such language")
    return web.json_response(catalog(language), headers={"Cache-Control": "no-cache"})


def routes() -> list[web.RouteDef]:
    return [web.get("/i18n/{lang}.json", messages)]
