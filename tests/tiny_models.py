"""Tiny random models built from configs and saved with `save_pretrained`, for tests that must not download.

Each builder writes a complete checkpoint folder (config, weights, processor) that the production loaders accept
exactly like a Hub id, and returns the folder. Weights are random but seeded, so outputs are repeatable.
Builders for other model families (diffusers pipelines) belong here too.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from pipeline.diffusion import DiffusionModels

TINY_SAM_IMAGE_SIZE = 64
TINY_SAM_PATCH_SIZE = 8
TINY_SAM_HIDDEN_SIZE = 32
TINY_SEED = 0


def tiny_sam_config(image_size: int = TINY_SAM_IMAGE_SIZE, patch_size: int = TINY_SAM_PATCH_SIZE,
                    hidden_size: int = TINY_SAM_HIDDEN_SIZE):
    """A SamConfig a few hundred kB big: 2-layer ViT encoder, one global-attention layer, tiny decoder."""
    from transformers import SamConfig

    grid = image_size // patch_size
    return SamConfig(
        vision_config={
            "hidden_size": hidden_size, "output_channels": hidden_size, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": image_size, "patch_size": patch_size,
            "window_size": max(1, grid // 2), "global_attn_indexes": [1], "mlp_dim": 2 * hidden_size,
            # The positional embedding shared with the prompt encoder has 2 * num_pos_feats channels.
            "num_pos_feats": hidden_size // 2,
        },
        prompt_encoder_config={
            "hidden_size": hidden_size, "image_size": image_size, "patch_size": patch_size, "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": hidden_size, "mlp_dim": 2 * hidden_size, "num_attention_heads": 2,
            "iou_head_hidden_dim": hidden_size,
        },
    )


def tiny_sam_processor(image_size: int = TINY_SAM_IMAGE_SIZE, patch_size: int = TINY_SAM_PATCH_SIZE):
    """A SamProcessor resizing to the tiny model's input; its mask sizes match the decoder's (4x the grid)."""
    from transformers import SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    mask_side = 4 * (image_size // patch_size)
    image_processor = SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": mask_side},
        mask_pad_size={"height": mask_side, "width": mask_side},
    )
    return SamProcessor(image_processor)


def build_tiny_sam(folder: Path, seed: int = TINY_SEED) -> Path:
    """Write a tiny random SAM checkpoint (SamModel + SamProcessor) into `folder` and return it."""
    from transformers import SamModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    SamModel(tiny_sam_config()).eval().save_pretrained(folder)
    tiny_sam_processor().save_pretrained(folder)
    return folder


def build_not_a_model(folder: Path) -> Path:
    """A folder that holds files but no checkpoint of any kind (for loader error tests)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    (folder / "notes.txt").write_text("not weights", encoding="utf-8")
    return folder


TINY_CLIP_IMAGE_SIZE = 32


def build_tiny_clip(folder: Path) -> Path:
    """A random 32-wide, 2-layer CLIPModel with its CLIPProcessor, saved to `folder`; returns the folder.

    The tokenizer is character level: a vocab of every printable character (alone and as a word end, "</w>")
    and no merges, so any lower-case English prompt tokenizes without the Hub's tokenizer files.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = Path(folder)
    tokenizer = char_tokenizer(folder)
    vocab = tokenizer.get_vocab()

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_CLIP_IMAGE_SIZE}, crop_size={"height": TINY_CLIP_IMAGE_SIZE, "width": TINY_CLIP_IMAGE_SIZE})
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=TINY_CLIP_IMAGE_SIZE, patch_size=8, projection_dim=32),
        projection_dim=32,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder



@pytest.fixture(scope="session")
def tiny_sam_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAM checkpoint folder shared by the session (import this fixture into a test module or conftest)."""
    return build_tiny_sam(tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIP checkpoint folder shared by the session."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


# ---------------------------------------------------------------------------------------------- diffusion

TINY_TEXT_WIDTH = 32


@dataclass(frozen=True)
class TinyDiffusion:
    """A tiny random diffusion stack on disk, and the DiffusionModels that point at its folders."""

    models: DiffusionModels
    folder: Path


def char_tokenizer(folder: Path):
    """A CLIPTokenizer over single characters (no merges) with CLIP's 77-token window."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def _tiny_text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=TINY_TEXT_WIDTH, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                          projection_dim=TINY_TEXT_WIDTH, bos_token_id=0, eos_token_id=1, pad_token_id=1)


def _tiny_unet(family: str):
    from diffusers import UNet2DConditionModel

    config = dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
                  down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), norm_num_groups=8,
                  cross_attention_dim=TINY_TEXT_WIDTH)
    if family == "sdxl":
        # SDXL: the two text encoders' hidden states are concatenated, and the pooled text plus six size
        # numbers (8-dim time embeddings each) enter through the "text_time" embedding.
        config.update(cross_attention_dim=2 * TINY_TEXT_WIDTH, use_linear_projection=True,
                      addition_embed_type="text_time", addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=6 * 8 + TINY_TEXT_WIDTH)
    return UNet2DConditionModel(**config)


def _tiny_vae():
    from diffusers import AutoencoderKL

    # Four blocks give the real latent scale (1/8), so a 256 px image is a 32 x 32 latent.
    return AutoencoderKL(block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=8, sample_size=64)


def _tiny_image_encoder():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=TINY_CLIP_IMAGE_SIZE, patch_size=8, projection_dim=32))


def tiny_ip_adapter_state_dict(unet, image_embed_dim: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random IP-Adapter (the original, non-"plus" kind) for `unet`, flat as in h94's .safetensors files.

    "image_proj.*" is a Linear from the image embedding to 4 tokens of cross_attention_dim plus a LayerNorm;
    "ip_adapter.{k}.to_k_ip/to_v_ip" are one key/value projection per cross-attention layer, numbered 1, 3, 5, ...
    in the order of unet.attn_processors (the numbering of the original checkpoints).
    """
    tokens, width = 4, unet.config.cross_attention_dim

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.2

    weights = {
        "image_proj.proj.weight": random(tokens * width, image_embed_dim),
        "image_proj.proj.bias": random(tokens * width),
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    key_id = 1
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        attention = unet.get_submodule(name.removesuffix(".processor"))
        out_features, in_features = attention.to_k.weight.shape
        weights[f"ip_adapter.{key_id}.to_k_ip.weight"] = random(out_features, in_features)
        weights[f"ip_adapter.{key_id}.to_v_ip.weight"] = random(out_features, in_features)
        key_id += 2
    return weights


def build_tiny_diffusion(folder: Path, family: str = "sd15", seed: int = TINY_SEED) -> TinyDiffusion:
    """Write a tiny random SD 1.5 or SDXL ControlNet + IP-Adapter stack under `folder`.

    folder/base (the pipeline, save_pretrained), folder/controlnet, folder/image_encoder and
    folder/ip_adapter/ip-adapter.safetensors; the returned models point at them.
    """
    from diffusers import (ControlNetModel, EulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline)
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from pipeline.diffusion import DiffusionModels

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = char_tokenizer(folder / "tokenizer-source")
    text_config = _tiny_text_config(len(tokenizer.get_vocab()))
    unet = _tiny_unet(family)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    # The base folder is a plain text-to-image pipeline, as on the Hub; the loader adds the ControlNet.
    parts = dict(unet=unet, vae=_tiny_vae(), scheduler=EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
        timestep_spacing="leading"), text_encoder=CLIPTextModel(text_config),
        tokenizer=tokenizer, image_encoder=None, feature_extractor=None)
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(
            **parts, text_encoder_2=CLIPTextModelWithProjection(text_config), tokenizer_2=tokenizer)
    elif family == "sd15":
        pipe = StableDiffusionPipeline(**parts, safety_checker=None, requires_safety_checker=False)
    else:
        raise ValueError(f"unknown family {family!r}")
    pipe.save_pretrained(folder / "base")
    controlnet.save_pretrained(folder / "controlnet")
    encoder = _tiny_image_encoder()
    encoder.save_pretrained(folder / "image_encoder")
    (folder / "ip_adapter").mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    save_file(tiny_ip_adapter_state_dict(unet, encoder.config.projection_dim, generator),
              str(folder / "ip_adapter" / "ip-adapter.safetensors"))
    models = DiffusionModels(
        family=family, base_model=str(folder / "base"), controlnet=str(folder / "controlnet"),
        ip_adapter=str(folder / "ip_adapter"), ip_adapter_subfolder="", ip_adapter_weight_name="ip-adapter.safetensors",
        image_encoder=str(folder / "image_encoder"))
    return TinyDiffusion(models=models, folder=folder)


@pytest.fixture(scope="session")
def tiny_diffusion(tmp_path_factory: pytest.TempPathFactory) -> TinyDiffusion:
    """A tiny SD 1.5 ControlNet + IP-Adapter stack shared by the session."""
    return build_tiny_diffusion(tmp_path_factory.mktemp("tiny-diffusion"), "sd15")
