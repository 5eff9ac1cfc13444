"""Reading lists (研读专业书籍): per unit, items with a title, notes and an
optional PDF or EPUB file; a learner marks an item read.

A file is taken only when its first bytes say it is a PDF (``%PDF-``) or an
EPUB (a ZIP whose first entry is ``mimetype`` = ``application/epub+zip``),
whatever the upload's name or Content-Type claims. It is received into a
staging file by the web layer and moved into ``learning/readings/<id>.<ext>``
of the data folder, so a half-received upload never replaces a good file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from classroom.catalog import MAX_NAME, MAX_TEXT, Fields
from classroom.db import Database
from classroom.errors import Missing
from classroom.learning import uploads

MAX_FILE_BYTES = 100 * 1024 * 1024
MIME_TYPES = {"pdf": "application/pdf", "epub": "application/epub+zip"}
SNIFF_BYTES = 64


def sniff(head: bytes) -> str | None:
    """'pdf', 'epub' or None, from a file's first bytes."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04") and head[30:38] == b"mimetype" \
            and head[38:58] == b"application/epub+zip":
        return "epub"
    return None


class Readings:
    def __init__(self, db: Database, folder: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.folder = folder
        self._clock = clock

    def _row(self, reading_id: int) -> dict[str, Any]:
        row = self.db.one("SELECT * FROM reading_items WHERE id = ?", (reading_id,))
        if row is None:
            raise Missing("no such reading")
        return row

    @staticmethod
    def _public(row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in ("id", "unit_id", "title", "notes", "file_type",
                                    "file_size", "created_at")}

    def reading(self, reading_id: int) -> dict[str, Any]:
        return self._public(self._row(reading_id))

    def readings(self, unit_id: int) -> list[dict[str, Any]]:
        if self.db.one("SELECT 1 FROM units WHERE id = ?", (unit_id,)) is None:
            raise Missing("no such unit")
        return [self._public(r) for r in self.db.all(
            "SELECT * FROM reading_items WHERE unit_id = ? ORDER BY id", (unit_id,))]

    def create(self, unit_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
        if self.db.one("SELECT 1 FROM units WHERE id = ?", (unit_id,)) is None:
            raise Missing("no such unit")
        fields = Fields(data)
        fields.text("title", required=True, max_length=MAX_NAME)
        fields.text("notes", max_length=MAX_TEXT)
        values = fields.check()
        reading_id = self.db.execute(
            "INSERT INTO reading_items (unit_id, title, notes, created_at) VALUES (?, ?, ?, ?)",
            (unit_id, values["title"], values.get("notes", ""), self._clock()))
        return self.reading(reading_id)

    def update(self, reading_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
        self._row(reading_id)
        fields = Fields(data, partial=True)
        fields.text("title", required=True, max_length=MAX_NAME)
        fields.text("notes", max_length=MAX_TEXT)
        values = fields.check()
        if values:
            sets = ", ".join(f"{name} = ?" for name in values)
            self.db.execute(f"UPDATE reading_items SET {sets} WHERE id = ?",
                            (*values.values(), reading_id))
        return self.reading(reading_id)

    def delete(self, reading_id: int) -> None:
        row = self._row(reading_id)
        self.db.execute("DELETE FROM reading_items WHERE id = ?", (reading_id,))
        if row["file_type"]:
            (self.folder / f"{reading_id}.{row['file_type']}").unlink(missing_ok=True)

    # ------------------------------------------------------------ files

    def staging_path(self, reading_id: int) -> Path:
        """Where the web layer receives an upload for ``reading_id`` (Missing
        for an unknown reading, before a byte is read)."""
        self._row(reading_id)
        return uploads.staging_path(self.folder, reading_id)

    def store_file(self, reading_id: int, staged: Path) -> dict[str, Any]:
        """Take a received file: a PDF or EPUB by its first bytes (Invalid,
        and the staged file removed, otherwise)."""
        try:
            row = self._row(reading_id)
        except Missing:
            staged.unlink(missing_ok=True)
            raise
        kind, size = uploads.take(staged, self.folder, reading_id, row["file_type"],
                                  sniff, SNIFF_BYTES, "error.reading_file_type")
        self.db.execute("UPDATE reading_items SET file_type = ?, file_size = ? WHERE id = ?",
                        (kind, size, reading_id))
        return self.reading(reading_id)

    def file(self, reading_id: int) -> tuple[Path, str]:
        """The file of a reading and its media type (Missing if it has none)."""
        row = self._row(reading_id)
        if not row["file_type"]:
            raise Missing("this reading has no file")
        return self.folder / f"{reading_id}.{row['file_type']}", MIME_TYPES[row["file_type"]]

    # ------------------------------------------------------------ learners

    def unit_of(self, reading_id: int) -> int:
        return int(self._row(reading_id)["unit_id"])

    def mark_read(self, learner_id: int, reading_id: int, read: bool) -> None:
        if read:
            self.db.execute("INSERT OR IGNORE INTO reading_marks (learner_id, reading_id, "
                            "read_at) VALUES (?, ?, ?)", (learner_id, reading_id, self._clock()))
        else:
            self.db.execute("DELETE FROM reading_marks WHERE learner_id = ? AND reading_id = ?",
                            (learner_id, reading_id))
