"""The image file store: files under one root, named by generated ids, written atomically.

Paths handed out are relative to the root (for example ``originals/3f/3f2a...c1.jpg``), so the data directory
can move. Nothing is ever named after an uploaded file's name.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from pipeline.errors import storage_error

KINDS = ("originals", "masks", "thumbnails", "outputs", "personas")
TEMP_SUFFIX = ".partial"


class FileStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def write(self, kind: str, data: bytes, extension: str) -> str:
        """Stores `data` under a new id; returns its relative path. A crash never leaves a half-written file
        under that name: the bytes go to a temporary file that is renamed into place."""
        if kind not in KINDS:
            raise ValueError(f"unknown file kind {kind!r}; expected one of {KINDS}")
        if not extension.startswith(".") or "/" in extension or os.sep in extension:
            raise ValueError(f"bad file extension {extension!r}")
        file_id = uuid.uuid4().hex
        relative = f"{kind}/{file_id[:2]}/{file_id}{extension.lower()}"
        target = self.root / relative
        temporary = target.with_name(target.name + TEMP_SUFFIX)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException as error:
            try:
                temporary.unlink(missing_ok=True)
            except OSError:  # a read-only disk cannot have the temporary file; the sweep on start removes any left
                pass
            translated = storage_error(error)  # a full or read-only disk: StorageError, with what to do about it
            if translated is not None:
                raise translated from error
            raise
        return relative

    def path(self, relative: str) -> Path:
        """The absolute path of a stored file; refuses anything that would leave the store."""
        if not relative or Path(relative).is_absolute():
            raise ValueError(f"not a stored file path: {relative!r}")
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or candidate == self.root:
            raise ValueError(f"not a stored file path: {relative!r}")
        return candidate

    def read(self, relative: str) -> bytes:
        return self.path(relative).read_bytes()

    def exists(self, relative: str) -> bool:
        return self.path(relative).is_file()

    def delete(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)

    def sweep(self, referenced: set[str], older_than_seconds: float | None = 600) -> list[str]:
        """Deletes temporary files and files no database row points at, when older than the grace period
        (another process may be between writing a file and recording it), or whatever their age when
        `older_than_seconds` is None (the caller knows no other process uses the store). Returns what was deleted."""
        cutoff = None if older_than_seconds is None else time.time() - older_than_seconds
        deleted = []
        for kind in KINDS:
            for file in (self.root / kind).glob("*/*"):
                relative = file.relative_to(self.root).as_posix()
                if relative in referenced or not file.is_file():
                    continue
                if cutoff is not None and file.stat().st_mtime > cutoff:
                    continue
                file.unlink(missing_ok=True)
                deleted.append(relative)
        return deleted
