"""The local lock file: exclusion across processes, fencing tokens, the version hint, crash release."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deltaingest.locking.filelock import FileLock


def test_tokens_increase_and_clean_release_passes_the_version(tmp_path: Path) -> None:
    lock = FileLock(str(tmp_path), scope="commit", holder="a")
    first = lock.acquire()
    assert first.known_version is None
    first.release_version = 7
    lock.release(first)
    second = FileLock(str(tmp_path), scope="commit", holder="b").acquire()
    assert second.token is not None and first.token is not None and second.token > first.token
    assert second.known_version == 7


def test_held_lock_excludes_another_holder(tmp_path: Path) -> None:
    holder = FileLock(str(tmp_path), scope="commit", holder="a")
    lease = holder.acquire()
    other = FileLock(str(tmp_path), scope="commit", holder="b", timeout=0.2)
    assert other.try_acquire() is None
    assert other.describe_holder() == "a"
    holder.release(lease)
    assert other.try_acquire() is not None


def test_crashed_holder_frees_the_lock_and_leaves_no_hint(tmp_path: Path) -> None:
    script = (
        "import os, sys; from deltaingest.locking.filelock import FileLock;"
        f"lease = FileLock({str(tmp_path)!r}, scope='commit', holder='dead').acquire();"
        "os._exit(9)"
    )
    clean = FileLock(str(tmp_path), scope="commit", holder="a")
    lease = clean.acquire()
    lease.release_version = 3
    clean.release(lease)
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 9
    after = FileLock(str(tmp_path), scope="commit", holder="b", timeout=5).acquire()
    assert after.known_version is None  # the dead holder may have committed: re-read the table
    assert after.token == 3
