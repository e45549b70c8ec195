"""Tiny random models built from configs and saved with `save_pretrained`, for tests that must not download.

Each builder writes a complete checkpoint folder (config, weights, processor) that the production loaders accept
exactly like a Hub id, and returns the folder. Weights are random but seeded, so outputs are repeatable.
Builders for other model families (diffusers pipelines) belong here too.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch

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
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(folder)

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
