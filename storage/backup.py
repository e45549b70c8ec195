"""Backups of a data directory to a private Hugging Face dataset repo, and restore from it on start.

A Space's disk is lost on every restart and its mounted storage buckets have no file locking, so the studio keeps
SQLite on local disk and copies it out on a schedule:

- `snapshot` makes a consistent copy while writes go on: the database through SQLite's online backup API (one
  step, so one read transaction: the copy is the database as of one instant, never a copy of a live file and its
  WAL), then the image files that this copy points at. Files are immutable once written (the file store writes a
  new id each time and only ever deletes), so a file linked or copied after the database snapshot is the file the
  snapshot means. Only the referenced files are taken: a file written but not yet recorded is not part of the
  studio's state (recovery would sweep it), and a deleted garment's files must not live on in the backup.
- `BackupScheduler` pushes a snapshot every few minutes: first the new image files, then `studio.db` in one
  commit together with the removal of files it no longer points at. Every commit of the repo therefore holds a
  database whose files are all there.
- `restore_if_empty` puts the latest backup in place when the data directory has no database, before the studio
  opens it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

DATABASE_NAME = "studio.db"
FILES_DIR_NAME = "files"
MANIFEST_NAME = "backup.json"
REPO_TYPE = "dataset"
DEFAULT_MINUTES = 10
FILE_COLUMN_SUFFIX = "_url"  # columns holding paths relative to files/ (original_image_url, mask_image_url, ...)
SNAPSHOT_ATTEMPTS = 3
STAGING_PREFIX = ".backup-"
RESTORE_PREFIX = ".restore-"


class BackupError(RuntimeError):
    """A backup or restore that cannot be done safely."""


# -- settings ---------------------------------------------------------------------------------


def backup_settings_from_env() -> tuple[str | None, str | None, int]:
    """(repo_id, token, minutes) from STUDIO_BACKUP_REPO, HF_TOKEN and STUDIO_BACKUP_MINUTES (default 10)."""
    repo_id = os.environ.get("STUDIO_BACKUP_REPO", "").strip() or None
    token = os.environ.get("HF_TOKEN", "").strip() or None
    raw = os.environ.get("STUDIO_BACKUP_MINUTES", "").strip()
    try:
        minutes = int(raw) if raw else DEFAULT_MINUTES
    except ValueError:
        raise BackupError(f"STUDIO_BACKUP_MINUTES must be a whole number of minutes, not {raw!r}") from None
    if minutes < 1:
        raise BackupError(f"STUDIO_BACKUP_MINUTES must be at least 1, not {minutes}")
    return repo_id, token, minutes


# -- snapshot ---------------------------------------------------------------------------------


def snapshot(database_path: Path, files_dir: Path, target: Path) -> Path:
    """A consistent copy of the database (target/studio.db) and of every file it points at (target/files/...),
    taken while the studio keeps writing. Returns `target`.

    `target` may already hold an older snapshot: it is brought up to date (files it no longer needs are removed).
    Files are hard-linked where `target` is on the same file system (instant, no extra space) and copied elsewhere.
    """
    database_path, files_dir, target = Path(database_path), Path(files_dir), Path(target)
    if not database_path.is_file():
        raise FileNotFoundError(f"no database at {database_path}")
    target.mkdir(parents=True, exist_ok=True)
    target_files = target / FILES_DIR_NAME
    missing: list[str] = []
    for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
        _backup_database(database_path, target / DATABASE_NAME)
        referenced = referenced_files(target / DATABASE_NAME)
        missing = [relative for relative in sorted(referenced)
                   if not _link_or_copy(files_dir, target_files, relative)]
        if not missing:
            break
        # A row deleted (with its file) between the database snapshot and the file copy: snapshot again.
        log.info("snapshot attempt %d: %d referenced file(s) vanished meanwhile; retrying", attempt, len(missing))
    if missing:
        log.warning("backup snapshot points at %d file(s) that are not in %s: %s", len(missing), files_dir,
                    ", ".join(missing[:5]))
    _remove_unreferenced(target_files, referenced)
    manifest = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": DATABASE_NAME,
        "files": len(referenced) - len(missing),
        "missing_files": missing,
    }
    (target / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return target


def _backup_database(source: Path, destination: Path) -> None:
    """SQLite's online backup API in a single step: the copy is the committed state at one instant (a reader's
    view, WAL included), written to a temporary name and renamed into place. The copy is switched to a rollback
    journal so that it is one self-contained file."""
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")
            result = dst.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                raise BackupError(f"the database snapshot failed its integrity check: {result}")
        finally:
            dst.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    os.replace(partial, destination)


def referenced_files(database_path: Path) -> set[str]:
    """Every file path (relative to files/) a database points at: the values of its `*_url` columns."""
    conn = sqlite3.connect(f"file:{Path(database_path).resolve()}?mode=ro", uri=True)
    try:
        found: set[str] = set()
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info([{table}])")]
            for column in columns:
                if column.endswith(FILE_COLUMN_SUFFIX):
                    rows = conn.execute(f"SELECT DISTINCT [{column}] FROM [{table}] WHERE [{column}] IS NOT NULL")
                    found.update(value for (value,) in rows if isinstance(value, str) and value)
        return found
    finally:
        conn.close()


def _safe_relative(relative: str) -> PurePosixPath:
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or ".." in path.parts or "\\" in relative:
        raise BackupError(f"not a stored file path: {relative!r}")
    return path


def _link_or_copy(source_root: Path, target_root: Path, relative: str) -> bool:
    """Puts source_root/relative at target_root/relative; False when the source is not there."""
    try:
        path = _safe_relative(relative)
    except BackupError:
        log.warning("backup skips a database value that is not a stored file path: %r", relative)
        return True  # not a file of ours: nothing to copy, nothing missing
    source, target = source_root.joinpath(*path.parts), target_root.joinpath(*path.parts)
    if target.is_file():
        return True  # same name, same bytes: stored files are never rewritten
    if not source.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        pass
    except FileNotFoundError:
        return False
    except OSError:  # another file system, or links not allowed: copy through a temporary name
        partial = target.with_name(target.name + ".partial")
        try:
            shutil.copy2(source, partial)
        except FileNotFoundError:
            partial.unlink(missing_ok=True)
            return False
        os.replace(partial, target)
    return True


def _remove_unreferenced(files_root: Path, referenced: set[str]) -> None:
    if not files_root.is_dir():
        return
    for file in [path for path in files_root.rglob("*") if not path.is_dir()]:
        if file.relative_to(files_root).as_posix() not in referenced:
            file.unlink()
    for folder in sorted((path for path in files_root.rglob("*") if path.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def _stored_files(root: Path) -> list[str]:
    """Relative posix paths of the files under root/files (what a snapshot holds)."""
    files_root = root / FILES_DIR_NAME
    if not files_root.is_dir():
        return []
    return sorted(path.relative_to(files_root).as_posix() for path in files_root.rglob("*") if path.is_file())


# -- restore ----------------------------------------------------------------------------------


def restore_if_empty(data_dir: Path, repo_id: str, token: str | None = None) -> bool:
    """When `data_dir` has no database, puts the latest backup from the dataset repo `repo_id` in place and
    returns True. Returns False, changing nothing, when a database is already there or the repo holds no backup
    yet (a first start). Any other failure (Hub unreachable, bad token, a damaged backup) raises BackupError: an
    empty studio that then backs itself up would replace the good backup.

    The backup is downloaded into a temporary folder inside `data_dir`, checked, and moved into place: the image
    files first, the database last and without ever replacing one (a hard link, which fails if the name exists).
    A crash half-way leaves no database, so the next start restores again."""
    import huggingface_hub
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    data_dir = Path(data_dir)
    database = data_dir / DATABASE_NAME
    if _has_database(data_dir):
        log.info("restore: %s already holds a database; the backup is left alone", data_dir)
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(data_dir, RESTORE_PREFIX)
    stage = Path(tempfile.mkdtemp(prefix=RESTORE_PREFIX, dir=data_dir))
    try:
        download_dir = stage / "download"
        try:
            folder = Path(huggingface_hub.snapshot_download(
                repo_id=repo_id, repo_type=REPO_TYPE, token=token, local_dir=download_dir,
                allow_patterns=[DATABASE_NAME, MANIFEST_NAME, f"{FILES_DIR_NAME}/**"],
            ))
        except LocalEntryNotFoundError as error:  # the Hub could not be reached (or HF_HUB_OFFLINE is set)
            raise BackupError(f"could not reach the Hub to restore the backup from dataset repo {repo_id}: "
                              f"{error}") from error
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as error:
            # Also what a wrong or missing token gets for a private repo; the first push then fails loudly.
            log.warning("restore: no backup in dataset repo %s (%s); starting empty", repo_id, type(error).__name__)
            return False
        except Exception as error:
            raise BackupError(f"could not download the backup from dataset repo {repo_id}: {error}") from error
        if not (folder / DATABASE_NAME).is_file():
            log.warning("restore: dataset repo %s holds no %s yet; starting empty", repo_id, DATABASE_NAME)
            return False
        inside = folder.resolve().is_relative_to(stage.resolve())
        staged_db = stage / DATABASE_NAME
        _transfer(folder / DATABASE_NAME, staged_db, move=inside)
        _check_database(staged_db)
        missing = [relative for relative in referenced_files(staged_db)
                   if not _contains(folder / FILES_DIR_NAME, relative)]
        if missing:
            log.warning("restore: the backup lacks %d file(s) its database points at: %s", len(missing),
                        ", ".join(sorted(missing)[:5]))
        files_root = data_dir / FILES_DIR_NAME
        count = 0
        for relative in _stored_files(folder):
            parts = _safe_relative(relative).parts
            destination = files_root.joinpath(*parts)
            if destination.is_file():
                continue  # same name, same bytes
            destination.parent.mkdir(parents=True, exist_ok=True)
            _transfer((folder / FILES_DIR_NAME).joinpath(*parts), destination, move=inside)
            count += 1
        if _has_database(data_dir):
            log.warning("restore: a database appeared in %s meanwhile; the backup is left alone", data_dir)
            return False
        try:
            os.link(staged_db, database)  # never replaces an existing file
        except FileExistsError:
            log.warning("restore: a database appeared in %s meanwhile; the backup is left alone", data_dir)
            return False
        except OSError:
            if database.exists():
                return False
            os.replace(staged_db, database)
        log.info("restore: put the backup from dataset repo %s in place (%s, %d file(s))", repo_id,
                 DATABASE_NAME, count)
        return True
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _contains(root: Path, relative: str) -> bool:
    try:
        return root.joinpath(*_safe_relative(relative).parts).is_file()
    except BackupError:
        return True  # not a stored file path: nothing to look for


def _remove_stale(folder: Path, prefix: str, older_than_seconds: float = 3600) -> None:
    """Staging folders that a crash left behind (old enough that no live process is still using them)."""
    cutoff = time.time() - older_than_seconds
    for stale in folder.glob(prefix + "*"):
        try:
            if stale.is_dir() and stale.stat().st_mtime < cutoff:
                shutil.rmtree(stale, ignore_errors=True)
        except FileNotFoundError:
            pass


def _has_database(data_dir: Path) -> bool:
    return any((data_dir / (DATABASE_NAME + suffix)).exists() for suffix in ("", "-wal"))


def _transfer(source: Path, destination: Path, move: bool) -> None:
    """Moves (our own download) or copies (someone else's folder, e.g. the Hub cache) through a temporary name."""
    partial = destination.with_name(destination.name + ".partial")
    if move:
        shutil.move(source, partial)
    else:
        shutil.copy2(source, partial)
    os.replace(partial, destination)


def _check_database(path: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as error:
        raise BackupError(f"the backed-up database cannot be read: {error}") from error
    if result != "ok":
        raise BackupError(f"the backed-up database failed its integrity check: {result}")


# -- scheduled pushes -------------------------------------------------------------------------


class BackupScheduler:
    """Every `minutes`, a snapshot of the data directory pushed to the private dataset repo `repo_id`.

    A push, from a background thread (never two at once):
    1. `snapshot` into a staging folder beside the database (so files are hard links, not copies);
    2. nothing more if the database and its file list are what the last push sent;
    3. `create_repo(private=True, exist_ok=True)` once, then the list of the repo's files;
    4. `upload_folder` of the image files the repo lacks (this may take several commits for many files; it only
       adds, so the database already in the repo keeps all of its files);
    5. one `create_commit` that puts `studio.db` and `backup.json` in place and deletes the files the new database
       no longer points at: each commit holds a database with all of its files;
    6. with `squash_history` (the default), `super_squash_history`, so that the repo keeps one state: deleted
       garments and accounts are not kept in old commits, and the repo does not grow by a database every push.
    `stop()` pushes a last time. Without a repo id, start() and stop() only say that backups are off."""

    def __init__(self, database_path: Path, files_dir: Path, repo_id: str | None, token: str | None = None,
                 minutes: float = DEFAULT_MINUTES, squash_history: bool = True):
        self.database_path = Path(database_path)
        self.files_dir = Path(files_dir)
        self.repo_id = repo_id or None
        self.token = token or None
        self.interval = max(float(minutes), 0.0) * 60
        self.squash_history = squash_history
        self._stop = threading.Event()
        self._push_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._repo_ready = False
        self._last_pushed: str | None = None
        self.last_push_at: float | None = None
        self.last_error: str | None = None

    @classmethod
    def from_env(cls, database_path: Path, files_dir: Path) -> "BackupScheduler":
        """Settings from STUDIO_BACKUP_REPO, HF_TOKEN, STUDIO_BACKUP_MINUTES; STUDIO_BACKUP_KEEP_HISTORY=1 keeps
        every backup commit instead of squashing the repo to the latest one."""
        repo_id, token, minutes = backup_settings_from_env()
        keep = os.environ.get("STUDIO_BACKUP_KEEP_HISTORY", "").strip().lower() in ("1", "true", "yes")
        return cls(database_path, files_dir, repo_id, token, minutes, squash_history=not keep)

    @property
    def enabled(self) -> bool:
        return self.repo_id is not None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled:
            log.info("backups are off: set STUDIO_BACKUP_REPO (a private dataset repo) and HF_TOKEN to turn them on")
            return
        if self._thread is not None:
            return
        self._clean_stale_staging()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="studio-backup", daemon=True)
        self._thread.start()
        log.info("backups on: dataset repo %s every %g minute(s)", self.repo_id, self.interval / 60)

    def stop(self, final_push: bool = True) -> None:
        """Stops the schedule; with `final_push`, pushes what changed since the last push (call it after the
        studio has finished its jobs)."""
        if not self.enabled:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if final_push:
            self._push_logged()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._push_logged()

    def _push_logged(self) -> None:
        try:
            self.push_now()
        except Exception as error:  # a failed push must not stop the studio; the next one tries again
            self.last_error = f"{type(error).__name__}: {error}"
            log.exception("backup to dataset repo %s failed", self.repo_id)

    # -- one push -----------------------------------------------------------------------------

    def push_now(self) -> bool:
        """Snapshots and pushes now; returns False when there was nothing new to push (or backups are off)."""
        if not self.enabled:
            return False
        if not self.database_path.is_file():
            log.info("backup: no database at %s yet", self.database_path)
            return False
        with self._push_lock:
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.database_path.parent))
            try:
                return self._push(staging)
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _push(self, staging: Path) -> bool:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

        snap = snapshot(self.database_path, self.files_dir, staging / "snapshot")
        files = [f"{FILES_DIR_NAME}/{relative}" for relative in _stored_files(snap)]
        digest = _digest(snap / DATABASE_NAME, files)
        if digest == self._last_pushed:
            log.debug("backup: nothing changed since the last push")
            return False
        api = HfApi(token=self.token)
        if not self._repo_ready:
            api.create_repo(self.repo_id, repo_type=REPO_TYPE, private=True, exist_ok=True)
            self._repo_ready = True
        remote = set(api.list_repo_files(self.repo_id, repo_type=REPO_TYPE))
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

        new = [path for path in files if path not in remote]
        if new:
            upload = staging / "upload"
            for path in new:
                relative = path[len(FILES_DIR_NAME) + 1:]
                _link_or_copy(snap / FILES_DIR_NAME, upload / FILES_DIR_NAME, relative)
            api.upload_folder(repo_id=self.repo_id, repo_type=REPO_TYPE, folder_path=upload, path_in_repo="",
                              commit_message=f"Backup files, {stamp}")

        keep = set(files)
        stale = sorted(path for path in remote if path.startswith(FILES_DIR_NAME + "/") and path not in keep)
        operations = [
            CommitOperationAdd(path_in_repo=DATABASE_NAME, path_or_fileobj=str(snap / DATABASE_NAME)),
            CommitOperationAdd(path_in_repo=MANIFEST_NAME, path_or_fileobj=str(snap / MANIFEST_NAME)),
            *(CommitOperationDelete(path_in_repo=path) for path in stale),
        ]
        api.create_commit(repo_id=self.repo_id, repo_type=REPO_TYPE, operations=operations,
                          commit_message=f"Backup {stamp}: {DATABASE_NAME} and {len(files)} file(s)")
        if self.squash_history:
            api.super_squash_history(repo_id=self.repo_id, repo_type=REPO_TYPE,
                                     commit_message=f"Studio backup as of {stamp}")
        self._last_pushed = digest
        self.last_push_at = time.time()
        self.last_error = None
        log.info("backup: pushed %s, %d new and %d removed file(s) to dataset repo %s", DATABASE_NAME, len(new),
                 len(stale), self.repo_id)
        return True

    def _clean_stale_staging(self) -> None:
        if self.database_path.parent.is_dir():
            _remove_stale(self.database_path.parent, STAGING_PREFIX)


def _digest(database: Path, files: list[str]) -> str:
    sha = hashlib.sha256()
    with open(database, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    sha.update("\n".join(files).encode())
    return sha.hexdigest()
