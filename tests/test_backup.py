"""Backups: consistent snapshots while writes go on, restore on an empty disk, scheduled pushes to the Hub.

Real databases (StudioDatabase) and real files (FileStore); only the huggingface_hub calls are replaced, and
their arguments are checked. Nothing here reaches the network.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import LocalEntryNotFoundError

from storage import FileStore, StudioDatabase
from storage.backup import (
    BackupError,
    BackupScheduler,
    backup_settings_from_env,
    referenced_files,
    restore_if_empty,
    snapshot,
)

GHOST = {"id": "ghost_01", "name": "Ghost", "kind": "ghost", "gender": None, "body_type": None,
         "ethnicity": None, "style_tags": [], "backend": "ghost"}
REPO = "seller/studio-backup"


# -- helpers ------------------------------------------------------------------------------------


class DataDir:
    """A real data directory: database, file store and the local user."""

    def __init__(self, root: Path):
        self.root = root
        self.db_path = root / "studio.db"
        self.files_dir = root / "files"
        self.database = StudioDatabase(self.db_path)
        self.files = FileStore(self.files_dir)
        self.database.sync_virtual_models([GHOST])
        self.owner = self.database.ensure_local_user()["id"]

    def add_garment(self, n: int, with_job: bool = False) -> dict:
        original = self.files.write("originals", f"photo {n}".encode() * 50, ".jpg")
        garment = self.database.create_garment(self.owner, original, 600, 800, f"tee {n}.jpg")
        mask = self.files.write("masks", f"mask {n}".encode() * 30, ".png")
        garment = self.database.update_garment(garment["id"], mask_image_url=mask, status="segmented",
                                               category="top", detected_color="navy", detected_color_hex="#1f2a44")
        if with_job:
            job = self.database.create_generation(garment["id"], "ghost_01", "ghost",
                                                  parameters={"background": "white", "n": n}, seed=n)
            self.database.start_generation(job["id"])
            outputs = [{"image_url": self.files.write("outputs", f"out {n} {ratio}".encode() * 40, ".jpg"),
                        "image_index": 0, "aspect_ratio": ratio, "width": 800, "height": 800}
                       for ratio in ("1:1", "4:5")]
            job = self.database.complete_generation(job["id"], outputs)
            self.database.set_favorite(self.database.list_outputs(job["id"])[0]["id"], True)
        return garment

    def close(self) -> None:
        self.database.close()


@pytest.fixture
def source(tmp_path: Path):
    data = DataDir(tmp_path / "data")
    yield data
    data.close()


def dump(path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, in rowid order (WITHOUT ROWID tables by all columns)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        result = {}
        for table in tables:
            try:
                rows = conn.execute(f"SELECT * FROM [{table}] ORDER BY rowid").fetchall()
            except sqlite3.OperationalError:
                rows = sorted(conn.execute(f"SELECT * FROM [{table}]").fetchall(), key=repr)
            result[table] = rows
        return result
    finally:
        conn.close()


def integrity(path: Path) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def fake_download(folder: Path, calls: list[dict]):
    def snapshot_download(**kwargs):
        calls.append(kwargs)
        return str(folder)
    return snapshot_download


# -- snapshot -----------------------------------------------------------------------------------


def test_snapshot_while_writes_go_on_is_a_consistent_prefix(source: DataDir, tmp_path: Path):
    # Enough data (about 30 MB) that the backup takes a moment, all rows pointing at one real file.
    shared = source.files.write("originals", b"shared" * 100, ".jpg")
    with source.database.transaction() as db:
        db["garments"].insert_all(
            {"id": f"bulk{i:05d}", "owner_id": source.owner, "original_image_url": shared, "width": 10,
             "height": 10, "status": "uploaded", "original_filename": f"{i:05d}" * 250,
             "created_at": f"2020-01-01T00:00:00.{i:05d}"} for i in range(20000))
    inserted: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():
        n = 0
        try:
            while not stop.is_set():
                inserted.append(source.add_garment(n)["id"])
                n += 1
        except BaseException as error:  # noqa: BLE001  (reported below)
            errors.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    while len(inserted) < 10 and thread.is_alive():
        time.sleep(0.005)
    before = len(inserted)
    target = snapshot(source.db_path, source.files_dir, tmp_path / "snap")
    after = len(inserted)
    while len(inserted) < after + 5 and thread.is_alive():
        time.sleep(0.005)
    stop.set()
    thread.join(timeout=30)
    assert not errors, errors
    assert after > before, "the writer must have committed rows while the snapshot was taken"

    db = target / "studio.db"
    assert integrity(db) == "ok"
    assert not (target / "studio.db-wal").exists()
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, original_image_url, mask_image_url FROM garments "
                        "WHERE id NOT LIKE 'bulk%' ORDER BY rowid").fetchall()
    assert conn.execute("SELECT count(*) FROM garments WHERE id LIKE 'bulk%'").fetchone()[0] == 20000
    conn.close()
    # A prefix of what the writer committed, in order (the last one may be committed but not yet listed).
    taken = [row[0] for row in rows]
    assert 10 <= len(taken) < len(inserted), "the writer must have gone on after the snapshot"
    assert taken == inserted[:len(taken)]
    # Every file the snapshot points at is in it, byte for byte.
    for _, original, mask in rows:
        for relative in (original, mask):
            if relative:
                assert (target / "files" / relative).read_bytes() == source.files.read(relative)
    assert referenced_files(db) == {path.relative_to(target / "files").as_posix()
                                    for path in (target / "files").rglob("*") if path.is_file()}

    # Restored into a fresh data directory, the studio's own database class opens it.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy2(db, fresh / "studio.db")
    restored = StudioDatabase(fresh / "studio.db")
    try:
        assert restored.integrity_check() == "ok"
        listed = restored.list_garments(source.owner, limit=len(taken) + 20001)
        assert {g["id"] for g in listed if not g["id"].startswith("bulk")} == set(taken)
    finally:
        restored.close()


def test_snapshot_restores_to_an_identical_database(source: DataDir, tmp_path: Path, monkeypatch):
    for n in range(4):
        source.add_garment(n, with_job=n % 2 == 0)
    orphan = source.files.write("outputs", b"written but never recorded", ".jpg")
    before = dump(source.db_path)

    target = snapshot(source.db_path, source.files_dir, tmp_path / "snap")
    assert dump(source.db_path) == before  # the source is only read
    assert dump(target / "studio.db") == before
    assert not (target / "files" / orphan).exists()  # only what the database points at

    calls: list[dict] = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download(target, calls))
    fresh = tmp_path / "fresh"
    assert restore_if_empty(fresh, REPO, token="hf_secret") is True
    restored = StudioDatabase(fresh / "studio.db")  # migrations: none left to run
    try:
        assert restored.integrity_check() == "ok"
    finally:
        restored.close()
    assert dump(fresh / "studio.db") == before
    referenced = source.database.referenced_files()
    assert len(referenced) == 4 * 2 + 2 * 2
    store = FileStore(fresh / "files")
    for relative in referenced:
        assert store.read(relative) == source.files.read(relative)
    assert not [p for p in fresh.iterdir() if p.name.startswith(".restore-")]  # the staging folder is gone


def test_snapshot_brings_an_older_snapshot_up_to_date(source: DataDir, tmp_path: Path):
    first = source.add_garment(0)
    target = snapshot(source.db_path, source.files_dir, tmp_path / "snap")
    assert (target / "files" / first["mask_image_url"]).is_file()
    new_mask = source.files.write("masks", b"a corrected mask", ".png")
    old_mask = first["mask_image_url"]
    source.database.update_garment(first["id"], mask_image_url=new_mask)
    source.files.delete(old_mask)
    snapshot(source.db_path, source.files_dir, target)
    assert (target / "files" / new_mask).read_bytes() == b"a corrected mask"
    assert not (target / "files" / old_mask).exists()
    assert dump(target / "studio.db") == dump(source.db_path)


def test_snapshot_refuses_a_missing_database(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        snapshot(tmp_path / "nothing.db", tmp_path / "files", tmp_path / "snap")
    assert not (tmp_path / "nothing.db").exists()


# -- restore ------------------------------------------------------------------------------------


def test_restore_fills_an_empty_data_dir_and_passes_the_arguments(source: DataDir, tmp_path: Path, monkeypatch):
    source.add_garment(0, with_job=True)
    target = snapshot(source.db_path, source.files_dir, tmp_path / "snap")
    calls: list[dict] = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download(target, calls))
    fresh = tmp_path / "fresh"

    assert restore_if_empty(fresh, REPO, token="hf_secret") is True
    assert len(calls) == 1
    assert calls[0]["repo_id"] == REPO
    assert calls[0]["repo_type"] == "dataset"
    assert calls[0]["token"] == "hf_secret"
    assert Path(calls[0]["local_dir"]).parent.parent == fresh  # downloaded beside the data, then moved
    assert dump(fresh / "studio.db") == dump(source.db_path)
    assert (target / "studio.db").is_file()  # a folder that is not its own download is copied, not moved
    for relative in source.database.referenced_files():
        assert (fresh / "files" / relative).is_file()

    # Once there is a database, it is never replaced, and the Hub is not asked.
    fresh_db = (fresh / "studio.db").read_bytes()
    assert restore_if_empty(fresh, REPO, token="hf_secret") is False
    assert len(calls) == 1
    assert (fresh / "studio.db").read_bytes() == fresh_db


def test_restore_never_overwrites_an_existing_database(source: DataDir, tmp_path: Path, monkeypatch):
    other = DataDir(tmp_path / "other")
    other.add_garment(7)
    other.close()
    target = snapshot(other.db_path, other.files_dir, tmp_path / "snap")
    source.add_garment(0)
    before = dump(source.db_path)
    calls: list[dict] = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download(target, calls))
    assert restore_if_empty(source.root, REPO) is False
    assert calls == []
    assert dump(source.db_path) == before


def test_restore_downloads_into_its_own_folder_and_moves(source: DataDir, tmp_path: Path, monkeypatch):
    source.add_garment(0)
    target = snapshot(source.db_path, source.files_dir, tmp_path / "snap")
    calls: list[dict] = []

    def snapshot_download(**kwargs):  # what the real call does with local_dir
        calls.append(kwargs)
        shutil.copytree(target, kwargs["local_dir"])
        return str(kwargs["local_dir"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    fresh = tmp_path / "fresh"
    assert restore_if_empty(fresh, REPO) is True
    assert calls[0]["token"] is None
    assert dump(fresh / "studio.db") == dump(source.db_path)
    assert sorted(p.name for p in fresh.iterdir()) == ["files", "studio.db"]


def test_restore_without_a_backup_starts_empty(tmp_path: Path, monkeypatch):
    empty = tmp_path / "empty-download"
    empty.mkdir()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download(empty, []))
    fresh = tmp_path / "fresh"
    assert restore_if_empty(fresh, REPO) is False
    assert not (fresh / "studio.db").exists()


def test_restore_refuses_to_start_empty_when_the_hub_cannot_be_reached(tmp_path: Path, monkeypatch):
    def unreachable(**kwargs):
        raise LocalEntryNotFoundError("cannot reach the Hub and nothing is cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(BackupError, match="could not reach the Hub"):
        restore_if_empty(tmp_path / "fresh", REPO)
    assert not (tmp_path / "fresh" / "studio.db").exists()


def test_restore_refuses_a_damaged_backup(tmp_path: Path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "studio.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download(bad, []))
    with pytest.raises(BackupError):
        restore_if_empty(tmp_path / "fresh", REPO)
    assert not (tmp_path / "fresh" / "studio.db").exists()


# -- the scheduler ------------------------------------------------------------------------------


class FakeHub:
    """Stands in for the HfApi methods the scheduler calls; records their arguments and what was uploaded."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, dict]] = []
        self.remote: dict[str, bytes] = {}
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

        def list_repo_files(api, repo_id, **kwargs):
            hub.calls.append(("list_repo_files", {"repo_id": repo_id, **kwargs}))
            return sorted(hub.remote)

        def upload_folder(api, **kwargs):
            folder = Path(kwargs["folder_path"])
            uploaded = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
            hub.calls.append(("upload_folder", {**kwargs, "uploaded": sorted(uploaded)}))
            hub.remote.update(uploaded)

        def create_commit(api, **kwargs):
            hub.calls.append(("create_commit", kwargs))
            for op in kwargs["operations"]:
                if isinstance(op, CommitOperationAdd):
                    hub.remote[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
                elif isinstance(op, CommitOperationDelete):
                    del hub.remote[op.path_in_repo]

        def super_squash_history(api, **kwargs):
            hub.calls.append(("super_squash_history", kwargs))

        for name, function in [("create_repo", create_repo), ("list_repo_files", list_repo_files),
                               ("upload_folder", upload_folder), ("create_commit", create_commit),
                               ("super_squash_history", super_squash_history)]:
            monkeypatch.setattr(HfApi, name, function)

    def named(self, name: str) -> list[dict]:
        return [kwargs for call, kwargs in self.calls if call == name]

    def restore_to(self, folder: Path) -> Path:
        for path, data in self.remote.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        return folder


def test_scheduler_pushes_files_then_the_database_in_one_commit(source: DataDir, tmp_path: Path, monkeypatch):
    hub = FakeHub(monkeypatch)
    first = source.add_garment(0, with_job=True)
    scheduler = BackupScheduler(source.db_path, source.files_dir, REPO, token="hf_secret", minutes=10)

    assert scheduler.push_now() is True
    assert hub.named("create_repo") == [{"repo_id": REPO, "repo_type": "dataset", "private": True,
                                         "exist_ok": True}]
    [upload] = hub.named("upload_folder")
    assert upload["repo_id"] == REPO and upload["repo_type"] == "dataset" and upload["path_in_repo"] == ""
    referenced = {f"files/{p}" for p in source.database.referenced_files()}
    assert set(upload["uploaded"]) == referenced  # the new files, and nothing else
    [commit] = hub.named("create_commit")
    assert commit["repo_id"] == REPO and commit["repo_type"] == "dataset"
    assert {op.path_in_repo for op in commit["operations"]} == {"studio.db", "backup.json"}
    assert [name for name, _ in hub.calls].index("upload_folder") < [name for name, _ in hub.calls].index(
        "create_commit")  # the files are there before the database that points at them
    assert hub.named("super_squash_history") == [{"repo_id": REPO, "repo_type": "dataset",
                                                  "commit_message": hub.named("super_squash_history")[0][
                                                      "commit_message"]}]
    assert not [p for p in source.root.iterdir() if p.name.startswith(".backup-")]  # staging removed

    # What the repo now holds restores to the source database.
    pushed = hub.restore_to(tmp_path / "remote")
    assert integrity(pushed / "studio.db") == "ok"
    assert dump(pushed / "studio.db") == dump(source.db_path)

    # Nothing changed: nothing is sent.
    count = len(hub.calls)
    assert scheduler.push_now() is False
    assert len(hub.calls) == count

    # A replaced mask: the new file is uploaded, the old one deleted in the database's commit.
    new_mask = source.files.write("masks", b"corrected", ".png")
    source.database.update_garment(first["id"], mask_image_url=new_mask)
    source.files.delete(first["mask_image_url"])
    assert scheduler.push_now() is True
    assert hub.named("create_repo")[1:] == []  # created once
    assert hub.named("upload_folder")[-1]["uploaded"] == [f"files/{new_mask}"]
    last = hub.named("create_commit")[-1]["operations"]
    assert [op.path_in_repo for op in last if isinstance(op, CommitOperationDelete)] == [
        f"files/{first['mask_image_url']}"]
    assert set(hub.remote) == {f"files/{p}" for p in source.database.referenced_files()} | {
        "studio.db", "backup.json"}


def test_scheduler_runs_on_its_schedule_and_pushes_on_stop(source: DataDir, monkeypatch):
    hub = FakeHub(monkeypatch)
    source.add_garment(0)
    scheduler = BackupScheduler(source.db_path, source.files_dir, REPO, minutes=0.002, squash_history=False)
    scheduler.start()
    try:
        deadline = time.time() + 10
        while not hub.named("create_commit") and time.time() < deadline:
            time.sleep(0.02)
        assert hub.named("create_commit"), "no push within the interval"
    finally:
        scheduler.stop(final_push=False)
    assert hub.named("super_squash_history") == []
    source.add_garment(1)
    pushes = len(hub.named("create_commit"))
    scheduler.stop()  # the final push sends what changed since
    assert len(hub.named("create_commit")) == pushes + 1
    assert scheduler.last_error is None


def test_a_failed_push_is_logged_and_retried(source: DataDir, monkeypatch, caplog):
    hub = FakeHub(monkeypatch)
    source.add_garment(0)

    def offline(api, **kwargs):
        raise ConnectionError("the Hub is down")

    monkeypatch.setattr(HfApi, "create_commit", offline)
    scheduler = BackupScheduler(source.db_path, source.files_dir, REPO)
    with caplog.at_level(logging.ERROR, logger="storage.backup"):
        scheduler._push_logged()
    assert "the Hub is down" in scheduler.last_error
    assert "backup to dataset repo" in caplog.text
    monkeypatch.undo()
    hub = FakeHub(monkeypatch)
    assert scheduler.push_now() is True  # not mistaken for "already pushed"
    assert hub.named("create_commit")


def test_scheduler_is_off_without_a_repo(source: DataDir, monkeypatch, caplog):
    hub = FakeHub(monkeypatch)
    monkeypatch.delenv("STUDIO_BACKUP_REPO", raising=False)
    scheduler = BackupScheduler.from_env(source.db_path, source.files_dir)
    assert not scheduler.enabled
    with caplog.at_level(logging.INFO, logger="storage.backup"):
        scheduler.start()
    assert "backups are off" in caplog.text and "STUDIO_BACKUP_REPO" in caplog.text
    assert scheduler.push_now() is False
    scheduler.stop()
    assert hub.calls == []
    assert threading.active_count() >= 1 and not any(t.name == "studio-backup" for t in threading.enumerate())


def test_backup_settings_from_env(monkeypatch):
    for name in ("STUDIO_BACKUP_REPO", "HF_TOKEN", "STUDIO_BACKUP_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    assert backup_settings_from_env() == (None, None, 10)
    monkeypatch.setenv("STUDIO_BACKUP_REPO", " seller/studio-backup ")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("STUDIO_BACKUP_MINUTES", "5")
    assert backup_settings_from_env() == ("seller/studio-backup", "hf_secret", 5)
    monkeypatch.setenv("STUDIO_BACKUP_KEEP_HISTORY", "1")
    scheduler = BackupScheduler.from_env(Path("studio.db"), Path("files"))
    assert (scheduler.repo_id, scheduler.token, scheduler.interval, scheduler.squash_history) == (
        "seller/studio-backup", "hf_secret", 300, False)
    monkeypatch.setenv("STUDIO_BACKUP_MINUTES", "soon")
    with pytest.raises(BackupError, match="STUDIO_BACKUP_MINUTES"):
        backup_settings_from_env()
    monkeypatch.setenv("STUDIO_BACKUP_MINUTES", "0")
    with pytest.raises(BackupError, match="at least 1"):
        backup_settings_from_env()
