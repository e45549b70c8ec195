"""Which process looks after a data directory: the first to open it does crash recovery; others only use it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataDirLock:
    """A non-blocking exclusive lock file. `acquired` is False when another live process holds it;
    the operating system releases it when its process dies, so a crash never leaves it stuck."""

    def __init__(self, data_dir: Path):
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

    def release(self) -> None:
        if not self._handle.closed:
            if self.acquired:
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
