"""The security headers (web/headers.py): a Content-Security-Policy without
'unsafe-inline' on every page, and the pages still working under it in
Chromium, with no violation reported; nosniff everywhere; no referrer from
a page whose address holds a token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.archive_helpers import record_item
from tests.support.browser import BrowserPage, Chromium
from tests.support.pages import invite, log_in, open_console
from tests.support.service import Service, call_json
from web.headers import PAGE_POLICY
from web.http import STATIC_DIR

# Collects every CSP violation a page reports, before any of its scripts runs.
WATCH_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} blocked ${e.blockedURI || "(inline)"} ` +
    `at ${e.sourceFile}:${e.lineNumber}`);
});
"""

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)
HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"javascript:", re.I)


def inline_code(html: str) -> list[str]:
    """What a page holds that its policy would block."""
    found = []
    for name, pattern in (("inline script", INLINE_SCRIPT), ("inline style", INLINE_STYLE),
                          ("event handler attribute", HANDLER), ("javascript: URL", JS_URL)):
        found += [f"{name}: {m.group(0)[:60]}" for m in pattern.finditer(html)]
    return found


def test_the_policy_allows_nothing_inline_or_from_elsewhere() -> None:
    directives = dict(part.split(" ", 1) for part in PAGE_POLICY.split("; "))
    assert "unsafe" not in PAGE_POLICY  # no 'unsafe-inline', no 'unsafe-eval'
    for name in ("default-src", "script-src", "style-src", "connect-src", "img-src"):
        assert directives[name] == "'self'", name
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"


@pytest.mark.parametrize("path", sorted(p.name for p in STATIC_DIR.glob("*.html")))
def test_no_page_file_holds_inline_code(path: str) -> None:
    assert inline_code((STATIC_DIR / path).read_text(encoding="utf-8")) == []


def test_the_finder_finds_inline_code() -> None:
    assert len(inline_code('<script>alert(1)</script><p style="x" onclick="y">'
                           '<a href="javascript:z">')) == 4
    assert inline_code('<script type="module" src="/static/a.js"></script>') == []


async def _get(service: Service, path: str) -> tuple[int, Any, str]:
    async with service.http.get(service.base + path, allow_redirects=False) as response:
        return response.status, response.headers, await response.text()


async def test_every_page_sends_the_policy(admin_service: Service) -> None:
    service = admin_service
    session = await service.create_session()
    room = await invite(service, session["id"])
    status, link = await call_json(service, "POST", "/api/v1/library-links",
                                   {"label": "北仑区学员"})
    assert status == 201, link
    token_pages = [f"/join/{room['token']}", "/join/not-a-token", f"/present/{session['id']}",
                   "/library", "/library/watch/0123456789abcdef"]
    await log_in(service)
    other_pages = ["/", "/login", "/admin", "/admin/reports", f"/admin/wall/{session['id']}",
                   "/admin/wall/nope", "/present/nope", "/static/view.html",
                   "/static/publish.html", "/i18n/en.json"]
    for path in token_pages + other_pages:
        status, headers, body = await _get(service, path)
        assert status < 500, (path, status)
        assert headers["X-Content-Type-Options"] == "nosniff", path
        expected = "no-referrer" if path in token_pages else "same-origin"
        assert headers["Referrer-Policy"] == expected, path
        if headers["Content-Type"].startswith("text/html"):
            assert headers["Content-Security-Policy"] == PAGE_POLICY, path
            assert headers["X-Frame-Options"] == "DENY", path
            assert inline_code(body) == [], path
        else:
            assert "Content-Security-Policy" not in headers, path
    # The link that sets the library cookie holds the link's token too.
    status, headers, _ = await _get(service, f"/library/k/{link['token']}")
    assert (status, headers["Referrer-Policy"]) == (303, "no-referrer")
    # Not pages: scripts, styles, JSON, errors are never sniffed either.
    for path in ("/static/room.js", "/static/room.css", "/api/v1/me", "/no/such/thing"):
        status, headers, _ = await _get(service, path)
        assert headers["X-Content-Type-Options"] == "nosniff", path


async def _violations(page: BrowserPage) -> list[str]:
    found: list[str] = await page.evaluate("() => window.__cspViolations")
    return found + [line for line in page.console if "Content Security Policy" in line]


@pytest.mark.browser
@pytest.mark.webrtc
async def test_the_pages_work_under_the_policy_and_report_a_violation(
    admin_service: Service, chromium: Chromium
) -> None:
    service = admin_service
    base = service.base
    item = await record_item(service, 2.0)
    session = await service.create_session()
    room = await invite(service, session["id"])
    await chromium.context.add_init_script(WATCH_VIOLATIONS)
    ready = "() => document.body.dataset.ready === 'true'"
    started = "() => window.zhixing !== undefined"
    pages: list[tuple[str, str, str]] = [
        # Before logging in: "/" sends a logged-in admin to the console.
        ("start", f"{base}/#token=abc", "() => document.getElementById('token').value === 'abc'"),
        ("console", "", ""),  # opened through the login page
        ("reports", f"{base}/admin/reports", ready),
        ("wall", f"{base}/admin/wall/{session['id']}", ready),
        ("library", f"{base}/library", ready),
        ("watch", f"{base}/library/watch/{item['id']}",
         "() => document.body.dataset.ready === 'true' && document.querySelector('video')"
         "?.readyState >= 1"),
        ("room", f"{base}/join/{room['token']}", started),
        ("presenter", f"{base}/present/{session['id']}#token={session['publish_token']}", started),
        ("view", f"{base}/static/view.html#session={session['id']}"
                 f"&token={session['view_token']}", started),
        ("publish", f"{base}/static/publish.html#session={session['id']}"
                    f"&token={session['publish_token']}", started),
    ]
    checked: list[str] = []
    for name, url, works in pages:
        if name == "console":
            page = await open_console(chromium, base, name)  # the login page, then /admin
        else:
            page = await chromium.open(url, name)
            await chromium.wait_for_js(page, f"the {name} page works", works, 20)
        assert await _violations(page) == [], (name, await page.describe())
        checked.append(name)
        if name != "publish":
            await page.page.close()
    assert len(checked) == len(pages)

    # A violation would have been seen: inline code added to a page is
    # blocked, and reported.
    page = chromium.pages[-1]
    await page.evaluate("""() => {
      const script = document.createElement("script");
      script.textContent = "window.__inlineRan = true";
      document.body.append(script);
      document.body.setAttribute("style", "background: red");
    }""")
    seen: Callable[[list[str]], bool] = lambda found: len(found) >= 2  # noqa: E731
    found = await chromium.wait_for("violations reported", lambda: _violations(page), seen, 5)
    assert any(line.startswith("script-src") for line in found), found
    assert any(line.startswith("style-src") for line in found), found
    assert await page.evaluate("() => window.__inlineRan === undefined")


def test_static_scripts_set_no_style_attribute() -> None:
    """Styles set from a script go through CSSOM (element.style), which the
    policy allows; a style attribute (setAttribute) is blocked like markup."""
    for path in sorted(Path(STATIC_DIR).glob("*.js")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"setAttribute\(\s*[\"']style", text), path.name
        assert not re.search(r"\.innerHTML\s*=|insertAdjacentHTML", text), path.name
        assert not re.search(r"\beval\(|new Function\(", text), path.name
