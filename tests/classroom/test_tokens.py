"""The token index (classroom/access/tokens.py): who may do what with which token."""

from __future__ import annotations

import pytest

from classroom.access.tokens import Grant, Role, TokenIndex
from web.errors import Forbidden, NotAuthorized, status_of


@pytest.fixture
def tokens() -> TokenIndex:
    index = TokenIndex()
    index.add("admin-token", Grant(Role.ADMIN, None))
    index.add("publish-a", Grant(Role.PUBLISH, "a"))
    index.add("view-a", Grant(Role.VIEW, "a"))
    index.add("publish-b", Grant(Role.PUBLISH, "b"))
    index.add("view-b", Grant(Role.VIEW, "b"))
    return index


def test_a_valid_token_is_granted(tokens: TokenIndex) -> None:
    assert tokens.require("publish-a", Role.PUBLISH, "a") == Grant(Role.PUBLISH, "a")
    assert tokens.require("view-a", Role.VIEW, "a") == Grant(Role.VIEW, "a")
    assert tokens.require("admin-token", Role.ADMIN, None) == Grant(Role.ADMIN, None)


@pytest.mark.parametrize("token", ["wrong", "", "publish-a ", "Publish-a", "publish-", "\udcff"])
def test_a_token_valid_nowhere_is_401(tokens: TokenIndex, token: str) -> None:
    assert tokens.lookup(token) is None
    with pytest.raises(NotAuthorized) as raised:
        tokens.require(token, Role.PUBLISH, "a")
    assert status_of(raised.value) == 401


@pytest.mark.parametrize(
    ("token", "role", "session_id"),
    [
        ("publish-b", Role.PUBLISH, "a"),  # another session
        ("view-b", Role.VIEW, "a"),
        ("view-a", Role.PUBLISH, "a"),  # another role
        ("publish-a", Role.VIEW, "a"),
        ("view-a", Role.ADMIN, None),
        ("publish-a", Role.ADMIN, None),
        ("admin-token", Role.PUBLISH, "a"),  # the admin token is for the API only
    ],
)
def test_a_real_token_for_something_else_is_403(
    tokens: TokenIndex, token: str, role: Role, session_id: str | None
) -> None:
    with pytest.raises(Forbidden) as raised:
        tokens.require(token, role, session_id)
    assert status_of(raised.value) == 403


def test_a_removed_token_is_401(tokens: TokenIndex) -> None:
    tokens.remove("publish-a")
    tokens.remove("never-added")
    with pytest.raises(NotAuthorized):
        tokens.require("publish-a", Role.PUBLISH, "a")
    assert tokens.require("view-a", Role.VIEW, "a").session_id == "a"
