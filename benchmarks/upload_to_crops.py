"""Upload-to-three-crops time per photo: a photo goes in through the studio service (ingest, store, cut-out,
colour, category) and comes out as ghost photos in 1:1, 4:5 and 3:4, stored in a fresh data directory.

    .venv/bin/python benchmarks/upload_to_crops.py [--megapixels 1,4,12] [--runs 7] [--warm-up]
    .venv/bin/python benchmarks/upload_to_crops.py --image PHOTO [--runs 7]

Without --image it makes a phone-like photo (a garment on a textured floor) at each size. Ingest (validate,
decode, orient) is also timed on its own. The first upload of the process loads the models unless --warm-up loads
them first, as a served app does while its page opens. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.ingest import ingest_file  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.studio import Studio  # noqa: E402


def synthetic_photo(megapixels: float, path: Path, garment_rgb: tuple[int, int, int] = (128, 24, 40)) -> Path:
    """A phone-like photo of a T-shirt on a wooden floor, written as JPEG to `path`."""
    height = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    width = int(height * 3 / 4)
    rng = np.random.default_rng(0)
    small = rng.normal(0, 8, (-(-height // 8), -(-width // 8)))
    grain = np.kron(small, np.ones((8, 8)))[:height, :width]
    rows = np.arange(height)[:, None]
    planks = (190 + 20 * np.sin(rows / (height / 30)) + grain)
    floor = np.stack([planks, planks * 0.85, planks * 0.66], axis=-1).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(floor)
    shape = [(0.38, 0.16), (0.62, 0.16), (0.82, 0.26), (0.9, 0.44), (0.74, 0.48), (0.7, 0.42), (0.7, 0.84),
             (0.3, 0.84), (0.3, 0.42), (0.26, 0.48), (0.1, 0.44), (0.18, 0.26)]
    ImageDraw.Draw(image).polygon([(x * width, y * height) for x, y in shape], fill=garment_rgb)
    image.save(path, quality=90)
    return path


def measure(image: Path, runs: int) -> dict:
    ingest_seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        ingest_file(image)
        ingest_seconds.append(time.perf_counter() - started)
    timings = []
    with tempfile.TemporaryDirectory() as folder:
        studio = Studio.open(Settings.from_env(Path(folder) / "data"))
        try:
            for _ in range(runs):
                started = time.perf_counter()
                garment = studio.upload_garment(image)
                uploaded = time.perf_counter()
                job = studio.generate(garment["id"], aspect_ratios=["1:1", "4:5", "3:4"], wait=True)
                finished = time.perf_counter()
                if job["status"] != "completed":
                    raise SystemExit(f"generation failed: {job['error_message']}")
                timings.append((finished - started, uploaded - started, finished - uploaded))
        finally:
            studio.close()
    totals, uploads, crops = zip(*timings)
    return {
        "median_seconds": round(statistics.median(totals), 3),
        "min_seconds": round(min(totals), 3),
        "max_seconds": round(max(totals), 3),
        "median_ingest_seconds": round(statistics.median(ingest_seconds), 3),
        "median_upload_and_cutout_seconds": round(statistics.median(uploads), 3),
        "first_upload_and_cutout_seconds": round(uploads[0], 3),
        "median_three_crops_seconds": round(statistics.median(crops), 3),
        "output_sizes": [f"{o['width']}x{o['height']}" for o in job["outputs"]],
    }


def describe(image: Path, label: str, runs: int) -> dict:
    with Image.open(image) as opened:
        size = opened.size
    return {"image": label, "image_size": list(size), "megapixels": round(size[0] * size[1] / 1e6, 1),
            "file_bytes": image.stat().st_size, "runs": runs, **measure(image, runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, help="a photo to use instead of the synthetic ones")
    parser.add_argument("--megapixels", default="1,4,12", help="sizes of the synthetic photos, comma-separated")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warm-up", action="store_true",
                        help="load the models first, as a served app does while its page opens")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.warm_up:
            studio = Studio.open(Settings.from_env(Path(folder) / "warm-up"))
            studio.warm_up()
            studio.close()
        if args.image:
            photos = [describe(args.image, str(args.image), args.runs)]
        else:
            photos = [describe(synthetic_photo(float(mp), Path(folder) / f"photo-{mp}mp.jpg"), "synthetic", args.runs)
                      for mp in args.megapixels.split(",")]
    result = {"benchmark": "upload_to_three_crops", "photos": photos,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
