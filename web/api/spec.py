"""The HTTP contract, declared next to the handlers: typed models and a
small per-route declaration, from which ``web/api/contract.py`` builds the
OpenAPI document.

Why pydantic (v2) and not msgspec: both are well kept and both generate
JSON Schema from typed classes, but pydantic's schema generation can be
tailored where the contract needs it (nullable as ``type: [x, "null"]``,
no titles, no ``default: null``, which properties a response promises) and
its validators take a context (the ``--max-headcount`` of this deployment),
so the document and the checks come from the same classes. The API's
bodies are at most 16 KiB: msgspec's speed buys nothing here.

A handler declares its operation with :func:`operation`::

    @operation("Create a session", body=SessionInput, errors=(400, 401, ...),
               replies={201: Reply("created", Session)})
    async def create_session(request): ...

and the route table (``routes()`` of each module) stays the one list of
routes: the document has exactly the routes whose handlers declare an
operation (a handler serving several routes declares one per route, with
``path=``). Path parameters are described once, by name (:data:`PATH_PARAMS`).

Who validates what (one source per field, the same error bodies):

- A body whose fields the domain reads (sessions, invitations, units,
  courses, sites, archive items, library links) is *described* by its model
  (:class:`Described`) and validated by the domain (``classroom.catalog.Fields``
  and the domain's own rules), as before. The domain must keep those rules:
  the CSV import and the domain's other callers use them too, and ``Fields``
  reports every bad field in one ``Invalid`` together with the rules that
  need the catalog (an unknown reference, a duplicate site, an end before
  the start), so a first pass by a model would change the error body of a
  submit with several bad fields. Its quirks stay in one place too (text is
  stripped before its length is checked, null clears an optional text, an
  id may be its decimal text as a form sends it). Those models take their
  limits from the domain's constants, so the document cannot drift from them.
- A body or query the handler parsed by hand (replay control, headcount,
  timeshift, the archive's list query) is *validated* by its model
  (:class:`Validated`, read with :func:`read_model`); each field names the
  error a failure gives, exactly as the handler raised it before
  (``Invalid`` with the field's message key, or the handler's 422 text).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from classroom.errors import Invalid
from web.http import read_json

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
M = TypeVar("M", bound="Validated")

# The default of a field that a client may leave out (not in the document).
ABSENT: Any = None
BEARER: tuple[str, ...] = ("bearer",)
JSON = "application/json"
ERROR = "Error"  # components/responses/Error: {"error": text}
# The statuses of a request body that is read as JSON (web/http.py read_json).
JSON_BODY_ERRORS = (400, 413, 415, 422)

# Path parameters, by name: every route that names one means the same thing.
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "session_id": {"type": "string"},
    "resource_id": {"type": "string"},
    "row_id": {"type": "integer", "minimum": 1},
    "invitation_id": {"type": "string"},
    "item_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
    "link_id": {"type": "string"},
    "package_id": {"type": "string"},
    "unit_id": {"type": "integer", "minimum": 1},
    "node_id": {"type": "integer", "minimum": 1},
    "account_id": {"type": "integer", "minimum": 1},
    "learner_id": {"type": "integer", "minimum": 1},
    "reading_id": {"type": "integer", "minimum": 1},
    "writeup_id": {"type": "integer", "minimum": 1},
    "survey_id": {"type": "integer", "minimum": 1},
    "token": {"type": "string", "maxLength": 256},
    "lang": {"type": "string", "enum": ["zh-CN", "en"]},
}


class Model(BaseModel):
    """Base of the contract's models.

    ``component``: published under ``components/schemas`` by its class name
    (else inlined where it is used). ``promised``: the properties a response
    always has, as the document's ``required`` (a response model says none
    unless it says so: its fields are typed, not promised).
    """

    model_config = ConfigDict(extra="ignore")
    component: ClassVar[bool] = False
    promised: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        target = handler.resolve_ref_schema(json_schema)
        if "description" in target:  # a docstring: one line, as the document writes it
            target["description"] = " ".join(target["description"].split())
        if cls.promised is not None:
            target.pop("required", None)
            if cls.promised:
                target["required"] = list(cls.promised)
        return json_schema


class Shape(Model):
    """A response (or part of one): typed and described, never validated."""

    promised: ClassVar[tuple[str, ...] | None] = ()


class Described(Model):
    """A request body that the domain validates: the model describes it."""


class Validated(Model):
    """A request body or query validated by the model itself.

    ``refusals``: for each field, the message key of ``Invalid`` when that
    field is bad (all bad fields are reported); :meth:`refuse` may instead
    raise the handler's own error.
    """

    model_config = ConfigDict(extra="ignore", strict=True)
    refusals: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def refuse(cls, fields: Sequence[str], context: Mapping[str, Any]) -> Exception:
        return Invalid({name: cls.refusals[name] for name in fields})

    @classmethod
    def parse(cls: type[M], data: Mapping[str, Any],
              context: Mapping[str, Any] | None = None) -> M:
        try:
            return cls.model_validate(data, context=context)
        except ValidationError as exc:
            bad: list[str] = []
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                if name not in bad:
                    bad.append(name)
            order = list(cls.model_fields)
            bad.sort(key=lambda name: order.index(name) if name in order else len(order))
            raise cls.refuse(bad, context or {}) from None


async def read_model(request: web.Request, model: type[M],
                     context: Mapping[str, Any] | None = None) -> M:
    """A JSON object body (415, 413, 400 as ``read_json``) validated by ``model``."""
    _check_declared(request, model)
    return model.parse(await read_json(request), context)


def read_query(request: web.Request, model: type[M],
               context: Mapping[str, Any] | None = None) -> M:
    """The query string (the first value of each name) validated by ``model``."""
    _check_declared(request, model, query=True)
    return model.parse(dict(request.query), context)


async def read_described(request: web.Request, model: type[Described]) -> dict[str, Any]:
    """A JSON object body for the domain to validate; ``model`` describes it."""
    _check_declared(request, model)
    return await read_json(request)


def _check_declared(request: web.Request, model: type[Model], query: bool = False) -> None:
    """What a handler reads is what its route declares (a programming error if not)."""
    info = request.match_info
    path = route_path(info.route.resource.canonical if info.route.resource else "")
    op = declared(info.handler, path)
    if query:
        assert op is not None and model in op.query, f"{path}: {model.__name__} undeclared"
    else:
        assert op is not None and op.body is model, f"{path}: {model.__name__} undeclared"


def route_path(path: str) -> str:
    """A route's path as the document writes it ({name:regex} is {name})."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


# ---------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Reply:
    """A response: its description and, if any, its JSON body (a model) and
    other media types."""

    description: str
    body: type[Model] | None = None
    media: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    listed: str | None = None  # the body is {listed: [body]}


@dataclass(frozen=True)
class Operation:
    summary: str
    path: str | None = None  # None: every route of the handler
    security: Sequence[str] | None = BEARER  # None: no security
    body: type[Model] | None = None
    body_media: Mapping[str, dict[str, Any]] | None = None  # a body that is not JSON
    query: Sequence[type[Model]] = ()  # the query parameters, from these models
    replies: Mapping[int, Reply] = field(default_factory=dict)
    errors: Sequence[int | tuple[int, str]] = ()  # the Error response; (status, why)


def operation(summary: str, **kwargs: Any) -> Callable[[H], H]:
    """Declare the operation of the routes served by the decorated handler."""

    def mark(handler: H) -> H:
        declared = list(getattr(handler, "__operations__", []))
        declared.append(Operation(summary, **kwargs))
        setattr(handler, "__operations__", declared)  # noqa: B010
        return handler

    return mark


def declared(handler: Handler, path: str) -> Operation | None:
    """The operation ``handler`` declares for the route ``path``, if any."""
    operations: list[Operation] = getattr(handler, "__operations__", [])
    for op in operations:
        if op.path is None or op.path == path:
            return op
    return None


# ---------------------------------------------------------------------- JSON Schema


class SchemaGenerator(GenerateJsonSchema):
    """JSON Schema as the document writes it: no titles, nullable as a type
    list (a nullable reference as ``oneOf``), no ``default: null``."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        kind = inner.get("type")
        if isinstance(kind, str):
            result = dict(inner)
            result["type"] = [kind, "null"]
            if "enum" in result and None not in result["enum"]:
                result["enum"] = [*result["enum"], None]
            return result
        if "$ref" in inner:
            return {"oneOf": [inner, {"type": "null"}]}
        return super().nullable_schema(schema)

    def list_schema(self, schema: core_schema.ListSchema) -> JsonSchemaValue:
        result = super().list_schema(schema)
        if result.get("items") == {}:  # items of any type: nothing to say
            del result["items"]
        return result

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        if schema.get("default", ...) is None:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        result = super().literal_schema(schema)
        if "const" in result:  # one value: written as an enum, as the document did
            result["enum"] = [result.pop("const")]
        return result
