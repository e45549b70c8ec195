"""How often the mask-shape category heuristic (pipeline.attributes.guess_category) is right.

    python benchmarks/category_heuristic.py --flatlay ../shared/data/flatlay

The folder holds one sub-folder of photos per class (dress, longsleeve, outwear, pants, shirt, shorts, skirt,
t-shirt). Masks come from pipeline.cutout.cut_out; with --crude-masks (or when that module is missing) a
GrabCut on a centred rectangle stands in. Prints JSON: accuracy overall, per class and per category, and the
confusion matrix (true class -> guessed category -> count).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.attributes import CATEGORIES, guess_category  # noqa: E402

CLASS_TO_CATEGORY = {
    "dress": "dress",
    "outwear": "outerwear",
    "pants": "bottom", "shorts": "bottom", "skirt": "bottom",
    "shirt": "top", "longsleeve": "top", "t-shirt": "top",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def crude_mask(image: Image.Image) -> np.ndarray:
    """GrabCut from a rectangle 3 % inside the frame, at 240 px, keeping the largest blob."""
    rgb = np.asarray(image.convert("RGB"))
    scale = 240 / max(rgb.shape[:2])
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    labels = np.zeros((h, w), np.uint8)
    rect = (int(w * 0.03), int(h * 0.03), int(w * 0.94), int(h * 0.94))
    cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), labels, rect, np.zeros((1, 65)), np.zeros((1, 65)),
                4, cv2.GC_INIT_WITH_RECT)
    mask = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8) * 255
    return cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)


def mask_function(crude: bool):
    if not crude:
        try:
            from pipeline.cutout import cut_out
            return cut_out, "pipeline.cutout.cut_out"
        except ImportError:
            pass
    return crude_mask, "crude GrabCut (benchmark only)"


def evaluate(folder: Path, make_mask) -> dict:
    hits_by_class: dict[str, list[bool]] = defaultdict(list)
    confusion: dict[str, Counter] = defaultdict(Counter)
    failures: Counter = Counter()
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and p.name in CLASS_TO_CATEGORY):
        truth = CLASS_TO_CATEGORY[class_dir.name]
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
            try:
                with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON report
                    guess = guess_category(make_mask(image))
            except Exception as error:  # a failed cut-out counts as a miss, labelled by its error type
                guess = f"error: {type(error).__name__}"
                failures[class_dir.name] += 1
            hits_by_class[class_dir.name].append(guess == truth)
            confusion[class_dir.name][guess] += 1
    return summarise(hits_by_class, confusion, failures)


def summarise(hits_by_class: dict[str, list[bool]], confusion: dict[str, Counter], failures: Counter) -> dict:
    all_hits = [hit for hits in hits_by_class.values() for hit in hits]
    by_category: dict[str, list[bool]] = defaultdict(list)
    for name, hits in hits_by_class.items():
        by_category[CLASS_TO_CATEGORY[name]].extend(hits)
    return {
        "images": len(all_hits),
        "accuracy": round(float(np.mean(all_hits)), 3) if all_hits else None,
        "balanced_accuracy": round(float(np.mean([np.mean(h) for h in by_category.values()])), 3) if all_hits else None,
        "per_class": {name: {"accuracy": round(float(np.mean(hits)), 3), "images": len(hits),
                             "category": CLASS_TO_CATEGORY[name]} for name, hits in hits_by_class.items()},
        "per_category": {name: {"accuracy": round(float(np.mean(hits)), 3), "images": len(hits)}
                         for name, hits in sorted(by_category.items(), key=lambda kv: CATEGORIES.index(kv[0]))},
        "confusion": {name: dict(counts.most_common()) for name, counts in confusion.items()},
        "cutout_failures": dict(failures),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flatlay", type=Path, required=True, help="folder with one sub-folder per class")
    parser.add_argument("--crude-masks", action="store_true", help="use the benchmark's own GrabCut masks")
    args = parser.parse_args(argv)
    if not args.flatlay.is_dir():
        parser.error(f"{args.flatlay} is not a folder")
    make_mask, mask_source = mask_function(args.crude_masks)
    started = time.perf_counter()
    report = {"masks": mask_source, **evaluate(args.flatlay, make_mask)}
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
