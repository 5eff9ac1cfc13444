"""The generated OpenAPI document against the hand-written one it replaced
(tests/web/openapi-before.json, dumped before the change): the same paths,
methods, status codes and schemas for clients, but for the changes listed
in INTENDED, each with its reason.

Both documents are normalised first: references resolved, titles dropped,
nullable written one way (``type: [x, "null"]``, ``anyOf``/``oneOf`` with
``null``, ``None`` in an enum), lists whose order means nothing sorted.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from web.api.contract import OPENAPI
from web.app import create_app
from web.config import Config

BEFORE = Path(__file__).parent / "openapi-before.json"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
NULL = {"type": "null"}


@dataclass(frozen=True)
class Change:
    """An intended difference: at ``where`` (keys into the normalised
    document), ``before`` becomes ``after`` (``MISSING``: absent)."""

    where: tuple[str, ...]
    before: Any
    after: Any
    why: str


MISSING = object()
_REPLAY = ("paths", "/api/v1/sessions/{session_id}/replay", "post", "requestBody", "content",
           "application/json", "schema", "properties", "position")

_TIMESHIFT = ("paths", "/api/v1/room/timeshift", "post", "requestBody", "content",
              "application/json", "schema", "properties", "resource")

INTENDED: list[Change] = [
    # The seek position was always refused from 24 h on (error.not_a_number);
    # the model that now checks it says so.
    Change((*_REPLAY, "exclusiveMaximum"), MISSING, 86400,
           "the replay's seek position is below 24 h, as the handler always required"),
    # The handler always refused an empty resource id or one over 64 characters
    # (422); the model that now checks it documents the limits.
    Change((*_TIMESHIFT, "minLength"), MISSING, 1, "a WHEP resource id is never empty"),
    Change((*_TIMESHIFT, "maxLength"), MISSING, 64, "nor longer than 64 characters"),
]


_JSON_ERROR = {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}}}}
_PLAIN_ERROR = {"text/plain": {"schema": {"type": "string"}}}


def _limit(path: str, method: str, status: str, description: str) -> Change:
    """A refusal at a limit per credential (web/limits.py), with Retry-After."""
    content = _JSON_ERROR if path.startswith("/api/") else _PLAIN_ERROR
    reply = {"description": description, "content": content}
    return Change(("paths", path, method, "responses", status), MISSING, reply,
                  "limits per credential: a leaked link cannot exhaust the server")


_OFFER_429 = "this link or address holds its share of connections (Retry-After)"
_OFFER_503 = "too many connections being set up (Retry-After)"
INTENDED += [
    *(_limit(f"/{kind}/{{session_id}}", "post", status, why)
      for kind in ("whip", "whep") for status, why in (("429", _OFFER_429), ("503", _OFFER_503))),
    _limit("/api/v1/sessions/{session_id}/events/ws", "get", "429",
           "this token has its share of open sockets"),
    _limit("/api/v1/sessions/{session_id}/wall/ws", "get", "429",
           "this login has its share of open sockets"),
    _limit("/api/v1/sites/import", "post", "429",
           "too many uploads from this admin a minute (Retry-After)"),
    _limit("/api/v1/sites/import", "post", "503", "too many uploads at once (Retry-After)"),
]


def _plain_errors() -> list[Change]:
    """Outside /api/ an error always was plain text (web/errors.py); the old
    document said JSON, which a property-based run of the contract caught."""
    before = json.loads(BEFORE.read_text(encoding="utf-8"))
    changes = []
    for path, item in resolve(before, before["paths"]).items():
        if path.startswith("/api/"):
            continue
        for method, op in item.items():
            statuses = op.get("responses", {}) if method in METHODS else {}
            for status, reply in statuses.items():
                if int(status) >= 400 and reply.get("content") == _JSON_ERROR:
                    changes.append(Change(
                        ("paths", path, method, "responses", status, "content"), _JSON_ERROR,
                        _PLAIN_ERROR, "errors outside /api/ are plain text, as they were"))
    return changes


def resolve(document: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref.startswith("#/") and ref not in seen, ref
            target: Any = document
            for part in ref[2:].split("/"):
                target = target[part]
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return resolve(document, {**copy.deepcopy(target), **rest}, (*seen, ref))
        return {k: resolve(document, v, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(document, v, seen) for v in node]
    return node


def normalise(node: Any) -> Any:
    """One spelling of each schema: what a client can tell apart stays."""
    if isinstance(node, list):
        return [normalise(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: v for k, v in node.items()
            if not (k == "title" and isinstance(v, str))
            and not (k == "additionalProperties" and v is True)}
    nullable = False
    kind = node.get("type")
    if isinstance(kind, list) and "null" in kind and len(kind) == 2:
        node["type"] = next(t for t in kind if t != "null")
        nullable = True
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and NULL in options and len(options) == 2:
            other = next(o for o in options if o != NULL)
            del node[key]
            node = {**other, **node}
            nullable = True
    if isinstance(node.get("enum"), list) and None in node["enum"]:
        node["enum"] = [v for v in node["enum"] if v is not None]
        nullable = True
    if nullable:
        node["nullable"] = True
    out = {k: normalise(v) for k, v in node.items()}
    for key in ("required", "enum"):
        if isinstance(out.get(key), list):
            out[key] = sorted(out[key], key=json.dumps)
    if isinstance(out.get("parameters"), list):
        out["parameters"] = sorted(out["parameters"],
                                   key=lambda p: (p.get("in", ""), p.get("name", "")))
    return out


def contract(document: dict[str, Any]) -> dict[str, Any]:
    """What clients rely on: every operation, fully resolved, and the security schemes."""
    resolved = resolve(document, document["paths"])
    paths = {}
    for path, item in resolved.items():
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method not in METHODS:
                continue
            operation = dict(operation)
            operation["parameters"] = shared + operation.get("parameters", [])
            paths.setdefault(path, {})[method] = operation
    return normalise({"paths": paths,
                      "securitySchemes": document["components"]["securitySchemes"],
                      "schemas": resolve(document, document["components"]["schemas"])})


def apply(document: dict[str, Any], change: Change) -> None:
    *parents, last = change.where
    node = document
    for key in parents:
        node = node[key]
    assert node.get(last, MISSING) == change.before, (change.where, node.get(last, MISSING))
    if change.after is MISSING:
        del node[last]
    else:
        node[last] = change.after


def differences(before: Any, after: Any, where: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            here = f"{where}/{key}"
            if key not in after:
                found.append(f"{here}: missing now")
            elif key not in before:
                found.append(f"{here}: new: {json.dumps(after[key], ensure_ascii=False)[:200]}")
            else:
                found += differences(before[key], after[key], here)
        return found
    if before != after:
        return [f"{where}: {json.dumps(before, ensure_ascii=False)[:200]} → "
                f"{json.dumps(after, ensure_ascii=False)[:200]}"]
    return []


INTENDED += _plain_errors()


def expected() -> dict[str, Any]:
    before = contract(json.loads(BEFORE.read_text(encoding="utf-8")))
    for change in INTENDED:
        apply(before, change)
    return before


def test_every_operation_and_status_is_kept() -> None:
    before = json.loads(BEFORE.read_text(encoding="utf-8"))
    operations = {(m, p): set(op["responses"]) for p, item in before["paths"].items()
                  for m, op in item.items() if m in METHODS}
    for change in INTENDED:
        if change.where[0] == "paths" and change.where[3:4] == ("responses",) \
                and len(change.where) == 5:
            operations[(change.where[2], change.where[1])].add(change.where[4])
    now = {(m, p): set(op["responses"]) for p, item in OPENAPI["paths"].items()
           for m, op in item.items() if m in METHODS}
    assert sorted(set(operations) - set(now)) == [], "operations gone"
    assert sorted(set(now) - set(operations)) == [], "operations added"
    changed = {key: (operations[key], now[key]) for key in operations
               if operations[key] != now[key]}
    assert changed == {}, "status codes changed"


def test_the_generated_document_is_equivalent() -> None:
    found = differences(expected(), contract(OPENAPI))
    assert found == [], "\n".join(found)


def test_the_schemas_are_equivalent() -> None:
    """Every component schema of before still exists, equivalent (new ones may be added)."""
    before = expected()["schemas"]
    now = contract(OPENAPI)["schemas"]
    assert sorted(set(before) - set(now)) == []
    found = [d for name in before for d in differences(before[name], now[name], name)]
    assert found == [], "\n".join(found)


def test_intended_changes_are_real() -> None:
    """Each listed change is one: the old document had ``before`` there."""
    before = contract(json.loads(BEFORE.read_text(encoding="utf-8")))
    for change in INTENDED:
        assert change.before != change.after, change
        apply(copy.deepcopy(before), change)


async def test_the_served_document_is_the_generated_one(tmp_path: Path) -> None:
    app = create_app(Config(data_dir=tmp_path))
    async with TestClient(TestServer(app)) as client:
        reply = await client.get("/api/v1/openapi.json")
        assert reply.status == 200
        assert await reply.json() == json.loads(json.dumps(OPENAPI))
