"""A full disk and a read-only data folder: a clear error, nothing half-written, and the studio keeps serving.

Where the machine allows it (root with CAP_SYS_ADMIN, as here and in CI), the faults are real: the data directory is
a small tmpfs filled to the last page (ENOSPC, and SQLite's own "database or disk is full" when its WAL cannot
grow), and the files folder is a bind mount remounted read-only (EROFS; chmod would not stop root). Elsewhere those
tests skip, and the fault-injection tests at the end raise the same errors at the OS and SQLite boundary.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from pipeline.errors import (
    DISK_FULL_MESSAGE,
    NO_PERMISSION_MESSAGE,
    READ_ONLY_MESSAGE,
    StorageError,
    StudioError,
    storage_error,
)
from pipeline.ingest import ingest_file
from pipeline.settings import Settings
from pipeline.studio import Studio

PAGE = 4096
DISK_MB = 48


# -- a real small disk ---------------------------------------------------------------------------------------------

def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


class SmallDisk:
    """A tmpfs of DISK_MB: `fill` leaves exactly `leave` bytes (rounded down to a page) free; `read_only` remounts
    a folder read-only."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / "filler"
        self.read_only_folders: list[Path] = []

    def free(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def fill(self, leave: int = 0) -> None:
        leave -= leave % PAGE  # the disk is counted in whole pages
        current = self.filler.stat().st_size if self.filler.exists() else 0
        size = current + self.free() - leave
        assert size >= current, f"only {self.free()} bytes are free, fewer than the {leave} to leave"
        descriptor = os.open(self.filler, os.O_CREAT | os.O_WRONLY)
        try:
            os.posix_fallocate(descriptor, 0, size)
        finally:
            os.close(descriptor)
        assert self.free() == leave

    def make_room(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, folder: Path) -> None:
        for command in (("mount", "--bind", str(folder), str(folder)),
                        ("mount", "-o", "remount,bind,ro", str(folder))):
            result = run(*command)
            assert result.returncode == 0, result.stderr
        self.read_only_folders.append(folder)

    def writable(self, folder: Path) -> None:
        result = run("umount", str(folder))
        assert result.returncode == 0, result.stderr
        self.read_only_folders.remove(folder)


@pytest.fixture
def small_disk(tmp_path):
    root = tmp_path / "disk"
    root.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the fault-injection tests cover these paths")
    try:
        result = run("mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs", str(root))
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot run mount here ({error}); the fault-injection tests cover these paths")
    if result.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs ({result.stderr.strip()}); "
                    "the fault-injection tests cover these paths")
    disk = SmallDisk(root)
    try:
        yield disk
    finally:
        for folder in reversed(disk.read_only_folders):
            run("umount", "-l", str(folder))
        if run("umount", str(root)).returncode != 0:
            run("umount", "-l", str(root))  # something still has a file open there: detach it anyway


@pytest.fixture
def disk_studio(small_disk):
    studio = Studio.open(Settings.from_env(small_disk.root / "data"))
    yield studio
    studio.close()


# -- what "nothing half-written" means ---------------------------------------------------------------------------

def stored_files(studio: Studio) -> set[str]:
    root = studio.settings.files_dir
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def assert_consistent(studio: Studio) -> None:
    """Every file a row points at is there, and there is no file that no row points at, nor a temporary one."""
    referenced = studio.database.referenced_files()
    assert stored_files(studio) == referenced
    assert studio.database.integrity_check() == "ok"


def assert_still_works(studio: Studio, photo: Path) -> None:
    """The same studio instance, after the fault is gone: an upload and a generation go through."""
    garment = studio.upload_garment(photo)
    assert garment["status"] == "segmented"
    job = studio.generate(garment["id"], "ghost_01", ["1:1"], ["ebay"], wait=True, timeout=120)
    assert job["status"] == "completed", job["error_message"]
    assert all(studio.files.exists(output["image_url"]) for output in job["outputs"])
    assert_consistent(studio)


class RecordingWrites:
    """Wraps a studio's FileStore.write, keeping what each call returned or raised (it changes nothing)."""

    def __init__(self, studio: Studio, monkeypatch):
        self.calls: list[tuple[str, str | BaseException]] = []
        original = studio.files.write

        def write(kind, data, extension):
            try:
                relative = original(kind, data, extension)
            except BaseException as error:
                self.calls.append((kind, error))
                raise
            self.calls.append((kind, relative))
            return relative

        monkeypatch.setattr(studio.files, "write", write)


# -- real faults ------------------------------------------------------------------------------------------------

def test_an_upload_to_a_full_disk_is_refused_and_leaves_nothing(disk_studio, small_disk, photo_path):
    kept = disk_studio.upload_garment(photo_path)
    small_disk.fill(leave=0)
    with pytest.raises(StorageError) as refused:
        disk_studio.upload_garment(photo_path)
    assert str(refused.value) == DISK_FULL_MESSAGE
    assert isinstance(refused.value.__cause__, OSError) and refused.value.__cause__.errno == errno.ENOSPC
    assert [g["id"] for g in disk_studio.list_garments()] == [kept["id"]]
    assert_consistent(disk_studio)
    assert disk_studio.get_garment(kept["id"])["status"] == "segmented"  # reading goes on

    small_disk.make_room()
    assert_still_works(disk_studio, photo_path)


def test_a_generation_that_fills_the_disk_half_way_keeps_nothing(disk_studio, small_disk, photo_path, monkeypatch):
    garment = disk_studio.upload_garment(photo_path)
    # One run on a roomy disk gives the two photos' sizes: an 800 px square first, then eBay's 1600 px square.
    sized = disk_studio.generate(garment["id"], "ghost_01", ["1:1"], ["ebay"], file_format="png", wait=True)
    first, second = (disk_studio.file_path(o["image_url"]).stat().st_size for o in sized["outputs"])
    assert second - first > 512 * 1024
    small_disk.fill(leave=first + (second - first) // 2)  # room for the first photo (and the job's rows) only
    writes = RecordingWrites(disk_studio, monkeypatch)
    outputs_before = stored_files(disk_studio)

    job = disk_studio.generate(garment["id"], "ghost_01", ["1:1"], ["ebay"], file_format="png", wait=True)

    assert job["status"] == "failed" and job["error_message"] == DISK_FULL_MESSAGE
    assert job["outputs"] == []
    (kind, written), (_, failed) = writes.calls
    assert kind == "outputs" and isinstance(written, str) and isinstance(failed, StorageError)
    assert not disk_studio.files.exists(written)  # the photo written before the disk filled is removed
    assert stored_files(disk_studio) == outputs_before
    assert not list(disk_studio.settings.files_dir.rglob("*.partial"))
    assert_consistent(disk_studio)

    small_disk.make_room()
    again = disk_studio.rerun_generation(job["id"], wait=True)
    assert again["status"] == "completed" and len(again["outputs"]) == 2
    assert_still_works(disk_studio, photo_path)


def test_sqlite_failing_to_grow_on_a_full_disk_leaves_no_file_without_a_row(disk_studio, small_disk, photo_path):
    disk_studio.upload_garment(photo_path)
    original = ingest_file(photo_path).original
    # Room for the photo to the page, none for the database: its WAL must grow by a frame for the new row.
    small_disk.fill(leave=-(-len(original) // PAGE) * PAGE)
    before = stored_files(disk_studio)
    garments_before = disk_studio.list_garments()

    with pytest.raises(StorageError) as refused:
        disk_studio.upload_garment(photo_path)

    assert str(refused.value) == DISK_FULL_MESSAGE
    cause = refused.value.__cause__
    assert isinstance(cause, sqlite3.OperationalError) and "database or disk is full" in str(cause)
    assert stored_files(disk_studio) == before  # the photo was written, then removed when its row failed
    assert disk_studio.list_garments() == garments_before
    assert_consistent(disk_studio)

    small_disk.make_room()
    assert_still_works(disk_studio, photo_path)  # the failed transaction was rolled back: the connection works


def test_a_read_only_files_folder_refuses_uploads_and_jobs_with_a_clear_message(disk_studio, small_disk, photo_path):
    garment = disk_studio.upload_garment(photo_path)
    files_dir = disk_studio.settings.files_dir
    small_disk.read_only(files_dir)
    before = stored_files(disk_studio)

    with pytest.raises(StorageError) as refused:
        disk_studio.upload_garment(photo_path)
    assert str(refused.value) == READ_ONLY_MESSAGE
    assert refused.value.__cause__.errno == errno.EROFS
    job = disk_studio.generate(garment["id"], "ghost_01", ["1:1", "4:5"], wait=True, timeout=120)
    assert job["status"] == "failed" and job["error_message"] == READ_ONLY_MESSAGE and job["outputs"] == []
    assert stored_files(disk_studio) == before
    assert [g["id"] for g in disk_studio.list_garments()] == [garment["id"]]
    assert_consistent(disk_studio)

    small_disk.writable(files_dir)
    assert_still_works(disk_studio, photo_path)


def test_a_read_only_data_folder_is_refused_at_start_with_a_clear_message(small_disk, photo_path):
    settings = Settings.from_env(small_disk.root / "data")
    studio = Studio.open(settings)
    studio.upload_garment(photo_path)
    studio.close()
    small_disk.read_only(settings.data_dir)
    with pytest.raises(StorageError, match="cannot be opened .* must be writable"):
        Studio.open(settings)
    small_disk.writable(settings.data_dir)
    reopened = Studio.open(settings)
    try:
        assert len(reopened.list_garments()) == 1
    finally:
        reopened.close()


def test_the_server_explains_disk_faults_and_keeps_serving(disk_studio, small_disk, photo_path):
    from app import create_demo, launch_options

    demo = create_demo(disk_studio)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None,
                            **launch_options(disk_studio))
    try:
        client = Client(url, verbose=False, download_files=str(small_disk.root.parent / "downloads"))
        garment = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")

        small_disk.fill(leave=0)
        with pytest.raises(Exception, match="disk is full") as refused:
            client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
        assert "Free some space" in str(refused.value)
        assert [g["id"] for g in client.predict(50, 0, api_name="/list_garments")] == [garment["id"]]
        small_disk.make_room()

        small_disk.read_only(disk_studio.settings.files_dir)
        job = client.predict(garment["id"], "ghost_01", ["1:1"], [], "white", "jpeg", True, api_name="/generate")
        assert job["status"] == "failed" and job["error_message"] == READ_ONLY_MESSAGE
        job = client.predict(job["id"], api_name="/generation")  # the reason stays with the job
        assert job["error_message"] == READ_ONLY_MESSAGE and job["outputs"] == []
        small_disk.writable(disk_studio.settings.files_dir)
        assert_consistent(disk_studio)

        again = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
        job = client.predict(again["id"], "ghost_01", ["4:5"], [], "white", "jpeg", True, api_name="/generate")
        assert job["status"] == "completed" and len(job["outputs"]) == 1
    finally:
        demo.close()


# -- the same faults, injected at the OS and SQLite boundary (these run everywhere) --------------------------------

class FailingOpen:
    """Stands in for `open` inside storage.files: the `fail_on`-th file it opens for writing raises `code`."""

    def __init__(self, code: int, fail_on: int = 1):
        self.code, self.fail_on, self.opened = code, fail_on, 0

    def __call__(self, file, mode="r", *args, **kwargs):
        if "w" in mode:
            self.opened += 1
            if self.opened >= self.fail_on:
                raise OSError(self.code, os.strerror(self.code), str(file))
        return open(file, mode, *args, **kwargs)


def test_an_injected_failure_of_the_second_photo_keeps_nothing(studio, photo_path, monkeypatch):
    garment = studio.upload_garment(photo_path)
    writes = RecordingWrites(studio, monkeypatch)
    before = stored_files(studio)
    monkeypatch.setattr("storage.files.open", FailingOpen(errno.ENOSPC, fail_on=2), raising=False)

    job = studio.generate(garment["id"], "ghost_01", ["1:1", "4:5", "3:4"], wait=True, timeout=120)

    assert job["status"] == "failed" and job["error_message"] == DISK_FULL_MESSAGE and job["outputs"] == []
    assert [isinstance(result, str) for _, result in writes.calls] == [True, False]
    assert not studio.files.exists(writes.calls[0][1])
    assert stored_files(studio) == before
    assert_consistent(studio)

    monkeypatch.undo()
    assert_still_works(studio, photo_path)


@pytest.mark.parametrize("code, message", [(errno.ENOSPC, DISK_FULL_MESSAGE), (errno.EROFS, READ_ONLY_MESSAGE)])
def test_an_injected_fault_reaches_the_api_caller_and_the_server_keeps_serving(studio, photo_path, monkeypatch,
                                                                                code, message):
    from app import create_demo, launch_options

    demo = create_demo(studio)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None,
                            **launch_options(studio))
    try:
        client = Client(url, verbose=False)
        monkeypatch.setattr("storage.files.open", FailingOpen(code), raising=False)
        with pytest.raises(Exception, match=message.split(",")[0]):
            client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
        assert client.predict(50, 0, api_name="/list_garments") == []
        assert_consistent(studio)
        monkeypatch.undo()
        garment = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
        job = client.predict(garment["id"], "ghost_01", ["1:1"], [], "white", "jpeg", True, api_name="/generate")
        assert job["status"] == "completed"
    finally:
        demo.close()


def test_a_read_only_database_refuses_an_upload_and_keeps_no_file(studio, photo_path):
    kept = studio.upload_garment(photo_path)
    before = stored_files(studio)
    connection = studio.database.db.conn  # this thread's: SQLite itself now refuses every write on it
    connection.execute("PRAGMA query_only = ON")
    try:
        with pytest.raises(StorageError) as refused:
            studio.upload_garment(photo_path)
    finally:
        connection.execute("PRAGMA query_only = OFF")
    assert str(refused.value) == READ_ONLY_MESSAGE
    assert "attempt to write a readonly database" in str(refused.value.__cause__)
    assert stored_files(studio) == before  # the photo was written, then removed when its row was refused
    assert [g["id"] for g in studio.list_garments()] == [kept["id"]]
    assert_still_works(studio, photo_path)


@pytest.mark.parametrize("error, message", [
    (OSError(errno.ENOSPC, "No space left on device"), DISK_FULL_MESSAGE),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), DISK_FULL_MESSAGE),
    (OSError(errno.EROFS, "Read-only file system"), READ_ONLY_MESSAGE),
    (PermissionError(errno.EACCES, "Permission denied"), NO_PERMISSION_MESSAGE),
    (sqlite3.OperationalError("database or disk is full"), DISK_FULL_MESSAGE),
    (sqlite3.OperationalError("attempt to write a readonly database"), READ_ONLY_MESSAGE),
    (sqlite3.OperationalError("database is locked"), None),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), None),
    (ValueError("something else"), None),
])
def test_storage_errors_are_translated_in_one_place(error, message):
    translated = storage_error(error)
    if message is None:
        assert translated is None  # not a disk problem: it stays a bug, logged with its traceback
    else:
        assert isinstance(translated, StudioError) and str(translated) == message
