"""A lock file beside a local table: ``flock`` serializes processes on one machine and the OS frees it
when the holder dies, so no expiry is needed. The file keeps the fencing token and the version hint."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

from deltaingest.locking.lease import Lease, LockTimeout

log = logging.getLogger(__name__)

# Inside the table directory but under a name starting with "_", which Delta readers and vacuum skip.
LOCK_DIR = "_deltaingest"
_RECORD_BYTES = 256


class FileLock:
    """``flock``-based lock at ``<table>/_deltaingest/<scope>.lock``."""

    def __init__(self, table_path: str, *, scope: str, holder: str, timeout: float = 30.0) -> None:
        self.holder = holder
        self._path = Path(table_path.removeprefix("file://")) / LOCK_DIR / f"{scope}.lock"
        self._timeout = timeout
        self._fd: int | None = None

    def _open(self) -> int:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self) -> Lease:
        fd = self._open()
        deadline = time.monotonic() + self._timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self._take(fd)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise LockTimeout(f"{self._path} is held by {self.describe_holder()}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def try_acquire(self) -> Lease | None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return self._take(fd)

    def _take(self, fd: int) -> Lease:
        token, version, clean, _ = _parse(os.pread(fd, _RECORD_BYTES, 0))
        token += 1
        _write(fd, f"{token} {version if version is not None else -1} 0 {self.holder}\n")
        self._fd = fd
        return Lease(
            holder=self.holder,
            token=token,
            known_version=version if clean else None,
            deadline=float("inf"),  # the OS releases the lock if we die; it cannot expire under us
        )

    def release(self, lease: Lease) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        version = lease.release_version
        _write(fd, f"{lease.token} {version if version is not None else -1} 1 -\n")
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def describe_holder(self) -> str | None:
        try:
            _, _, clean, holder = _parse(self._path.read_bytes())
        except FileNotFoundError:
            return None
        return None if clean else holder

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _parse(raw: bytes) -> tuple[int, int | None, bool, str]:
    """``token version clean holder``; an empty or torn file reads as a fresh lock with unknown version."""
    parts = raw.decode(errors="replace").split()
    try:
        token, version, clean = int(parts[0]), int(parts[1]), parts[2] == "1"
    except (IndexError, ValueError):
        return 0, None, False, "unknown"
    holder = parts[3] if len(parts) > 3 else "unknown"
    return token, (version if version >= 0 else None), clean, holder


def _write(fd: int, text: str) -> None:
    # One fixed-size overwrite, never a truncate: a crash mid-write cannot leave an empty file that would
    # restart the fencing token at zero.
    os.pwrite(fd, text.encode().ljust(_RECORD_BYTES), 0)
