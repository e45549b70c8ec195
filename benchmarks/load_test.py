"""Many sellers at once: simultaneous `gradio_client` sessions against a real studio server.

    .venv/bin/python benchmarks/load_test.py [--sessions 24] [--photos 3] [--megapixels 1]

Starts `resell-studio serve --accounts` on a fresh data directory in a subprocess, with one free-plan account
per session. Every session signs in with its own API token and, at the same moment as the others, for each of
its photos: uploads it (ingest and cut-out), asks for a ghost job with two ratios and two marketplaces, polls it
to the end, stars one output and downloads it. Nothing needs model weights. Then the server is stopped and the
database is checked: integrity, no lost or duplicated garments, jobs or outputs, every job ended, every output
file whole. Prints JSON with throughput and p50/p95 latencies; exits 1 if any check failed.
tests/test_load.py runs a shorter variant of the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from upload_to_crops import synthetic_photo  # noqa: E402

from pipeline.accounts import Accounts  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from storage import StudioDatabase  # noqa: E402

RATIOS = ["1:1", "4:5"]
MARKETPLACES = ["ebay", "vinted"]
SERVER_START_TIMEOUT = 180
JOB_TIMEOUT = 600
PASSWORD = "load-test-password"


@dataclass
class Seller:
    email: str
    token: str


@dataclass
class SessionResult:
    garments: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    favourites: list[str] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=lambda: {"upload": [], "generation": [], "photo": []})
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def create_sellers(data_dir: Path, count: int) -> list[Seller]:
    """One free-plan account per session, each with an API token (what `resell-studio users add/token` do)."""
    database = StudioDatabase(Settings.from_env(data_dir).database_path)
    try:
        accounts = Accounts(database)
        sellers = []
        for index in range(count):
            user = accounts.sign_up(f"seller{index}@example.com", PASSWORD, "free")
            sellers.append(Seller(user["email"], accounts.create_token(user["id"], "load test")["token"]))
        return sellers
    finally:
        database.close()


def start_server(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    """`resell-studio serve --accounts` in its own process; returns once it answers."""
    command = [sys.executable, "-m", "cli", "serve", "--accounts", "--data-dir", str(data_dir),
               "--host", "127.0.0.1", "--port", str(port)]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    environment.pop("STUDIO_BACKUP_REPO", None)  # a throwaway studio never restores from or pushes to a backup
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError(f"the server did not answer within {SERVER_START_TIMEOUT} s; see {log_path}")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)  # a clean stop: running jobs finish, connections close
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def run_session(url: str, seller: Seller, photos: list[Path], downloads: Path, start: threading.Barrier
                ) -> SessionResult:
    from gradio_client import Client, handle_file

    result = SessionResult()
    try:
        client = Client(url, auth=(seller.email, seller.token), verbose=False, download_files=str(downloads))
    except Exception as error:  # noqa: BLE001  (every failure is reported, none ends the run)
        result.errors.append(f"{seller.email} sign-in: {error}")
        start.wait()
        return result
    start.wait()
    for photo in photos:
        try:
            _one_photo(client, handle_file(str(photo)), result)
        except Exception as error:  # noqa: BLE001
            result.errors.append(f"{seller.email} {photo.name}: {type(error).__name__}: {error}")
    return result


def _one_photo(client, photo, result: SessionResult) -> None:
    started = time.perf_counter()
    garment = client.predict(photo, api_name="/upload_garment")
    uploaded = time.perf_counter()
    result.garments.append(garment["id"])
    if garment["status"] != "segmented":
        raise RuntimeError(f"the cut-out failed: {garment['error_message']}")
    job = client.predict(garment["id"], "ghost_01", RATIOS, MARKETPLACES, "white", "jpeg", False,
                         api_name="/generate")
    result.jobs.append(job["id"])
    deadline = time.monotonic() + JOB_TIMEOUT
    while job["status"] in ("pending", "processing"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job['id']} still {job['status']} after {JOB_TIMEOUT} s")
        time.sleep(0.25)
        job = client.predict(job["id"], api_name="/generation")
    finished = time.perf_counter()
    if job["status"] != "completed":
        raise RuntimeError(f"job {job['id']} failed: {job['error_message']}")
    output = job["outputs"][0]
    client.predict(output["id"], True, api_name="/set_favorite")
    result.favourites.append(output["id"])
    with Image.open(client.predict(output["id"], api_name="/download")) as image:
        image.load()
    result.downloads.append(output["id"])
    result.timings["upload"].append(uploaded - started)
    result.timings["generation"].append(finished - uploaded)
    result.timings["photo"].append(time.perf_counter() - started)


def check_database(data_dir: Path, results: list[SessionResult]) -> list[str]:
    """What must hold after the run; returns the problems found (none is a pass)."""
    settings = Settings.from_env(data_dir)
    database = StudioDatabase(settings.database_path)
    db = database.db
    problems = []
    try:
        integrity = database.integrity_check()
        if integrity != "ok":
            problems.append(f"PRAGMA integrity_check: {integrity}")
        garments = [row["id"] for row in db.query("SELECT id FROM garments")]
        expected_garments = [garment for result in results for garment in result.garments]
        if sorted(garments) != sorted(expected_garments):
            problems.append(f"{len(garments)} garment rows for {len(expected_garments)} uploads answered")
        jobs = {row["id"]: row for row in db.query("SELECT id, status, error_message FROM generations")}
        expected_jobs = [job for result in results for job in result.jobs]
        if sorted(jobs) != sorted(expected_jobs):
            problems.append(f"{len(jobs)} generation rows for {len(expected_jobs)} jobs answered")
        unfinished = [job for job in jobs.values() if job["status"] not in ("completed", "failed")]
        if unfinished:
            problems.append(f"{len(unfinished)} jobs did not end: {unfinished[:3]}")
        shapes = Counter((row["generation_id"], row["aspect_ratio"], row["marketplace"])
                         for row in db.query("SELECT generation_id, aspect_ratio, marketplace FROM output_images"))
        duplicated = [shape for shape, count in shapes.items() if count > 1]
        if duplicated:
            problems.append(f"duplicated output rows: {duplicated[:3]}")
        per_job = Counter(generation for generation, _, _ in shapes)
        short = [job for job, row in jobs.items() if row["status"] == "completed"
                 and per_job[job] != len(RATIOS) + len(MARKETPLACES)]
        if short:
            problems.append(f"completed jobs without all their outputs: {short[:3]}")
        problems += _check_files(settings, db)
        starred = {row["id"] for row in db.query("SELECT id FROM output_images WHERE is_favorite = 1")}
        if starred != {output for result in results for output in result.favourites}:
            problems.append("the starred outputs differ from those the sessions starred")
        downloaded = {row["id"]: row["download_count"]
                      for row in db.query("SELECT id, download_count FROM output_images WHERE download_count > 0")}
        if downloaded != {output: 1 for result in results for output in result.downloads}:
            problems.append("download counts differ from the downloads made")
    finally:
        database.close()
    return problems


def _check_files(settings: Settings, db) -> list[str]:
    """Every file a row points at decodes whole, and every file on disk has a row."""
    referenced = [row["url"] for row in db.query(
        "SELECT image_url AS url FROM output_images UNION ALL SELECT original_image_url FROM garments "
        "UNION ALL SELECT mask_image_url FROM garments WHERE mask_image_url IS NOT NULL "
        "UNION ALL SELECT thumbnail_url FROM garments WHERE thumbnail_url IS NOT NULL")]
    problems = []
    for relative in referenced:
        try:
            with Image.open(settings.files_dir / relative) as image:
                image.load()
        except Exception as error:  # noqa: BLE001
            problems.append(f"{relative}: {error}")
    on_disk = {path.relative_to(settings.files_dir).as_posix()
               for path in settings.files_dir.rglob("*") if path.is_file()}
    if on_disk - set(referenced):
        problems.append(f"{len(on_disk - set(referenced))} files no row points at")
    return problems


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarise(results: list[SessionResult], wall_seconds: float) -> dict:
    def latency(kind: str) -> dict:
        values = [value for result in results for value in result.timings[kind]]
        if not values:
            return {}
        return {"p50_s": round(statistics.median(values), 3), "p95_s": round(percentile(values, 0.95), 3),
                "max_s": round(max(values), 3)}

    photos_done = sum(len(result.timings["photo"]) for result in results)
    return {"photos_done": photos_done, "wall_seconds": round(wall_seconds, 1),
            "throughput_photos_per_minute": round(60 * photos_done / wall_seconds, 1),
            "outputs_per_minute": round(60 * photos_done * (len(RATIOS) + len(MARKETPLACES)) / wall_seconds, 1),
            "latency": {"upload_and_cutout": latency("upload"), "generation_submit_to_done": latency("generation"),
                        "photo_upload_to_download": latency("photo")}}


def run_load_test(workdir: Path, sessions: int, photos: int, megapixels: float,
                  on_started: Callable[[str], None] | None = None) -> dict:
    """The whole test in `workdir`; returns the report (its `problems` list is empty on a pass)."""
    data_dir = workdir / "data"
    sellers = create_sellers(data_dir, sessions)
    photo_files = [synthetic_photo(megapixels, workdir / f"photo{index}.jpg", garment_rgb=colour)
                   for index, colour in enumerate([(128, 24, 40), (31, 42, 68), (40, 110, 60)][:photos])]
    photo_files += photo_files[-1:] * (photos - len(photo_files))
    port = free_port()
    server = start_server(data_dir, port, workdir / "server.log")
    url = f"http://127.0.0.1:{port}/"
    if on_started:
        on_started(url)
    try:
        start = threading.Barrier(sessions + 1)
        results: list[SessionResult] = [SessionResult() for _ in range(sessions)]

        def session(index: int) -> None:
            results[index] = run_session(url, sellers[index], photo_files, workdir / "downloads" / str(index), start)

        threads = [threading.Thread(target=session, args=(index,)) for index in range(sessions)]
        for thread in threads:
            thread.start()
        start.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    finally:
        stop_server(server)
    errors = [error for result in results for error in result.errors]
    return {"benchmark": "load_test", "sessions": sessions, "photos_per_session": photos,
            "megapixels": megapixels, "outputs_per_photo": len(RATIOS) + len(MARKETPLACES),
            **summarise(results, wall), "errors": errors,
            "problems": errors + check_database(data_dir, results),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=24)
    parser.add_argument("--photos", type=int, default=3, help="photos each session uploads and generates from")
    parser.add_argument("--megapixels", type=float, default=1.0, help="size of the synthetic photos")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        report = run_load_test(Path(folder), args.sessions, args.photos, args.megapixels)
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
