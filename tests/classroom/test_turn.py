"""Time-limited TURN credentials (the TURN REST scheme coturn checks)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from classroom.access.turn import TurnSecret
from tests.support.fakes import FakeClock


def test_the_user_name_carries_the_expiry_and_the_holder() -> None:
    clock = FakeClock(1_700_000_000.4)
    issued = TurnSecret("s3cret", ttl=3600, clock=clock).issue("room-12")
    assert issued.username == "1700003600:room-12"
    assert issued.expires_at == 1_700_003_600
    # RFC 2104 HMAC-SHA1 of the user name, base64: what coturn recomputes.
    expected = hmac.new(b"s3cret", b"1700003600:room-12", hashlib.sha1).digest()
    assert base64.b64decode(issued.credential) == expected
    clock.advance(60)
    later = TurnSecret("s3cret", ttl=3600, clock=clock).issue("room-12")
    assert later.username == "1700003660:room-12" and later.credential != issued.credential


def test_another_secret_makes_another_password() -> None:
    clock = FakeClock(1000.0)
    one = TurnSecret("a", clock=clock).issue("admin")
    two = TurnSecret("b", clock=clock).issue("admin")
    assert one.username == two.username and one.credential != two.credential


@pytest.mark.parametrize("holder", ["", "room:1", "x" * 65, "房间", "a b"])
def test_a_holder_name_coturn_could_misread_is_refused(holder: str) -> None:
    with pytest.raises(ValueError):
        TurnSecret("s").issue(holder)


def test_an_empty_secret_or_lifetime_is_refused() -> None:
    with pytest.raises(ValueError):
        TurnSecret("")
    with pytest.raises(ValueError):
        TurnSecret("s", ttl=0)
