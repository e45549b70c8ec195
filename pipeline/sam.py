"""SAM segmentation backend: Segment Anything through `transformers` (`SamModel` + `SamProcessor`, or SAM 2 / 2.1
through `Sam2Model`).

- Loading: a Hub id (default `facebook/sam-vit-base`; SAM 2.1 e.g. `facebook/sam2.1-hiera-tiny`), a local folder
  written by `save_pretrained`, or an original segment-anything `.pth` file (or a folder holding one), converted in
  memory (`pipeline.sam_checkpoints`). The family is chosen by what the checkpoint is (config.json's model_type;
  a `.pth` file is original SAM), and a small per-family adapter does the preprocessing and mask geometry; the
  segmenter, its cache, prompts and ranking are the same for both. A Hub id is
  first looked up in the local Hugging Face cache only; the network is tried only when `HF_HUB_OFFLINE` is not set,
  after a quick reachability probe, so that nothing waits on an unreachable Hub. Every failure becomes one
  `BackendUnavailableError` sentence, and is remembered for the process.
- The image encoder is the expensive part: its embeddings are kept per `cache_key` (garment id) in a small LRU,
  so that every click of a refine session only runs the cheap prompt encoder and mask decoder.
- Without clicks, the prompt comes from the classical cut-out (its bounding box and points deep inside it); SAM's
  multimask outputs are ranked by predicted IoU and plausibility.
- With clicks, the chosen mask is then forced to obey them: SAM with a few clicks (or random test weights) can
  ignore one, and a user must always see the mask change where they clicked.

All mask work happens at a working resolution (long side at most WORK_SIDE); the result is upsampled to the image.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from pipeline.cutout import cut_out
from pipeline.errors import BackendUnavailableError, InputError, SegmentationError
from pipeline.hub import first_line as _first_line
from pipeline.hub import LoadedOnce, display_source, load_local_first
from pipeline.hub import looks_like_path as _looks_like_path
from pipeline.sam_checkpoints import (
    SAM2_MODEL_TYPES,
    SAM_MODEL_TYPES,
    Sam2Preprocessor,
    find_original_checkpoint,
    is_original_checkpoint_file,
    load_original_sam,
    sam_processor_for,
)
from pipeline.segmentation import Segmentation

logger = logging.getLogger(__name__)

DEFAULT_SAM_MODEL = "facebook/sam-vit-base"
SAM_MODEL_ENV = "STUDIO_SAM_MODEL"
DEVICES = ("cpu", "cuda", "mps")

EMBEDDING_CACHE_SIZE = 8
WORK_SIDE = 1024

FALLBACK_BOX_FRACTION = 0.8
BOX_MARGIN_FRACTION = 0.01
AUTO_POSITIVE_POINTS = 3
MIN_POINT_DEPTH_SHARE = 0.5
MIN_AREA_FRACTION = 0.02
MAX_AREA_FRACTION = 0.97
KEEP_COMPONENT_SHARE = 0.25
SMALL_HOLE_SHARE = 0.01
CLICK_DISK_FRACTION = 0.015
MIN_CLICK_DISK_PX = 3
MAIN_PART_SHARE = 0.5

AGREEMENT_WEIGHT = 1.0
REFINE_AGREEMENT_WEIGHT = 0.25
CLICK_WEIGHT = 2.0
IMPLAUSIBLE_PENALTY = 1.0

Point = tuple[float, float, int]  # (x, y, label) in original image pixels; 1 = garment, 0 = background

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def resolve_sam_model(explicit: str | None = None) -> str:
    """The SAM checkpoint to use: an explicit id or folder, else env STUDIO_SAM_MODEL, else the default."""
    for candidate in (explicit, os.environ.get(SAM_MODEL_ENV)):
        if candidate and candidate.strip():
            return candidate.strip()
    return DEFAULT_SAM_MODEL


def choose_device(preferred: str | None = None) -> tuple[str, torch.dtype]:
    """(device, dtype): CUDA in half precision, else Apple MPS, else CPU, both in float32.

    `preferred` ("cpu", "cuda", "mps"; None or "auto" = best available) must be present here.
    """
    name = (preferred or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda", torch.float16
        if _mps_available():
            return "mps", torch.float32
        return "cpu", torch.float32
    if name.split(":")[0] not in DEVICES:
        raise InputError(f"Unknown device {preferred!r}; choose one of auto, {', '.join(DEVICES)}.")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "The device 'cuda' was asked for, but this torch build sees no CUDA GPU; use --device cpu or auto."
            )
        return name, torch.float16
    if name == "mps" and not _mps_available():
        raise BackendUnavailableError(
            "The device 'mps' was asked for, but Apple MPS is not available here; use --device cpu or auto."
        )
    return name, torch.float32


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


# ---------------------------------------------------------------------------------------------- loading


def _model_type_of_folder(folder: Path) -> str | None:
    config_path = folder / "config.json"
    if not config_path.is_file():
        return None
    try:
        return json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _not_a_sam_folder(model_id: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"The folder '{display_source(model_id)}' is not a SAM checkpoint (its config.json does not say model_type "
        "'sam', 'sam2' or 'sam2_video', and it holds no original .pth checkpoint); pass a folder written by "
        "save_pretrained of SamModel or Sam2Model (with its processor), an original segment-anything .pth file, "
        "or a Hub id such as facebook/sam-vit-base or facebook/sam2.1-hiera-tiny."
    )


def _load_pretrained(source: str, local_only: bool):
    """(model, processor) of a transformers-format SAM or SAM 2 checkpoint (Hub id or folder), by its model_type."""
    from transformers import PretrainedConfig

    config_dict, _ = PretrainedConfig.get_config_dict(source, local_files_only=local_only)
    model_type = config_dict.get("model_type")
    if model_type in SAM2_MODEL_TYPES:
        return _load_sam2(source, local_only)
    if model_type not in SAM_MODEL_TYPES:
        raise BackendUnavailableError(
            f"The {'folder' if _looks_like_path(source) else 'Hub model'} '{display_source(source)}' is a "
            f"{model_type!r} model, not a SAM checkpoint; pass a SAM or SAM 2 checkpoint such as "
            "facebook/sam-vit-base or facebook/sam2.1-hiera-tiny."
        )
    from transformers import SamModel, SamProcessor

    model = SamModel.from_pretrained(source, local_files_only=local_only)
    # The processor warns about a missing fast image processor (torchvision is not installed): expected here.
    with _quiet_transformers():
        processor = SamProcessor.from_pretrained(source, local_files_only=local_only)
    return model, processor


def _load_sam2(source: str, local_only: bool):
    from transformers import Sam2Model

    # The Hub's SAM 2.1 checkpoints say model_type 'sam2_video' (the video model holds the image model's weights
    # and more); transformers warns about loading one into Sam2Model, which is what it is meant for.
    with _quiet_transformers():
        model = Sam2Model.from_pretrained(source, local_files_only=local_only)
    return model, Sam2Preprocessor.from_pretrained(source, local_only, model.config)


class _quiet_transformers:
    def __enter__(self) -> None:
        from transformers.utils import logging as hf_logging

        self._verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()

    def __exit__(self, *exc_info) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._verbosity)


def _load_from_path(model_id: str):
    """A transformers folder (SAM or SAM 2), an original SAM .pth file, or a folder holding one."""
    path = Path(model_id).expanduser()
    if path.is_file():
        if not is_original_checkpoint_file(path):
            raise BackendUnavailableError(
                f"The file '{display_source(model_id)}' is not a SAM checkpoint; pass an original segment-anything "
                ".pth file, or a folder or Hub id of a transformers SAM or SAM 2 checkpoint."
            )
        return load_original_sam(path, model_id)
    if not path.is_dir():
        logger.warning("The SAM model folder %s does not exist.", path.absolute())
        raise BackendUnavailableError(f"The SAM model folder '{display_source(model_id)}' does not exist.")
    model_type = _model_type_of_folder(path)
    if model_type is None and (original := find_original_checkpoint(path, model_id)) is not None:
        return load_original_sam(original, model_id)
    if model_type not in SAM_MODEL_TYPES + SAM2_MODEL_TYPES:
        logger.warning("The folder %s is not a SAM checkpoint.", path.absolute())
        raise _not_a_sam_folder(model_id)
    try:
        return _load_pretrained(str(path), local_only=True)
    except BackendUnavailableError:
        raise
    except Exception as error:  # noqa: BLE001 - a broken checkpoint can fail in many ways; the user needs one sentence
        logger.warning("The SAM checkpoint in %s cannot be loaded: %s", path.absolute(), error)
        raise BackendUnavailableError(
            f"The SAM checkpoint in the folder '{display_source(model_id)}' cannot be loaded "
            f"({_first_line(error, model_id)})."
        ) from error


def _load_from_hub(model_id: str):
    _check_cached_model_type(model_id)
    return load_local_first("SAM checkpoint", model_id, lambda local_only: _check_model_type(
        _load_pretrained(model_id, local_only=local_only), model_id), flag="--sam-model")


def _check_cached_model_type(model_id: str) -> None:
    from huggingface_hub import try_to_load_from_cache

    config_path = try_to_load_from_cache(model_id, "config.json")
    if isinstance(config_path, str):
        try:
            model_type = json.loads(Path(config_path).read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            return
        if model_type not in SAM_MODEL_TYPES + SAM2_MODEL_TYPES:
            raise BackendUnavailableError(
                f"The Hub model '{model_id}' is a {model_type!r} model, not a SAM checkpoint; "
                "pass a SAM or SAM 2 checkpoint such as facebook/sam-vit-base or facebook/sam2.1-hiera-tiny."
            )


def _check_model_type(loaded, model_id: str):
    model, _ = loaded
    if getattr(model.config, "model_type", None) not in SAM_MODEL_TYPES + SAM2_MODEL_TYPES:
        raise BackendUnavailableError(f"The Hub model '{model_id}' is not a SAM checkpoint.")
    return loaded


# ---------------------------------------------------------------------------------------------- model families


class _SamFamily:
    """SAM (v1, `SamModel` + `SamProcessor`): the image is resized on its long side and padded to a square; the
    masks come back for the padded square and are cropped before resizing."""

    name = "sam"

    def __init__(self, processor) -> None:
        self.processor = processor

    def encode(self, model, rgb: Image.Image, device: str, dtype: torch.dtype):
        """(embeddings, (height, width) of the image inside the model's input)."""
        inputs = self.processor(images=rgb, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(device=device, dtype=dtype)
        embeddings = model.get_image_embeddings(pixel_values)
        return embeddings, tuple(int(v) for v in inputs["reshaped_input_sizes"][0])

    def masks_at(self, pred_masks: torch.Tensor, work_size: tuple[int, int], input_size: tuple[int, int]):
        """(masks, H, W) logits at working size from the decoder's (masks, h, w) low-resolution logits."""
        return self.processor.post_process_masks(
            [pred_masks[None].float()], [work_size], [input_size], binarize=False
        )[0][0]


class _Sam2Family:
    """SAM 2 / 2.1 (`Sam2Model` + `Sam2Preprocessor`): the image is resized to the square input whatever its aspect
    ratio; the embeddings are a list of feature maps (the decoder uses the high-resolution ones too); the masks cover
    the whole image and are resized to it directly."""

    name = "sam2"

    def __init__(self, processor: Sam2Preprocessor) -> None:
        self.processor = processor

    def encode(self, model, rgb: Image.Image, device: str, dtype: torch.dtype):
        pixel_values = self.processor.pixel_values(rgb).to(device=device, dtype=dtype)
        embeddings = model.get_image_embeddings(pixel_values)
        return embeddings, (self.processor.target_size, self.processor.target_size)

    def masks_at(self, pred_masks: torch.Tensor, work_size: tuple[int, int], input_size: tuple[int, int]):
        return torch.nn.functional.interpolate(pred_masks[None].float(), work_size, mode="bilinear",
                                               align_corners=False)[0]


def _family_for(model, processor):
    model_type = getattr(model.config, "model_type", None)
    if model_type in SAM2_MODEL_TYPES:
        if not isinstance(processor, Sam2Preprocessor):
            processor = Sam2Preprocessor.for_config(model.config)
        return _Sam2Family(processor)
    if model_type in SAM_MODEL_TYPES:
        return _SamFamily(processor if processor is not None else sam_processor_for(model.config))
    raise BackendUnavailableError(f"A {model_type!r} model is not a SAM checkpoint.")


# ---------------------------------------------------------------------------------------------- cache


@dataclass(frozen=True)
class _AutoPrompt:
    box: Box  # in working pixels
    positive: list[tuple[float, float]]
    classical: np.ndarray | None  # bool mask at working size, None when the classical cut-out found nothing


@dataclass
class _Encoded:
    """What the encoder produced for one image, with the geometry needed to map prompts and masks."""

    embeddings: torch.Tensor | list[torch.Tensor]  # SAM: one tensor; SAM 2: feature maps, finest first
    original_size: tuple[int, int]  # height, width of the image given
    input_size: tuple[int, int]  # height, width of the image inside the model's input (model pixels, no padding)
    work_image: np.ndarray  # RGB at working size
    auto_prompt: _AutoPrompt | None = field(default=None)

    @property
    def work_size(self) -> tuple[int, int]:
        return self.work_image.shape[0], self.work_image.shape[1]


class _EmbeddingCache:
    """Thread-safe LRU of encoded images."""

    def __init__(self, capacity: int = EMBEDDING_CACHE_SIZE) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple, _Encoded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> _Encoded | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple, entry: _Encoded) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# ---------------------------------------------------------------------------------------------- segmenter


@dataclass(frozen=True)
class _Candidate:
    logits: np.ndarray  # float32 at working size
    mask: np.ndarray  # bool at working size
    predicted_iou: float


class SamSegmenter:
    """Segment Anything on one device; safe to share between threads (model calls are serialised)."""

    name = "sam"

    def __init__(self, model_id: str, device: str | None = None) -> None:
        self.device, self.dtype = choose_device(device)
        model, processor = _load_from_path(model_id) if _looks_like_path(model_id) else _load_from_hub(model_id)
        self._setup(model, processor, model_id)

    @classmethod
    def from_loaded(cls, model, processor, model_id: str, device: str | None = None) -> SamSegmenter:
        """A segmenter around an already built SamModel + SamProcessor, or Sam2Model + Sam2Preprocessor (processor
        None: the default preprocessing for the model's input size); for benchmarks and custom loading."""
        segmenter = cls.__new__(cls)
        segmenter.device, segmenter.dtype = choose_device(device)
        segmenter._setup(model, processor, model_id)
        return segmenter

    def _setup(self, model, processor, model_id: str) -> None:
        self.model_id = model_id
        self._family = _family_for(model, processor)
        self.family = self._family.name  # "sam" or "sam2"
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.processor = self._family.processor
        self.encoder_runs = 0
        self._cache = _EmbeddingCache()
        self._model_lock = threading.RLock()

    def segment(self, image: Image.Image, cache_key: str | None = None) -> Segmentation:
        """The whole garment, prompted automatically (no clicks)."""
        return self.refine(image, [], cache_key=cache_key)

    def refine(self, image: Image.Image, points: Sequence[Point], cache_key: str | None = None) -> Segmentation:
        """The garment given the user's clicks; each click is honoured in the returned mask."""
        clicks = _validate_points(points, image.size)
        encoded = self._encode(image, cache_key)
        prompt = self._auto_prompt(encoded)
        scale = encoded.work_size[1] / encoded.original_size[1]
        work_clicks = [(x * scale, y * scale, label) for x, y, label in clicks]
        if work_clicks:
            candidates = self._refine_candidates(encoded, prompt, work_clicks)
            best = max(candidates, key=lambda c: _refine_score(c, prompt, work_clicks))
        else:
            candidates = self._auto_candidates(encoded, prompt)
            best = max(candidates, key=lambda c: _auto_score(c, prompt))
        mask = _clean_mask(best.mask, work_clicks)
        mask = _enforce_clicks(mask, candidates, work_clicks)
        full = _to_image_size(mask, encoded.original_size)
        full = _stamp_clicks(full, clicks)
        return Segmentation(mask=full, backend=self.name)

    def clear_cache(self) -> None:
        self._cache.clear()

    # -- encoder

    def _encode(self, image: Image.Image, cache_key: str | None) -> _Encoded:
        key = None if cache_key is None else (cache_key, image.size)
        if key is not None and (hit := self._cache.get(key)) is not None:
            return hit
        with self._model_lock:
            # Another thread may have encoded the same garment while this one waited.
            if key is not None and (hit := self._cache.get(key)) is not None:
                return hit
            encoded = self._run_encoder(image)
            if key is not None:
                self._cache.put(key, encoded)
        return encoded

    def _run_encoder(self, image: Image.Image) -> _Encoded:
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        with torch.inference_mode():
            embeddings, input_size = self._family.encode(self.model, rgb, self.device, self.dtype)
        self.encoder_runs += 1
        return _Encoded(
            embeddings=embeddings,
            original_size=(rgb.height, rgb.width),
            input_size=input_size,
            work_image=_work_image(rgb),
        )

    # -- prompts and decoder

    def _auto_prompt(self, encoded: _Encoded) -> _AutoPrompt:
        if encoded.auto_prompt is None:
            encoded.auto_prompt = _auto_prompt_from_cutout(encoded.work_image)
        return encoded.auto_prompt

    def _auto_candidates(self, encoded: _Encoded, prompt: _AutoPrompt) -> list[_Candidate]:
        points = [(x, y, 1) for x, y in prompt.positive]
        return self._decode(encoded, points, prompt.box) + self._decode(encoded, [], prompt.box)

    def _refine_candidates(self, encoded: _Encoded, prompt: _AutoPrompt, clicks: list[Point]) -> list[_Candidate]:
        box = _box_around(prompt.box, [(x, y) for x, y, label in clicks if label == 1], encoded.work_size)
        automatic = [(x, y, 1) for x, y in prompt.positive]
        # Clicks alone, clicks in the (grown) automatic box, and clicks on top of the whole automatic prompt, so
        # that a click can either correct the automatic mask or start over; the decoder is cheap.
        return (self._decode(encoded, clicks, None) + self._decode(encoded, clicks, box)
                + self._decode(encoded, automatic + list(clicks), box))

    def _decode(self, encoded: _Encoded, points: Sequence[Point], box: Box | None) -> list[_Candidate]:
        """SAM's three multimask outputs for one prompt (points and/or box in working pixels).

        Both families take the same tensors (the processors' nestings differ, the models' do not): points
        (image, prompt, point, xy), labels (image, prompt, point), boxes (image, box, xyxy), in model input pixels.
        """
        scale_x = encoded.input_size[1] / encoded.work_size[1]
        scale_y = encoded.input_size[0] / encoded.work_size[0]
        kwargs: dict[str, torch.Tensor] = {}
        if points:
            coords = [[x * scale_x, y * scale_y] for x, y, _ in points]
            kwargs["input_points"] = torch.tensor([[coords]], dtype=torch.float32, device=self.device)
            kwargs["input_labels"] = torch.tensor([[[int(p[2]) for p in points]]], dtype=torch.long, device=self.device)
        if box is not None:
            x0, y0, x1, y1 = box
            scaled_box = [[[x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y]]]
            kwargs["input_boxes"] = torch.tensor(scaled_box, dtype=torch.float32, device=self.device)
        with self._model_lock, torch.inference_mode():
            output = self.model(image_embeddings=encoded.embeddings, multimask_output=True, **kwargs)
            logits = self._family.masks_at(output.pred_masks[0, 0], encoded.work_size, encoded.input_size)
            scores = output.iou_scores[0, 0].float()
        logits_np = logits.cpu().numpy().astype(np.float32)
        return [
            _Candidate(logits=logits_np[i], mask=logits_np[i] > 0.0, predicted_iou=float(scores[i]))
            for i in range(logits_np.shape[0])
        ]


def _validate_points(points: Sequence[Point], size: tuple[int, int]) -> list[Point]:
    width, height = size
    clicks = []
    for point in points:
        try:
            x, y, label = float(point[0]), float(point[1]), int(point[2])
        except (TypeError, ValueError, IndexError) as error:
            raise InputError(f"A click must be (x, y, label); got {point!r}.") from error
        if label not in (0, 1):
            raise InputError(f"A click label must be 1 (garment) or 0 (background); got {label}.")
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(f"The click ({x:.0f}, {y:.0f}) lies outside the {width}x{height} image.")
        clicks.append((x, y, label))
    return clicks


def _work_image(rgb: Image.Image) -> np.ndarray:
    width, height = rgb.size
    scale = min(1.0, WORK_SIDE / max(width, height))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


# ---------------------------------------------------------------------------------------------- automatic prompt


def _auto_prompt_from_cutout(work_rgb: np.ndarray) -> _AutoPrompt:
    height, width = work_rgb.shape[:2]
    try:
        classical = cut_out(Image.fromarray(work_rgb)) > 0
    except SegmentationError:
        classical = None
    if classical is None or not classical.any():
        return _fallback_prompt(width, height)
    ys, xs = np.nonzero(classical)
    margin = BOX_MARGIN_FRACTION * max(width, height)
    box = (max(0.0, xs.min() - margin), max(0.0, ys.min() - margin),
           min(width - 1.0, xs.max() + margin), min(height - 1.0, ys.max() + margin))
    return _AutoPrompt(box=box, positive=_deep_points(classical), classical=classical)


def _fallback_prompt(width: int, height: int) -> _AutoPrompt:
    inset = (1 - FALLBACK_BOX_FRACTION) / 2
    box = (inset * width, inset * height, (1 - inset) * width, (1 - inset) * height)
    return _AutoPrompt(box=box, positive=[(width / 2, height / 2)], classical=None)


def _deep_points(mask: np.ndarray, count: int = AUTO_POSITIVE_POINTS) -> list[tuple[float, float]]:
    """Points far from the mask's edge (distance-transform maxima), spread over the garment."""
    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    deepest = float(distance.max())
    points: list[tuple[float, float]] = []
    for _ in range(count):
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        if distance[y, x] <= 0 or distance[y, x] < MIN_POINT_DEPTH_SHARE * deepest:
            break
        points.append((float(x), float(y)))
        # Suppress the neighbourhood so the next point lands on another part (sleeve, leg, skirt).
        cv2.circle(distance, (int(x), int(y)), max(2, int(2 * distance[y, x])), 0.0, thickness=-1)
    return points


def _box_around(box: Box, positives: list[tuple[float, float]], size: tuple[int, int]) -> Box:
    """The automatic box grown to hold every positive click (a click outside the box says the box is too small)."""
    height, width = size
    margin = BOX_MARGIN_FRACTION * max(width, height)
    x0, y0, x1, y1 = box
    for x, y in positives:
        x0, y0, x1, y1 = min(x0, x - margin), min(y0, y - margin), max(x1, x + margin), max(y1, y + margin)
    return max(0.0, x0), max(0.0, y0), min(width - 1.0, x1), min(height - 1.0, y1)


# ---------------------------------------------------------------------------------------------- choosing


def _plausibility_penalty(mask: np.ndarray) -> float:
    area = float(mask.mean())
    penalty = 0.0
    if not MIN_AREA_FRACTION <= area <= MAX_AREA_FRACTION:
        penalty += IMPLAUSIBLE_PENALTY
    if mask[0, :].any() and mask[-1, :].any() and mask[:, 0].any() and mask[:, -1].any():
        penalty += IMPLAUSIBLE_PENALTY  # a garment photo shows background on at least one side
    return penalty


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _auto_score(candidate: _Candidate, prompt: _AutoPrompt) -> float:
    agreement = _iou(candidate.mask, prompt.classical) if prompt.classical is not None else 0.0
    return candidate.predicted_iou + AGREEMENT_WEIGHT * agreement - _plausibility_penalty(candidate.mask)


def _refine_score(candidate: _Candidate, prompt: _AutoPrompt, clicks: list[Point]) -> float:
    agreement = _iou(candidate.mask, prompt.classical) if prompt.classical is not None else 0.0
    return (CLICK_WEIGHT * _clicks_satisfied(candidate.mask, clicks) + candidate.predicted_iou
            + REFINE_AGREEMENT_WEIGHT * agreement - _plausibility_penalty(candidate.mask))


def _clicks_satisfied(mask: np.ndarray, clicks: list[Point]) -> float:
    if not clicks:
        return 1.0
    hits = sum(bool(mask[_pixel(mask, x, y)]) == (label == 1) for x, y, label in clicks)
    return hits / len(clicks)


def _pixel(mask: np.ndarray, x: float, y: float) -> tuple[int, int]:
    return min(mask.shape[0] - 1, max(0, int(y))), min(mask.shape[1] - 1, max(0, int(x)))


# ---------------------------------------------------------------------------------------------- post-processing


def _clean_mask(mask: np.ndarray, clicks: list[Point]) -> np.ndarray:
    """Keep the main part(s) and any part a positive click is on; fill small holes no negative click is in."""
    kept = _main_components(mask, [(x, y) for x, y, label in clicks if label == 1])
    return _fill_small_holes(kept, [(x, y) for x, y, label in clicks if label == 0])


def _main_components(mask: np.ndarray, anchors: list[tuple[float, float]]) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask.copy()
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = {index + 1 for index, area in enumerate(areas) if area >= KEEP_COMPONENT_SHARE * areas.max()}
    keep |= {int(labels[_pixel(mask, x, y)]) for x, y in anchors} - {0}
    return np.isin(labels, list(keep))


def _fill_small_holes(mask: np.ndarray, keep_open: list[tuple[float, float]]) -> np.ndarray:
    background = (~mask).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=4)
    if count <= 1:
        return mask
    limit = SMALL_HOLE_SHARE * max(1, int(mask.sum()))
    on_border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])).tolist())
    open_labels = {int(labels[_pixel(mask, x, y)]) for x, y in keep_open}
    holes = [index for index in range(1, count)
             if index not in on_border and index not in open_labels and stats[index, cv2.CC_STAT_AREA] <= limit]
    return mask | np.isin(labels, holes) if holes else mask


def _enforce_clicks(mask: np.ndarray, candidates: list[_Candidate], clicks: list[Point]) -> np.ndarray:
    """Make every click true in the mask, later clicks winning where two disagree."""
    result = mask.copy()
    radius = _disk_radius(mask.shape)
    positives = [(x, y) for x, y, label in clicks if label == 1]
    for x, y, label in clicks:
        disk = _disk(mask.shape, x, y, radius)
        if label == 1:
            if not result[_pixel(result, x, y)]:
                result |= _region_around(candidates, x, y)
            result |= disk
        else:
            if result[_pixel(result, x, y)]:
                result &= ~_removable_part(result, x, y, positives)
            result &= ~disk
    return result


def _region_around(candidates: list[_Candidate], x: float, y: float) -> np.ndarray:
    """The component around (x, y) of the SAM output most confident there, unless it is implausibly large."""
    best = max(candidates, key=lambda c: c.logits[_pixel(c.logits, x, y)])
    if best.logits[_pixel(best.logits, x, y)] <= 0.0 or _plausibility_penalty(best.mask) > 0:
        return np.zeros_like(best.mask)
    return _component_at(best.mask, x, y)


def _removable_part(mask: np.ndarray, x: float, y: float, positives: list[tuple[float, float]]) -> np.ndarray:
    """The mask component under a negative click, if it is a side part holding no positive click; else nothing."""
    component = _component_at(mask, x, y)
    holds_positive = any(component[_pixel(mask, px, py)] for px, py in positives)
    if holds_positive or component.sum() >= MAIN_PART_SHARE * mask.sum():
        return np.zeros_like(mask)
    return component


def _component_at(mask: np.ndarray, x: float, y: float) -> np.ndarray:
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    label = labels[_pixel(mask, x, y)]
    return labels == label if label else np.zeros_like(mask, dtype=bool)


def _disk_radius(shape: tuple[int, ...]) -> int:
    return max(MIN_CLICK_DISK_PX, round(CLICK_DISK_FRACTION * max(shape[:2])))


def _disk(shape: tuple[int, ...], x: float, y: float, radius: int) -> np.ndarray:
    canvas = np.zeros(shape[:2], dtype=np.uint8)
    cv2.circle(canvas, (int(round(x)), int(round(y))), radius, 1, thickness=-1)
    return canvas.astype(bool)


def _to_image_size(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    as_float = mask.astype(np.float32)
    if as_float.shape != (height, width):
        # Linear upsampling then a 0.5 threshold gives smooth edges instead of blocky ones.
        as_float = cv2.resize(as_float, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.where(as_float >= 0.5, 255, 0).astype(np.uint8)


def _stamp_clicks(mask: np.ndarray, clicks: list[Point]) -> np.ndarray:
    """Guarantee at full size that each click's own pixel neighbourhood says what the click says."""
    radius = _disk_radius(mask.shape)
    for x, y, label in clicks:
        cv2.circle(mask, (int(round(x)), int(round(y))), radius, 255 if label == 1 else 0, thickness=-1)
    return mask


# ---------------------------------------------------------------------------------------------- shared instances

_segmenters: LoadedOnce[SamSegmenter] = LoadedOnce("SAM checkpoint")


def load_sam_segmenter(model_id: str | None = None, device: str | None = None) -> SamSegmenter:
    """The process-wide SamSegmenter for (model, device); a failed load is remembered and raised again."""
    resolved = resolve_sam_model(model_id)
    device_name, _ = choose_device(device)
    return _segmenters.get((resolved, device_name), lambda: SamSegmenter(resolved, device_name))


def forget_sam_segmenters() -> None:
    """Drop every loaded or failed segmenter (tests; or to retry after the network came back)."""
    _segmenters.clear()
