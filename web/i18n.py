"""Message catalogs: zh-CN first, English second.

Each language is a folder of JSON files under ``web/i18n/`` (one file per
page or area, so pages can be worked on apart); all files of a language are
merged into one flat ``{key: text}`` catalog. Pages fetch
``/i18n/{lang}.json``; the server uses the same catalogs for the few texts it
renders itself. A key missing in English falls back to Chinese.
"""

from __future__ import annotations

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


@operation("The message catalog of a language (zh-CN, en) used by the pages", security=None,
           errors=(404,), replies={200: Reply("{key: text}")})
async def messages(request: web.Request) -> web.Response:
    language = request.match_info["lang"]
    if language not in LANGUAGES:
        raise NotFound("no such language")
    return web.json_response(catalog(language), headers={"Cache-Control": "no-cache"})


def routes() -> list[web.RouteDef]:
    return [web.get("/i18n/{lang}.json", messages)]
