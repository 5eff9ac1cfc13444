"""Message catalogs: both languages have the same keys; every message key the
code produces exists; pages can fetch them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.service import Service
from web.i18n import CATALOG_DIR, LANGUAGES

ROOT = Path(__file__).parents[2]


def _files(language: str) -> dict[str, dict[str, str]]:
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted((CATALOG_DIR / language).glob("*.json"))}


def test_both_languages_have_the_same_files_and_keys() -> None:
    chinese, english = _files("zh-CN"), _files("en")
    assert chinese.keys() == english.keys()
    for name in chinese:
        assert chinese[name].keys() == english[name].keys(), name
        assert all(text.strip() for text in chinese[name].values()), name
        assert all(text.strip() for text in english[name].values()), name


def test_no_key_is_defined_in_two_files() -> None:
    seen: dict[str, str] = {}
    for name, messages in _files("zh-CN").items():
        for key in messages:
            assert key not in seen, f"{key} in {name} and {seen[key]}"
            seen[key] = name


def test_every_error_key_the_catalog_raises_is_translated() -> None:
    source = "".join(path.read_text(encoding="utf-8")
                     for folder in ("classroom", "web") for path in (ROOT / folder).rglob("*.py"))
    used = set(re.findall(r'"(error\.[a-z_]+)"', source))
    assert used, "the pattern no longer finds the keys"
    merged = {k for messages in _files("en").values() for k in messages}
    assert used <= merged, used - merged


async def test_pages_fetch_a_catalog_per_language(service: Service) -> None:
    for language in LANGUAGES:
        async with service.http.get(f"{service.base}/i18n/{language}.json") as response:
            assert response.status == 200
            messages = await response.json()
            assert messages["app.name"]
    async with service.http.get(f"{service.base}/i18n/fr.json") as response:
        assert response.status == 404
