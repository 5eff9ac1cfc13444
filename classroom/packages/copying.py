"""Copying and hashing files for packages at about the speed of ``cp``.

A lecture whose digests were kept when it was made (``recordings.digests``)
is copied by the kernel alone. Any other file is hashed (SHA-256, and
CRC-32 for a ZIP entry) while it is copied: the kernel copies
(``copy_file_range``, as ``cp`` does: the bytes never pass through Python)
while the calling thread hashes the source from a memory map; the second
read comes from the page cache the first one filled. Files are taken two at
a time (:data:`WORKERS`): SHA-256 costs about twice a kernel copy per byte.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TypeVar

from recordings.digests import Digest, file_digest

CHUNK = 4 * 1024 * 1024
KERNEL_CHUNK = 64 * 1024 * 1024
WORKERS = 2
Progress = Callable[[float], None]
T = TypeVar("T")


class Advance:
    """Bytes done of ``total``, from any thread, as a share to ``progress``
    (which may raise to stop the work)."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total or 1
        self.progress = progress
        self.done = 0
        self._lock = threading.Lock()

    def __call__(self, count: int) -> None:
        with self._lock:
            self.done += count
            share = min(self.done / self.total, 0.999)
        if self.progress is not None:
            self.progress(share)


def run_all(tasks: list[Callable[[], T]], workers: int) -> list[T]:
    """The tasks' results in order, ``workers`` at a time; the first failure
    is raised once the running tasks end (the queued ones do not start)."""
    if workers <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(workers, thread_name_prefix="package") as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def copy_hashing(source: IO[bytes], target: IO[bytes] | None,
                 advance: Callable[[int], None]) -> tuple[int, str]:
    """Copy a stream to ``target`` (or only read it, for None); (size, SHA-256).
    For what is not a plain file (a ZIP member)."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    size = 0
    while count := source.readinto(buffer):  # type: ignore[attr-defined]
        chunk = view[:count]
        digest.update(chunk)
        if target is not None:
            target.write(chunk)
        size += count
        advance(count)
    return size, digest.hexdigest()


def hash_file(path: Path, advance: Callable[[int], None]) -> tuple[int, str]:
    """(size, SHA-256) of a file, read through a memory map."""
    digest = file_digest(path, advance, crc=False)
    return digest.size, digest.sha256


def copy_into(source: Path, target: int, offset: int, advance: Callable[[int], None], *,
              crc: bool = False, known: Digest | None = None) -> tuple[int, str, int]:
    """Copy ``source`` into the open file ``target`` at ``offset``;
    (size, SHA-256, CRC-32 or 0) of what was copied. With the file's
    ``known`` digest (kept since it was made, and still matching), only the
    kernel copies: nothing is read twice."""
    size = source.stat().st_size
    with source.open("rb") as reading:
        if known is not None and known.size == size and (known.crc32 is not None or not crc):
            copied = _kernel_copy(reading.fileno(), target, size, offset)
            advance(copied)
            found = Digest(size, known.mtime_ns, known.sha256, known.crc32)
        else:
            with ThreadPoolExecutor(1, thread_name_prefix="package-copy") as pool:
                copying = pool.submit(_kernel_copy, reading.fileno(), target, size, offset)
                try:
                    found = file_digest(source, advance, size=size, crc=crc)
                finally:
                    copied = copying.result()
    if copied != size or found.size != size:
        raise OSError(errno.EIO, f"{source} changed while it was copied")
    return size, found.sha256, found.crc32 or 0


def copy_file(source: Path, target: Path, advance: Callable[[int], None],
              known: Digest | None = None) -> tuple[int, str]:
    """Copy ``source`` to a new file ``target``; (size, SHA-256)."""
    with target.open("xb") as writing:
        size, digest, _ = copy_into(source, writing.fileno(), 0, advance, known=known)
    return size, digest


def _kernel_copy(source: int, target: int, size: int, offset: int) -> int:
    """``size`` bytes from the start of ``source`` to ``target`` at ``offset``;
    the bytes copied."""
    done = 0
    try:
        while done < size:
            count = os.copy_file_range(source, target, min(KERNEL_CHUNK, size - done),
                                       done, offset + done)
            if count == 0:
                return done
            done += count
        return done
    except OSError as exc:
        # Another file system, or an old kernel: plain reads and writes.
        if done or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP,
                                     errno.EINVAL):
            raise
    while done < size:
        chunk = os.pread(source, min(CHUNK, size - done), done)
        if not chunk:
            break
        written = 0
        while written < len(chunk):
            written += os.pwrite(target, chunk[written:], offset + done + written)
        done += len(chunk)
    return done
