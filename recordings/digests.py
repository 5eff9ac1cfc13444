"""The SHA-256 and CRC-32 of an archive item's files, computed once.

A finished or imported lecture's files do not change, so their digests are
computed where the files are made (finishing runs in a child process, an
import in the importing command) and kept in the catalog; a course package
then copies a lecture at ``cp``'s speed and still lists its SHA-256 (and a
ZIP entry its CRC-32). A digest is only used while the file has the size and
modification time it had when it was hashed.

Hashing reads the file through a memory map: no copy into Python, and the
GIL is released while each slice is hashed.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Digest:
    size: int
    mtime_ns: int
    sha256: str
    crc32: int | None = None  # computed when asked for

    def json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, path: Path) -> bool:
        """Whether the file still is what was hashed (same size and time)."""
        try:
            stat = path.stat()
        except OSError:
            return False
        return stat.st_size == self.size and stat.st_mtime_ns == self.mtime_ns


def file_digest(path: Path, advance: Callable[[int], None] | None = None, *,
                size: int | None = None, crc: bool = True) -> Digest:
    """The digest of a file's first ``size`` bytes (all of it by default)."""
    sha = hashlib.sha256()
    check = 0
    with path.open("rb") as file:
        stat = os.fstat(file.fileno())
        size = stat.st_size if size is None else size
        if size:
            with mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    for start in range(0, size, CHUNK):
                        piece = view[start:start + CHUNK]
                        sha.update(piece)
                        if crc:
                            check = zlib.crc32(piece, check)
                        piece.release()
                        if advance is not None:
                            advance(min(CHUNK, size - start))
                finally:
                    view.release()
    return Digest(size, stat.st_mtime_ns, sha.hexdigest(), check if crc else None)


def item_digests(item_dir: Path, names: Iterable[str | None]) -> dict[str, dict[str, Any]]:
    """{file name: digest} of an item's files that exist (as the catalog keeps them)."""
    return {name: file_digest(item_dir / name).json() for name in names
            if name and (item_dir / name).is_file()}


def known(digests: dict[str, Any], name: str, path: Path) -> Digest | None:
    """The kept digest of a file, if it still applies."""
    raw = digests.get(name)
    if not isinstance(raw, dict):
        return None
    try:
        digest = Digest(**raw)
    except TypeError:
        return None
    return digest if digest.matches(path) else None
