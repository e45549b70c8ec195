"""Quality and speed of a garment cut-out: classic (pipeline/cutout.py), u2netp alone (pipeline/u2net.py) or
fused (pipeline/fusion.py), chosen with --backend.

Usage, from the repository root:
    .venv/bin/python benchmarks/segmentation_quality.py \
        --product-masks ../shared/data/product-masks --flatlay ../shared/data/flatlay --sheet cutout_sheet.png \
        --backend fused

Prints one JSON object: IoU against the product-mask ground truth, timing on the flat-lay photos
(the first --per-class photos of each class folder) and on a synthetic 12-megapixel photo.
The optional contact sheet shows each flat-lay photo with its mask outlined, for judging by eye.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.cutout import cut_out as classic_cut_out  # noqa: E402
from pipeline.errors import SegmentationError  # noqa: E402


def _u2netp(image: Image.Image) -> np.ndarray:
    from pipeline.u2net import cut_out_u2net

    return cut_out_u2net(image)


def _fused(image: Image.Image) -> np.ndarray:
    from pipeline.fusion import cut_out_fused

    return cut_out_fused(image)


BACKENDS = {"classic": classic_cut_out, "u2netp": _u2netp, "fused": _fused}
cut_out = classic_cut_out

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
TILE = 200
TILES_PER_ROW = 12


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def timed_cut_out(image: Image.Image) -> tuple[np.ndarray | None, float]:
    start = time.perf_counter()
    try:
        mask = cut_out(image)
    except SegmentationError:
        mask = None
    return mask, time.perf_counter() - start


def iou(mask: np.ndarray | None, truth: np.ndarray) -> float:
    if mask is None:
        return 0.0
    predicted = mask > 127
    union = np.count_nonzero(predicted | truth)
    return np.count_nonzero(predicted & truth) / union if union else 1.0


def truth_mask_path(folder: Path, image_path: Path) -> Path | None:
    """The ground-truth mask with the image's base name (some masks are PNG for JPEG photos)."""
    candidates = [p for p in image_files(folder / "mask") if p.stem == image_path.stem]
    return candidates[0] if candidates else None


def photos_with_truth(folder: Path) -> Iterator[tuple[Path, Image.Image, np.ndarray]]:
    """Each product photo that has a true mask: its path, the photo (RGB) and the mask (bool; JPEG masks are
    thresholded at 128)."""
    for path in image_files(folder):
        truth_path = truth_mask_path(folder, path)
        if truth_path is not None:
            truth = np.asarray(Image.open(truth_path).convert("L")) >= 128
            yield path, Image.open(path).convert("RGB"), truth


def evaluate_product_masks(folder: Path) -> dict:
    scores, seconds = {}, []
    for path, photo, truth in photos_with_truth(folder):
        mask, elapsed = timed_cut_out(photo)
        seconds.append(elapsed)
        scores[path.name] = round(iou(mask, truth), 4)
    values = list(scores.values())
    return {
        "count": len(values),
        "mean_iou": round(float(np.mean(values)), 4) if values else None,
        "min_iou": round(float(np.min(values)), 4) if values else None,
        "median_seconds": round(float(np.median(seconds)), 4) if seconds else None,
        "per_image_iou": scores,
    }


def flatlay_photos(folder: Path, per_class: int) -> list[Path]:
    photos = []
    for class_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos.extend(image_files(class_folder)[:per_class])
    return photos


def overlay_tile(image: Image.Image, mask: np.ndarray | None, label: str) -> Image.Image:
    rgb = np.asarray(image).copy()
    if mask is not None:
        tint = rgb.astype(np.float32)
        tint[mask == 0] = tint[mask == 0] * 0.35
        rgb = tint.astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(2, rgb.shape[1] // 150)
        cv2.drawContours(rgb, contours, -1, (0, 255, 0), thickness)
    tile = Image.fromarray(rgb)
    tile.thumbnail((TILE, TILE))
    canvas = Image.new("RGB", (TILE, TILE), "black")
    canvas.paste(tile, (0, 0))
    ImageDraw.Draw(canvas).text((3, TILE - 12), label, fill=(255, 255, 0))
    return canvas


def contact_sheet(tiles: list[Image.Image]) -> Image.Image:
    rows = max(1, -(-len(tiles) // TILES_PER_ROW))
    sheet = Image.new("RGB", (TILES_PER_ROW * TILE, rows * TILE), "black")
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % TILES_PER_ROW) * TILE, (index // TILES_PER_ROW) * TILE))
    return sheet


def evaluate_flatlay(folder: Path, per_class: int, sheet_path: Path | None) -> dict:
    seconds, tiles, failures = [], [], []
    for index, path in enumerate(flatlay_photos(folder, per_class)):
        image = Image.open(path).convert("RGB")
        mask, elapsed = timed_cut_out(image)
        seconds.append(elapsed)
        if mask is None:
            failures.append(f"{path.parent.name}/{path.name}")
        if sheet_path is not None:
            tiles.append(overlay_tile(image, mask, f"{index} {path.parent.name}"))
    if sheet_path is not None and tiles:
        contact_sheet(tiles).save(sheet_path)
    return {
        "count": len(seconds),
        "segmentation_errors": failures,
        "median_seconds": round(float(np.median(seconds)), 4) if seconds else None,
        "p95_seconds": round(float(np.percentile(seconds, 95)), 4) if seconds else None,
    }


def synthetic_photo(width: int = 4000, height: int = 3000) -> Image.Image:
    """A noisy wood-like floor with a T-shirt-shaped garment in the middle."""
    rng = np.random.default_rng(0)
    ys = np.arange(height, dtype=np.float32)[:, None]
    stripes = 150 + 25 * np.sin(ys / 37.0) + rng.normal(0, 6, (height, width)).astype(np.float32)
    rgb = np.stack([stripes, stripes * 0.75, stripes * 0.5], axis=2).clip(0, 255).astype(np.uint8)
    shirt = np.array(
        [[0.30, 0.20], [0.42, 0.15], [0.58, 0.15], [0.70, 0.20], [0.80, 0.40], [0.70, 0.45],
         [0.66, 0.38], [0.66, 0.85], [0.34, 0.85], [0.34, 0.38], [0.30, 0.45], [0.20, 0.40]]
    ) * [width, height]
    cv2.fillPoly(rgb, [shirt.astype(np.int32)], (40, 60, 160))
    return Image.fromarray(rgb)


def time_large_photo(repeats: int = 3) -> float:
    image = synthetic_photo()
    cut_out(image)
    return round(min(timed_cut_out(image)[1] for _ in range(repeats)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--product-masks", type=Path, required=True, help="folder of product shots with mask/")
    parser.add_argument("--flatlay", type=Path, required=True, help="folder of class folders of flat-lay photos")
    parser.add_argument("--per-class", type=int, default=6, help="flat-lay photos per class folder")
    parser.add_argument("--sheet", type=Path, help="write a PNG contact sheet of the flat-lay masks here")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="classic", help="which cut-out to measure")
    parser.add_argument("--skip-flatlay", action="store_true", help="only the product masks and the 12 MP photo")
    args = parser.parse_args()
    global cut_out
    cut_out = BACKENDS[args.backend]
    cut_out(synthetic_photo(640, 480))  # loads the model (if any) before anything is timed
    report = {
        "product_masks": evaluate_product_masks(args.product_masks),
        "backend": args.backend,
        "flatlay": None if args.skip_flatlay else evaluate_flatlay(args.flatlay, args.per_class, args.sheet),
        "synthetic_12mp_seconds": time_large_photo(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
