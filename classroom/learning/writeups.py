"""学用成果总结: per learner and unit, a text (at most 5,000 characters) and an
optional attachment; an admin accepts it or returns it with a comment, and
the learner sees the state.

A learner may submit again while its write-up is not accepted (a returned
one goes back to ``submitted``); an accepted one is final. An attachment is a
PDF, a Word document (DOCX), a JPEG or a PNG, recognised by its first bytes,
kept as ``learning/writeups/<id>.<ext>`` in the data folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from classroom.access.roles import Scope
from classroom.db import Database
from classroom.errors import Invalid, Missing, StateConflict
from classroom.learning import uploads

MAX_TEXT = 5000
MAX_COMMENT = 1000
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
MIME_TYPES = {"pdf": "application/pdf", "jpeg": "image/jpeg", "png": "image/png",
              "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
SNIFF_BYTES = 4096
STATES = ("submitted", "accepted", "returned")
WRITEUPS_SQL = ("SELECT w.*, l.name AS learner_name, l.org_node_id, u.name AS unit_name "
                "FROM writeups w JOIN learners l ON l.id = w.learner_id "
                "JOIN units u ON u.id = w.unit_id")


def sniff(head: bytes) -> str | None:
    """'pdf', 'docx', 'jpeg', 'png' or None, from a file's first bytes (a
    DOCX is a ZIP whose first entry is Office's ``[Content_Types].xml`` or a
    ``word/`` part; an EPUB or another ZIP is not one)."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"PK\x03\x04") and (head[30:49] == b"[Content_Types].xml"
                                           or head[30:35] == b"word/"):
        return "docx"
    return None


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "learner_id", "unit_id", "text", "attachment_type",
                                "attachment_size", "state", "comment", "submitted_at",
                                "reviewed_at") if k in row} | {
        k: row[k] for k in ("learner_name", "org_node_id", "unit_name") if k in row}


class Writeups:
    def __init__(self, db: Database, folder: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.folder = folder
        self._clock = clock

    def _row(self, writeup_id: int) -> dict[str, Any]:
        row = self.db.one(WRITEUPS_SQL + " WHERE w.id = ?", (writeup_id,))
        if row is None:
            raise Missing("no such write-up")
        return row

    def of(self, learner_id: int, unit_id: int) -> dict[str, Any] | None:
        row = self.db.one(WRITEUPS_SQL + " WHERE w.learner_id = ? AND w.unit_id = ?",
                          (learner_id, unit_id))
        return public(row) if row else None

    # ------------------------------------------------------------ the learner's

    def submit(self, learner_id: int, unit_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
        """The learner's text, new or again (not once accepted: StateConflict)."""
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise Invalid({"text": "error.required"})
        if len(text) > MAX_TEXT:
            raise Invalid({"text": "error.writeup_too_long"})
        now = self._clock()
        with self.db.transaction():
            row = self.db.one("SELECT id, state FROM writeups WHERE learner_id = ? AND "
                              "unit_id = ?", (learner_id, unit_id))
            if row is not None and row["state"] == "accepted":
                raise StateConflict("this write-up was accepted already")
            if row is None:
                self.db.execute("INSERT INTO writeups (learner_id, unit_id, text, state, "
                                "submitted_at) VALUES (?, ?, ?, 'submitted', ?)",
                                (learner_id, unit_id, text.strip(), now))
            else:
                self.db.execute("UPDATE writeups SET text = ?, state = 'submitted', "
                                "submitted_at = ? WHERE id = ?", (text.strip(), now, row["id"]))
        found = self.of(learner_id, unit_id)
        assert found is not None
        return found

    def staging_path(self, learner_id: int, unit_id: int) -> tuple[int, Path]:
        """(the write-up, where to receive its attachment); Missing before a
        text was submitted, StateConflict once accepted."""
        found = self.of(learner_id, unit_id)
        if found is None:
            raise Missing("submit the write-up's text first")
        if found["state"] == "accepted":
            raise StateConflict("this write-up was accepted already")
        return int(found["id"]), uploads.staging_path(self.folder, int(found["id"]))

    def store_attachment(self, writeup_id: int, staged: Path) -> dict[str, Any]:
        try:
            row = self._row(writeup_id)
        except Missing:
            staged.unlink(missing_ok=True)
            raise
        kind, size = uploads.take(staged, self.folder, writeup_id, row["attachment_type"],
                                  sniff, SNIFF_BYTES, "error.writeup_file_type")
        self.db.execute("UPDATE writeups SET attachment_type = ?, attachment_size = ? "
                        "WHERE id = ?", (kind, size, writeup_id))
        return public(self._row(writeup_id))

    # ------------------------------------------------------------ admins

    def writeups(self, scope: Scope, unit_id: int | None = None,
                 state: str | None = None) -> list[dict[str, Any]]:
        sql, params = WRITEUPS_SQL + " WHERE 1 = 1", list[object]()
        if unit_id is not None:
            sql += " AND w.unit_id = ?"
            params.append(unit_id)
        if state is not None:
            sql += " AND w.state = ?"
            params.append(state)
        return [public(r) for r in self.db.all(sql + " ORDER BY w.submitted_at", params)
                if scope.covers(r["org_node_id"])]

    def writeup(self, writeup_id: int, scope: Scope) -> dict[str, Any]:
        row = self._row(writeup_id)
        scope.require_covers(row["org_node_id"], "write-up")
        return public(row)

    def review(self, writeup_id: int, data: Mapping[str, Any], scope: Scope,
               reviewer: str) -> dict[str, Any]:
        """Accept, or return with a comment (a returned write-up needs one)."""
        row = self._row(writeup_id)
        scope.require_covers(row["org_node_id"], "write-up")
        decision, comment = data.get("decision"), data.get("comment", "")
        errors: dict[str, str] = {}
        if decision not in ("accept", "return"):
            errors["decision"] = "error.bad_choice"
        if not isinstance(comment, str):
            errors["comment"] = "error.not_text"
        elif len(comment) > MAX_COMMENT:
            errors["comment"] = "error.too_long"
        elif decision == "return" and not comment.strip():
            errors["comment"] = "error.required"
        if errors:
            raise Invalid(errors)
        if row["state"] != "submitted":
            raise StateConflict(f"this write-up is {row['state']}, not waiting for review")
        state = "accepted" if decision == "accept" else "returned"
        self.db.execute("UPDATE writeups SET state = ?, comment = ?, reviewed_at = ?, "
                        "reviewed_by = ? WHERE id = ?",
                        (state, str(comment).strip(), self._clock(), reviewer, writeup_id))
        return public(self._row(writeup_id))

    def attachment(self, writeup_id: int, scope: Scope | None) -> tuple[Path, str]:
        row = self._row(writeup_id)
        if scope is not None:
            scope.require_covers(row["org_node_id"], "write-up")
        if not row["attachment_type"]:
            raise Missing("this write-up has no attachment")
        kind = row["attachment_type"]
        return self.folder / f"{writeup_id}.{kind}", MIME_TYPES[kind]
