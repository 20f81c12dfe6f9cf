"""Where bytes are kept. The handlers see only this interface; the default is local disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

#: Every temporary file starts with this; readers and listings ignore such names.
PARTIAL_PREFIX = ".partial-"
#: ``.partial-<pid>-<instance token>-<host>-<random><suffix>``
_PARTIAL_RE = re.compile(r"^\.partial-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})-(?P<host>[A-Za-z0-9_]+)-")


class Storage(Protocol):
    """A flat key → bytes store with '/'-separated keys (object-storage friendly)."""

    async def put(self, key: str, data: bytes) -> None: ...
    async def put_all(self, items: Sequence[tuple[str, bytes]]) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def exists(self, key: str) -> bool: ...
    async def delete(self, key: str) -> None: ...
    def url(self, key: str) -> str: ...


def _read_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    ``os.umask`` can only be read by setting it, and the umask is process-wide: another
    thread creating a file in between would get the wrong mode. Linux reports it in
    ``/proc/self/status``; elsewhere the set-and-restore is done once, at import.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


#: The mode of a written file: what ``open(path, "w")`` would give it (0666 minus the
#: umask). ``mkstemp`` creates temp files 0600; the final file must not stay so.
FILE_MODE = 0o666 & ~_read_umask()


def host_tag() -> str:
    """This machine's name as it appears in temp file names."""
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"


def partial_prefix(pid: int, token: str, host: str) -> str:
    """How the temp files of writer ``pid`` (instance ``token``) on ``host`` start."""
    return f"{PARTIAL_PREFIX}{pid}-{token}-{host}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalStorage:
    """Files under ``root``. Writes are atomic: temp file, fsync, rename, fsync directory.

    A reader (or a crash) never sees a partial file: the final name appears only once
    the bytes are on disk. Temporary files are named after the process writing them,
    so :meth:`sweep_partials` can tell a dead writer's leftovers from a live one's.
    """

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = root.resolve()
        self.read_only = read_only
        self._token = secrets.token_hex(4)
        self._host = host_tag()

    def path(self, key: str) -> Path:
        # Check the raw segments: PurePosixPath would quietly normalise "a//b" and "./a".
        if not key or any(part in ("", ".", "..") for part in key.split("/")) or "\x00" in key:
            raise ValueError(f"unsafe storage key {key!r}")
        if any(part.startswith(PARTIAL_PREFIX) for part in key.split("/")):
            raise ValueError(f"storage key {key!r} names a temporary file")
        pure = PurePosixPath(key)
        path = (self.root / pure).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} escapes the root")
        return path

    async def put(self, key: str, data: bytes) -> None:
        self._writable()
        await asyncio.to_thread(self._put, self.path(key), data)

    async def put_all(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write several files, skipping any already there with identical content.

        One trip to a worker thread for all of them, and each directory is fsynced once
        after its files are renamed into place (the same guarantee as :meth:`put`).
        """
        self._writable()
        paths = [(self.path(key), data) for key, data in items]
        await asyncio.to_thread(self._put_all, paths)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path(key).read_bytes)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    async def delete(self, key: str) -> None:
        self._writable()
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    def url(self, key: str) -> str:
        return self.path(key).as_uri()

    # ------------------------------------------------------------------ leftovers

    async def sweep_partials(self, under: str | None = None, *, max_age: float = 3600.0) -> int:
        """Remove temporary files a killed writer left behind; returns how many.

        A temp file of this host is removed when its process is gone (or is this very
        process under an earlier incarnation, as in a restarted container where the
        pid repeats); anyone else's only once older than ``max_age`` seconds. Files of
        live writers are left alone, so several archivers can share one root.
        """
        self._writable()
        folder = self.path(under) if under else self.root
        if not folder.is_dir():
            return 0  # the common case for a job's folder: no trip to a thread
        return await asyncio.to_thread(self._sweep, folder, max_age)

    def _sweep(self, folder: Path, max_age: float) -> int:
        removed = 0
        if not folder.is_dir():
            return 0
        now = time.time()
        for path in folder.rglob(f"{PARTIAL_PREFIX}*"):
            if self._stale(path, now, max_age):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed

    def _stale(self, path: Path, now: float, max_age: float) -> bool:
        match = _PARTIAL_RE.match(path.name)
        if match is not None and match["host"] == self._host:
            if match["token"] == self._token:
                return False  # one of our own writes, in flight
            pid = int(match["pid"])
            return pid == os.getpid() or not _pid_alive(pid)
        try:
            return now - path.stat().st_mtime > max_age
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ writing

    def _writable(self) -> None:
        if self.read_only:
            raise PermissionError("this storage is read-only")

    def _put_all(self, items: Sequence[tuple[Path, bytes]]) -> None:
        folders: dict[Path, None] = {}
        for path, data in items:
            with contextlib.suppress(OSError):
                found = path.stat()
                if found.st_size == len(data) and path.read_bytes() == data:
                    if found.st_mode & 0o777 != FILE_MODE:
                        path.chmod(FILE_MODE)  # left 0600 by an older archiver
                    continue  # a crashed run's identical file
            self._write(path, data)
            folders[path.parent] = None
        for folder in folders:
            _fsync_dir(folder)

    def _put(self, path: Path, data: bytes) -> None:
        self._write(path, data)
        _fsync_dir(path.parent)

    def _write(self, path: Path, data: bytes) -> None:
        """Temp file, fsync, rename: the name appears only once the bytes are on disk.

        The file gets :data:`FILE_MODE` before the rename, so it appears with its final
        mode (never 0600, as ``mkstemp`` creates it).
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = partial_prefix(os.getpid(), self._token, self._host)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fchmod(handle.fileno(), FILE_MODE)  # readable as the umask allows
                os.fsync(handle.fileno())
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _fsync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
