"""The database queries the UI and the API make, timed on a studio holding 100,000 output images.

    .venv/bin/python benchmarks/db_queries.py [--outputs 100000] [--users 200] [--repeat 200]

Builds a fresh data directory through the real schema (sqlite-utils migrations): `--users` sellers, one of them
(the one measured) holding a fifth of everything, each garment with 4 generations of 5 outputs, 5 % of outputs
starred. The measured seller's files exist on disk (empty), so opening the studio sweeps a real file store.
Then it times each query the app makes on a page load, an upload, a generation and a download. Prints JSON:
median and p95 milliseconds per query, and the query plan of the favourites listing (target: under 10 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.plans import day_start  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.studio import Studio  # noqa: E402
from storage.database import LIST_FAVORITES_SQL, StudioDatabase, new_id, utc_now  # noqa: E402

GENERATIONS_PER_GARMENT = 4
OUTPUTS_PER_GENERATION = 5
FAVOURITE_SHARE = 0.05
MEASURED_USER_SHARE = 0.2
SHAPES = [("1:1", None), ("4:5", None), ("3:4", None), ("1:1", "ebay"), ("4:5", "poshmark")]


def populate(database: StudioDatabase, files_dir: Path, outputs: int, users: int, seed: int = 0) -> str:
    """Fills the database; returns the measured seller's id. Only that seller's files exist on disk."""
    rng = random.Random(seed)
    per_garment = GENERATIONS_PER_GARMENT * OUTPUTS_PER_GENERATION
    garments_total = outputs // per_garment
    measured_garments = int(garments_total * MEASURED_USER_SHARE)
    user_ids = [new_id() for _ in range(users)]
    now = utc_now()
    with database.transaction() as db:
        db["users"].insert_all({"id": user_id, "email": f"seller{index}@example.com", "password_hash": None,
                                "subscription_plan": "enterprise" if index == 0 else "pro", "created_at": now}
                               for index, user_id in enumerate(user_ids))
        garments, generations, output_rows = [], [], []
        for index in range(garments_total):
            owner = user_ids[0] if index < measured_garments else user_ids[1 + index % (users - 1)]
            garment_id = new_id()
            created = f"2026-{1 + index % 11:02d}-{1 + index % 28:02d}T{index % 24:02d}:00:00.{index:06d}+00:00"
            garments.append({"id": garment_id, "owner_id": owner, "original_image_url": f"originals/{garment_id}.jpg",
                             "mask_image_url": f"masks/{garment_id}.png", "width": 3000, "height": 4000,
                             "original_bytes": 3_500_000, "mask_bytes": 40_000,
                             "category": "top", "detected_color": "navy", "detected_color_hex": "#1f2a44",
                             "status": "segmented", "created_at": created})
            for generation_index in range(GENERATIONS_PER_GARMENT):
                generation_id = new_id()
                generations.append({"id": generation_id, "garment_id": garment_id, "target_model_id": "ghost_01",
                                    "status": "completed", "backend": "ghost", "parameters": "{}",
                                    "created_at": created, "completed_at": created})
                for image_index, (ratio, marketplace) in enumerate(SHAPES[:OUTPUTS_PER_GENERATION]):
                    output_id = new_id()
                    output_rows.append({"id": output_id, "generation_id": generation_id, "owner_id": owner,
                                        "file_bytes": 400_000,
                                        "image_url": f"outputs/{output_id}.jpg", "image_index": image_index,
                                        "aspect_ratio": ratio, "marketplace": marketplace, "width": 1600,
                                        "height": 1600, "is_favorite": int(rng.random() < FAVOURITE_SHARE),
                                        "created_at": created})
        db["garments"].insert_all(garments, batch_size=2000)
        db["generations"].insert_all(generations, batch_size=2000)
        db["output_images"].insert_all(output_rows, batch_size=2000)
    database.db.execute("ANALYZE")
    measured = set(database.owner_files(user_ids[0]))
    for relative in measured:
        path = files_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return user_ids[0]


def timed(function: Callable[[], object], repeat: int) -> dict:
    function()  # warm the page cache and the statement cache
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 3),
            "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 3), "runs": repeat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outputs", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env(Path(folder) / "data")
        settings.files_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        database = StudioDatabase(settings.database_path)
        database.sync_virtual_models([{"id": "ghost_01", "name": "Ghost", "kind": "ghost", "backend": "ghost"}])
        seller = populate(database, settings.files_dir, args.outputs, args.users)
        database.close()
        build_seconds = time.perf_counter() - started

        started = time.perf_counter()
        studio = Studio.open(settings)  # crash recovery included: it reads every referenced file path
        open_seconds = time.perf_counter() - started
        try:
            result = measure(studio.as_user(seller), args.repeat)
        finally:
            studio.close()
        counts = {table: StudioDatabase(settings.database_path).db[table].count
                  for table in ("users", "garments", "generations", "output_images")}
    print(json.dumps({
        "benchmark": "db_queries", "rows": counts, "measured_seller_outputs": result.pop("seller_outputs"),
        "build_seconds": round(build_seconds, 1), "studio_open_seconds": round(open_seconds, 3),
        "favourites_query_plan": result.pop("plan"), "queries": result,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }, indent=2))


def measure(studio: Studio, repeat: int) -> dict:
    database, owner = studio.database, studio.owner_id
    garment = studio.list_garments(limit=1)[0]
    generation = studio.list_generations(garment["id"], limit=1)[0]
    output = database.list_outputs(generation["id"])[0]
    seller_outputs = database.db.execute(
        "SELECT count(*) FROM output_images JOIN generations ON generations.id = output_images.generation_id "
        "JOIN garments ON garments.id = generations.garment_id WHERE garments.owner_id = ?", [owner]).fetchone()[0]
    return {
        "seller_outputs": seller_outputs,
        "plan": database.query_plan(LIST_FAVORITES_SQL, [owner, 100]),
        "list_favorites (100)": timed(lambda: studio.list_favorites(limit=100), repeat),
        "list_garments (page of 50)": timed(lambda: studio.list_garments(limit=50), repeat),
        "list_garments (page 20 of 50)": timed(lambda: studio.list_garments(limit=50, offset=950), repeat),
        "list_generations (all garments, 50)": timed(lambda: studio.list_generations(limit=50), repeat),
        "get_generation with outputs": timed(lambda: studio.get_generation(generation["id"]), repeat),
        "get_garment": timed(lambda: studio.get_garment(garment["id"]), repeat),
        "count_generations_today": timed(
            lambda: database.count_generations_since(owner, day_start().isoformat()), repeat),
        "count_active_generations": timed(lambda: database.count_active_generations(owner), repeat),
        "output_owner (download check)": timed(lambda: database.output_owner(output["id"]), repeat),
        "set_favorite": timed(lambda: studio.set_favorite(output["id"], True), repeat),
        "storage quota check (upload)": timed(lambda: studio._check_storage_quota(0), max(10, repeat // 10)),
        "usage (account tab)": timed(studio.usage, max(10, repeat // 10)),
        "referenced_files (start-up sweep)": timed(database.referenced_files, 5),
    }



if __name__ == "__main__":
    main()
