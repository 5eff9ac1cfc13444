"""The layers stay layers, and docs/architecture.md's tree stays the tree.

streaming/ and recordings/ know no HTTP and no SQL; classroom/ (the domain)
imports neither aiohttp nor web/; in web/, no route module imports another
(what they share is in web/http.py, web/auth.py, web/errors.py, web/api/spec.py
and web/api/models.py). The tree in
docs/architecture.md lists every module of the four packages.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("streaming", "recordings", "classroom", "web")


def _modules(package: str) -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize(("package", "forbidden"), [
    ("streaming", ("aiohttp", "web", "classroom", "recordings", "sqlite3")),
    ("recordings", ("aiohttp", "web", "classroom", "sqlite3")),
    ("classroom", ("aiohttp", "web")),
])
def test_a_lower_layer_imports_no_higher_one(package: str, forbidden: tuple[str, ...]) -> None:
    wrong = {name: sorted(n for n in _imports(path) if _under(n, forbidden))
             for name, path in _modules(package).items()}
    assert not {name: found for name, found in wrong.items() if found}


def test_no_route_module_imports_another() -> None:
    """A route module is one of the API's, the pages', the sockets' or the
    signaling, with a ``routes()``; the contract, which assembles them all
    into the OpenAPI document, is the one exception."""
    modules = _modules("web")
    routes = {name for name, path in modules.items()
              if _under(name, ("web.api", "web.pages", "web.sockets", "web.signaling"))
              and "\ndef routes(" in path.read_text(encoding="utf-8")}
    routes.discard("web.api.contract")
    assert {"web.api.sessions", "web.pages.room", "web.signaling"} <= routes
    wrong = {name: sorted(n for n in _imports(modules[name]) if n in routes and n != name)
             for name in routes}
    assert not {name: found for name, found in wrong.items() if found}


def _documented_tree() -> set[str]:
    """The modules the tree block of 'Layers and folders' lists."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text[text.index("## Layers and folders"):]
    blocks = re.findall(r"```\n(.*?)```", section, flags=re.S)
    tree = next(block for block in blocks if block.startswith("streaming/\n"))
    listed: set[str] = set()
    top = ""
    for line in tree.splitlines():
        if not line.startswith(" "):
            top = line.strip().rstrip("/")
            continue
        words = line.split()
        folder = ""
        if words and words[0].endswith("/") and words[0] not in ("static/", "i18n/"):
            folder = words[0].rstrip("/") + "/"
            words = words[1:]
        listed.update(f"{top}/{folder}{word}" for word in words if word.endswith(".py"))
    return listed


def test_the_documented_tree_is_the_tree() -> None:
    actual = {str(path.relative_to(ROOT)) for package in PACKAGES
              for path in (ROOT / package).rglob("*.py") if path.name != "__init__.py"}
    documented = _documented_tree()
    assert documented, "the tree block was not found"
    assert sorted(actual - documented) == [], "modules missing from docs/architecture.md"
    assert sorted(documented - actual) == [], "docs/architecture.md lists modules that are gone"
