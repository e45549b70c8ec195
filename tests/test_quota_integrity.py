"""Daily and concurrent generation limits hold however they are attacked: deleting garments or the account does
not give the day's quota back, and simultaneous calls (the UI, the queue-skipping HTTP route) never pass a limit."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from pipeline.errors import QuotaExceededError
from pipeline.jobs import LANES
from pipeline.plans import PLANS, day_start
from storage import StudioDatabase
from storage.database import LOCAL_USER_EMAIL, GenerationLimits
from storage.schema import migrations

CALLERS = 64


def set_free_plan(monkeypatch, per_day: int, concurrent: int = 100) -> None:
    monkeypatch.setitem(PLANS, "free", dataclasses.replace(PLANS["free"], generations_per_day=per_day,
                                                           concurrent_jobs=concurrent))


def count(studio, table: str) -> int:
    return studio.database.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@contextmanager
def another_process_writing(database_path: Path, seconds: float = 1.0) -> Iterator[None]:
    """A second process holds SQLite's write lock for `seconds` (as a `resell-studio generate` beside the server
    might): reads go on meanwhile and writes must wait, which opens wide any gap between counting what is used and
    storing a new job."""
    script = ("import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
              "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(float(sys.argv[2])); "
              "db.execute('COMMIT')")
    with subprocess.Popen([sys.executable, "-c", script, str(database_path), str(seconds)],
                          stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout.readline().strip() == "locked"
        yield


def outcomes(results: list[object]) -> Counter:
    return Counter(type(result).__name__ for result in results)


def all_at_once(callers: int, call) -> list[object]:
    """Runs `call(index)` in `callers` threads released together; returns each result or raised exception."""
    barrier = threading.Barrier(callers)

    def one(index: int) -> object:
        barrier.wait()
        try:
            return call(index)
        except Exception as error:  # noqa: BLE001 - the test sorts results from refusals
            return error

    with ThreadPoolExecutor(callers) as pool:
        return list(pool.map(one, range(callers)))


def test_deleting_garments_does_not_give_the_quota_back(studio, photo_path, monkeypatch):
    set_free_plan(monkeypatch, per_day=3)
    garment = studio.upload_garment(photo_path)
    for _ in range(3):
        studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)
    studio.delete_garment(garment["id"])
    assert studio.usage()["generations_today"] == 3
    again = studio.upload_garment(photo_path)
    with pytest.raises(QuotaExceededError, match="allows 3 generations a day and you have used 3"):
        studio.generate(again["id"], aspect_ratios=["1:1"])


def test_deleting_the_account_does_not_reset_the_day(studio, photo_path, monkeypatch):
    set_free_plan(monkeypatch, per_day=2)
    garment = studio.upload_garment(photo_path)
    for _ in range(2):
        studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)
    old_owner = studio.owner_id
    studio.delete_account()
    assert studio.owner_id != old_owner and count(studio, "generations") == 0
    assert studio.usage()["generations_today"] == 2
    again = studio.upload_garment(photo_path)
    with pytest.raises(QuotaExceededError, match="allows 2 generations a day and you have used 2"):
        studio.generate(again["id"], aspect_ratios=["1:1"])


def test_the_ledger_keeps_no_email_and_no_history(studio, photo_path):
    old = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat(timespec="milliseconds")
    with studio.database.transaction() as db:
        db.execute("INSERT INTO usage_events (id, account_key, kind, generation_id, created_at) "
                   "VALUES ('old', 'someone', 'generation', 'gone', ?)", [old])
    garment = studio.upload_garment(photo_path)
    job = studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)
    rows = list(studio.database.db.query("SELECT * FROM usage_events"))
    assert [row["generation_id"] for row in rows] == [job["id"]]  # the 3-day-old row was purged
    assert rows[0]["account_key"] == hashlib.sha256(LOCAL_USER_EMAIL.encode()).hexdigest()


def test_the_migration_fills_the_ledger_with_the_last_two_days(tmp_path):
    from sqlite_utils import Database

    old = Database(tmp_path / "studio.db")
    migrations.apply(old, stop_before="m006_usage_ledger")
    now = datetime.now(timezone.utc)
    old["virtual_models"].insert({"id": "ghost_01", "name": "Ghost", "kind": "ghost", "backend": "ghost"})
    old["users"].insert({"id": "u1", "email": "Seller@Example.com", "created_at": "2026-01-01"})
    old["garments"].insert({"id": "g1", "owner_id": "u1", "original_image_url": "originals/x.jpg", "width": 10,
                            "height": 10, "status": "segmented", "created_at": "2026-01-01"})
    for job_id, age in (("today", timedelta(hours=1)), ("last-week", timedelta(days=7))):
        old["generations"].insert({"id": job_id, "garment_id": "g1", "target_model_id": "ghost_01",
                                   "backend": "ghost", "status": "completed",
                                   "created_at": (now - age).isoformat(timespec="milliseconds")})
    old.conn.close()
    upgraded = StudioDatabase(tmp_path / "studio.db")
    rows = list(upgraded.db.query("SELECT account_key, generation_id FROM usage_events"))
    assert rows == [{"account_key": hashlib.sha256(b"seller@example.com").hexdigest(), "generation_id": "today"}]
    upgraded.close()


def test_simultaneous_calls_pass_the_daily_limit_by_none(studio, photo_path, monkeypatch):
    set_free_plan(monkeypatch, per_day=5)
    garment = studio.upload_garment(photo_path)
    with another_process_writing(studio.settings.database_path):
        results = all_at_once(CALLERS, lambda _: studio.generate(garment["id"], aspect_ratios=["1:1"]))
    assert outcomes(results) == {"dict": 5, "QuotaExceededError": CALLERS - 5}
    assert all("allows 5 generations a day" in str(error) for error in results if isinstance(error, Exception))
    assert count(studio, "generations") == count(studio, "usage_events") == 5


def test_simultaneous_calls_pass_the_concurrent_limit_by_none(studio, photo_path, monkeypatch):
    set_free_plan(monkeypatch, per_day=1000, concurrent=2)
    garment = studio.upload_garment(photo_path)
    gate = threading.Event()
    for worker in range(LANES["cpu"]):  # every CPU worker busy, so admitted jobs stay queued (pending)
        studio.runner.submit(f"busy-{worker}", lambda job: gate.wait(30), "cpu")
    try:
        with another_process_writing(studio.settings.database_path):
            results = all_at_once(CALLERS, lambda _: studio.generate(garment["id"], aspect_ratios=["1:1"]))
    finally:
        gate.set()
    assert outcomes(results) == {"dict": 2, "QuotaExceededError": CALLERS - 2}
    assert all("runs 2 jobs at once and 2 are queued or running" in str(error) for error in results
               if isinstance(error, Exception))
    assert count(studio, "generations") == count(studio, "usage_events") == 2
    for job in (result for result in results if isinstance(result, dict)):
        assert studio.wait_for_generation(job["id"], timeout=30)["status"] == "completed"


def test_two_database_connections_racing_pass_the_limit_by_none(studio, photo_path):
    """Two StudioDatabase objects on one file share no Python lock, as two processes would not: only SQLite's
    write lock, taken as each transaction begins, keeps count and insert together."""
    garment = studio.upload_garment(photo_path)
    other = StudioDatabase(studio.settings.database_path)
    limits = GenerationLimits(since=day_start().isoformat(), per_day=5, concurrent=100)
    databases = [studio.database, other]
    try:
        results = all_at_once(CALLERS, lambda index: databases[index % 2].create_generation(
            garment["id"], "ghost_01", "ghost", parameters={}, limits=limits))
    finally:
        other.close()
    assert outcomes(results) == {"dict": 5, "GenerationLimitReached": CALLERS - 5}
    assert all(error.limit == "per_day" and error.used == 5 for error in results if isinstance(error, Exception))
    assert count(studio, "generations") == count(studio, "usage_events") == 5


def test_the_queue_skipping_http_route_cannot_pass_the_daily_limit(studio, photo_path, monkeypatch):
    from app import Access, create_demo, launch_options

    set_free_plan(monkeypatch, per_day=5)
    garment = studio.upload_garment(photo_path)
    demo = create_demo(studio, Access(studio, "none"))
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None,
                            **launch_options(studio))
    # Every input of the generate endpoint: the ghost model, then the on-model defaults (empty prompt, seed -1...).
    body = {"data": [garment["id"], "ghost_01", ["1:1"], [], "white", "jpeg", False,
                     "", "", 1, -1, 0, -1.0, 0.7, 0.8, 0, 0, ""]}
    try:
        with httpx.Client(timeout=60) as client, another_process_writing(studio.settings.database_path):
            responses = all_at_once(60, lambda _: client.post(f"{url}gradio_api/run/generate", json=body))
    finally:
        demo.close()
    assert outcomes(responses) == {"Response": 60}
    assert Counter(response.status_code for response in responses) == {200: 5, 500: 55}
    assert all("allows 5 generations a day" in response.text for response in responses
               if response.status_code == 500)
    assert count(studio, "generations") == count(studio, "usage_events") == 5
