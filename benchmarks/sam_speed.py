"""Speed of the SAM backend (pipeline/sam.py) for SAM ViT-B/L/H and SAM 2.1 Hiera tiny/small, with random weights.

Usage, from the repository root:
    .venv/bin/python benchmarks/sam_speed.py --sizes base,large,huge --runs 2 --device auto
    .venv/bin/python benchmarks/sam_speed.py --sizes sam2.1-tiny,sam2.1-small,base --runs 3

Each model is built from its published configuration (no download) with random weights, on the chosen device in
its dtype (CUDA float16, else float32): a SamConfig with the vision sizes of facebook/sam-vit-base/large/huge, or a
Sam2Config with the Hiera sizes of facebook/sam2.1-hiera-tiny/small (values below, from facebookresearch/sam2's
configs/sam2.1/sam2.1_hiera_{t,s}.yaml; tiny is also transformers' Sam2HieraDetConfig default). SAM 2.1 runs through
the same SamSegmenter (its Sam2Model adapter and PIL preprocessing). Reported per size, as JSON:
- params_m: parameters in millions (and the image encoder's share),
- first_segment_s: the first automatic segment() of a 1600x1200 photo (encoder + classical prompt + decoder;
  includes warm-up, so it is what the first upload costs),
- encoder_s: the image encoder alone (median of --runs, after that warm-up); encoder_min_s their minimum and
  encoder_cpu_s the median CPU time the process spent per run (all threads together): on a shared CPU these show
  the model's own cost when other processes take cores away,
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
import os
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
# Hiera trunks of SAM 2.1 (sam2.1_hiera_t.yaml / sam2.1_hiera_s.yaml): embed_dim 96, num_heads 1, stages,
# global_att_blocks, window_pos_embed_bkg_spatial_size [7, 7]; window_spec and the neck at the Hiera defaults.
SAM2_HIERA_SIZES = {
    "sam2.1-tiny": {"blocks_per_stage": [1, 2, 7, 2], "global_attention_blocks": [5, 7, 9]},
    "sam2.1-small": {"blocks_per_stage": [1, 2, 11, 2], "global_attention_blocks": [7, 10, 13]},
}
SAM2_COMMON_HIERA = {
    "model_type": "sam2_hiera_det_model", "hidden_size": 96, "num_attention_heads": 1, "image_size": [1024, 1024],
    "embed_dim_per_stage": [96, 192, 384, 768], "num_attention_heads_per_stage": [1, 2, 4, 8],
    "window_size_per_stage": [8, 4, 14, 7], "window_positional_embedding_background_size": [7, 7],
    "patch_kernel_size": [7, 7], "patch_stride": [4, 4], "patch_padding": [3, 3], "query_stride": [2, 2],
    "num_query_pool_stages": 3, "mlp_ratio": 4.0,
}
SAM2_NECK = {"model_type": "sam2_vision_model", "backbone_channel_list": [768, 384, 192, 96],
             "backbone_feature_sizes": [[256, 256], [128, 128], [64, 64]], "fpn_hidden_size": 256,
             "fpn_top_down_levels": [2, 3], "num_feature_levels": 3}
SIZES = [*VISION_SIZES, *SAM2_HIERA_SIZES]
PHOTO_SIZE = (1200, 1600)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def sam2_config(size: str):
    """Sam2Config of SAM 2.1 Hiera tiny or small (prompt encoder and mask decoder at their 1024 px defaults)."""
    from transformers import Sam2Config

    backbone = {**SAM2_COMMON_HIERA, **SAM2_HIERA_SIZES[size]}
    return Sam2Config(vision_config={**SAM2_NECK, "backbone_config": backbone},
                      prompt_encoder_config={"hidden_size": 256, "image_size": 1024, "patch_size": 16,
                                             "mask_input_channels": 16},
                      mask_decoder_config={"hidden_size": 256, "mlp_dim": 2048, "num_hidden_layers": 2,
                                           "num_attention_heads": 8, "iou_head_hidden_dim": 256})


def build_random_sam(size: str, device: str, dtype: torch.dtype):
    """SamModel or Sam2Model of the given size with random weights, built without the slow default init."""
    from transformers import Sam2Model, SamConfig, SamModel

    if size in SAM2_HIERA_SIZES:
        model_class, config = Sam2Model, sam2_config(size)
    else:
        model_class, config = SamModel, SamConfig(vision_config={**COMMON_VISION, **VISION_SIZES[size]})
    with torch.device("meta"):
        model = model_class(config)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.02, generator=generator)
    return model.to(dtype=dtype).eval()


def pixel_values_for(segmenter: SamSegmenter, photo: Image.Image) -> torch.Tensor:
    if segmenter.family == "sam2":
        return segmenter.processor.pixel_values(photo)
    return segmenter.processor(images=photo, return_tensors="pt")["pixel_values"]


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


def encoder_times(action: Callable[[], object], device: str, runs: int) -> dict[str, float]:
    """Wall-clock median and minimum of `runs` runs, and the median CPU time of this process per run (on a shared
    CPU the minimum and the CPU time show what the model costs when other processes take cores away)."""
    walls, cpus = [], []
    for _ in range(max(1, runs)):
        cpu_started = time.process_time()
        walls.append(timed(action, device))
        cpus.append(time.process_time() - cpu_started)
    return {"encoder_s": statistics.median(walls), "encoder_min_s": min(walls),
            "encoder_cpu_s": statistics.median(cpus)}


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
    if size in SAM2_HIERA_SIZES:  # None: Sam2Preprocessor for the model's 1024 px input
        segmenter = SamSegmenter.from_loaded(model, None, f"random-{size}", device)
    else:
        segmenter = SamSegmenter.from_loaded(model, default_processor(), f"random-sam-vit-{size}", device)
    photo = garment_photo(*PHOTO_SIZE)
    first_segment_s = timed(lambda: segmenter.segment(photo, cache_key="photo"), device)

    pixel_values = pixel_values_for(segmenter, photo).to(device, dtype)
    with torch.inference_mode():
        outputs: list[torch.Tensor] = []
        encoder = encoder_times(lambda: outputs.append(model.get_image_embeddings(pixel_values)), device, runs)
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
        "family": segmenter.family,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "encoder_params_m": round(sum(p.numel() for p in model.vision_encoder.parameters()) / 1e6, 1),
        "build_s": round(build_s, 2),
        "first_segment_s": round(first_segment_s, 3),
        **{name: round(value, 3) for name, value in encoder.items()},
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
    parser.add_argument("--sizes", default="base,large,huge",
                        help=f"comma-separated: {', '.join(SIZES)}")
    parser.add_argument("--runs", type=int, default=2, help="timed encoder runs per size (after one warm-up)")
    parser.add_argument("--decoder-runs", type=int, default=5, help="timed decoder and click runs per size")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                        help="auto: float16 on CUDA, else float32")
    args = parser.parse_args(argv)

    sizes = [size.strip() for size in args.sizes.split(",") if size.strip()]
    unknown = [size for size in sizes if size not in SIZES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {SIZES}")
    device, dtype = choose_device(None if args.device == "auto" else args.device)
    if args.dtype != "auto":
        dtype = DTYPES[args.dtype]

    report = {
        "device": device,
        "device_name": device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "photo": f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}",
        "runs": args.runs,
        "decoder_runs": args.decoder_runs,
        "sizes": {},
    }
    for size in sizes:
        report["sizes"][size] = benchmark_size(size, device, dtype, args.runs, args.decoder_runs)
        print(f"{size}: {json.dumps(report['sizes'][size])}", file=sys.stderr, flush=True)
    if hasattr(os, "getloadavg"):
        report["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
