"""The lease a lock hands out, the lock protocol, and the errors every lock raises."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol


class LockError(RuntimeError):
    """The lock could not be taken or kept; the operation that needed it did not happen."""


class LockTimeout(LockError):
    """Another holder kept the lock for longer than we were willing to wait."""


class LeaseLost(LockError):
    """Our lease expired or was taken over before we were done."""


@dataclass
class Lease:
    """One holding of a lock.

    ``token`` is the fencing token: it increases with every acquisition of the same lock, so commits stamped
    with it can be ordered and traced to their lease. ``known_version`` is the table version the previous
    holder recorded when it released cleanly; ``None`` means unknown (first use, or the previous holder died),
    and the holder must then read the table's latest state before relying on it.
    """

    holder: str
    token: int | None
    known_version: int | None
    deadline: float  # time.monotonic() after which the lease must be presumed lost
    release_version: int | None = None  # set by the holder: the table version to record on release
    handover: bool = False  # another writer asked for the lock: give it back after the current commit

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class Lock(Protocol):
    """A mutual-exclusion lock with fencing, as used around commits and maintenance runs."""

    holder: str

    def acquire(self) -> Lease:
        """Block until the lock is ours (or raise ``LockTimeout``)."""
        ...

    def try_acquire(self) -> Lease | None:
        """Take the lock if it is free now; never wait."""
        ...

    def release(self, lease: Lease) -> None:
        """Give the lock back, recording ``lease.release_version``; a lost lease is logged, not raised."""
        ...

    def describe_holder(self) -> str | None:
        """Who holds the lock now, for messages; None when free."""
        ...

    def close(self) -> None: ...


def safety_margin(lease_seconds: float) -> float:
    """How long before a lease's end its holder stops trusting it: room for clock drift between writers
    and for a lock call in flight. A third of a short lease, at most a second of a long one."""
    return min(1.0, lease_seconds / 3)


def check_lease(lease: Lease, *, margin: float = 0.0) -> None:
    """Raise ``LeaseLost`` unless the lease is good for at least ``margin`` more seconds (its deadline
    already allows for the lock's safety margin)."""
    if lease.remaining() < margin:
        raise LeaseLost(f"lease of {lease.holder} (token {lease.token}) expired before the commit")


@contextmanager
def held(lock: Lock) -> Iterator[Lease]:
    """Hold ``lock`` for the duration of the block; always released, also on error."""
    lease = lock.acquire()
    try:
        yield lease
    finally:
        lock.release(lease)


@contextmanager
def held_if_free(lock: Lock) -> Iterator[Lease | None]:
    """Hold ``lock`` for the block if it is free now, else yield None at once (never wait for it)."""
    lease = lock.try_acquire()
    try:
        yield lease
    finally:
        if lease is not None:
            lock.release(lease)


def new_holder_id() -> str:
    """Identity of this process as a lock holder: the pod name (hostname), pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class NoLock:
    """No coordination: for a single writer on an object store, where S3 conditional writes still protect
    the log. Each lease reports the version this process last committed, so its next commit skips the log
    LIST. Should a second writer commit meanwhile anyway, delta-rs rebases an append onto it, and refuses a
    commit whose producer ``txn`` another commit already carries ("Concurrent transaction"), which sends
    the committer to re-read the log and re-plan: exactly-once does not rest on the LIST.
    """

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self._version: int | None = None

    def acquire(self) -> Lease:
        return Lease(holder=self.holder, token=None, known_version=self._version, deadline=float("inf"))

    def try_acquire(self) -> Lease | None:
        return self.acquire()

    def release(self, lease: Lease) -> None:
        self._version = lease.release_version

    def describe_holder(self) -> str | None:
        return None

    def close(self) -> None:
        return None
