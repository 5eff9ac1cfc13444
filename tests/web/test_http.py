"""The bearer token of a request's Authorization header (web/http.py)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from web.errors import NotAuthorized
from web.http import bearer_token


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER x.y-z", "x.y-z")],
)
def test_bearer_token_is_read_from_the_header(header: str, token: str) -> None:
    request = make_mocked_request("GET", "/", headers={"Authorization": header})
    assert bearer_token(request) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "abc"])
def test_a_missing_or_other_authorization_is_401(header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    request = make_mocked_request("GET", "/", headers=headers)
    with pytest.raises(NotAuthorized):
        bearer_token(request)
