"""The OpenAPI document, assembled from the routes and their declarations.

Each HTTP module owns its part of the contract: its route table
(``routes()``), the typed models of its bodies and an :func:`~web.api.spec.operation`
declaration on each handler (``web/api/spec.py``). This module walks the
route tables of the application, in the order ``web/app.py`` adds them, and
writes the document that ``GET /api/v1/openapi.json`` serves: a route is in
the document exactly when its handler declares an operation (the pages'
HTML routes declare none).
"""

from __future__ import annotations

import copy
import re
from types import ModuleType
from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

from web import auth, i18n, signaling
from web.api import (
    accounts,
    archive,
    audit,
    catalog,
    learners,
    metrics,
    org,
    packages,
    reports,
    sessions,
    surveys,
)
from web.api.spec import (
    ERROR,
    JSON,
    PATH_PARAMS,
    Model,
    Operation,
    Reply,
    SchemaGenerator,
    declared,
    route_path,
)
from web.api.spec import operation as declare
from web.pages import console, learner, library, login, presenter, room, wall
from web.sockets import events
from web.sockets import wall as wall_socket

# Every module with routes, in the order the application adds them.
ROUTE_MODULES: tuple[ModuleType, ...] = (
    sessions, catalog, archive, packages, reports, metrics, org, accounts, audit,  # admin API
    learners, surveys,
    auth, login, console, room, presenter, library, learner, wall,  # pages
    signaling, events, wall_socket, i18n,
)

SCHEMAS = "#/components/schemas/"
SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "libraryCookie": {
        "type": "apiKey", "in": "cookie", "name": "zhixing_library",
        "description": "set by opening a library link /library/k/{token}; the token also "
                       "works as a bearer token"},
    "metricsToken": {
        "type": "http", "scheme": "bearer",
        "description": "the --metrics-token (ZHIXING_METRICS_TOKEN), for /metrics only"},
}
ERROR_RESPONSE: dict[str, Any] = {
    "description": "error with a short text (for 422: every bad field and its message key)",
    "content": {JSON: {"schema": {"type": "object",
                                  "properties": {"error": {"type": "string"}}}}}}
# Outside /api/ (WHIP/WHEP, media, message catalogs) an error is the text
# alone (web/errors.py), which an encoder or a player shows as it is.
PLAIN_ERROR = "PlainError"
PLAIN_ERROR_RESPONSE: dict[str, Any] = {
    "description": ERROR_RESPONSE["description"],
    "content": {"text/plain": {"schema": {"type": "string"}}}}


def routes() -> list[web.RouteDef]:
    return [web.get("/api/v1/openapi.json", openapi)]


@declare("This document", security=None, replies={200: Reply("OpenAPI")})
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


def build(modules: tuple[ModuleType, ...] = ROUTE_MODULES) -> dict[str, Any]:
    """The document of the routes of ``modules`` (and this module's own)."""
    writer = _Writer()
    for table in (*(module.routes() for module in modules), routes()):
        for route in table:
            assert isinstance(route, web.RouteDef)
            path = route_path(route.path)
            op = declared(route.handler, path)
            if op is not None:
                writer.add(route.method.lower(), path, op)
    return writer.document()


class _Writer:
    def __init__(self) -> None:
        self.paths: dict[str, dict[str, Any]] = {}
        self.models: dict[str, type[Model]] = {}

    def ref(self, model: type[Model]) -> dict[str, Any]:
        known = self.models.setdefault(model.__name__, model)
        assert known is model, f"two models named {model.__name__}"
        return {"$ref": SCHEMAS + model.__name__}

    def add(self, method: str, path: str, op: Operation) -> None:
        item = self.paths.setdefault(path, {})
        names = re.findall(r"\{(\w+)\}", path)
        if names:
            item["parameters"] = [{"name": name, "in": "path", "required": True,
                                   "schema": dict(PATH_PARAMS[name])} for name in names]
        assert method not in item, f"{method} {path} declared twice"
        out: dict[str, Any] = {"summary": op.summary}
        if op.security is not None:
            out["security"] = [{name: []} for name in op.security]
        parameters = [p for model in op.query for p in self.query(model)]
        if parameters:
            out["parameters"] = parameters
        if op.body is not None:
            out["requestBody"] = {"required": True,
                                  "content": {JSON: {"schema": self.ref(op.body)}}}
        elif op.body_media is not None:
            out["requestBody"] = {"required": True, "content": dict(op.body_media)}
        responses: dict[str, Any] = {}
        for status, reply in op.replies.items():
            if isinstance(reply, dict):
                responses[str(status)] = dict(reply)
                continue
            response: dict[str, Any] = {"description": reply.description}
            content: dict[str, Any] = {}
            if reply.body is not None:
                schema = self.ref(reply.body)
                if reply.listed is not None:
                    schema = {"type": "object", "properties": {
                        reply.listed: {"type": "array", "items": schema}}}
                content[JSON] = {"schema": schema}
            content.update(reply.media)
            if content:
                response["content"] = content
            responses[str(status)] = response
        for error in op.errors:
            status, why = error if isinstance(error, tuple) else (error, None)
            kind = ERROR if path.startswith("/api/") else PLAIN_ERROR
            responses[str(status)] = {"$ref": "#/components/responses/" + kind}
            if why is not None:
                responses[str(status)]["description"] = why
        out["responses"] = dict(sorted(responses.items()))
        item[method] = out

    def query(self, model: type[Model]) -> list[dict[str, Any]]:
        schema = model.model_json_schema(schema_generator=SchemaGenerator)
        required = set(schema.get("required", ()))
        parameters = []
        for name, prop in schema["properties"].items():
            prop = dict(prop)
            parameter: dict[str, Any] = {"name": name, "in": "query"}
            if name in required:
                parameter["required"] = True
            description = prop.pop("description", None)
            parameter["schema"] = prop
            if description is not None:
                parameter["description"] = description
            parameters.append(parameter)
        return parameters

    def document(self) -> dict[str, Any]:
        _, top = models_json_schema([(m, "validation") for m in self.models.values()],
                                    ref_template=SCHEMAS + "{model}",
                                    schema_generator=SchemaGenerator)
        defs: dict[str, Any] = top.get("$defs", {})
        for schema in defs.values():
            schema.pop("title", None)
        every = {model.__name__: model for root in self.models.values()
                 for model in (root, *_nested(root))}
        published = {name for name, model in every.items() if model.component}

        def inline(node: Any) -> Any:
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith(SCHEMAS):
                    name = ref[len(SCHEMAS):]
                    if name not in published:
                        rest = {k: v for k, v in node.items() if k != "$ref"}
                        return {**inline(copy.deepcopy(defs[name])), **rest}
                return {key: inline(value) for key, value in node.items()}
            if isinstance(node, list):
                return [inline(value) for value in node]
            return node

        schemas = {name: inline(defs[name]) for name in sorted(published)}
        return {
            "openapi": "3.1.0",
            "info": {"title": "Zhixing Classroom API", "version": "1"},
            "components": {"securitySchemes": SECURITY_SCHEMES,
                           "responses": {ERROR: ERROR_RESPONSE,
                                         PLAIN_ERROR: PLAIN_ERROR_RESPONSE},
                           "schemas": schemas},
            "paths": inline(self.paths),
        }


def _nested(model: type[Model]) -> list[type[Model]]:
    found: list[type[Model]] = []

    def walk(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, Model):
            if annotation not in found:
                found.append(annotation)
                for info in annotation.model_fields.values():
                    walk(info.annotation)
            return
        for arg in getattr(annotation, "__args__", ()):
            walk(arg)

    for info in model.model_fields.values():
        walk(info.annotation)
    return found


OPENAPI: dict[str, Any] = build()
