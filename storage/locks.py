"""Which process looks after a data directory: the first to open it does crash recovery; others only use it."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class DataDirLock:
    """A non-blocking exclusive lock file. `acquired` is False when another live process holds it;
    the operating system releases it when its process dies, so a crash never leaves it stuck.

    Every studio process (owner or not) also holds a shared lock on `.studio.open` while it has the directory
    open, so the owner can tell, with `alone()`, whether any other studio process is alive."""

    def __init__(self, data_dir: Path):
        self._presence = open(Path(data_dir) / ".studio.open", "a+")
        fcntl.flock(self._presence, fcntl.LOCK_SH)  # waits only while an owner is in `alone()`, i.e. recovering
        self._handle = open(Path(data_dir) / ".studio.lock", "a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.acquired = True
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(str(os.getpid()))
            self._handle.flush()
        except BlockingIOError:
            self.acquired = False

    @contextmanager
    def alone(self) -> Iterator[bool]:
        """Yields True when no other studio process has the directory open, and keeps it so (others wait to
        open it) until the block ends; yields False when others have it open."""
        try:
            fcntl.flock(self._presence, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        try:
            yield alone
        finally:
            # back to shared; after a failed upgrade this takes the shared lock again (Linux drops it on failure)
            fcntl.flock(self._presence, fcntl.LOCK_SH)

    def release(self) -> None:
        if not self._handle.closed:
            if self.acquired:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
        if not self._presence.closed:
            self._presence.close()


def this_worker() -> str:
    """This process, as recorded on the jobs it runs: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(worker: str | None) -> bool:
    """Whether the process that recorded `worker` may still be running. Unknown (None, malformed) counts as gone;
    a process on another host, which cannot be checked, counts as alive."""
    host, _, pid = (worker or "").rpartition(":")
    if not host or not pid.isdigit() or int(pid) == 0:
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
