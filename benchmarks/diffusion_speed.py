"""Speed of the studio's diffusion backends, full-size stacks with random weights: SDXL and SD 1.5
(pipeline/diffusion.py) and the multi-reference editing families FLUX.2 [klein] 4B and Qwen-Image-Edit-2511
(pipeline/edit_diffusion.py).

Usage, from the repository root:
    .venv/bin/python benchmarks/diffusion_speed.py --family sdxl,sd15 --steps 30,8,4 --batch 3 --device auto --compile
    .venv/bin/python benchmarks/diffusion_speed.py --family flux2-klein --steps 4 --batch 3
    .venv/bin/python benchmarks/diffusion_speed.py --family qwen-edit --steps 4,8,28 --batch 3
    .venv/bin/python benchmarks/diffusion_speed.py --family sd15 --steps 1 --batch 1 --size 256   # CPU smoke
    .venv/bin/python benchmarks/diffusion_speed.py --family flux2-klein,qwen-edit --steps 2 --batch 1 --size 256 --smoke

GPU targets: SDXL, a batch of 3 at 1024 x 1024 and 30 steps, under 5 s; FLUX.2 [klein] 4B, a batch of 3 at 1 MP
(1024 x 1024) and 4 steps, under 1.5 s; Qwen-Image-Edit-2511, 4 steps (Lightning LoRA), under 5 s.

Every family is built from its published configs, written out below with the file each comes from, with random
weights: timing does not depend on weight values, and nothing is downloaded.
- sdxl / sd15: UNet, OpenPose ControlNet (= the UNet's encoder copy), VAE, CLIP text encoder(s), the IP-Adapter's
  ViT-H image encoder and a random IP-Adapter.
- flux2-klein (Flux2KleinPipeline, black-forest-labs/FLUX.2-klein-4B, step-distilled): Flux2Transformer2DModel (5
  double + 20 single blocks, 3072 wide), AutoencoderKLFlux2, a Qwen3-4B text encoder (36 layers; the pipeline stacks
  hidden states 9, 18 and 27) and a FlowMatchEulerDiscreteScheduler.
- qwen-edit (QwenImageEditPlusPipeline, Qwen/Qwen-Image-Edit-2511): QwenImageTransformer2DModel (60 layers, 20B,
  zero_cond_t), AutoencoderKLQwenImage, a Qwen2.5-VL-7B text encoder with its 32-layer vision tower, a
  Qwen2VLProcessor and a FlowMatchEulerDiscreteScheduler.
The Qwen tokenizers cannot be downloaded: both edit families get the tests' offline byte-level BPE tokenizer
(tests/tiny_edit_models.py, about 440 tokens, the real special tokens) while their text encoders keep the published
vocabulary size, so every token id is in range. FLUX.2 pads every prompt to 512 tokens, so its text length is
exact. Qwen's system prompt and image tokens are exact too, but the studio's instruction is spelt partly byte by
byte: about 250 tokens instead of about 90, so the text encoder reads about 20 % more tokens than with the real
tokenizer, and the transformer about 1 % more (its 16,384 image tokens at 1 MP with three references dominate).

On CUDA the modules are built on the GPU directly in the backend's dtype (bf16, or fp16 without bf16): no fp32 or
CPU copy, so Qwen-Image-Edit's ~20B + ~8B parameters (about 58 GB) fit an 80 GB H100. Each family is built, timed
and freed before the next. --smoke shrinks the edit families (one or two transformer blocks, narrow text encoders
and VAEs; same classes, same code path, published vocabularies, patch sizes and latent channels) for a CPU check:
on two cores a FLUX.2 call takes 5 to 10 s, a Qwen call 20 to 40 s (the pipeline VAE-encodes every
reference at about 1 MP whatever the output size); its times mean nothing. SDXL and SD 1.5 are always full size.

Generation goes through the production backends, DiffusionBackend.generate and EditBackend.generate, on the
device's fast settings (CUDA: bf16 or fp16, SDPA attention; channels-last for the UNets; --compile adds
torch.compile of the UNet and ControlNet, or of the edit families' transformer). SDXL / SD 1.5 runs at 8 steps or
fewer use guidance 0 (no classifier-free guidance, as the few-step LoRAs SDXL-Lightning and Hyper-SD are used), so
the UNet batch is halved; longer runs use guidance 5. The edit requests are what the studio sends (the plan from
pipeline/on_model.py for the first model card, a top in navy): the person photo and the garment cut-out as
reference images, and for qwen-edit the OpenPose image as a third; FLUX.2 [klein] at guidance 1.0 (step-distilled,
no classifier-free guidance), Qwen at true_cfg_scale 4.0 above 8 steps and 1.0 at 8 or fewer (the Lightning LoRA,
fused, costs nothing at run time), so runs above 8 steps make two transformer passes a step.

One JSON line per (family, steps): seconds per image and per batch (median of --runs after a warm-up call with the
same shapes), peak memory (CUDA allocated, or the process's peak RSS on a CPU), the device, and the parameter count
of each model (billions) as a check against the published sizes.
Default sizes: SDXL, FLUX.2 [klein] and Qwen 1024 x 1024, SD 1.5 768 x 1024 (width x height); --size 256 or
--size 512x768 overrides all. The edit families' reference images: the person photo and the pose at the output's
size, the garment a square as wide as the output's longer side.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
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
from pipeline.families import parse_family  # noqa: E402
from pipeline.edit_diffusion import EDIT_FAMILIES, EditBackend  # noqa: E402
from pipeline.errors import InputError  # noqa: E402
from pipeline.model_cards import load_model_card  # noqa: E402
from pipeline.on_model import DEFAULT_GUIDANCE, FEW_STEP_GUIDANCE, OnModelOptions, plan_on_model  # noqa: E402
from pipeline.poses import POSE_ASPECT, render_pose  # noqa: E402
from pipeline.sam import choose_device  # noqa: E402
from tiny_edit_models import QWEN3_CHAT_TEMPLATE, tiny_qwen_tokenizer  # noqa: E402
from tiny_models import char_tokenizer, tiny_ip_adapter_state_dict  # noqa: E402

SIZES = {"sdxl": (1024, 1024), "sd15": (768, 1024), "flux2-klein": (1024, 1024), "qwen-edit": (1024, 1024)}
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

# ---------------------------------------------------------------------------------------------- FLUX.2 [klein] 4B

# black-forest-labs/FLUX.2-klein-4B transformer/config.json
FLUX2_KLEIN_TRANSFORMER = dict(
    patch_size=1, in_channels=128, out_channels=None, num_layers=5, num_single_layers=20, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=7680, timestep_guidance_channels=256, mlp_ratio=3.0,
    axes_dims_rope=(32, 32, 32, 32), rope_theta=2000, eps=1e-6, guidance_embeds=False)
# black-forest-labs/FLUX.2-klein-4B vae/config.json (the FLUX.2 VAE: 32 latent channels, patchified 2 x 2, so the
# transformer's 128 input channels). The file's "force_upcast": true is not an AutoencoderKLFlux2 argument.
FLUX2_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    act_fn="silu", latent_channels=32, norm_num_groups=32, sample_size=1024, use_quant_conv=True,
    use_post_quant_conv=True, mid_block_add_attention=True, batch_norm_eps=1e-4, batch_norm_momentum=0.1,
    patch_size=(2, 2))
# black-forest-labs/FLUX.2-klein-4B text_encoder/config.json: Qwen3-4B (Qwen3ForCausalLM). Its hidden size, depth and
# vocabulary (2560, 36, 151936) are confirmed for the klein repository; the other values are Qwen/Qwen3-4B
# config.json's (the klein file itself was not available to check; rope_theta and max_position_embeddings do not
# change the timing).
FLUX2_KLEIN_TEXT = dict(
    vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, hidden_act="silu", max_position_embeddings=40960, rms_norm_eps=1e-6,
    tie_word_embeddings=True, attention_bias=False,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
# black-forest-labs/FLUX.2-klein-4B scheduler/scheduler_config.json: FlowMatchEulerDiscreteScheduler, dynamic shifting,
# 1000 training timesteps, exponential shift (confirmed); shift and the base/max values are FLUX.2 [dev]'s
# (unconfirmed for klein, and unused: Flux2KleinPipeline computes its own mu from the image length and steps).
FLUX2_KLEIN_SCHEDULER = dict(
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096, time_shift_type="exponential")

# ---------------------------------------------------------------------------------------------- Qwen-Image-Edit-2511

# Qwen/Qwen-Image-Edit-2511 transformer/config.json: the Qwen-Image 20B transformer with zero_cond_t (the reference
# images' tokens are modulated at timestep 0).
QWEN_EDIT_TRANSFORMER = dict(
    patch_size=2, in_channels=64, out_channels=16, num_layers=60, attention_head_dim=128, num_attention_heads=24,
    joint_attention_dim=3584, guidance_embeds=False, axes_dims_rope=(16, 56, 56), zero_cond_t=True)
# Qwen/Qwen-Image-Edit-2511 vae/config.json (Qwen-Image's VAE; its 16 latents_mean / latents_std values are
# diffusers' defaults, so they are not repeated here)
QWEN_EDIT_VAE = dict(
    base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False, True, True], dropout=0.0)
# Qwen/Qwen-Image-Edit-2511 text_encoder/config.json: Qwen2.5-VL-7B-Instruct (Qwen2_5_VLForConditionalGeneration);
# the special token ids come from the tokenizer built here.
QWEN_EDIT_TEXT = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, hidden_act="silu", max_position_embeddings=128000, rms_norm_eps=1e-6,
    use_sliding_window=False, sliding_window=32768, max_window_layers=28,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]})
QWEN_EDIT_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3, out_hidden_size=3584,
    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu", tokens_per_second=2)
# Qwen/Qwen-Image-Edit-2511 processor/preprocessor_config.json (Qwen2.5-VL's image processor; the pipeline resizes each
# reference to about 384 x 384 for the vision tower itself)
QWEN_EDIT_IMAGE_PROCESSOR = dict(
    min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2,
    image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
# Qwen/Qwen-Image-Edit-2511 scheduler/scheduler_config.json (the Qwen-Image family's values; the 2511 file itself
# was not available to check). With shift_terminal, 1 step gives NaN latents (diffusers stretches a single sigma:
# 0 / 0), so time qwen-edit at 2 steps or more.
QWEN_EDIT_SCHEDULER = dict(
    num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
    base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential")

EDIT_CONFIGS = {
    "flux2-klein": dict(transformer=FLUX2_KLEIN_TRANSFORMER, vae=FLUX2_VAE, text=FLUX2_KLEIN_TEXT),
    "qwen-edit": dict(transformer=QWEN_EDIT_TRANSFORMER, vae=QWEN_EDIT_VAE, text=QWEN_EDIT_TEXT,
                      vision=QWEN_EDIT_VISION),
}
# --smoke: narrow and shallow versions for a CPU check. Patch sizes, latent channels, head dims (the RoPE axes add up
# to them), vocabularies and FLUX.2's 36 text layers (it reads hidden states 9, 18, 27) stay as published; the
# transformers' text width is the text encoders' (x3 for FLUX.2's stacked hidden states).
SMOKE = {
    "flux2-klein": dict(
        transformer=dict(num_layers=1, num_single_layers=1, num_attention_heads=2, joint_attention_dim=3 * 64),
        vae=dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1),
        text=dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1, head_dim=32)),
    "qwen-edit": dict(
        transformer=dict(num_layers=1, num_attention_heads=2, joint_attention_dim=256),
        vae=dict(base_dim=8, num_res_blocks=1),
        text=dict(hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, max_window_layers=1),
        vision=dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=2, out_hidden_size=256,
                    fullatt_block_indexes=[1])),
}
EDIT_CARD = "mod_01.json"  # the model card whose plan the edit requests use


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
    # Outside the device context: the scheduler's tables stay on the CPU, where it converts them with numpy.
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    # Building on the device initialises the weights there (seconds on a GPU instead of minutes on a CPU).
    with torch.device(device):
        unet = UNet2DConditionModel(**(SDXL_UNET if family == "sdxl" else SD15_UNET))
        controlnet = ControlNetModel.from_unet(unet)
        parts = dict(
            unet=unet, controlnet=controlnet, vae=AutoencoderKL(**VAE, **VAE_BY_FAMILY[family]),
            text_encoder=CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT, **text)), tokenizer=tokenizer,
            scheduler=scheduler,
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


def edit_configs(family: str, smoke: bool) -> dict[str, dict]:
    """The family's published component configs, with the --smoke overrides applied when `smoke`."""
    overrides = SMOKE[family] if smoke else {}
    return {part: {**config, **overrides.get(part, {})} for part, config in EDIT_CONFIGS[family].items()}


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Floating-point parameters are created in `dtype` (diffusers models take no dtype argument)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_edit_pipeline(family: str, device: str, dtype: torch.dtype, smoke: bool = False):
    """The editing family's pipeline from its published configs with random weights, built on `device` in `dtype`
    (no fp32 or CPU copy: Qwen-Image-Edit needs about 58 GB in bf16), every model in eval mode."""
    from diffusers import (AutoencoderKLFlux2, AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler,
                           Flux2KleinPipeline, Flux2Transformer2DModel, QwenImageEditPlusPipeline,
                           QwenImageTransformer2DModel)
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen3Config,
                              Qwen3ForCausalLM)

    torch.manual_seed(0)
    configs = edit_configs(family, smoke)
    if family == "flux2-klein":
        tokenizer = tiny_qwen_tokenizer(QWEN3_CHAT_TEMPLATE)
        text_config = Qwen3Config(**configs["text"], bos_token_id=None, eos_token_id=_token_id(tokenizer, "<|im_end|>"),
                                  pad_token_id=_token_id(tokenizer, "<|endoftext|>"))
        with torch.device(device):
            text_encoder = Qwen3ForCausalLM._from_config(text_config, dtype=dtype)
            with default_dtype(dtype):
                transformer = Flux2Transformer2DModel(**configs["transformer"])
                vae = AutoencoderKLFlux2(**configs["vae"])
        return Flux2KleinPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(**FLUX2_KLEIN_SCHEDULER), vae=vae.eval(),
            text_encoder=text_encoder.eval(), tokenizer=tokenizer, transformer=transformer.eval(),
            is_distilled=True)
    tokenizer = tiny_qwen_tokenizer()
    token_ids = {name: _token_id(tokenizer, token) for name, token in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
    text_config = Qwen2_5_VLConfig(
        text_config={**configs["text"], "bos_token_id": None, "eos_token_id": _token_id(tokenizer, "<|im_end|>"),
                     "pad_token_id": _token_id(tokenizer, "<|endoftext|>")},
        vision_config=configs["vision"], tie_word_embeddings=False, **token_ids)
    with torch.device(device):
        text_encoder = Qwen2_5_VLForConditionalGeneration._from_config(text_config, dtype=dtype)
        with default_dtype(dtype):
            transformer = QwenImageTransformer2DModel(**configs["transformer"])
            vae = AutoencoderKLQwenImage(**configs["vae"])
    return QwenImageEditPlusPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**QWEN_EDIT_SCHEDULER), vae=vae.eval(),
        text_encoder=text_encoder.eval(), tokenizer=tokenizer, processor=qwen_processor(tokenizer),
        transformer=transformer.eval())


def _token_id(tokenizer, token: str) -> int:
    return tokenizer.convert_tokens_to_ids(token)


def qwen_processor(tokenizer):
    """Qwen2VLProcessor with the published image-processor settings; the torchvision image processor where
    torchvision is installed (as transformers picks for the real one), the PIL one otherwise."""
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor
    from transformers.utils import is_torchvision_available

    if not is_torchvision_available():
        # transformers 5 requires the processor's video processor, which needs torchvision; the pipeline gives the
        # processor only text and images, so the image processor and the tokenizer are enough (as the studio's
        # loader arranges without torchvision). This changes the class for the whole process.
        Qwen2VLProcessor.get_attributes = classmethod(lambda cls: ["image_processor", "tokenizer"])
        return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessorPil(**QWEN_EDIT_IMAGE_PROCESSOR),
                                tokenizer=tokenizer)
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**QWEN_EDIT_IMAGE_PROCESSOR), tokenizer=tokenizer,
                            video_processor=Qwen2VLVideoProcessor())


def make_request(family: str, size: tuple[int, int], steps: int, batch: int) -> DiffusionRequest:
    if family in EDIT_FAMILIES:
        return make_edit_request(family, size, steps, batch)
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


def edit_guidance(family: str, steps: int) -> float:
    """The studio's guidance: FLUX.2 [klein] 1.0; Qwen true_cfg_scale 4.0, or 1.0 at 8 steps or fewer (Lightning)."""
    return FEW_STEP_GUIDANCE[family] if steps <= FEW_STEPS else DEFAULT_GUIDANCE[family]


def make_edit_request(family: str, size: tuple[int, int], steps: int, batch: int) -> DiffusionRequest:
    """What the studio sends an editing family: the plan's instruction and pose, the persona's photo (at the
    output's size, as the studio makes it) and the garment cut-out on white (a square)."""
    width, height = size
    guidance = edit_guidance(family, steps)
    card = load_model_card(ROOT / "model_cards" / EDIT_CARD)
    plan = plan_on_model(card, "top", "navy", OnModelOptions(seed=0, steps=steps, guidance_scale=guidance,
                                                             width=width, height=height), family)
    person = Image.new("RGB", (width, height), (205, 205, 210))
    draw = ImageDraw.Draw(person)
    draw.ellipse((width * 0.42, height * 0.08, width * 0.58, height * 0.22), fill=(225, 190, 160))
    draw.rectangle((width * 0.35, height * 0.23, width * 0.65, height * 0.6), fill=(245, 245, 245))
    draw.rectangle((width * 0.37, height * 0.6, width * 0.63, height * 0.95), fill=(170, 170, 175))
    side = max(width, height)
    garment = Image.new("RGB", (side, side), "white")
    ImageDraw.Draw(garment).rectangle((side * 0.2, side * 0.15, side * 0.8, side * 0.85), fill=(30, 40, 120))
    return DiffusionRequest(
        prompt=plan.prompt, negative_prompt=plan.negative_prompt, garment_image=garment,
        pose_image=render_pose(plan.keypoints, width, height, aspect=POSE_ASPECT), width=width, height=height,
        steps=steps, guidance_scale=guidance, ip_adapter_scale=plan.ip_adapter_scale,
        controlnet_scale=plan.controlnet_scale, seeds=list(range(batch)), person_image=person)


def timed(backend, request: DiffusionRequest, device: str) -> float:
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


def parameter_billions(pipe) -> dict[str, float]:
    """Parameters of each model in the pipeline, in billions (shared weights counted once)."""
    return {name: round(sum(p.numel() for p in module.parameters()) / 1e9, 3)
            for name, module in pipe.components.items() if isinstance(module, torch.nn.Module)}


def build_backend(family: str, args: argparse.Namespace, device: str, folder: Path):
    dtype = choose_dtype(device)
    if family in EDIT_FAMILIES:
        pipe = build_edit_pipeline(family, device, dtype, smoke=args.smoke)
        backend = EditBackend.from_pipeline(pipe, DEFAULT_MODELS[family], device)
        compiled = ("transformer",)
    else:
        pipe = build_pipeline(family, device, dtype, folder / family)
        backend = DiffusionBackend.from_pipeline(pipe, DEFAULT_MODELS[family], device=device)
        compiled = ("unet", "controlnet")
    if args.compile:
        for name in compiled:
            setattr(pipe, name, torch.compile(getattr(pipe, name), mode=args.compile_mode))
    return backend, pipe, dtype


def run_family(family: str, args: argparse.Namespace, device: str, folder: Path) -> None:
    started = time.perf_counter()
    backend, pipe, dtype = build_backend(family, args, device, folder)
    build_s = time.perf_counter() - started
    parameters = parameter_billions(pipe)
    size = args.size or SIZES[family]
    edit = family in EDIT_FAMILIES
    for steps in args.steps:
        request = make_request(family, size, steps, args.batch)
        references = backend.references(request) if edit else []
        warmup_s = timed(backend, request, device)  # compiles / autotunes for these shapes
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        batch_s = statistics.median(timed(backend, request, device) for _ in range(args.runs))
        print(json.dumps({
            "family": family, "device": device_name(device), "dtype": str(dtype).removeprefix("torch."),
            "width": size[0], "height": size[1], "batch": args.batch, "steps": steps,
            "guidance": request.guidance_scale, "cfg": _runs_cfg(family, request.guidance_scale),
            "compile": bool(args.compile),
            "seconds_per_image": round(batch_s / args.batch, 3), "batch_seconds": round(batch_s, 3),
            "warmup_seconds": round(warmup_s, 2), "build_seconds": round(build_s, 2), "runs": args.runs,
            "peak_memory_gb": peak_memory_gb(device),
            "peak_memory_kind": "cuda_allocated" if device.startswith("cuda") else "process_rss",
            **({"references": [f"{image.width}x{image.height}" for image in references]} if edit else {}),
            "parameters_billion": parameters, "smoke": bool(args.smoke and edit),
            "torch": torch.__version__,
        }), flush=True)
    del backend, pipe
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _runs_cfg(family: str, guidance: float) -> bool:
    """Whether the run makes two denoiser passes a step (classifier-free guidance). FLUX.2 [klein] is step-distilled
    (Flux2KleinPipeline with is_distilled=True never runs it); Qwen runs it above true_cfg_scale 1, as EditBackend
    always passes a negative prompt; the SD / SDXL pipelines above guidance 1."""
    return family != "flux2-klein" and guidance > 1


def parse_families(text: str) -> list[str]:
    try:
        return [parse_family(name) for name in text.split(",")]
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height or width)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="sdxl,sd15",
                        type=parse_families,
                        help="comma-separated: sdxl, sd15, flux2-klein, qwen-edit")
    parser.add_argument("--steps", default="30,8,4", type=lambda text: [int(s) for s in text.split(",")])
    parser.add_argument("--batch", default=3, type=int)
    parser.add_argument("--size", default=None, type=parse_size, help="WIDTHxHEIGHT or SIDE, for every family")
    parser.add_argument("--runs", default=2, type=int, help="timed runs after the warm-up (median reported)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet and ControlNet, or the edit families' transformer")
    parser.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    parser.add_argument("--smoke", action="store_true",
                        help="narrow, shallow flux2-klein / qwen-edit models for a CPU check (times mean nothing)")
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
