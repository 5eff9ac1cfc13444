"""Admin JSON API for accounts (账号): city admins create, disable and reset
every account; a district admin the accounts of its own part of the tree
(never a city admin). A password is shown once, when it is generated."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from aiohttp import web
from pydantic import Field

from classroom.access.accounts import MAX_PASSWORD, MAX_USERNAME, MIN_PASSWORD
from web.api.spec import (
    ABSENT,
    JSON_BODY_ERRORS,
    Described,
    Reply,
    Shape,
    operation,
    read_described,
)
from web.auth import Caller, require_admin
from web.errors import Forbidden
from web.http import int_id
from web.keys import ACCOUNTS, SCHOOL

ROLE = Literal["city_admin", "district_admin", "presenter", "auditor"]
ROLES = ("city admin: everything; district admin: its node's subtree; presenter: the "
         "presenter page of its sessions; auditor: reads reports, the wall and the archive")

# ---------------------------------------------------------------------- the contract


class Account(Shape):
    component: ClassVar[bool] = True
    id: int
    username: str
    role: ROLE
    org_node_id: int
    org_path: str = Field(description="its node's path ('' for the city)")
    disabled: bool
    created_at: float
    password: str = Field(description="only when generated (created or reset without one)")


class AccountInput(Described):
    username: str = Field(min_length=1, max_length=MAX_USERNAME, description="no spaces")
    role: ROLE = Field(description=ROLES)
    org_node_id: int = Field(ABSENT, description="default: the caller's node; a city admin's "
                                                 "is the city")
    password: str = Field(ABSENT, min_length=MIN_PASSWORD, max_length=MAX_PASSWORD,
                          description="default: generated and returned once")


class AccountChange(Described):
    """the last enabled city admin stays one (409); a changed account logs in again"""

    role: ROLE = ABSENT
    org_node_id: int = ABSENT
    disabled: bool = ABSENT


class PasswordReset(Described):
    password: str = Field(ABSENT, min_length=MIN_PASSWORD, max_length=MAX_PASSWORD,
                          description="default: generated and returned once")


ADMIN = (401, 403)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/api/v1/accounts", list_accounts),
        web.post("/api/v1/accounts", create_account),
        web.patch("/api/v1/accounts/{account_id}", update_account),
        web.post("/api/v1/accounts/{account_id}/password", reset_password),
    ]


def _describe(request: web.Request, row: dict[str, Any]) -> dict[str, Any]:
    tree = request.app[SCHOOL].org.tree()
    node = int(row["org_node_id"])
    return {"id": row["id"], "username": row["username"], "role": row["role"],
            "org_node_id": node, "org_path": tree.path(node) if node in tree else "",
            "disabled": row["disabled_at"] is not None, "created_at": row["created_at"]}


def _managed(request: web.Request, caller: Caller) -> dict[str, Any]:
    row = request.app[ACCOUNTS].account(int_id(request, "account_id", "account"))
    if not caller.scope.manages_account(row):
        raise Forbidden("this account belongs to another part of the organization")
    return row


def _grant(request: web.Request, caller: Caller, role: str, node: int) -> None:
    request.app[SCHOOL].org.node(node)  # 404 for a node that does not exist
    if not caller.scope.may_grant(role, node):
        raise Forbidden("you cannot give this role at this organization node")


@operation("The accounts the caller manages", errors=ADMIN,
           replies={200: Reply("{accounts: [Account]}", Account, listed="accounts")})
async def list_accounts(request: web.Request) -> web.Response:
    caller = require_admin(request)
    rows = [row for row in request.app[ACCOUNTS].accounts()
            if caller.scope.manages_account(row) or row["id"] == caller.scope.account_id]
    return web.json_response({"accounts": [_describe(request, row) for row in rows]})


@operation("Create an account", body=AccountInput,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={201: Reply("the account (with its password if generated)", Account)})
async def create_account(request: web.Request) -> web.Response:
    caller = require_admin(request)
    data = await read_described(request, AccountInput)
    accounts = request.app[ACCOUNTS]
    values = accounts.check_fields(data, partial=False)
    values.setdefault("org_node_id", caller.scope.node_id)
    _grant(request, caller, str(values["role"]), int(str(values["org_node_id"])))
    row, generated = accounts.add(values)
    body = _describe(request, row)
    if generated:
        body["password"] = generated
    return web.json_response(body, status=201,
                             headers={"Location": f"/api/v1/accounts/{row['id']}"})


@operation("Change an account's role or node, or disable / enable it", body=AccountChange,
           errors=(*ADMIN, 404, 409, *JSON_BODY_ERRORS),
           replies={200: Reply("the account", Account)})
async def update_account(request: web.Request) -> web.Response:
    caller = require_admin(request)
    row = _managed(request, caller)
    data = await read_described(request, AccountChange)
    accounts = request.app[ACCOUNTS]
    values = accounts.check_fields(data, partial=True)
    if "role" in values or "org_node_id" in values:
        _grant(request, caller, str(values.get("role", row["role"])),
               int(str(values.get("org_node_id", row["org_node_id"]))))
    return web.json_response(_describe(request, accounts.change(int(row["id"]), values)))


@operation("Reset an account's password (its login sessions end)", body=PasswordReset,
           errors=(*ADMIN, 404, *JSON_BODY_ERRORS),
           replies={200: Reply("the account (with the password if generated)", Account)})
async def reset_password(request: web.Request) -> web.Response:
    caller = require_admin(request)
    row = _managed(request, caller)
    data = await read_described(request, PasswordReset)
    accounts = request.app[ACCOUNTS]
    values = accounts.check_fields(data, partial=True)
    password = values.get("password")
    generated = accounts.reset_password(int(row["id"]),
                                        password if isinstance(password, str) else None)
    body = _describe(request, accounts.account(int(row["id"])))
    if generated:
        body["password"] = generated
    return web.json_response(body)
