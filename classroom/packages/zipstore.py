"""A ZIP file of stored (uncompressed) entries, copied in by the kernel.

Video does not compress, so a package's ZIP stores its files as they are.
Python's ``zipfile`` passes every byte through Python (about a third of
``cp``'s speed here); here every size is known before an entry is written,
so its place in the file is reserved and its bytes are copied by the kernel
(``copying.copy_into``) while the CRC-32 and SHA-256 are computed beside it
(or taken from the digests kept since the file was made); the CRC is written
into the entry's header afterwards. Entries may be added from several
threads, but one at a time is faster on ext4. Every entry carries ZIP64
sizes (a lecture may pass 4 GiB); Python's ``zipfile`` and Info-ZIP's
``unzip`` read it (the tests check both).
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from classroom.packages.copying import copy_into
from recordings.digests import Digest

VERSION = 45  # ZIP64
FLAGS = 0x0800  # names are UTF-8
DOS_DATE = (2000 - 1980) << 9 | 1 << 5 | 1  # 2000-01-01, 00:00: packages compare equal
MODE = 0o100644 << 16
UNIX = 3 << 8


@dataclass
class _Entry:
    name: bytes
    offset: int
    size: int
    crc: int = 0


def _local_header(name: bytes, size: int, crc: int) -> bytes:
    extra = struct.pack("<HHQQ", 0x0001, 16, size, size)
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, VERSION, FLAGS, 0, 0, DOS_DATE, crc,
                       0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra)) + name + extra


class StoredZip:
    """Open with a path; :meth:`add_file` / :meth:`add_bytes` from any
    thread; :meth:`close` writes the central directory."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("xb")
        self._fd = self._file.fileno()
        self._end = 0
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()

    def _reserve(self, name: str, size: int) -> _Entry:
        encoded = name.encode("utf-8")
        with self._lock:
            entry = _Entry(encoded, self._end, size)
            self._end += len(_local_header(encoded, size, 0)) + size
            self._entries.append(entry)
        return entry

    def add_file(self, name: str, source: Path, advance: Callable[[int], None],
                 known: Digest | None = None) -> tuple[int, str]:
        """Copy a file in as ``name``; (size, SHA-256)."""
        entry = self._reserve(name, source.stat().st_size)
        header = _local_header(entry.name, entry.size, 0)
        size, digest, entry.crc = copy_into(source, self._fd, entry.offset + len(header),
                                            advance, crc=True, known=known)
        os.pwrite(self._fd, _local_header(entry.name, entry.size, entry.crc), entry.offset)
        return size, digest

    def add_bytes(self, name: str, data: bytes) -> tuple[int, str]:
        entry = self._reserve(name, len(data))
        entry.crc = zlib.crc32(data)
        header = _local_header(entry.name, entry.size, entry.crc)
        os.pwrite(self._fd, header + data, entry.offset)
        return len(data), hashlib.sha256(data).hexdigest()

    def close(self) -> None:
        """The central directory and the end records; the file is complete."""
        directory = bytearray()
        for entry in self._entries:
            extra = struct.pack("<HHQQQ", 0x0001, 24, entry.size, entry.size, entry.offset)
            directory += struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, UNIX | VERSION, VERSION, FLAGS, 0, 0,
                DOS_DATE, entry.crc, 0xFFFFFFFF, 0xFFFFFFFF, len(entry.name), len(extra), 0,
                0, 0, MODE, 0xFFFFFFFF) + entry.name + extra
        start, count = self._end, len(self._entries)
        zip64_end = start + len(directory)
        directory += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, UNIX | VERSION, VERSION, 0, 0,
                                 count, count, len(directory), start)
        directory += struct.pack("<IIQI", 0x07064B50, 0, zip64_end, 1)
        directory += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                                 0xFFFFFFFF, 0)
        os.pwrite(self._fd, bytes(directory), start)
        self._file.close()

    def discard(self) -> None:
        """Close without finishing (the caller removes the file)."""
        self._file.close()
