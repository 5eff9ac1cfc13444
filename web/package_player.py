"""The offline player that goes into every course package.

Its page, script and style are in ``web/static/package/``; its texts are the
``package.player.*`` messages of both languages, written as a script
(``player/messages.js``) because a page opened from ``file://`` may load a
script beside it but may not fetch a JSON file.
"""

from __future__ import annotations

import json
from functools import cache

from web.http import STATIC_DIR
from web.i18n import LANGUAGES, catalog

PLAYER_DIR = STATIC_DIR / "package"
PREFIX = "package.player."


@cache
def player_files() -> dict[str, bytes]:
    """Package path → content of the player's files."""
    messages = {language: {key: text for key, text in catalog(language).items()
                           if key.startswith(PREFIX)} for language in LANGUAGES}
    script = "window.ZHIXING_MESSAGES = " + json.dumps(messages, ensure_ascii=False,
                                                       indent=1) + ";\n"
    return {
        "index.html": (PLAYER_DIR / "index.html").read_bytes(),
        "player/player.js": (PLAYER_DIR / "player.js").read_bytes(),
        "player/player.css": (PLAYER_DIR / "player.css").read_bytes(),
        "player/messages.js": script.encode(),
    }
