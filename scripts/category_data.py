"""Cut every photo of a class-folder dataset out (the studio's fused cut-out) and store the garment on white at
the category model's input size, for `scripts/train_category_model.py`.

    .venv/bin/python scripts/category_data.py ../shared/data/flatlay-train /tmp/category/train.npz [--workers 2]
    .venv/bin/python scripts/category_data.py ../shared/data/flatlay /tmp/category/val.npz

Writes one .npz: `images` (N, SIDE, SIDE, 3) uint8, the garment on white, square (SIDE: `--side`, by default
the studio's INPUT_SIDE); `masks` (N, SIDE, SIDE) uint8;
`labels` (N,) class indices into `classes`; `files` (N,) relative paths. Photos the cut-out refuses are skipped
and listed on stderr. Nothing is written inside the dataset folder.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.category_input import INPUT_SIDE, garment_square  # noqa: E402
from pipeline.cutout import WORK_SIDE, _downscale  # noqa: E402
from pipeline.errors import SegmentationError  # noqa: E402
from pipeline.fusion import cut_out_working_copy  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def photos(folder: Path) -> list[tuple[Path, str]]:
    return [(path, class_folder.name) for class_folder in sorted(p for p in folder.iterdir() if p.is_dir())
            for path in sorted(class_folder.iterdir()) if path.suffix.lower() in SUFFIXES]


def prepare(path: Path, side: int = INPUT_SIDE, garment_net: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    with Image.open(path) as opened:
        small = _downscale(opened.convert("RGB"), WORK_SIDE)
    try:
        mask = cut_out_working_copy(small, use_garment_net=garment_net)
    except SegmentationError:
        return None
    return garment_square(small, mask, side)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="a folder of class folders of photos")
    parser.add_argument("out", type=Path, help="the .npz to write")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--side", type=int, default=INPUT_SIDE, help="the garment square's side in pixels")
    parser.add_argument("--no-garment-net", dest="garment_net", action="store_false",
                        help="cut out without the garment network, as for the committed category model (trained "
                             "before that network existed)")
    args = parser.parse_args()
    listed = photos(args.dataset)
    classes = sorted({name for _, name in listed})
    with ProcessPoolExecutor(args.workers) as pool:
        prepared = list(pool.map(prepare, [path for path, _ in listed], [args.side] * len(listed),
                                 [args.garment_net] * len(listed), chunksize=8))
    kept = [(item, path, name) for item, (path, name) in zip(prepared, listed) if item is not None]
    for item, (path, _) in zip(prepared, listed):
        if item is None:
            print(f"no garment found, skipped: {path.relative_to(args.dataset)}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, images=np.stack([item[0] for item, _, _ in kept]), masks=np.stack([item[1] for item, _, _ in kept]),
        labels=np.array([classes.index(name) for _, _, name in kept]), classes=np.array(classes),
        files=np.array([str(path.relative_to(args.dataset)) for _, path, _ in kept]))
    print(f"{len(kept)} of {len(listed)} photos written to {args.out}")


if __name__ == "__main__":
    main()
