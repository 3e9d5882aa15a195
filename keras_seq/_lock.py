"""An exclusive lock file held by one live process (``fcntl.flock``; it goes with the process,
``kill -9`` included), naming its holder's pid."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO


class InUse(RuntimeError):
    """Another live process holds the lock."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"held by another process (pid {holder})")
        self.holder = holder


def hold(path: Path, wait: bool = False) -> TextIO:
    """Take the lock file `path` for this process; returns it, to keep open (closing it
    releases the lock). Without `wait`, raises `InUse` naming the holder's pid when another
    process holds it. Raises `OSError` when `path` cannot be opened for writing."""
    import fcntl

    lock = open(path, "a+")  # noqa: SIM115 (held by the caller)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise InUse(holder) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
