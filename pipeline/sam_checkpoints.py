"""SAM checkpoints besides transformers' own SAM folders: original segment-anything `.pth` files, and SAM 2 / 2.1.

- Original SAM (`sam_vit_b_01ec64.pth`, `sam_vit_l_0b3195.pth`, `sam_vit_h_4b8939.pth`, or another checkpoint in the
  same layout, e.g. a fine-tune or SlimSAM): the state dict is read with `torch.load(weights_only=True)` (no code in
  the file is run), its keys are renamed to transformers' `SamModel` names (the mapping of transformers' conversion
  script `models/sam/convert_sam_to_hf.py`, which is not shipped in the wheel) and the architecture is read from the
  tensors' shapes, not from the file name: embedding width, depth, heads (from the relative-position tables), which
  blocks attend globally, image and patch size. The ViT-B/L/H releases are recognised by width and depth and named in
  the log. Nothing is written to disk.
- SAM 2 / 2.1 (`facebook/sam2.1-hiera-tiny` and friends, saved as model_type `sam2_video`, or a `Sam2Model` folder)
  load through transformers' `Sam2Model`. Its image processor (`Sam2ImageProcessor`) needs torchvision, which is not
  installed everywhere this app runs, so `Sam2Preprocessor` does the same steps (resize to the model's square input,
  rescale, normalise) with PIL and numpy, reading the checkpoint's `preprocessor_config.json` and
  `processor_config.json` when they are there.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.errors import BackendUnavailableError
from pipeline.hub import display_source, first_line

logger = logging.getLogger(__name__)

SAM_MODEL_TYPES = ("sam",)
SAM2_MODEL_TYPES = ("sam2", "sam2_video")
ORIGINAL_SUFFIXES = (".pth", ".pt")

# (width, depth) of the published segment-anything image encoders.
ORIGINAL_VARIANTS = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
# The heads of the two-way transformer in the mask decoder: not visible in any shape; segment-anything's
# build_sam.py fixes them at 8 for every release.
ORIGINAL_DECODER_HEADS = 8

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIL_RESAMPLE = {0: Image.Resampling.NEAREST, 1: Image.Resampling.LANCZOS, 2: Image.Resampling.BILINEAR,
                3: Image.Resampling.BICUBIC, 4: Image.Resampling.BOX, 5: Image.Resampling.HAMMING}

# Substring renames from the original module names to transformers' SamModel names, applied in this order (the
# table of transformers' convert_sam_to_hf.py). The hypernetwork MLPs are renamed separately, below.
_RENAMES = (
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
)
_HYPERNETWORK_LAYER = re.compile(r"(.*output_hypernetworks_mlps\.\d+\.)layers\.(\d+)(\..*)")
_HYPERNETWORK_NAMES = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}
_BLOCK = re.compile(r"image_encoder\.blocks\.(\d+)\.attn\.qkv\.weight$")
_DECODER_LAYER = re.compile(r"mask_decoder\.transformer\.layers\.(\d+)\.self_attn\.q_proj\.weight$")
_POINT_EMBEDDING = re.compile(r"prompt_encoder\.point_embeddings\.(\d+)\.weight$")
_IOU_HEAD_LAYER = re.compile(r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.weight$")
# Keys every original SAM checkpoint has; the architecture is read from them.
_REQUIRED = (
    "image_encoder.patch_embed.proj.weight", "image_encoder.blocks.0.attn.rel_pos_h",
    "image_encoder.blocks.0.mlp.lin1.weight", "image_encoder.neck.0.weight",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix", "prompt_encoder.no_mask_embed.weight",
    "prompt_encoder.mask_downscaling.0.weight", "prompt_encoder.mask_downscaling.3.weight",
    "mask_decoder.iou_token.weight", "mask_decoder.mask_tokens.weight",
    "mask_decoder.transformer.layers.0.mlp.lin1.weight",
    "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight",
    "mask_decoder.iou_prediction_head.layers.0.weight",
)


# ---------------------------------------------------------------------------------------------- original SAM


def is_original_checkpoint_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in ORIGINAL_SUFFIXES


def find_original_checkpoint(folder: Path, model_id: str) -> Path | None:
    """The one original checkpoint file in `folder`, None when there is none."""
    found = sorted(p for p in folder.iterdir() if is_original_checkpoint_file(p))
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4])
        raise BackendUnavailableError(
            f"The folder '{display_source(model_id)}' holds several original SAM checkpoints ({names}); "
            "pass the one to use as a file."
        )
    return found[0] if found else None


def load_original_sam(path: Path, model_id: str):
    """(SamModel, SamProcessor) converted in memory from an original segment-anything checkpoint file."""
    state_dict = read_original_state_dict(path, model_id)
    config, variant = sam_config_from_original(state_dict, model_id)
    renamed = convert_original_keys(state_dict)
    model = _build_sam_model(config, renamed, model_id)
    processor = sam_processor_for(config, state_dict)
    vision = config.vision_config
    logger.info("Converted the original SAM checkpoint %s (%s: width %d, depth %d, global attention in blocks %s).",
                path.name, variant, vision.hidden_size, vision.num_hidden_layers, list(vision.global_attn_indexes))
    return model, processor


def read_original_state_dict(path: Path, model_id: str) -> dict[str, torch.Tensor]:
    name = display_source(model_id)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling refuses, truncated files, not a torch file at all
        logger.warning("The original SAM checkpoint %s cannot be read: %s", path.absolute(), error)
        raise BackendUnavailableError(
            f"The file '{name}' cannot be read as a PyTorch weights file ({first_line(error, model_id)}); "
            "pass an original segment-anything checkpoint such as sam_vit_b_01ec64.pth."
        ) from error
    state_dict = _unwrap(loaded)
    if state_dict is None:
        raise BackendUnavailableError(
            f"The file '{name}' holds no state dict of tensors; it is not an original SAM checkpoint."
        )
    if any(key.startswith("image_encoder.trunk.") for key in state_dict):
        raise BackendUnavailableError(
            f"The file '{name}' is an original SAM 2 checkpoint (a Hiera image encoder); SAM 2 loads through "
            "transformers here: pass a Hub id such as facebook/sam2.1-hiera-tiny or a folder written by "
            "Sam2Model.save_pretrained."
        )
    missing = [key for key in _REQUIRED if key not in state_dict]
    if missing:
        raise BackendUnavailableError(
            f"The file '{name}' is not an original Segment Anything checkpoint of a known architecture "
            f"(it has no {missing[0]!r}); pass sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth, "
            "or a checkpoint in their layout."
        )
    return state_dict


def _unwrap(loaded) -> dict[str, torch.Tensor] | None:
    """The state dict itself, or the one under 'model' / 'state_dict' (training checkpoints wrap it)."""
    if not isinstance(loaded, dict):
        return None
    if loaded and all(isinstance(value, torch.Tensor) for value in loaded.values()):
        return loaded
    for key in ("model", "state_dict"):
        inner = loaded.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(value, torch.Tensor) for value in inner.values()):
            return inner
    return None


def convert_original_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict under transformers' SamModel names (pixel_mean / pixel_std dropped: the processor normalises)."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        new_key = key
        for old, new in _RENAMES:
            if old in new_key:
                new_key = new_key.replace(old, new)
        match = _HYPERNETWORK_LAYER.match(new_key)
        if match and match.group(2) in _HYPERNETWORK_NAMES:
            new_key = f"{match.group(1)}{_HYPERNETWORK_NAMES[match.group(2)]}{match.group(3)}"
        renamed[new_key] = value
    shared = renamed.get("prompt_encoder.shared_embedding.positional_embedding")
    if shared is not None:
        renamed["shared_image_embedding.positional_embedding"] = shared
    return renamed


def sam_config_from_original(state_dict: dict[str, torch.Tensor], model_id: str = "the checkpoint"):
    """(SamConfig, variant name) read from the shapes of an original SAM state dict."""
    from transformers import SamConfig

    def shape(key: str) -> tuple[int, ...]:
        return tuple(state_dict[key].shape)

    try:
        hidden, channels, patch, _ = shape("image_encoder.patch_embed.proj.weight")
        depth = _count(state_dict, _BLOCK)
        if depth == 0 or any(f"image_encoder.blocks.{i}.attn.rel_pos_h" not in state_dict for i in range(depth)):
            raise ValueError("the image encoder's blocks are not numbered 0..n-1")
        if "image_encoder.pos_embed" in state_dict:
            grid = shape("image_encoder.pos_embed")[1]
        else:
            raise ValueError("no absolute position embedding")
        head_dim = shape("image_encoder.blocks.0.attn.rel_pos_h")[1]
        if head_dim == 0 or hidden % head_dim:
            raise ValueError(f"the head size {head_dim} does not divide the width {hidden}")
        global_length = 2 * grid - 1
        lengths = [shape(f"image_encoder.blocks.{i}.attn.rel_pos_h")[0] for i in range(depth)]
        global_blocks = [i for i, length in enumerate(lengths) if length == global_length]
        windows = {(length + 1) // 2 for length in lengths if length != global_length}
        if len(windows) > 1:
            raise ValueError(f"windowed blocks of several sizes {sorted(windows)}")
        decoder_hidden = shape("mask_decoder.iou_token.weight")[1]
        internal = shape("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0]
        vision_config = {
            "hidden_size": hidden,
            "num_channels": channels,
            "output_channels": shape("image_encoder.neck.0.weight")[0],
            "num_hidden_layers": depth,
            "num_attention_heads": hidden // head_dim,
            "image_size": grid * patch,
            "patch_size": patch,
            "mlp_dim": shape("image_encoder.blocks.0.mlp.lin1.weight")[0],
            "qkv_bias": "image_encoder.blocks.0.attn.qkv.bias" in state_dict,
            "window_size": windows.pop() if windows else 14,
            "global_attn_indexes": global_blocks,
            "num_pos_feats": shape("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")[1],
        }
        prompt_encoder_config = {
            "hidden_size": shape("prompt_encoder.no_mask_embed.weight")[1],
            "image_size": grid * patch,
            "patch_size": patch,
            "mask_input_channels": shape("prompt_encoder.mask_downscaling.3.weight")[0],
            "num_point_embeddings": _count(state_dict, _POINT_EMBEDDING),
        }
        mask_decoder_config = {
            "hidden_size": decoder_hidden,
            "mlp_dim": shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
            "num_hidden_layers": _count(state_dict, _DECODER_LAYER),
            "num_attention_heads": ORIGINAL_DECODER_HEADS,
            "attention_downsample_rate": decoder_hidden // internal,
            "num_multimask_outputs": shape("mask_decoder.mask_tokens.weight")[0] - 1,
            "iou_head_depth": _count(state_dict, _IOU_HEAD_LAYER),
            "iou_head_hidden_dim": shape("mask_decoder.iou_prediction_head.layers.0.weight")[0],
        }
    except (KeyError, ValueError, TypeError, ZeroDivisionError) as error:
        raise BackendUnavailableError(
            f"The file '{display_source(model_id)}' is not an original Segment Anything checkpoint of a known "
            f"architecture ({first_line(error, model_id)})."
        ) from error
    variant = ORIGINAL_VARIANTS.get((hidden, depth), f"a non-standard ViT (width {hidden}, depth {depth})")
    config = SamConfig(vision_config=vision_config, prompt_encoder_config=prompt_encoder_config,
                       mask_decoder_config=mask_decoder_config)
    return config, variant


def _count(state_dict: dict[str, torch.Tensor], pattern: re.Pattern) -> int:
    indexes = {int(match.group(1)) for key in state_dict if (match := pattern.match(key))}
    return max(indexes) + 1 if indexes else 0


def _build_sam_model(config, state_dict: dict[str, torch.Tensor], model_id: str):
    from transformers import SamModel

    with torch.device("meta"):
        model = SamModel(config)  # no memory and no random init: every tensor comes from the checkpoint
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        detail = (f"{len(missing)} missing, e.g. {missing[0]}" if missing
                  else f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise BackendUnavailableError(
            f"The file '{display_source(model_id)}' does not match the Segment Anything layout its shapes describe "
            f"(weights {detail})."
        )
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as error:  # shape mismatches
        raise BackendUnavailableError(
            f"The file '{display_source(model_id)}' does not match the Segment Anything layout its shapes describe "
            f"({first_line(error, model_id)})."
        ) from error
    still_meta = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if still_meta:
        raise BackendUnavailableError(
            f"The file '{display_source(model_id)}' left {still_meta[0]} without weights after conversion."
        )
    return model.eval()


def sam_processor_for(config, state_dict: dict[str, torch.Tensor] | None = None):
    """SamProcessor for a SamConfig's input size (1024 and 256x256 masks for the releases), with an original
    checkpoint's own pixel mean and std when given."""
    from transformers import SamProcessor
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    image_size = config.vision_config.image_size
    mask_side = 4 * (image_size // config.vision_config.patch_size)
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    if state_dict and "pixel_mean" in state_dict and "pixel_std" in state_dict:
        mean = [float(v) / 255.0 for v in state_dict["pixel_mean"].flatten()]
        std = [float(v) / 255.0 for v in state_dict["pixel_std"].flatten()]
    image_processor = SamImageProcessorPil(
        size={"longest_edge": image_size},
        pad_size={"height": image_size, "width": image_size},
        mask_size={"longest_edge": mask_side},
        mask_pad_size={"height": mask_side, "width": mask_side},
        image_mean=mean,
        image_std=std,
    )
    return SamProcessor(image_processor)


# ---------------------------------------------------------------------------------------------- SAM 2


@dataclass(frozen=True)
class Sam2Preprocessor:
    """The image and coordinate steps of transformers' Sam2Processor + Sam2ImageProcessor, without torchvision.

    The image is resized to the model's square input regardless of its aspect ratio (SAM 2 does not pad), rescaled
    and normalised; click and box coordinates are scaled per axis to `target_size`.
    """

    height: int = 1024
    width: int = 1024
    target_size: int = 1024
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    rescale_factor: float = 1 / 255
    resample: int = 2  # PIL bilinear, as Sam2ImageProcessor

    @classmethod
    def from_pretrained(cls, source: str, local_only: bool, model_config=None) -> Sam2Preprocessor:
        """From the checkpoint's preprocessor_config.json and processor_config.json; either may be missing (a
        folder written by Sam2Model.save_pretrained alone), and then the model's input size is used."""
        image_size = cls.for_config(model_config).height if model_config is not None else 1024
        image_config = _optional_json(source, "preprocessor_config.json", local_only)
        processor_config = _optional_json(source, "processor_config.json", local_only)
        size = image_config.get("size") or {}
        height = int(size.get("height", image_size))
        width = int(size.get("width", height))
        return cls(
            height=height,
            width=width,
            target_size=int(processor_config.get("target_size", height)),
            image_mean=tuple(float(v) for v in image_config.get("image_mean", IMAGENET_MEAN)),
            image_std=tuple(float(v) for v in image_config.get("image_std", IMAGENET_STD)),
            rescale_factor=float(image_config.get("rescale_factor", 1 / 255)),
            resample=int(image_config.get("resample", 2)),
        )

    @classmethod
    def for_config(cls, model_config) -> Sam2Preprocessor:
        """The default preprocessing for a Sam2Config's input size (what the Hub checkpoints ship, at 1024)."""
        size = model_config.prompt_encoder_config.image_size
        side = int(size[0] if isinstance(size, (list, tuple)) else size)
        return cls(height=side, width=side, target_size=side)

    def pixel_values(self, rgb: Image.Image) -> torch.Tensor:
        """(1, 3, height, width) float32 for Sam2Model."""
        resized = rgb.convert("RGB").resize((self.width, self.height), PIL_RESAMPLE.get(self.resample,
                                                                                       Image.Resampling.BILINEAR))
        pixels = np.asarray(resized, dtype=np.float32) * self.rescale_factor
        pixels = (pixels - np.asarray(self.image_mean, dtype=np.float32)) / np.asarray(self.image_std,
                                                                                       dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]

    def save_pretrained(self, folder: str | Path) -> None:
        """The two JSON files in the format transformers writes them (tests, and folders made for this app)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        image_config = {
            "image_processor_type": "Sam2ImageProcessor", "processor_class": "Sam2Processor",
            "do_resize": True, "do_rescale": True, "do_normalize": True, "do_convert_rgb": True,
            "size": {"height": self.height, "width": self.width}, "resample": self.resample,
            "rescale_factor": self.rescale_factor, "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "mask_size": {"height": self.height // 4, "width": self.width // 4},
        }
        processor_config = {"processor_class": "Sam2Processor", "point_pad_value": -10,
                            "target_size": self.target_size}
        (folder / "preprocessor_config.json").write_text(json.dumps(image_config, indent=2), encoding="utf-8")
        (folder / "processor_config.json").write_text(json.dumps(processor_config, indent=2), encoding="utf-8")


def _optional_json(source: str, filename: str, local_only: bool) -> dict:
    from transformers.utils import cached_file

    path = cached_file(source, filename, local_files_only=local_only, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False)
    if not path:
        return {}
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("Ignoring the unreadable %s of %s.", filename, source)
        return {}
    return loaded if isinstance(loaded, dict) else {}
