"""A learner's or admin's uploaded file, kept under the row it belongs to.

Reading files and write-up attachments are received the same way: the web
layer streams the body to a staging file in the folder, then the file's first
bytes say what it is (never its name or Content-Type) and it takes the row's
place, ``<row id>.<kind>``, replacing one of another kind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from classroom.errors import Invalid


def staging_path(folder: Path, row_id: int) -> Path:
    """A new file name in ``folder`` for an upload to ``row_id``."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f".upload-{row_id}-{os.getpid()}-{time.monotonic_ns()}"


def take(staged: Path, folder: Path, row_id: int, previous_kind: str | None,
         sniff: Callable[[bytes], str | None], sniff_bytes: int,
         refusal: str) -> tuple[str, int]:
    """Move ``staged`` into place as ``<row_id>.<kind>``; returns (kind, size).

    A file ``sniff`` does not recognise is refused (Invalid, ``{"file":
    refusal}``); the staged file is gone either way, and the row's earlier
    file of another kind is removed once the new one is in place.
    """
    try:
        with staged.open("rb") as handle:
            kind = sniff(handle.read(sniff_bytes))
        if kind is None:
            raise Invalid({"file": refusal})
        target = folder / f"{row_id}.{kind}"
        os.replace(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    if previous_kind and previous_kind != kind:
        (folder / f"{row_id}.{previous_kind}").unlink(missing_ok=True)
    return kind, target.stat().st_size
