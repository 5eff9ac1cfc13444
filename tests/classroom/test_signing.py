"""Units: invitation signatures, the server secret, password hashing, migrations."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from classroom.access.passwords import hash_password, verify_password
from classroom.access.signing import BadSignature, InvitationClaims, Signer, load_or_create_secret
from classroom.db import MIGRATIONS, Database


def test_a_signed_invitation_verifies_and_carries_its_claims() -> None:
    signer = Signer(b"s" * 32)
    claims = InvitationClaims("inv1", "sess1", 1_900_000_000)
    assert signer.verify(signer.sign(claims)) == claims


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
    lambda t: "e30" + t[t.index("."):],                   # payload swapped ({})
    lambda t: t.replace(".", ""),                         # no separator
    lambda t: t + "x" * 600,                              # absurdly long
    lambda t: "!!!." + t.split(".")[1],                   # not base64
])
def test_a_tampered_invitation_is_refused(mangle: object) -> None:
    signer = Signer(b"s" * 32)
    token = signer.sign(InvitationClaims("inv1", "sess1", 1_900_000_000))
    with pytest.raises(BadSignature):
        signer.verify(mangle(token))  # type: ignore[operator]


def test_another_servers_secret_does_not_verify() -> None:
    token = Signer(b"a" * 32).sign(InvitationClaims("i", "s", 1_900_000_000))
    with pytest.raises(BadSignature):
        Signer(b"b" * 32).verify(token)


def test_the_server_secret_is_created_once_private(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert len(first) == 32
    assert stat.S_IMODE((tmp_path / "server-secret").stat().st_mode) == 0o600
    assert load_or_create_secret(tmp_path) == first


def test_a_truncated_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "server-secret").write_bytes(b"short")
    with pytest.raises(RuntimeError):
        load_or_create_secret(tmp_path)


def test_passwords_hash_with_salt_and_verify() -> None:
    stored = hash_password("知行合一 2026")
    assert stored.startswith("scrypt$")
    assert stored != hash_password("知行合一 2026")  # a fresh salt each time
    assert verify_password("知行合一 2026", stored)
    assert not verify_password("知行合一 2025", stored)
    assert not verify_password("x", "not a hash")
    assert not verify_password("x", "bcrypt$1$2$3$4$5")


def test_migrations_apply_once_and_record_the_version(tmp_path: Path) -> None:
    db = Database(tmp_path / "catalog.sqlite3")
    try:
        assert db.version == 0
        assert db.migrate() == len(MIGRATIONS)
        assert db.migrate() == len(MIGRATIONS)  # again: nothing to do
        tables = {row["name"] for row in db.all("SELECT name FROM sqlite_master "
                                                "WHERE type = 'table'")}
        assert {"units", "courses", "sites", "sessions", "invitations"} <= tables
    finally:
        db.close()


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "catalog.sqlite3")
    try:
        db.migrate()
        with pytest.raises(RuntimeError), db.transaction():
            db.execute("INSERT INTO units (name, created_at) VALUES ('a', 0)")
            raise RuntimeError("the form failed half-way")
        assert db.all("SELECT * FROM units") == []
    finally:
        db.close()


def test_the_access_log_never_shows_an_invitation_token() -> None:
    from web.access_log import redact

    assert redact("/join/eyJpIjoiYSJ9.c2ln") == "/join/…"
    assert redact("/api/v1/sessions/abc") == "/api/v1/sessions/abc"
