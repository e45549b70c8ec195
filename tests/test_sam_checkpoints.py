"""Every SAM release through the app's loader, offline, with tiny random checkpoints written to disk:

- original segment-anything `.pth` files: a tiny transformers SamModel is written back under the original module
  names (the layout of segment-anything's `Sam`, spelled out below), saved with torch.save, loaded by the app's
  loader and must give the source model's outputs;
- SAM 2 / 2.1: a tiny Sam2Model (or Sam2VideoModel, which is how the Hub's facebook/sam2.1-* are saved) written
  with save_pretrained, loaded as a folder and as a Hub id from a local cache, segmenting and refining with clicks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pipeline import sam
from pipeline.errors import BackendUnavailableError
from pipeline.sam_checkpoints import Sam2Preprocessor, convert_original_keys, sam_config_from_original
from tiny_models import tiny_sam_config, tiny_sam_processor

IMAGENET_MEAN_255 = [123.675, 116.28, 103.53]
IMAGENET_STD_255 = [58.395, 57.12, 57.375]
TINY_SAM2_IMAGE_SIZE = 64


pytestmark = pytest.mark.usefixtures("offline_sam")


def garment_photo(width: int = 200, height: int = 260, seed: int = 1) -> tuple[Image.Image, np.ndarray]:
    """A navy T-shirt shape on a light, slightly noisy floor, and its true mask (bool)."""
    rng = np.random.default_rng(seed)
    floor = 215 + rng.normal(0, 4, (height, width, 3))
    truth = Image.new("L", (width, height), 0)
    outline = [(0.38, 0.15), (0.62, 0.15), (0.85, 0.28), (0.78, 0.42), (0.68, 0.36), (0.68, 0.85), (0.32, 0.85),
               (0.32, 0.36), (0.22, 0.42), (0.15, 0.28)]
    ImageDraw.Draw(truth).polygon([(x * width, y * height) for x, y in outline], fill=255)
    mask = np.asarray(truth) > 0
    cloth = np.array([30, 40, 90]) + rng.normal(0, 4, (height, width, 3))
    return Image.fromarray(np.where(mask[..., None], cloth, floor).clip(0, 255).astype(np.uint8)), mask


# -------------------------------------------------------------------------------------------- original SAM layout

# segment-anything's module names (modeling/image_encoder.py, prompt_encoder.py, mask_decoder.py, transformer.py)
# for a model with ENCODER_BLOCKS blocks and DECODER_LAYERS two-way layers: the names a real .pth file holds.
_ENCODER_BLOCK = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                  "attn.proj.bias", "attn.rel_pos_h", "attn.rel_pos_w", "norm2.weight", "norm2.bias",
                  "mlp.lin1.weight", "mlp.lin1.bias", "mlp.lin2.weight", "mlp.lin2.bias"]
_ATTENTION = ["q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias",
              "out_proj.weight", "out_proj.bias"]
_DECODER_LAYER = ([f"self_attn.{name}" for name in _ATTENTION] + ["norm1.weight", "norm1.bias"]
                  + [f"cross_attn_token_to_image.{name}" for name in _ATTENTION] + ["norm2.weight", "norm2.bias"]
                  + ["mlp.lin1.weight", "mlp.lin1.bias", "mlp.lin2.weight", "mlp.lin2.bias", "norm3.weight",
                     "norm3.bias", "norm4.weight", "norm4.bias"]
                  + [f"cross_attn_image_to_token.{name}" for name in _ATTENTION])


def original_layout(encoder_blocks: int, decoder_layers: int = 2, masks: int = 4) -> set[str]:
    names = {"pixel_mean", "pixel_std", "image_encoder.pos_embed", "image_encoder.patch_embed.proj.weight",
             "image_encoder.patch_embed.proj.bias", "image_encoder.neck.0.weight", "image_encoder.neck.1.weight",
             "image_encoder.neck.1.bias", "image_encoder.neck.2.weight", "image_encoder.neck.3.weight",
             "image_encoder.neck.3.bias", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
             "prompt_encoder.not_a_point_embed.weight", "prompt_encoder.no_mask_embed.weight",
             "mask_decoder.iou_token.weight", "mask_decoder.mask_tokens.weight",
             "mask_decoder.transformer.norm_final_attn.weight", "mask_decoder.transformer.norm_final_attn.bias"}
    names |= {f"image_encoder.blocks.{i}.{name}" for i in range(encoder_blocks) for name in _ENCODER_BLOCK}
    names |= {f"prompt_encoder.point_embeddings.{i}.weight" for i in range(4)}
    names |= {f"prompt_encoder.mask_downscaling.{i}.{kind}" for i in (0, 1, 3, 4, 6) for kind in ("weight", "bias")}
    names |= {f"mask_decoder.transformer.layers.{i}.{name}" for i in range(decoder_layers) for name in _DECODER_LAYER}
    names |= {f"mask_decoder.transformer.final_attn_token_to_image.{name}" for name in _ATTENTION}
    names |= {f"mask_decoder.output_upscaling.{i}.{kind}" for i in (0, 1, 3) for kind in ("weight", "bias")}
    names |= {f"mask_decoder.output_hypernetworks_mlps.{m}.layers.{i}.{kind}"
              for m in range(masks) for i in range(3) for kind in ("weight", "bias")}
    names |= {f"mask_decoder.iou_prediction_head.layers.{i}.{kind}" for i in range(3) for kind in ("weight", "bias")}
    return names


# transformers name -> original name, written independently of the app's converter (which goes the other way).
_BACK = [
    (r"^vision_encoder\.", "image_encoder."),
    (r"\.patch_embed\.projection\.", ".patch_embed.proj."),
    (r"^image_encoder\.layers\.", "image_encoder.blocks."),
    (r"\.neck\.conv1\.", ".neck.0."), (r"\.neck\.layer_norm1\.", ".neck.1."),
    (r"\.neck\.conv2\.", ".neck.2."), (r"\.neck\.layer_norm2\.", ".neck.3."),
    (r"\.layer_norm(\d)\.", r".norm\1."), (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"prompt_encoder\.shared_embedding\.positional_embedding",
     "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    (r"\.point_embed\.", ".point_embeddings."),
    (r"\.mask_embed\.conv1\.", ".mask_downscaling.0."), (r"\.mask_embed\.norm1\.", ".mask_downscaling.1."),
    (r"\.mask_embed\.conv2\.", ".mask_downscaling.3."), (r"\.mask_embed\.norm2\.", ".mask_downscaling.4."),
    (r"\.mask_embed\.conv3\.", ".mask_downscaling.6."),
    (r"\.upscale_conv1\.", ".output_upscaling.0."), (r"\.upscale_layer_norm\.", ".output_upscaling.1."),
    (r"\.upscale_conv2\.", ".output_upscaling.3."),
    (r"\.layers\.0\.(weight|bias)$", r".layers.1.\1"),  # the MLPs' middle layer (hypernetworks, IoU head)
    (r"\.proj_in\.", ".layers.0."), (r"\.proj_out\.", ".layers.2."),
]


def to_original(model) -> dict[str, torch.Tensor]:
    """A transformers SamModel's weights under segment-anything's names, as a real .pth file holds them."""
    original = {}
    for key, value in model.state_dict().items():
        if key == "shared_image_embedding.positional_embedding":
            continue  # the same tensor as the prompt encoder's; the original has it once
        for pattern, replacement in _BACK:
            key = re.sub(pattern, replacement, key)
        original[key] = value.clone()
    original["pixel_mean"] = torch.tensor(IMAGENET_MEAN_255).view(-1, 1, 1)
    original["pixel_std"] = torch.tensor(IMAGENET_STD_255).view(-1, 1, 1)
    return original


def original_tiny_config():
    """The tests' tiny SamConfig with the decoder's 8 heads, the one value every original release uses."""
    config = tiny_sam_config()
    config.mask_decoder_config.num_attention_heads = 8
    return config


@pytest.fixture(scope="module")
def tiny_original(tmp_path_factory: pytest.TempPathFactory):
    """(source SamModel, path of the same weights as an original-format .pth file)."""
    from transformers import SamModel

    torch.manual_seed(3)
    model = SamModel(original_tiny_config()).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # non-trivial values everywhere (layer norms included)
            parameter.add_(0.1 * torch.randn_like(parameter))
    path = tmp_path_factory.mktemp("original") / "sam_vit_tiny_0000.pth"
    torch.save(to_original(model), path)
    return model, path


def test_the_tiny_pth_has_the_original_layout(tiny_original) -> None:
    _, path = tiny_original
    state_dict = torch.load(path, weights_only=True)
    assert set(state_dict) == original_layout(encoder_blocks=2)


def test_original_pth_converts_to_the_same_model(tiny_original) -> None:
    source, path = tiny_original
    segmenter = sam.load_sam_segmenter(str(path), device="cpu")
    assert segmenter.family == "sam" and segmenter.model.config.model_type == "sam"
    converted = segmenter.model
    assert converted.config.vision_config.global_attn_indexes == [1]
    assert converted.config.vision_config.num_attention_heads == 2
    for key, value in source.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key

    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 64, 64)
    prompts = {"input_points": torch.tensor([[[[20.0, 30.0], [50.0, 12.0]]]]),
               "input_labels": torch.tensor([[[1, 0]]]), "input_boxes": torch.tensor([[[8.0, 6.0, 56.0, 60.0]]])}
    with torch.inference_mode():
        expected = source(pixel_values=pixels, **prompts)
        got = converted(pixel_values=pixels, **prompts)
    assert torch.equal(got.pred_masks, expected.pred_masks)
    assert torch.equal(got.iou_scores, expected.iou_scores)


def test_original_pth_segments_like_the_source_model(tiny_original) -> None:
    source, path = tiny_original
    image, _ = garment_photo(120, 160)
    reference = sam.SamSegmenter.from_loaded(source, tiny_sam_processor(), "source", device="cpu")
    converted = sam.load_sam_segmenter(str(path), device="cpu")
    assert np.array_equal(converted.segment(image, cache_key="g").mask, reference.segment(image, cache_key="g").mask)
    clicks = [(60.0, 90.0, 1), (8.0, 8.0, 0)]
    assert np.array_equal(converted.refine(image, clicks, cache_key="g").mask,
                          reference.refine(image, clicks, cache_key="g").mask)


def test_a_folder_holding_one_pth_loads_it(tiny_original, tmp_path: Path) -> None:
    _, path = tiny_original
    folder = tmp_path / "sam-original"
    folder.mkdir()
    (folder / path.name).write_bytes(path.read_bytes())
    (folder / "README.md").write_text("weights from dl.fbaipublicfiles.com\n")
    assert sam.load_sam_segmenter(str(folder), device="cpu").family == "sam"

    (folder / "sam_vit_other.pth").write_bytes(path.read_bytes())
    sam.forget_sam_segmenters()
    with pytest.raises(BackendUnavailableError, match="several original SAM checkpoints"):
        sam.load_sam_segmenter(str(folder), device="cpu")


@pytest.mark.parametrize(("size", "width", "depth", "heads", "global_blocks"), [
    ("vit_b", 768, 12, 12, [2, 5, 8, 11]),
    ("vit_l", 1024, 24, 16, [5, 11, 17, 23]),
    ("vit_h", 1280, 32, 16, [7, 15, 23, 31]),
])
def test_the_released_architectures_are_read_from_shapes(size, width, depth, heads, global_blocks) -> None:
    from transformers import SamConfig, SamModel

    published = SamConfig(vision_config={"hidden_size": width, "num_hidden_layers": depth,
                                         "num_attention_heads": heads, "global_attn_indexes": global_blocks})
    with torch.device("meta"):  # shapes only: no memory, no time
        model = SamModel(published)
    state_dict = to_original(model)
    assert set(state_dict) == original_layout(encoder_blocks=depth)
    config, variant = sam_config_from_original(state_dict)
    assert variant == size
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (width, depth, heads)
    assert list(vision.global_attn_indexes) == global_blocks
    assert (vision.window_size, vision.image_size, vision.patch_size, vision.mlp_dim) == (14, 1024, 16, 4 * width)
    assert config.mask_decoder_config.to_dict() == published.mask_decoder_config.to_dict()
    assert config.prompt_encoder_config.to_dict() == published.prompt_encoder_config.to_dict()
    assert set(convert_original_keys(state_dict)) == set(model.state_dict())


def test_unknown_architectures_are_clear_errors(tiny_original, tmp_path: Path) -> None:
    _, path = tiny_original

    def load(name: str, content) -> str:
        file = tmp_path / name
        torch.save(content, file)
        sam.forget_sam_segmenters()
        with pytest.raises(BackendUnavailableError) as caught:
            sam.load_sam_segmenter(str(file), device="cpu")
        message = str(caught.value)
        assert "\n" not in message and str(tmp_path) not in message
        return message

    resnet = {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}
    assert "not an original Segment Anything checkpoint of a known architecture" in load("resnet.pth", resnet)

    sam2_original = {"model": {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(96, 3, 7, 7),
                               "image_encoder.trunk.blocks.0.attn.qkv.weight": torch.zeros(288, 96)}}
    assert "original SAM 2 checkpoint" in load("sam2.1_hiera_tiny.pt", sam2_original)

    damaged = torch.load(path, weights_only=True)
    del damaged["mask_decoder.transformer.layers.1.norm4.bias"]
    assert "does not match the Segment Anything layout" in load("sam_vit_damaged.pth", damaged)

    mixed = torch.load(path, weights_only=True)
    mixed["image_encoder.blocks.1.attn.rel_pos_h"] = torch.zeros(9, 16)  # a third attention span
    assert "windowed blocks of several sizes" in load("sam_vit_mixed.pth", mixed)

    assert "holds no state dict of tensors" in load("list.pth", [1, 2, 3])

    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("not a checkpoint")
    with pytest.raises(BackendUnavailableError, match="cannot be read as a PyTorch weights file"):
        sam.load_sam_segmenter(str(not_torch), device="cpu")


def test_a_file_that_is_not_a_pth_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "model.onnx"
    file.write_bytes(b"\0" * 16)
    with pytest.raises(BackendUnavailableError, match="is not a SAM checkpoint"):
        sam.load_sam_segmenter(str(file), device="cpu")


# -------------------------------------------------------------------------------------------- SAM 2 / 2.1


def tiny_sam2_config(video: bool = False):
    """A SAM 2 of ~90k parameters: Hiera of four one- or two-block stages (the third block attends globally) on a
    64 px input, feature maps 16/8/4 px, a 16-wide FPN and decoder."""
    from transformers import Sam2Config, Sam2VideoConfig

    side = TINY_SAM2_IMAGE_SIZE
    hidden = 16
    return (Sam2VideoConfig if video else Sam2Config)(
        vision_config={
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model", "hidden_size": 8, "num_attention_heads": 1,
                "image_size": [side, side], "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [8, 16, 32, 64],
                "num_attention_heads_per_stage": [1, 1, 2, 2], "window_size_per_stage": [4, 2, 2, 2],
                "global_attention_blocks": [3], "window_positional_embedding_background_size": [2, 2],
            },
            "backbone_channel_list": [64, 32, 16, 8],
            "backbone_feature_sizes": [[side // 4] * 2, [side // 8] * 2, [side // 16] * 2],
            "fpn_hidden_size": hidden,
        },
        prompt_encoder_config={"hidden_size": hidden, "image_size": side, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": hidden, "mlp_dim": 32, "num_attention_heads": 2,
                             "iou_head_hidden_dim": hidden},
    )


def build_tiny_sam2(folder: Path, video: bool = False, seed: int = 0) -> Path:
    """A tiny random SAM 2 checkpoint folder like the Hub's (model_type sam2_video when `video`) with its
    preprocessor_config.json and processor_config.json."""
    from transformers import Sam2Model, Sam2VideoModel

    torch.manual_seed(seed)
    model = (Sam2VideoModel if video else Sam2Model)(tiny_sam2_config(video)).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # the default init leaves position embeddings at zero
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    side = TINY_SAM2_IMAGE_SIZE
    Sam2Preprocessor(height=side, width=side, target_size=side).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_sam2_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sam2(tmp_path_factory.mktemp("sam2.1-hiera-tiny-random"), video=True)


@pytest.fixture
def sam2_segmenter(tiny_sam2_video: Path) -> sam.SamSegmenter:
    return sam.load_sam_segmenter(str(tiny_sam2_video), device="cpu")


def test_sam2_folder_loads_as_sam2(sam2_segmenter: sam.SamSegmenter, tiny_sam2_video: Path) -> None:
    from transformers import Sam2Model

    assert json.loads((tiny_sam2_video / "config.json").read_text())["model_type"] == "sam2_video"
    assert isinstance(sam2_segmenter.model, Sam2Model) and sam2_segmenter.family == "sam2"
    assert sam2_segmenter.name == "sam"
    side = TINY_SAM2_IMAGE_SIZE
    assert sam2_segmenter.processor == Sam2Preprocessor(height=side, width=side, target_size=side)


def test_sam2_weights_are_the_checkpoints(tiny_sam2_video: Path, sam2_segmenter: sam.SamSegmenter) -> None:
    from safetensors.torch import load_file

    saved = load_file(tiny_sam2_video / "model.safetensors")
    for key, value in sam2_segmenter.model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_sam2_segment_and_refine_obey_clicks(sam2_segmenter: sam.SamSegmenter) -> None:
    image, truth = garment_photo()
    runs = sam2_segmenter.encoder_runs
    automatic = sam2_segmenter.segment(image, cache_key="tee").mask
    assert automatic.shape == (image.height, image.width) and automatic.dtype == np.uint8
    assert set(np.unique(automatic)) <= {0, 255}
    assert sam2_segmenter.encoder_runs == runs + 1, "SAM 2's encoder must run: no silent classical fallback"

    ys, xs = np.nonzero(automatic == 0)
    outside = next((x, y) for x, y in zip(xs, ys) if 15 < x < 185 and 15 < y < 245)
    ys, xs = np.nonzero(automatic == 255)
    inside = next((x, y) for x, y in zip(xs, ys) if 15 < x < 185 and 15 < y < 245)
    added = sam2_segmenter.refine(image, [(*outside, 1)], cache_key="tee").mask
    assert added[outside[1], outside[0]] == 255
    removed = sam2_segmenter.refine(image, [(*inside, 0)], cache_key="tee").mask
    assert removed[inside[1], inside[0]] == 0
    both = sam2_segmenter.refine(image, [(*outside, 1), (*inside, 0)], cache_key="tee").mask
    assert both[outside[1], outside[0]] == 255 and both[inside[1], inside[0]] == 0
    assert sam2_segmenter.encoder_runs == runs + 1, "clicks reuse the cached SAM 2 embeddings"
    assert np.array_equal(sam2_segmenter.refine(image, [], cache_key="tee").mask, automatic)


def test_sam2_masks_follow_the_image_geometry(sam2_segmenter: sam.SamSegmenter) -> None:
    """SAM 2 stretches the image to its square input: a click at the far corner of a wide image lands in the
    model's far corner, and the decoder's masks come back over the whole image."""
    image = Image.new("RGB", (300, 100), (200, 200, 200))
    encoded = sam2_segmenter._encode(image, None)
    assert encoded.input_size == (TINY_SAM2_IMAGE_SIZE, TINY_SAM2_IMAGE_SIZE)
    assert [tuple(e.shape[-2:]) for e in encoded.embeddings] == [(16, 16), (8, 8), (4, 4)]
    seen = {}
    hook = sam2_segmenter.model.prompt_encoder.register_forward_hook(
        lambda module, args, kwargs, output: seen.update(kwargs), with_kwargs=True)
    try:
        candidates = sam2_segmenter._decode(encoded, [(285.0, 95.0, 1)], (30.0, 10.0, 150.0, 50.0))
    finally:
        hook.remove()
    side = TINY_SAM2_IMAGE_SIZE
    assert torch.allclose(seen["input_points"], torch.tensor([[[[285 / 300 * side, 95 / 100 * side]]]]))
    assert seen["input_labels"].tolist() == [[[1]]]
    assert torch.allclose(seen["input_boxes"], torch.tensor([[[0.1 * side, 0.1 * side, 0.5 * side, 0.5 * side]]]))
    assert len(candidates) == 3 and all(c.logits.shape == (100, 300) for c in candidates)


def test_plain_sam2_model_folder_loads_too(tmp_path: Path) -> None:
    folder = build_tiny_sam2(tmp_path / "sam2-image", video=False)
    (folder / "preprocessor_config.json").unlink()
    (folder / "processor_config.json").unlink()
    segmenter = sam.load_sam_segmenter(str(folder), device="cpu")
    assert segmenter.model.config.model_type == "sam2" and segmenter.family == "sam2"
    side = TINY_SAM2_IMAGE_SIZE
    assert segmenter.processor == Sam2Preprocessor(height=side, width=side, target_size=side)
    image, _ = garment_photo(120, 160)
    assert segmenter.refine(image, [(60.0, 80.0, 1)]).mask[80, 60] == 255


def test_sam2_hub_id_loads_from_the_local_cache(tiny_sam2_video: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hub id goes through load_local_first like facebook/sam2.1-hiera-tiny would, found in the cache offline."""
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--resell-studio-tests--tiny-sam2.1"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in tiny_sam2_video.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))

    segmenter = sam.load_sam_segmenter("resell-studio-tests/tiny-sam2.1", device="cpu")
    assert segmenter.family == "sam2" and segmenter.model_id == "resell-studio-tests/tiny-sam2.1"
    image, _ = garment_photo(120, 160)
    assert segmenter.refine(image, [(60.0, 80.0, 0)]).mask[80, 60] == 0


def test_sam2_preprocessing_is_sam2_image_processors(tmp_path: Path) -> None:
    """Resize to the square input (no padding), rescale, ImageNet mean/std, channels first."""
    image = Image.fromarray(np.arange(30 * 20 * 3, dtype=np.uint8).reshape(30, 20, 3))
    processor = Sam2Preprocessor(height=16, width=16, target_size=16)
    pixels = processor.pixel_values(image)
    assert pixels.shape == (1, 3, 16, 16) and pixels.dtype == torch.float32
    resized = np.asarray(image.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    expected = (resized - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(pixels[0].numpy().transpose(1, 2, 0), expected, atol=1e-5)

    processor.save_pretrained(tmp_path)
    assert Sam2Preprocessor.from_pretrained(str(tmp_path), local_only=True) == processor
