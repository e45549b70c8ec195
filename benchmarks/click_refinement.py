"""How well the seller's taps fix a cut-out (`pipeline.cutout.refine_with_clicks`), measured as interactive
segmentation is: a simulated seller taps the middle of the largest wrong region (garment where the cut-out has
background, or the other way round) with the right label, and the IoU against the true mask is taken after each
tap.

Usage, from the repository root:
    .venv/bin/python benchmarks/click_refinement.py --product-masks ../shared/data/product-masks \
        --start u2netp --clicks 5

--start is the cut-out the taps correct: `classic`, `u2netp`, `fused`, or `none` (no cut-out: the first tap says
where the garment is). Prints one JSON object: the mean and lowest IoU after 0, 1, ... taps, how many photos reach
IoU 0.95 within the taps and after how many (on average over those that do), and the median time of one answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from segmentation_quality import BACKENDS, iou, photos_with_truth  # noqa: E402

from pipeline.cutout import refine_with_clicks  # noqa: E402
from pipeline.errors import SegmentationError  # noqa: E402

TARGET_IOU = 0.95


def next_click(mask: np.ndarray, truth: np.ndarray) -> tuple[float, float, int]:
    """The tap a careful seller makes: in the middle of the largest region the mask has wrong."""
    wrong = ((mask > 127) != truth).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(wrong, connectivity=8)
    largest = labels == 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    # Padded so that a region along the photo's edge has its middle away from the edge.
    distance = cv2.distanceTransform(np.pad(largest, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return float(x), float(y), int(truth[y, x])


def start_mask(image: Image.Image, start: str) -> np.ndarray:
    if start == "none":
        return np.zeros((image.height, image.width), np.uint8)
    try:
        return BACKENDS[start](image)
    except SegmentationError:
        return np.zeros((image.height, image.width), np.uint8)


def tap_sequence(image: Image.Image, truth: np.ndarray, start: str, clicks: int) -> tuple[list[float], list[float]]:
    """IoU after 0..clicks taps, and the seconds each answer took (every answer reruns all taps so far)."""
    base = start_mask(image, start)
    mask, points, scores, seconds = base, [], [iou(base, truth)], []
    for _ in range(clicks):
        if scores[-1] == 1.0:
            scores.append(1.0)
            continue
        points.append(next_click(mask, truth))
        began = time.perf_counter()
        mask = refine_with_clicks(image, base, points)
        seconds.append(time.perf_counter() - began)
        scores.append(iou(mask, truth))
    return scores, seconds


def evaluate(folder: Path, start: str, clicks: int) -> dict:
    per_photo, seconds = {}, []
    for path, photo, truth in photos_with_truth(folder):
        scores, taken = tap_sequence(photo, truth, start, clicks)
        per_photo[path.name] = [round(s, 4) for s in scores]
        seconds += taken
    table = np.array(list(per_photo.values()))
    reached = [next(i for i, s in enumerate(row) if s >= TARGET_IOU) for row in table if row.max() >= TARGET_IOU]
    return {
        "start": start,
        "photos": len(table),
        "mean_iou_after_taps": [round(float(v), 4) for v in table.mean(axis=0)],
        "min_iou_after_taps": [round(float(v), 4) for v in table.min(axis=0)],
        f"photos_at_{TARGET_IOU}_within_{clicks}_taps": len(reached),
        "mean_taps_to_reach_it": round(float(np.mean(reached)), 2) if reached else None,
        "median_answer_seconds": round(float(np.median(seconds)), 4) if seconds else None,
        "per_photo_iou_after_taps": per_photo,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--product-masks", type=Path, required=True,
                        help="folder of photos with a mask/ folder of true masks of the same base names")
    parser.add_argument("--start", choices=["none", *BACKENDS], default="u2netp")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--summary", action="store_true", help="leave out the per-photo figures")
    args = parser.parse_args()
    result = evaluate(args.product_masks, args.start, args.clicks)
    if args.summary:
        result.pop("per_photo_iou_after_taps")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
