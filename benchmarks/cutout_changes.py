"""What a change to the fused cut-out changes on the flat lays, drawn for judging by eye.

The flat-lay benchmark is judged by eye (`benchmarks/flatlay_cutout_judged.tsv`), so a change to the cut-out is
judged by looking at every mask it changes. From the repository root:

    .venv/bin/python benchmarks/cutout_changes.py save ../shared/data/flatlay /tmp/before.npz
    # ... change pipeline/fusion.py, or try other weights with --garment-net /tmp/other.safetensors ...
    .venv/bin/python benchmarks/cutout_changes.py save ../shared/data/flatlay /tmp/after.npz
    .venv/bin/python benchmarks/cutout_changes.py compare /tmp/before.npz /tmp/after.npz /tmp/changes

`save` stores the studio's mask of every photo of the class folders at the cut-out's working size (about 1 s a
photo on one core). `compare` prints one JSON object (each changed photo with its verdict from the judged table,
pixels added and removed) and draws two kinds of pages into the folder:
- `pieces_N.png`: each changed piece close up: the photo; the cut-out before, what goes in red; after, what
  comes in green; after as the seller sees it;
- `whole_N.png`: each changed photo whole: the photo, the cut-out before, the cut-out after.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.cutout import WORK_SIDE, _downscale  # noqa: E402
from pipeline.errors import SegmentationError  # noqa: E402
from pipeline.fusion import cut_out_working_copy  # noqa: E402
from pipeline.garment_net import TrainedGarmentNet  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
JUDGED = Path(__file__).resolve().parent / "flatlay_cutout_judged.tsv"
MIN_PIECE = 30  # pixels: smaller changes are an edge a pixel off, not drawn
TILE_HEIGHT = 180
PER_PAGE = 10
BACKDROP = (200, 230, 255)
_network: TrainedGarmentNet | None = None


def _start_worker(weights: Path | None) -> None:
    import torch

    global _network
    torch.set_num_threads(1)
    _network = TrainedGarmentNet.load(weights) if weights else None


def working_copy(path: Path) -> np.ndarray:
    with Image.open(path) as opened:
        return _downscale(opened.convert("RGB"), WORK_SIDE)


def studio_mask(path: Path) -> np.ndarray:
    """The fused cut-out's mask of a photo at working size (all 0 where it refuses the photo)."""
    small = working_copy(path)
    try:
        return cut_out_working_copy(small, network=_network)
    except SegmentationError:
        return np.zeros(small.shape[:2], np.uint8)


def save(folder: Path, out: Path, workers: int, weights: Path | None) -> None:
    files = sorted(path for path in folder.glob("*/*") if path.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"No photos in the class folders of {folder}.")
    with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(weights,)) as pool:
        masks = list(pool.map(studio_mask, files, chunksize=4))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, masks=np.array(masks, dtype=object), folder=str(folder),
                        files=np.array([path.relative_to(folder).as_posix() for path in files]))
    print(json.dumps({"photos": len(files), "written": str(out)}))


def _load(path: Path) -> tuple[dict[str, np.ndarray], str]:
    data = np.load(path, allow_pickle=True)
    if "masks" not in data.files:
        raise SystemExit(f"{path} is not a file of masks: write one with `cutout_changes.py save`.")
    return dict(zip(data["files"].tolist(), data["masks"])), str(data["folder"])


def _cut(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], photo, np.array(BACKDROP, np.uint8))


def _tint(image: np.ndarray, region: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = image.copy()
    out[region] = (0.5 * out[region] + 0.5 * np.array(colour)).astype(np.uint8)
    return out


def _tile(parts: list[np.ndarray], label: str, height: int = TILE_HEIGHT) -> Image.Image:
    gap = np.full((parts[0].shape[0], 4, 3), 90, np.uint8)
    row = np.concatenate([piece for part in parts for piece in (part, gap)][:-1], axis=1)
    image = Image.fromarray(row)
    image = image.resize((max(1, round(image.width * height / image.height)), height), Image.LANCZOS)
    ImageDraw.Draw(image).text((3, 3), label, fill=(255, 0, 0))
    return image


def _pieces(photo: np.ndarray, before: np.ndarray, after: np.ndarray, label: str) -> list[Image.Image]:
    changed = (before != after).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(changed, np.ones((9, 9), np.uint8)))
    tiles = []
    for index in range(1, count):
        if np.count_nonzero(changed[labels == index]) < MIN_PIECE:
            continue
        x, y, width, height = stats[index, :4]
        reach = max(width, height) // 2 + 20
        window = (slice(max(0, y + height // 2 - reach), y + height // 2 + reach),
                  slice(max(0, x + width // 2 - reach), x + width // 2 + reach))
        parts = [photo, _tint(_cut(photo, before), before & ~after, (255, 0, 0)),
                 _tint(_cut(photo, after), after & ~before, (0, 255, 0)), _cut(photo, after)]
        tiles.append(_tile([part[window] for part in parts], label))
    return tiles


def _pages(tiles: list[Image.Image], folder: Path, name: str, columns: int) -> list[str]:
    written = []
    for start in range(0, len(tiles), PER_PAGE):
        chunk = tiles[start:start + PER_PAGE]
        width = max(tile.width for tile in chunk) + 6
        rows = -(-len(chunk) // columns)
        page = Image.new("RGB", (columns * width, rows * (chunk[0].height + 6)), "white")
        for index, tile in enumerate(chunk):
            page.paste(tile, ((index % columns) * width, (index // columns) * (tile.height + 6)))
        path = folder / f"{name}_{start // PER_PAGE}.png"
        page.save(path)
        written.append(str(path))
    return written


def compare(before_path: Path, after_path: Path, out: Path, judged: Path) -> None:
    before, folder = _load(before_path)
    after, _ = _load(after_path)
    verdicts = {}
    if judged.exists():
        with judged.open(newline="") as table:
            verdicts = {row["file"]: row["verdict"] for row in csv.DictReader(table, delimiter="\t")}
    out.mkdir(parents=True, exist_ok=True)
    changed, pieces, wholes = [], [], []
    for file in sorted(before.keys() & after.keys()):
        old, new = before[file] > 0, after[file] > 0
        if np.array_equal(old, new):
            continue
        verdict = verdicts.get(file, "unjudged")
        changed.append({"file": file, "verdict": verdict, "added": int(np.count_nonzero(new & ~old)),
                        "removed": int(np.count_nonzero(old & ~new))})
        photo = working_copy(Path(folder) / file)
        label = f"{file} ({verdict})"
        pieces += _pieces(photo, old, new, label)
        wholes.append(_tile([photo, _cut(photo, old), _cut(photo, new)], label, height=420))
    sheets = _pages(pieces, out, "pieces", 2) + _pages(wholes, out, "whole", 1) if changed else []
    print(json.dumps({"compared": len(before.keys() & after.keys()), "changed": len(changed),
                      "photos": changed, "sheets": sheets}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    saving = commands.add_parser("save", help="store the studio's masks of a folder of class folders")
    saving.add_argument("folder", type=Path)
    saving.add_argument("out", type=Path, help="the .npz to write")
    saving.add_argument("--workers", type=int, default=2)
    saving.add_argument("--garment-net", type=Path, help="other weights for step 7 than the committed ones")
    comparing = commands.add_parser("compare", help="draw what changed between two saved files of masks")
    comparing.add_argument("before", type=Path)
    comparing.add_argument("after", type=Path)
    comparing.add_argument("out", type=Path, help="a folder for the pages")
    comparing.add_argument("--judged", type=Path, default=JUDGED, help="the table of verdicts by eye")
    args = parser.parse_args()
    if args.command == "save":
        save(args.folder, args.out, args.workers, args.garment_net)
    else:
        compare(args.before, args.after, args.out, args.judged)


if __name__ == "__main__":
    main()
