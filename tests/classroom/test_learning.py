"""The learners' domain without HTTP: migration 8 over an existing catalog,
personal links' signatures, the file sniffers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from classroom.db import MIGRATIONS, Database
from classroom.learning import readings, writeups
from classroom.learning.links import BadLink, LinkClaims, LinkSigner
from tests.support.catalog import tampered


def test_migration_8_adds_the_learners_to_a_catalog_in_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "catalog.sqlite3"
    monkeypatch.setattr("classroom.db.MIGRATIONS", MIGRATIONS[:7])
    db = Database(path)
    assert db.migrate() == 7
    db.execute("INSERT INTO units (name, created_at) VALUES ('党史', 1)")
    db.execute("INSERT INTO sites (name, org_path, org_node_id, created_at) "
               "VALUES ('新碶街道分课堂', '', 1, 2)")
    db.close()
    monkeypatch.undo()
    db = Database(path)
    assert db.migrate() == len(MIGRATIONS) == 8
    assert db.one("SELECT name FROM units") == {"name": "党史"}
    db.execute("INSERT INTO learners (name, org_node_id, site_id, created_at) "
               "VALUES ('张三', 1, 1, 3)")
    db.execute("INSERT INTO learner_units (learner_id, unit_id, assigned_at) VALUES (1, 1, 3)")
    # Deleting the site keeps the learner (its room is forgotten); deleting the
    # unit takes its assignments.
    db.execute("DELETE FROM sites WHERE id = 1")
    assert db.one("SELECT site_id FROM learners") == {"site_id": None}
    db.execute("DELETE FROM units WHERE id = 1")
    assert db.all("SELECT * FROM learner_units") == []
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO writeups (learner_id, unit_id, text, state, submitted_at) "
                   "VALUES (1, 1, 'x', 'lost', 1)")
    assert db.migrate() == 8  # again: nothing to do
    db.close()


def test_a_learner_link_is_signed_with_a_key_of_its_own() -> None:
    signer = LinkSigner(b"s" * 32)
    token = signer.sign(LinkClaims(7, 3))
    assert signer.verify(token) == LinkClaims(7, 3)
    for bad in (tampered(token), token + "x", "abc", "a.b", "." * 300,
                LinkSigner(b"t" * 32).sign(LinkClaims(7, 3))):
        with pytest.raises(BadLink):
            signer.verify(bad)


def test_files_are_recognised_by_their_first_bytes() -> None:
    epub = b"PK\x03\x04" + b"\0" * 26 + b"mimetypeapplication/epub+zip"
    docx = b"PK\x03\x04" + b"\0" * 26 + b"[Content_Types].xml"
    assert readings.sniff(b"%PDF-1.7\n") == "pdf"
    assert readings.sniff(epub) == "epub"
    assert readings.sniff(docx) is None and readings.sniff(b"\x89PNG\r\n\x1a\n") is None
    assert writeups.sniff(docx) == "docx"
    assert writeups.sniff(epub) is None
    assert writeups.sniff(b"\xff\xd8\xff\xe0") == "jpeg"
    assert writeups.sniff(b"\x89PNG\r\n\x1a\n") == "png"
    assert writeups.sniff(b"<html>") is None
