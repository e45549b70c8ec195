"""Crash recovery: the real server, under load, killed with SIGKILL, then started again on the same data directory.

What a restart must leave: every job completed, or failed with the interrupted-job message (it was running), or
run again to completion (it was queued); every output row pointing at a whole, readable image; every garment's
photo and cut-out readable; no file that no row points at; a sound database; and a studio that serves.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from pipeline.settings import Settings
from pipeline.studio import Studio
from storage.database import INTERRUPTED_JOB_MESSAGE

from conftest import garment_photo

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "crash-test-password"
USERS = ("ana@example.com", "ben@example.com")  # pro plan: 4 jobs at once each, so jobs queue behind 2 workers
JOBS_PER_USER = 4
RATIOS = ["1:1", "4:5", "3:4"]
MARKETPLACES = ["ebay", "poshmark", "depop", "vinted"]  # 7 photos a job, about a second of work
MOMENT_DEADLINE = 120  # seconds to wait for a moment; if a batch of jobs ends before it, another is queued


# -- the server as a real process --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`resell-studio serve` (with accounts) in its own process, on the given data directory."""

    def __init__(self, data_dir: Path, logs: Path):
        self.data_dir, self.logs = data_dir, logs
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.starts = 0

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
               "GRADIO_TEMP_DIR": str(self.data_dir.parent / "gradio-tmp")}
        for name in ("STUDIO_DATA_DIR", "STUDIO_BACKUP_REPO", "STUDIO_AUTH", "STUDIO_ACCOUNTS"):
            env.pop(name, None)
        self.starts += 1
        log = open(self.logs / f"server-{self.starts}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--data-dir", str(self.data_dir), "--port", str(port),
             "--auth", "password", "--segmentation-backend", "classic"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return  # it answers (the sign-in page or a redirect)
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"the server did not answer within 120 s:\n{self.log_tail()}")

    def client(self, email: str) -> Client:
        return Client(self.url, auth=(email, PASSWORD), verbose=False,
                      download_files=str(self.data_dir.parent / "downloads"))

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def log_tail(self) -> str:
        path = self.logs / f"server-{self.starts}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture
def server(tmp_path):
    from pipeline.accounts import Accounts
    from storage import StudioDatabase

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    database = StudioDatabase(data_dir / "studio.db")
    try:
        for email in USERS:  # what `resell-studio users add EMAIL --plan pro` does
            Accounts(database).sign_up(email, PASSWORD, "pro")
    finally:
        database.close()
    logs = tmp_path / "logs"
    logs.mkdir()
    server = Server(data_dir, logs)
    try:
        yield server
    finally:
        server.stop()


# -- reading the data directory from outside -----------------------------------------------------------------------

def read_only(data_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{data_dir / 'studio.db'}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def rows(data_dir: Path, sql: str, params=()) -> list[dict]:
    conn = read_only(data_dir)
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def referenced(data_dir: Path) -> set[str]:
    return {row["url"] for row in rows(data_dir, "SELECT original_image_url AS url FROM garments UNION "
                                                 "SELECT mask_image_url FROM garments UNION "
                                                 "SELECT thumbnail_url FROM garments UNION "
                                                 "SELECT image_url FROM output_images") if row["url"]}


def stored_files(data_dir: Path) -> set[str]:
    files = data_dir / "files"
    return {path.relative_to(files).as_posix() for path in files.rglob("*") if path.is_file()}


def job_counts(data_dir: Path, earlier: frozenset[str] = frozenset()) -> dict[str, int]:
    """Jobs by status, leaving out the `earlier` ones."""
    counts: dict[str, int] = {}
    for row in rows(data_dir, "SELECT id, status FROM generations"):
        if row["id"] not in earlier:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def readable(path: Path) -> tuple[int, int]:
    """Decodes every pixel: a truncated or half-written file fails here."""
    with Image.open(path) as image:
        image.load()
        return image.size


# -- load --------------------------------------------------------------------------------------------------------

class Uploader(threading.Thread):
    """Uploads photos one after another until stopped (or until the server dies under a call)."""

    def __init__(self, client: Client, photos: list[Path], stop: threading.Event):
        super().__init__(daemon=True)
        self.client, self.photos, self.stop = client, photos, stop
        self.in_flight = False
        self.done = 0

    def run(self) -> None:
        index = 0
        while not self.stop.is_set():
            self.in_flight = True
            try:
                self.client.predict(handle_file(str(self.photos[index % len(self.photos)])),
                                    api_name="/upload_garment")
                self.done += 1
            except Exception:  # noqa: BLE001 - the server was killed under it
                return
            finally:
                self.in_flight = False
            index += 1


class Submitter(threading.Thread):
    """Queues JOBS_PER_USER jobs for each user, while the test watches the database."""

    def __init__(self, clients: dict[str, Client], garments: dict[str, dict]):
        super().__init__(daemon=True)
        self.clients, self.garments = clients, garments
        self.error: Exception | None = None

    def run(self) -> None:
        def queue(email: str) -> None:
            job = self.clients[email].predict(self.garments[email]["id"], "ghost_01", RATIOS, MARKETPLACES,
                                              "white", "jpeg", False, api_name="/generate")
            assert job["status"] in ("pending", "processing"), job

        try:
            with ThreadPoolExecutor(4) as pool:  # the app takes 4 calls of an endpoint at once
                list(pool.map(queue, [email for email in self.clients for _ in range(JOBS_PER_USER)]))
        except Exception as error:  # noqa: BLE001 - the server may be killed under it; checked when it matters
            self.error = error


def unrecorded_output_files(data_dir: Path) -> set[str]:
    outputs = data_dir / "files"
    on_disk = {path.relative_to(outputs).as_posix() for path in (outputs / "outputs").glob("*/*")}
    if not on_disk:
        return set()
    recorded = {row["image_url"] for row in rows(data_dir, "SELECT image_url FROM output_images")}
    return on_disk - recorded  # listed before the query: a file recorded in between is not counted


MOMENTS = {
    # the first jobs have just started; the rest wait behind them
    "first-jobs-running": lambda counts, data_dir: counts.get("processing", 0) >= 1 and counts.get("pending", 0) >= 3
    and not counts.get("completed"),
    # a job has written some of its photos but not recorded them yet
    "photos-being-saved": lambda counts, data_dir: counts.get("processing", 0) >= 1
    and bool(unrecorded_output_files(data_dir)),
    # some jobs are done, some running, some queued
    "some-completed": lambda counts, data_dir: counts.get("completed", 0) >= 2 and counts.get("processing", 0) >= 1
    and counts.get("pending", 0) >= 1,
}


def snapshot(data_dir: Path) -> dict:
    """The data directory as the kill left it, read from outside."""
    generations = {row["id"]: row for row in rows(data_dir, "SELECT * FROM generations")}
    return {
        "generations": generations,
        "status": {status: {i for i, row in generations.items() if row["status"] == status}
                   for status in ("pending", "processing", "completed", "failed")},
        "outputs": {row["id"] for row in rows(data_dir, "SELECT id FROM output_images")},
        "unrecorded": stored_files(data_dir) - referenced(data_dir),
        "cutting_out": {row["id"] for row in rows(data_dir, "SELECT id FROM garments WHERE status = 'uploaded'")},
    }


def wait_for_jobs(data_dir: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while job_counts(data_dir).keys() & {"pending", "processing"}:
        assert time.monotonic() < deadline, f"jobs still queued or running: {job_counts(data_dir)}"
        time.sleep(0.1)


def check_recovered(data_dir: Path, at_kill: dict) -> None:
    """What a restart must leave, compared with what the kill left."""
    after = {row["id"]: row for row in rows(data_dir, "SELECT * FROM generations")}
    assert set(after) == set(at_kill["generations"])
    for generation_id in at_kill["status"]["processing"]:  # it was running: failed, with the message
        assert after[generation_id]["status"] == "failed"
        assert after[generation_id]["error_message"] == INTERRUPTED_JOB_MESSAGE
    for generation_id in at_kill["status"]["pending"] | at_kill["status"]["completed"]:  # ran again, or was done
        assert after[generation_id]["status"] == "completed", after[generation_id]["error_message"]
    for generation_id in at_kill["status"]["failed"]:  # failed in an earlier crash: left as it was
        assert after[generation_id] == at_kill["generations"][generation_id]
    outputs = rows(data_dir, "SELECT * FROM output_images")
    assert {output["id"] for output in outputs} >= at_kill["outputs"]  # nothing recorded before the kill was lost
    by_job: dict[str, int] = {}
    for output in outputs:
        by_job[output["generation_id"]] = by_job.get(output["generation_id"], 0) + 1
    for generation_id, generation in after.items():
        expected = len(RATIOS) + len(MARKETPLACES) if generation["status"] == "completed" else 0
        assert by_job.get(generation_id, 0) == expected, generation  # a failed job keeps no photos

    # Every row points at a whole image; no file that no row points at, no temporary file.
    files = data_dir / "files"
    for output in outputs:
        assert readable(files / output["image_url"]) == (output["width"], output["height"])
    for garment in rows(data_dir, "SELECT * FROM garments"):
        assert readable(files / garment["original_image_url"]) == (garment["width"], garment["height"])
        if garment["status"] == "segmented":
            assert readable(files / garment["mask_image_url"]) == (garment["width"], garment["height"])
        else:  # the kill came during its cut-out: the photo is kept, and it can be cut out again
            assert garment["status"] == "uploaded" and garment["mask_image_url"] is None
    assert stored_files(data_dir) == referenced(data_dir)
    assert not at_kill["unrecorded"] & stored_files(data_dir)  # what the kill left unrecorded was swept on start
    assert not list(files.rglob("*.partial"))

    conn = read_only(data_dir)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


def test_a_server_killed_under_load_recovers_on_restart(server, tmp_path):
    """Three kills on one data directory, each at another moment; each restart is checked, then loaded again
    (so the later kills also catch jobs that recovery queued again)."""
    photos = []
    for seed in range(3):
        image, _ = garment_photo(seed=seed)
        photos.append(tmp_path / f"tee-{seed}.jpg")
        image.save(photos[-1], quality=90)
    data_dir = server.data_dir
    server.start()
    clients = {email: server.client(email) for email in USERS}
    with ThreadPoolExecutor(len(USERS)) as pool:
        garments = dict(zip(USERS, pool.map(
            lambda i: clients[USERS[i]].predict(handle_file(str(photos[i])), api_name="/upload_garment"),
            range(len(USERS)))))
    assert all(garment["status"] == "segmented" for garment in garments.values())

    cutting_out: set[str] = set()
    for moment, reached in MOMENTS.items():
        # Load: a steady stream of uploads, and more jobs than workers, each making several photos.
        stop = threading.Event()
        uploaders = [Uploader(client, photos, stop) for client in clients.values()]
        for uploader in uploaders:
            uploader.start()
        deadline = time.monotonic() + MOMENT_DEADLINE
        counts: dict[str, int] = {}
        earlier: frozenset[str] = frozenset()
        submitter: Submitter | None = None
        while not reached(counts, data_dir):
            if (submitter is None or not submitter.is_alive()) and not counts.keys() & {"pending", "processing"}:
                # (again, if the last batch ended before the moment came)
                assert submitter is None or submitter.error is None, submitter.error
                assert time.monotonic() < deadline, f"{moment} never came; this batch: {counts}"
                earlier = frozenset(row["id"] for row in rows(data_dir, "SELECT id FROM generations"))
                submitter = Submitter(clients, garments)
                submitter.start()
            time.sleep(0.005)
            counts = job_counts(data_dir, earlier)  # this batch's jobs
        in_flight = sum(uploader.in_flight for uploader in uploaders)
        server.kill()
        stop.set()
        for thread in (submitter, *uploaders):
            thread.join(timeout=60)  # their calls fail as the server dies
        at_kill = snapshot(data_dir)
        cutting_out |= at_kill["cutting_out"]
        print(f"\n[{moment}] at the kill: this batch {counts}; uploads in flight {in_flight} (done this round "
              f"{sum(u.done for u in uploaders)}); garments left mid-cut-out so far {len(at_kill['cutting_out'])}; "
              f"unrecorded files {len(at_kill['unrecorded'])} "
              f"({sum(name.endswith('.partial') for name in at_kill['unrecorded'])} temporary)")

        server.start()  # the same data directory: recovery runs before the server answers
        wait_for_jobs(data_dir)
        print(f"[{moment}] all jobs after the restart: {job_counts(data_dir)}")
        check_recovered(data_dir, at_kill)
        clients = {email: server.client(email) for email in USERS}

    # The restarted server serves: an upload, cutting out again what a kill interrupted, a job, a download.
    client = clients[USERS[0]]
    garment = client.predict(handle_file(str(photos[2])), api_name="/upload_garment")
    assert garment["status"] == "segmented"
    for email, each in clients.items():
        owned = {g["id"] for g in each.predict(500, 0, api_name="/list_garments")}
        for garment_id in cutting_out & owned:
            assert each.predict(garment_id, "classic", api_name="/segment_garment")["status"] == "segmented"
    job = client.predict(garment["id"], "ghost_01", ["1:1"], ["ebay"], "white", "png", True, api_name="/generate")
    assert job["status"] == "completed", job["error_message"]
    downloaded = client.predict(job["outputs"][1]["id"], api_name="/download")
    assert readable(Path(downloaded)) == (1600, 1600)


# -- the sweep on start, without a server ---------------------------------------------------------------------------

def unrecorded_files(studio: Studio) -> tuple[str, Path]:
    """What a crash leaves in the file store: a photo written but never recorded, and a half-written temporary."""
    orphan = studio.files.write("outputs", b"written, never recorded", ".jpg")
    partial = studio.file_path(orphan).with_name("half-written.jpg.partial")
    partial.write_bytes(b"half")
    return orphan, partial


def test_a_restart_with_no_other_studio_process_removes_fresh_orphans(settings, photo_path):
    studio = Studio.open(settings)
    garment = studio.upload_garment(photo_path)
    orphan, partial = unrecorded_files(studio)  # seconds old, far inside the 10-minute grace period
    studio.close()

    restarted = Studio.open(settings)
    try:
        assert not restarted.files.exists(orphan) and not partial.exists()
        kept = restarted.get_garment(garment["id"])
        assert restarted.files.exists(kept["original_image_url"]) and restarted.files.exists(kept["mask_image_url"])
    finally:
        restarted.close()


def test_while_another_studio_process_has_the_directory_open_fresh_files_are_kept(settings, photo_path):
    """That process may be between writing a file and recording it: only files past the grace period go."""
    owner = Studio.open(settings)
    guest = Studio.open(settings)  # e.g. `resell-studio generate` next to the server
    assert owner.lock.acquired and not guest.lock.acquired
    orphan, partial = unrecorded_files(guest)
    old_orphan = guest.files.write("outputs", b"left by a crash long ago", ".jpg")
    an_hour_ago = time.time() - 3600
    os.utime(guest.file_path(old_orphan), (an_hour_ago, an_hour_ago))
    owner.close()  # the owner goes (as in a crash); the guest lives on
    successor = Studio.open(settings)
    try:
        assert successor.lock.acquired
        assert successor.files.exists(orphan) and partial.exists()
        assert not successor.files.exists(old_orphan)
    finally:
        successor.close()
        guest.close()
    last = Studio.open(settings)  # now alone: the guest's leftovers go too
    try:
        assert not last.files.exists(orphan) and not partial.exists()
    finally:
        last.close()


def test_a_queued_job_resubmitted_on_start_keeps_its_photos(settings, photo_path):
    """The sweep runs before queued jobs start again, so it never takes a running job's unrecorded photos."""
    studio = Studio.open(settings)
    garment = studio.upload_garment(photo_path)
    queued = studio.database.create_generation(
        garment["id"], "ghost_01", "ghost",
        parameters={"outputs": [{"aspect_ratio": ratio, "marketplace": None, "width": None, "height": None}
                                for ratio in RATIOS], "background": "white", "file_format": "jpeg"})
    studio.close()
    restarted = Studio.open(Settings.from_env(settings.data_dir))
    try:
        job = restarted.wait_for_generation(queued["id"], timeout=120)
        assert job["status"] == "completed" and len(job["outputs"]) == 3
        assert all(restarted.files.exists(output["image_url"]) for output in job["outputs"])
    finally:
        restarted.close()
