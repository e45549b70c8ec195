"""Speed of the diffusion backend (pipeline/diffusion.py) for the full-size SDXL and SD 1.5 stacks, random weights.

Usage, from the repository root:
    .venv/bin/python benchmarks/diffusion_speed.py --family sdxl,sd15 --steps 30,8,4 --batch 3 --device auto --compile
    .venv/bin/python benchmarks/diffusion_speed.py --family sd15 --steps 1 --batch 1 --size 256   # CPU smoke

Each family is built from the published configs (UNet, OpenPose ControlNet = the UNet's encoder copy, VAE, CLIP text
encoder(s), the IP-Adapter's ViT-H image encoder, a random IP-Adapter) with random weights: timing does not depend on
weight values, and nothing is downloaded. Generation goes through DiffusionBackend.generate, the production path, on
the device's fast settings (CUDA: bf16 or fp16, SDPA attention, channels-last; --compile adds torch.compile of the
UNet and ControlNet). Runs at 8 steps or fewer use guidance 0 (no classifier-free guidance, as the few-step LoRAs
SDXL-Lightning and Hyper-SD are used), so the UNet batch is halved; longer runs use guidance 5.

One JSON line per (family, steps): seconds per image and per batch (median of --runs after a warm-up call with the
same shapes), and peak memory (CUDA allocated, or the process's peak RSS on a CPU).
Default sizes: SDXL 1024 x 1024, SD 1.5 768 x 1024 (width x height); --size 256 or --size 512x768 overrides both.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline.diffusion import (  # noqa: E402
    DEFAULT_MODELS, DiffusionBackend, DiffusionRequest, choose_dtype)
from pipeline.sam import choose_device  # noqa: E402
from tiny_models import char_tokenizer, tiny_ip_adapter_state_dict  # noqa: E402

SIZES = {"sdxl": (1024, 1024), "sd15": (768, 1024)}
FEW_STEPS = 8
CFG_GUIDANCE = 5.0

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the fields that differ from diffusers' defaults)
SDXL_UNET = dict(
    sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10), use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
# stable-diffusion-v1-5/stable-diffusion-v1-5 unet/config.json
SD15_UNET = dict(
    sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=8)
VAE = dict(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
VAE_BY_FAMILY = {"sdxl": dict(sample_size=1024, scaling_factor=0.13025, force_upcast=True),
                 "sd15": dict(sample_size=512, scaling_factor=0.18215)}
# CLIP ViT-L/14 text (SD 1.5, and SDXL's first encoder) and OpenCLIP ViT-bigG/14 text (SDXL's second encoder)
CLIP_L_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   projection_dim=768, hidden_act="quick_gelu")
CLIP_BIGG_TEXT = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                      projection_dim=1280, hidden_act="gelu")
# h94/IP-Adapter models/image_encoder (OpenCLIP ViT-H/14)
VIT_H_VISION = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                    patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu")


def build_pipeline(family: str, device: str, dtype: torch.dtype, tokenizer_folder: Path):
    """The family's ControlNet pipeline at full size with random weights and a random IP-Adapter, on `device`."""
    from diffusers import (AutoencoderKL, ControlNetModel, EulerDiscreteScheduler,
                           StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline,
                           UNet2DConditionModel)
    from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)

    torch.manual_seed(0)
    tokenizer = char_tokenizer(tokenizer_folder)
    text = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    # Building on the device initialises the weights there (seconds on a GPU instead of minutes on a CPU).
    with torch.device(device):
        unet = UNet2DConditionModel(**(SDXL_UNET if family == "sdxl" else SD15_UNET))
        controlnet = ControlNetModel.from_unet(unet)
        parts = dict(
            unet=unet, controlnet=controlnet, vae=AutoencoderKL(**VAE, **VAE_BY_FAMILY[family]),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT, **text)), tokenizer=tokenizer,
            scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                             steps_offset=1, timestep_spacing="leading"),
            image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H_VISION)), feature_extractor=None)
        if family == "sdxl":
            pipe = StableDiffusionXLControlNetPipeline(
                **parts, tokenizer_2=tokenizer,
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG_TEXT, **text)))
        else:
            pipe = StableDiffusionControlNetPipeline(**parts, safety_checker=None, requires_safety_checker=False)
    pipe.to(dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    flat = tiny_ip_adapter_state_dict(unet, VIT_H_VISION["projection_dim"], generator)
    nested = {group: {key.removeprefix(group + "."): value for key, value in flat.items() if key.startswith(group)}
              for group in ("image_proj", "ip_adapter")}
    pipe.load_ip_adapter(nested, subfolder="", weight_name="", image_encoder_folder=None)
    return pipe


def make_request(family: str, size: tuple[int, int], steps: int, batch: int) -> DiffusionRequest:
    width, height = size
    pose = Image.new("RGB", (width, height), "black")
    ImageDraw.Draw(pose).line((width // 2, height // 5, width // 2, height * 3 // 5), fill=(255, 0, 0), width=8)
    garment = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(garment).rectangle((120, 80, 392, 440), fill=(30, 40, 120))
    return DiffusionRequest(
        prompt="a woman wearing a navy t-shirt, studio photo, full body", negative_prompt="blurry, deformed",
        garment_image=garment, pose_image=pose, width=width, height=height, steps=steps,
        guidance_scale=0.0 if steps <= FEW_STEPS else CFG_GUIDANCE, ip_adapter_scale=0.7, controlnet_scale=1.0,
        seeds=list(range(batch)))


def timed(backend: DiffusionBackend, request: DiffusionRequest, device: str) -> float:
    _synchronise(device)
    started = time.perf_counter()
    backend.generate(request)
    _synchronise(device)
    return time.perf_counter() - started


def _synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_gb(device: str) -> float:
    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # Linux: kB


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def run_family(family: str, args: argparse.Namespace, device: str, folder: Path) -> None:
    dtype = choose_dtype(device)
    started = time.perf_counter()
    pipe = build_pipeline(family, device, dtype, folder / family)
    backend = DiffusionBackend.from_pipeline(pipe, DEFAULT_MODELS[family], device=device)
    if args.compile:
        pipe.unet = torch.compile(pipe.unet, mode=args.compile_mode)
        pipe.controlnet = torch.compile(pipe.controlnet, mode=args.compile_mode)
    build_s = time.perf_counter() - started
    size = args.size or SIZES[family]
    for steps in args.steps:
        request = make_request(family, size, steps, args.batch)
        warmup_s = timed(backend, request, device)  # compiles / autotunes for these shapes
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        batch_s = statistics.median(timed(backend, request, device) for _ in range(args.runs))
        print(json.dumps({
            "family": family, "device": device_name(device), "dtype": str(dtype).removeprefix("torch."),
            "width": size[0], "height": size[1], "batch": args.batch, "steps": steps,
            "guidance": request.guidance_scale, "compile": bool(args.compile),
            "seconds_per_image": round(batch_s / args.batch, 3), "batch_seconds": round(batch_s, 3),
            "warmup_seconds": round(warmup_s, 2), "build_seconds": round(build_s, 2), "runs": args.runs,
            "peak_memory_gb": peak_memory_gb(device),
            "peak_memory_kind": "cuda_allocated" if device.startswith("cuda") else "process_rss",
            "torch": torch.__version__,
        }), flush=True)
    del backend, pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="sdxl,sd15", type=lambda text: [f.strip() for f in text.split(",")])
    parser.add_argument("--steps", default="30,8,4", type=lambda text: [int(s) for s in text.split(",")])
    parser.add_argument("--batch", default=3, type=int)
    parser.add_argument("--size", default=None, type=parse_size, help="WIDTHxHEIGHT or SIDE, for every family")
    parser.add_argument("--runs", default=2, type=int, help="timed runs after the warm-up (median reported)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet and ControlNet")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    args = parser.parse_args(argv)
    device, _ = choose_device(args.device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as folder:
        for family in args.family:
            run_family(family, args, device, Path(folder))


if __name__ == "__main__":
    main()
