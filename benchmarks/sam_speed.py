"""Speed of the SAM backend (pipeline/sam.py) for the SAM ViT-B/L/H architectures, with random weights.

Usage, from the repository root:
    .venv/bin/python benchmarks/sam_speed.py --sizes base,large,huge --runs 2 --device auto

Each model is built from a SamConfig with the vision sizes of facebook/sam-vit-base/large/huge (no download) and
random weights, on the chosen device in its dtype (CUDA float16, else float32). Reported per size, as JSON:
- params_m: parameters in millions (and the image encoder's share),
- first_segment_s: the first automatic segment() of a 1600x1200 photo (encoder + classical prompt + decoder;
  includes warm-up, so it is what the first upload costs),
- encoder_s: the image encoder alone (median of --runs, after that warm-up),
- decoder_s: SAM's prompt encoder + mask decoder for one click on cached embeddings (median of --decoder-runs),
- click_s: a whole refine() answer with two clicks on a cached garment (decoder for two prompts, mask
  post-processing, upsampling to the photo), i.e. what the user waits for per click (median of --decoder-runs),
- peak_memory_gb: CUDA peak allocated memory (CUDA only).
On a 2-core CPU the huge encoder takes tens of seconds per run: keep --runs small (the defaults finish in a few
minutes there); on a GPU use more runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.sam import SamSegmenter, choose_device  # noqa: E402

VISION_SIZES = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "global_attn_indexes": [2, 5, 8, 11]},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
              "global_attn_indexes": [5, 11, 17, 23]},
    "huge": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16,
             "global_attn_indexes": [7, 15, 23, 31]},
}
COMMON_VISION = {"output_channels": 256, "image_size": 1024, "patch_size": 16, "window_size": 14}
PHOTO_SIZE = (1200, 1600)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def build_random_sam(size: str, device: str, dtype: torch.dtype):
    """SamModel of the given architecture size with random weights, built without the slow default init."""
    from transformers import SamConfig, SamModel

    config = SamConfig(vision_config={**COMMON_VISION, **VISION_SIZES[size]})
    with torch.device("meta"):
        model = SamModel(config)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    return model.to(dtype=dtype).eval()


def default_processor():
    from transformers import SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    return SamProcessor(SamImageProcessorPil())  # 1024 input, 256 masks: the real checkpoints' settings


def garment_photo(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    floor = 200 + rng.normal(0, 6, (height, width, 3))
    canvas = Image.new("L", (width, height), 0)
    outline = [(0.38, 0.18), (0.62, 0.18), (0.80, 0.26), (0.88, 0.42), (0.75, 0.46), (0.70, 0.40), (0.70, 0.82),
               (0.30, 0.82), (0.30, 0.40), (0.25, 0.46), (0.12, 0.42), (0.20, 0.26)]
    ImageDraw.Draw(canvas).polygon([(x * width, y * height) for x, y in outline], fill=255)
    mask = np.asarray(canvas)[..., None] > 0
    cloth = np.array([31, 42, 68]) + rng.normal(0, 4, (height, width, 3))
    return Image.fromarray(np.where(mask, cloth, floor).clip(0, 255).astype(np.uint8))


def timed(action: Callable[[], object], device: str) -> float:
    synchronize(device)
    started = time.perf_counter()
    action()
    synchronize(device)
    return time.perf_counter() - started


def median_time(action: Callable[[], object], device: str, runs: int) -> float:
    return statistics.median(timed(action, device) for _ in range(max(1, runs)))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def benchmark_size(size: str, device: str, dtype: torch.dtype, runs: int, decoder_runs: int) -> dict:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model = build_random_sam(size, device, dtype)
    build_s = time.perf_counter() - started
    segmenter = SamSegmenter.from_loaded(model, default_processor(), f"random-sam-vit-{size}", device)
    photo = garment_photo(*PHOTO_SIZE)
    first_segment_s = timed(lambda: segmenter.segment(photo, cache_key="photo"), device)

    pixel_values = segmenter.processor(images=photo, return_tensors="pt")["pixel_values"].to(device, dtype)
    with torch.inference_mode():
        outputs: list[torch.Tensor] = []
        encoder_s = median_time(lambda: outputs.append(model.get_image_embeddings(pixel_values)), device, runs)
        embeddings = outputs[-1]
        outputs.clear()
        point = torch.tensor([[[[512.0, 400.0]]]], device=device)
        label = torch.ones((1, 1, 1), dtype=torch.long, device=device)
        decode = lambda: model(image_embeddings=embeddings, input_points=point, input_labels=label)  # noqa: E731
        decode()
        decoder_s = median_time(decode, device, decoder_runs)
    clicks = [(600.0, 700.0, 1), (100.0, 100.0, 0)]
    click_s = median_time(lambda: segmenter.refine(photo, clicks, cache_key="photo"), device, decoder_runs)

    result = {
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "encoder_params_m": round(sum(p.numel() for p in model.vision_encoder.parameters()) / 1e6, 1),
        "build_s": round(build_s, 2),
        "first_segment_s": round(first_segment_s, 3),
        "encoder_s": round(encoder_s, 3),
        "decoder_s": round(decoder_s, 4),
        "click_s": round(click_s, 4),
        "encoder_runs_in_segmenter": segmenter.encoder_runs,
    }
    if device.startswith("cuda"):
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    del segmenter, model, embeddings
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="base,large,huge", help="comma-separated: base, large, huge")
    parser.add_argument("--runs", type=int, default=2, help="timed encoder runs per size (after one warm-up)")
    parser.add_argument("--decoder-runs", type=int, default=5, help="timed decoder and click runs per size")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                        help="auto: float16 on CUDA, else float32")
    args = parser.parse_args(argv)

    sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
    unknown = [size for size in sizes if size not in VISION_SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {list(VISION_SIZES)}")
    device, dtype = choose_device(None if args.device == "auto" else args.device)
    if args.dtype != "auto":
        dtype = DTYPES[args.dtype]

    report = {
        "device": device,
        "device_name": device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "photo": f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}",
        "runs": args.runs,
        "decoder_runs": args.decoder_runs,
        "sizes": {},
    }
    for size in sizes:
        report["sizes"][size] = benchmark_size(size, device, dtype, args.runs, args.decoder_runs)
        print(f"{size}: {json.dumps(report['sizes'][size])}", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
