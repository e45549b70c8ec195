"""The database file and the file store, used as the app uses them."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from pipeline.errors import StorageError
from storage import FileStore, RecordNotFound, StudioDatabase
from storage.database import INTERRUPTED_JOB_MESSAGE, LIST_FAVORITES_SQL, LOCAL_USER_EMAIL
from storage.locks import DataDirLock
from storage.schema import ASPECT_RATIOS, GARMENT_CATEGORIES, migrations

GHOST = {"id": "ghost_01", "name": "Ghost", "kind": "ghost", "gender": None, "body_type": "Standard",
         "ethnicity": None, "style_tags": ["Invisible Mannequin"], "backend": "ghost"}


@pytest.fixture
def database(tmp_path):
    database = StudioDatabase(tmp_path / "studio.db")
    database.sync_virtual_models([GHOST])
    yield database
    database.close()


@pytest.fixture
def garment(database):
    user = database.ensure_local_user()
    return database.create_garment(user["id"], "originals/ab/photo.jpg", 600, 800, "photo.jpg")


def processing_generation(database, garment):
    generation = database.create_generation(garment["id"], "ghost_01", "ghost", parameters={"background": "white"})
    return database.start_generation(generation["id"])


def test_schema_has_the_seed_fields_and_reopening_applies_nothing(tmp_path, database):
    columns = {table: set(database.db[table].columns_dict) for table in database.db.table_names()}
    assert {"id", "email", "password_hash", "subscription_plan", "preferred_model_id", "created_at"} <= columns["users"]
    assert {"id", "owner_id", "original_image_url", "category", "detected_color", "detected_color_hex",
            "mask_image_url", "status", "created_at"} <= columns["garments"]
    assert {"id", "garment_id", "target_model_id", "status", "prompt_used", "negative_prompt", "batch_size",
            "error_message", "completed_at", "created_at", "started_at", "seed", "parameters", "backend",
            "model_ids"} <= columns["generations"]
    assert {"id", "generation_id", "image_url", "aspect_ratio", "is_favorite", "download_count"} <= \
        columns["output_images"]
    assert {"id", "name", "gender", "body_type", "ethnicity", "style_tags"} <= columns["virtual_models"]
    database.close()
    reopened = StudioDatabase(tmp_path / "studio.db")
    assert migrations.pending(reopened.db) == []
    assert [m.name for m in migrations.applied(reopened.db)] == [
        "m001_initial", "m002_refinement_and_category_source", "m003_on_model_generation", "m004_api_tokens",
        "m005_output_owner_and_file_sizes", "m006_usage_ledger", "m007_closet", "m008_trained_category_source",
        "m009_listing_words", "m010_persona_photos", "m011_pattern_fidelity"]
    reopened.close()


def test_wal_mode_and_foreign_keys_are_on(database, garment):
    assert database.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        database.create_generation("no-such-garment", "ghost_01", "ghost", parameters={})


@pytest.mark.parametrize("column, value", [("category", "shoes"), ("status", "done"),
                                           ("detected_color_hex", "navy")])
def test_the_database_checks_enum_columns(database, garment, column, value):
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        database.update_garment(garment["id"], **{column: value})
    assert database.get_garment(garment["id"])[column] == garment[column]


def test_the_enums_are_the_seeds():
    assert GARMENT_CATEGORIES == ("top", "bottom", "dress", "outerwear")
    assert ASPECT_RATIOS == ("1:1", "4:5", "3:4")


def test_the_local_user_is_created_once(database):
    first = database.ensure_local_user()
    assert database.ensure_local_user()["id"] == first["id"]
    assert first["email"] == LOCAL_USER_EMAIL and first["subscription_plan"] == "free"


def test_virtual_model_sync_keeps_removed_cards_for_history(database):
    database.sync_virtual_models([{**GHOST, "id": "mod_01", "name": "Sienna", "kind": "persona"}])
    assert [m["id"] for m in database.list_virtual_models()] == ["mod_01"]
    assert {m["id"] for m in database.list_virtual_models(include_inactive=True)} == {"ghost_01", "mod_01"}
    assert database.get_virtual_model("mod_01")["style_tags"] == ["Invisible Mannequin"]


def test_job_state_machine(database, garment):
    generation = database.create_generation(garment["id"], "ghost_01", "ghost", parameters={"a": 1})
    assert generation["status"] == "pending" and generation["parameters"] == {"a": 1}
    with pytest.raises(ValueError, match="not processing"):
        database.complete_generation(generation["id"], [])
    started = database.start_generation(generation["id"])
    assert started["status"] == "processing" and started["started_at"]
    with pytest.raises(ValueError, match="not pending"):
        database.start_generation(generation["id"])
    done = database.complete_generation(generation["id"], [
        {"image_url": "outputs/aa/a.jpg", "aspect_ratio": "1:1", "width": 10, "height": 10},
        {"image_url": "outputs/aa/b.jpg", "aspect_ratio": "4:5", "width": 8, "height": 10},
    ])
    assert done["status"] == "completed" and done["completed_at"]
    assert [o["aspect_ratio"] for o in database.list_outputs(generation["id"])] == ["1:1", "4:5"]


def test_completing_with_a_bad_output_stores_nothing(database, garment):
    generation = processing_generation(database, garment)
    with pytest.raises(sqlite3.IntegrityError):
        database.complete_generation(generation["id"], [
            {"image_url": "outputs/aa/a.jpg", "aspect_ratio": "1:1", "width": 10, "height": 10},
            {"image_url": "outputs/aa/b.jpg", "aspect_ratio": "16:9", "width": 16, "height": 9},
        ])
    assert database.get_generation(generation["id"])["status"] == "processing"
    assert database.list_outputs(generation["id"]) == []


def test_interrupted_jobs_are_failed_with_a_message(database, garment):
    running = processing_generation(database, garment)
    waiting = database.create_generation(garment["id"], "ghost_01", "ghost", parameters={})
    assert database.fail_interrupted_generations() == [running["id"]]
    failed = database.get_generation(running["id"])
    assert failed["status"] == "failed" and failed["error_message"] == INTERRUPTED_JOB_MESSAGE
    assert failed["completed_at"]
    assert database.get_generation(waiting["id"])["status"] == "pending"


def test_favorites_downloads_and_ownership(database, garment):
    generation = processing_generation(database, garment)
    database.complete_generation(generation["id"], [
        {"image_url": "outputs/aa/a.jpg", "aspect_ratio": "1:1", "width": 10, "height": 10}])
    output = database.list_outputs(generation["id"])[0]
    assert database.set_favorite(output["id"], True)["is_favorite"] == 1
    assert database.record_download(output["id"])["download_count"] == 1
    assert database.record_download(output["id"])["download_count"] == 2
    assert [o["id"] for o in database.list_favorites(garment["owner_id"])] == [output["id"]]
    assert database.list_favorites("someone-else") == []
    assert database.output_owner(output["id"]) == garment["owner_id"]
    with pytest.raises(RecordNotFound):
        database.record_download("missing")
    assert database.referenced_files() == {"originals/ab/photo.jpg", "outputs/aa/a.jpg"}


def test_the_favourites_query_uses_indexes(database, garment):
    plan = database.query_plan(LIST_FAVORITES_SQL, ["x", 100])
    assert plan == ["SEARCH output_images USING INDEX output_images_favorites (owner_id=?)",
                    "SEARCH generations USING INDEX sqlite_autoindex_generations_1 (id=?)"], plan


def test_writes_from_many_threads(database, garment):
    errors = []

    def work():
        try:
            for _ in range(10):
                generation = database.create_generation(garment["id"], "ghost_01", "ghost", parameters={})
                database.start_generation(generation["id"])
                database.complete_generation(generation["id"], [
                    {"image_url": f"outputs/x/{generation['id']}.jpg", "aspect_ratio": "1:1", "width": 1,
                     "height": 1}])
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert database.db["generations"].count == 80
    assert database.db["output_images"].count == 80
    assert database.integrity_check() == "ok"


def test_file_store_writes_under_generated_names(tmp_path):
    store = FileStore(tmp_path / "files")
    relative = store.write("originals", b"bytes", ".JPG")
    assert relative.startswith("originals/") and relative.endswith(".jpg")
    assert store.read(relative) == b"bytes"
    assert not list((tmp_path / "files").rglob("*.partial"))
    assert store.write("originals", b"other", ".jpg") != relative


@pytest.mark.parametrize("bad", ["../studio.db", "/etc/passwd", "originals/../../x", "", "."])
def test_file_store_refuses_paths_outside_it(tmp_path, bad):
    store = FileStore(tmp_path / "files")
    with pytest.raises(ValueError):
        store.path(bad)


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    store = FileStore(tmp_path / "files")

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError, match="disk is full"):  # an OSError the seller can act on
        store.write("outputs", b"x" * 1000, ".jpg")
    assert [p for p in (tmp_path / "files").rglob("*") if p.is_file()] == []


def test_sweep_removes_old_unreferenced_files_only(tmp_path):
    store = FileStore(tmp_path / "files")
    kept = store.write("outputs", b"kept", ".jpg")
    orphan = store.write("outputs", b"orphan", ".jpg")
    fresh_orphan = store.write("outputs", b"fresh", ".jpg")
    partial = store.path(kept).with_name("dead.jpg.partial")
    partial.write_bytes(b"half")
    an_hour_ago = time.time() - 3600
    for path in (store.path(kept), store.path(orphan), partial):
        os.utime(path, (an_hour_ago, an_hour_ago))
    removed = store.sweep({kept})
    assert sorted(removed) == sorted([orphan, partial.relative_to(store.root).as_posix()])
    assert store.exists(kept) and store.exists(fresh_orphan) and not store.exists(orphan)


def test_data_dir_lock_is_held_by_one_process_at_a_time(tmp_path):
    first = DataDirLock(tmp_path)
    second = DataDirLock(tmp_path)
    assert first.acquired and not second.acquired
    first.release()
    second.release()
    third = DataDirLock(tmp_path)
    assert third.acquired
    third.release()


def test_a_database_from_the_first_release_is_upgraded_in_place(tmp_path):
    from sqlite_utils import Database

    old = Database(tmp_path / "studio.db")
    migrations.apply(old, stop_before="m002_refinement_and_category_source")
    old["users"].insert({"id": "u1", "email": "a@b.c", "subscription_plan": "free", "created_at": "2026-01-01"})
    old["garments"].insert({"id": "g1", "owner_id": "u1", "original_image_url": "originals/x.jpg", "width": 10,
                            "height": 10, "status": "segmented", "created_at": "2026-01-01"})
    old.conn.close()
    upgraded = StudioDatabase(tmp_path / "studio.db")
    garment = upgraded.get_garment("g1")
    assert garment["mask_points"] == [] and garment["category_source"] is None
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        upgraded.update_garment("g1", category_source="guess")
    upgraded.close()


def test_a_database_from_before_the_trained_model_accepts_it_and_still_checks(tmp_path):
    from sqlite_utils import Database

    old = Database(tmp_path / "studio.db")
    migrations.apply(old, stop_before="m008_trained_category_source")
    old["users"].insert({"id": "u1", "email": "a@b.c", "subscription_plan": "free", "created_at": "2026-01-01"})
    old["garments"].insert({"id": "g1", "owner_id": "u1", "original_image_url": "originals/x.jpg", "width": 10,
                            "height": 10, "status": "segmented", "created_at": "2026-01-01", "category_source": "clip"})
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        old["garments"].update("g1", {"category_source": "trained"})
    old.conn.close()
    upgraded = StudioDatabase(tmp_path / "studio.db")
    assert upgraded.update_garment("g1", category_source="trained")["category_source"] == "trained"
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        upgraded.update_garment("g1", category_source="guess")
    assert upgraded.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    upgraded.close()
    reopened = StudioDatabase(tmp_path / "studio.db")  # a fresh connection reads the widened check too
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        reopened.update_garment("g1", category_source="guess")
    assert reopened.update_garment("g1", category_source="trained")["category_source"] == "trained"
    reopened.close()


def test_garments_from_before_the_listing_words_keep_their_values_and_get_checked_new_ones(tmp_path):
    from sqlite_utils import Database

    old = Database(tmp_path / "studio.db")
    migrations.apply(old, stop_before="m009_listing_words")
    old["users"].insert({"id": "u1", "email": "a@b.c", "subscription_plan": "free", "created_at": "2026-01-01"})
    old["garments"].insert({"id": "g1", "owner_id": "u1", "original_image_url": "originals/x.jpg", "width": 10,
                            "height": 10, "status": "segmented", "created_at": "2026-01-01", "category": "top",
                            "detected_color": "navy", "detected_color_hex": "#1f2a44"})
    old.conn.close()
    upgraded = StudioDatabase(tmp_path / "studio.db")
    garment = upgraded.get_garment("g1")
    assert (garment["detected_color"], garment["category"]) == ("navy", "top")
    assert all(garment[column] is None for column in ("secondary_color", "secondary_color_hex", "pattern", "title",
                                                      "title_source", "color_source", "garment_type",
                                                      "category_alternative"))
    for column, value in (("pattern", "tartan"), ("secondary_color_hex", "cream"), ("title_source", "guess"),
                          ("color_source", "model"), ("category_alternative", "shoes")):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            upgraded.update_garment("g1", **{column: value})
    upgraded.close()


def test_outputs_from_before_m005_get_their_owner(tmp_path):
    from sqlite_utils import Database

    old = Database(tmp_path / "studio.db")
    migrations.apply(old, stop_before="m005_output_owner_and_file_sizes")
    old["virtual_models"].insert({"id": "ghost_01", "name": "Ghost", "kind": "ghost", "backend": "ghost"})
    old["users"].insert({"id": "u1", "email": "a@b.c", "subscription_plan": "free", "created_at": "2026-01-01"})
    old["garments"].insert({"id": "g1", "owner_id": "u1", "original_image_url": "originals/x.jpg", "width": 10,
                            "height": 10, "status": "segmented", "created_at": "2026-01-01"})
    old["generations"].insert({"id": "j1", "garment_id": "g1", "target_model_id": "ghost_01", "backend": "ghost",
                               "status": "completed", "created_at": "2026-01-01"})
    old["output_images"].insert({"id": "o1", "generation_id": "j1", "image_url": "outputs/o.jpg", "width": 1,
                                 "height": 1, "aspect_ratio": "1:1", "is_favorite": 1, "created_at": "2026-01-01"})
    old.conn.close()
    upgraded = StudioDatabase(tmp_path / "studio.db")
    assert upgraded.get_output("o1")["owner_id"] == "u1"
    assert [row["id"] for row in upgraded.list_favorites("u1")] == ["o1"]
    assert sorted(upgraded.files_without_size()) == [
        ("garments", "g1", "original_bytes", "originals/x.jpg"), ("output_images", "o1", "file_bytes", "outputs/o.jpg")]
    upgraded.record_file_sizes([("garments", "g1", "original_bytes", 300), ("output_images", "o1", "file_bytes", 20)])
    assert upgraded.files_without_size() == [] and upgraded.storage_bytes("u1") == 320
    with pytest.raises(ValueError, match="not a file size"):
        upgraded.record_file_sizes([("users", "u1", "email", 1)])
    upgraded.close()


def test_only_jobs_of_gone_workers_are_failed_as_interrupted(database, garment):
    jobs = {}
    for worker in ("host:1", "host:2", None):
        jobs[worker] = database.create_generation(garment["id"], "ghost_01", "ghost", parameters={})["id"]
        database.start_generation(jobs[worker], worker)
    assert database.get_generation(jobs["host:1"])["worker"] == "host:1"
    failed = database.fail_interrupted_generations(still_running=lambda worker: worker == "host:2")
    assert sorted(failed) == sorted([jobs["host:1"], jobs[None]])
    assert database.get_generation(jobs["host:2"])["status"] == "processing"


def test_a_worker_is_alive_while_its_process_is():
    import socket
    import subprocess
    import sys

    from storage.locks import this_worker, worker_alive

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    assert worker_alive(this_worker()) and this_worker() == f"{host}:{os.getpid()}"
    assert not worker_alive(f"{host}:{finished.stdout.strip()}")
    assert worker_alive("another-machine:123")  # cannot be checked from here, so it is left alone
    for unknown in (None, "", "garbage", f"{host}:0", f"{host}:-5"):
        assert not worker_alive(unknown)
