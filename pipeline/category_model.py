"""Garment category from a zero-shot CLIP model, with the mask-shape heuristic as the no-weights fallback.

The classifier compares the garment, cut out on white, with text prompts describing each category's garment
types. Any CLIP checkpoint works (a Hub id or a local folder); a fashion-tuned one is the default.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pipeline.attributes import CATEGORIES, guess_category
from pipeline.errors import BackendUnavailableError, InputError
from pipeline.hub import LoadedOnce, display_source, first_line

logger = logging.getLogger(__name__)

DEFAULT_CATEGORY_MODEL = "patrickjohncyh/fashion-clip"
CATEGORY_MODEL_ENV = "STUDIO_CATEGORY_MODEL"
CATEGORY_BACKENDS = ("auto", "clip", "trained", "heuristic")

# Garment types per category; a category scores as its best-matching type, so that e.g. a skirt and jeans both
# count for "bottom" without their average looking like neither.
GARMENT_TYPES: dict[str, tuple[str, ...]] = {
    "top": ("a t-shirt", "a shirt", "a blouse", "a sweater", "a long-sleeved top", "a tank top", "a hoodie",
            "a sweatshirt", "a cardigan", "a polo shirt"),
    "bottom": ("trousers", "jeans", "shorts", "a skirt", "leggings", "sweatpants"),
    "dress": ("a dress", "a gown", "a sundress", "a maxi dress", "a jumpsuit"),
    "outerwear": ("a jacket", "a coat", "a puffer vest", "a parka", "a blazer", "a trench coat", "a denim jacket"),
}
# Each type's text embedding is the mean over these phrasings (prompt ensembling, as in the CLIP paper).
PROMPT_TEMPLATES: tuple[str, ...] = (
    "a product photo of {}.",
    "a photo of {}, laid flat.",
    "a photo of {} on a hanger.",
    "a photo of {} on a white background.",
)

# Below this calibrated probability the page asks the seller ("Is this a top or a dress?") instead of stating the
# category. On the 301 validation flat lays the trained model states 290 (96.2 % right) and asks about 11 (64 %
# right); of its 15 mistakes, 11 have the right answer as the second choice offered (BENCHMARKS.md, "Category").
CONFIDENT_FROM = 0.7

_CROP_MARGIN = 0.08       # of the mask's bounding box, on each side
_WHITE = (255, 255, 255)
_HUB_PROBE_TIMEOUT_S = 5.0

assert set(GARMENT_TYPES) == set(CATEGORIES), "every category needs prompts"


@dataclass(frozen=True)
class CategoryPrediction:
    category: str                  # one of CATEGORIES
    confidence: float              # 0..1
    backend: str                   # "clip", "trained" or "heuristic"
    scores: dict[str, float] = field(default_factory=dict)  # probability per category; {guess: 1.0} for the heuristic
    garment_type: str | None = None  # what a listing calls it ("t-shirt", "jeans"), when the model tells

    @property
    def alternative(self) -> str | None:
        """The next likeliest category, for asking the seller "is this a dress or a top?"; None if there is none."""
        others = sorted((c for c in self.scores if c != self.category), key=self.scores.get, reverse=True)
        return others[0] if others and self.scores[others[0]] > 0 else None

    @property
    def is_confident(self) -> bool:
        """Whether the category can be stated rather than asked (see CONFIDENT_FROM)."""
        return self.confidence >= CONFIDENT_FROM


def resolve_category_model(explicit: str | None = None) -> str:
    """The model id to use: the explicit one, else $STUDIO_CATEGORY_MODEL, else the default."""
    for candidate in (explicit, os.environ.get(CATEGORY_MODEL_ENV)):
        if candidate and candidate.strip():
            return candidate.strip()
    return DEFAULT_CATEGORY_MODEL


# ---------------------------------------------------------------- image input

def garment_on_white(image: Image.Image, mask: np.ndarray) -> Image.Image:
    """The garment's pixels on white, cropped to the mask's bounding box plus a margin and padded to a square.

    Everything outside the mask is white, so the floor or bed the photo was taken on cannot sway the model;
    the square keeps CLIP's centre crop from cutting off sleeves or hems.
    """
    garment = _as_bool_mask(mask)
    if garment.shape != (image.height, image.width):
        raise InputError(f"The mask is {garment.shape[1]}x{garment.shape[0]} but the image is "
                         f"{image.width}x{image.height}.")
    if not garment.any():
        raise InputError("The mask is empty: no garment to classify.")
    rows, cols = np.flatnonzero(garment.any(axis=1)), np.flatnonzero(garment.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    pixels = np.asarray(image.crop((left, top, right, bottom)).convert("RGB"))
    cut = np.where(garment[top:bottom, left:right, None], pixels, np.uint8(255)).astype(np.uint8)
    height, width = cut.shape[:2]
    side = int(round(max(height, width) * (1 + 2 * _CROP_MARGIN)))
    canvas = Image.new("RGB", (side, side), _WHITE)
    canvas.paste(Image.fromarray(cut), ((side - width) // 2, (side - height) // 2))
    return canvas


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.dtype == bool:
        return mask
    return mask >= 128 if mask.max() > 1 else mask > 0


# ---------------------------------------------------------------- the classifier

class ClipCategoryClassifier:
    """A CLIP model and processor, with the category prompts' text embeddings computed once."""

    name = "clip"

    def __init__(self, model_id: str, device: str | None = None):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.model_id = model_id
        self.device = device or _default_device()
        self.dtype = dtype_for(self.device)
        source, is_folder = _checkpoint_source(model_id)
        _require_clip_config(model_id, source, is_folder)
        self.processor = _load_with_fallback(CLIPProcessor, model_id, source, is_folder)
        model = _load_with_fallback(CLIPModel, model_id, source, is_folder, dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self._lock = threading.Lock()
        self._type_embeddings = None  # (types, dim), unit length; computed on first use
        self._type_categories = [category for category in CATEGORIES for _ in GARMENT_TYPES[category]]
        self._types_of = [torch.tensor([i for i, c in enumerate(self._type_categories) if c == category])
                          for category in CATEGORIES]

    def predict(self, image: Image.Image, mask: np.ndarray) -> CategoryPrediction:
        """The category of the masked garment, with softmax probabilities over all categories."""
        import torch

        cutout = garment_on_white(image, mask)
        with self._lock, torch.inference_mode():
            text = self._text_embeddings()
            pixel_values = self.processor(images=cutout, return_tensors="pt")["pixel_values"]
            image_embedding = _unit(_pooled(self.model.get_image_features(
                pixel_values=pixel_values.to(self.device, self.dtype))).float())
            similarity = (image_embedding @ text.T)[0]                    # one per garment type
            per_category = torch.stack([similarity[types.to(similarity.device)].max() for types in self._types_of])
            scale = self.model.logit_scale.float().exp()
            probabilities = torch.softmax(scale * per_category, dim=0).cpu().tolist()
            similarity = similarity.float().cpu().tolist()
        scores = {category: float(p) for category, p in zip(CATEGORIES, probabilities)}
        best = max(scores, key=scores.get)
        types = [(similarity[i], GARMENT_TYPES[best][n]) for n, i in enumerate(self._types_of[CATEGORIES.index(best)].tolist())]
        return CategoryPrediction(category=best, confidence=scores[best], backend=self.name, scores=scores,
                                  garment_type=_without_article(max(types)[1]))

    def _text_embeddings(self):
        """Unit-length embedding per garment type, the mean over the prompt templates; cached (call under the lock)."""
        if self._type_embeddings is None:
            prompts = [template.format(garment) for category in CATEGORIES for garment in GARMENT_TYPES[category]
                       for template in PROMPT_TEMPLATES]
            tokens = self.processor.tokenizer(
                prompts, padding=True, truncation=True, return_tensors="pt",
                max_length=self.model.config.text_config.max_position_embeddings)
            features = _unit(_pooled(self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device))).float())
            per_type = features.reshape(len(self._type_categories), len(PROMPT_TEMPLATES), -1).mean(dim=1)
            self._type_embeddings = _unit(per_type)
        return self._type_embeddings


def _without_article(garment: str) -> str:
    """"a t-shirt" -> "t-shirt", "jeans" -> "jeans"."""
    return garment.split(" ", 1)[1] if garment.startswith(("a ", "an ")) else garment


def _pooled(output):
    """get_*_features returns a tensor in older transformers and an output with pooler_output in newer ones."""
    return getattr(output, "pooler_output", output)


def _unit(tensor):
    return tensor / tensor.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def dtype_for(device: str):
    """Half precision on CUDA (half the memory and time), float32 elsewhere (half is slow or unsupported there)."""
    import torch

    return torch.float16 if str(device).startswith("cuda") else torch.float32


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


# ---------------------------------------------------------------- loading

def _is_offline() -> bool:
    # Read at call time: huggingface_hub freezes its own copy of the variable when it is first imported.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(model_id: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else is meant as a folder.
    return (os.path.isabs(model_id) or model_id.startswith((".", "~")) or "\\" in model_id
            or model_id.count("/") > 1 or Path(model_id).expanduser().is_dir())


def _checkpoint_source(model_id: str) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is a local folder)."""
    if _looks_like_path(model_id):
        folder = Path(model_id).expanduser()
        if not folder.is_dir():
            logger.warning("The category model folder %s does not exist.", folder.absolute())
            raise BackendUnavailableError(f"Category model folder {display_source(model_id)} does not exist.")
        return str(folder), True
    return model_id, False


def _load_with_fallback(loader, model_id: str, source: str, local_folder: bool, **kwargs):
    """loader.from_pretrained from the cache first, then (when allowed) from the Hub; errors -> one sentence."""
    try:
        return loader.from_pretrained(source, local_files_only=True, **kwargs)
    except Exception as error:  # noqa: BLE001 - any failure here means "not available locally"
        if local_folder:
            logger.warning("The category model folder %s cannot be loaded: %s", Path(source).absolute(), error)
            raise BackendUnavailableError(f"Category model folder {display_source(model_id)} is not a usable CLIP "
                                          f"checkpoint ({first_line(error, model_id)}).") from None
        if _is_offline():
            raise BackendUnavailableError(
                f"Category model {model_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set.") from None
    _require_reachable_repo(model_id)
    try:
        return loader.from_pretrained(source, **kwargs)
    except Exception as error:  # noqa: BLE001
        raise BackendUnavailableError(
            f"Category model {model_id} could not be loaded: {first_line(error)}") from None


def _require_reachable_repo(model_id: str) -> None:
    """One quick request, without retries, before from_pretrained: its downloads retry a network error with
    backoff for about half a minute, which an unreachable Hub must not cost."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        get_hf_file_metadata(hf_hub_url(model_id, "config.json"), timeout=_HUB_PROBE_TIMEOUT_S)
    except GatedRepoError:
        raise BackendUnavailableError(
            f"Category model {model_id} is gated on the Hub: accept its terms and log in (hf auth login).") from None
    except RepositoryNotFoundError:
        raise BackendUnavailableError(f"Category model {model_id} does not exist on the Hub.") from None
    except Exception as error:  # noqa: BLE001 - connection refused, DNS, timeout, proxy...
        raise BackendUnavailableError(
            f"Category model {model_id} is not cached and the Hub cannot be reached ({first_line(error)}).") from None


def _require_clip_config(model_id: str, source: str, local_folder: bool) -> None:
    from transformers import AutoConfig

    config = _load_with_fallback(AutoConfig, model_id, source, local_folder)
    if getattr(config, "model_type", None) != "clip":
        kind = getattr(config, "model_type", "unknown")
        raise BackendUnavailableError(f"Category model {display_source(model_id)} is a {kind!r} checkpoint, not CLIP.")


_classifiers: LoadedOnce[ClipCategoryClassifier] = LoadedOnce("category model")


def load_category_classifier(model_id: str | None = None) -> ClipCategoryClassifier:
    """The process-wide classifier for a model id (loaded on first call). A failed load is remembered and its
    error raised again at once, so a missing model costs one network attempt per process, not one per photo."""
    key = resolve_category_model(model_id)
    return _classifiers.get(key, lambda: ClipCategoryClassifier(key))


def forget_category_classifiers() -> None:
    """Drop loaded classifiers and remembered failures (tests; or after the weights were installed)."""
    _classifiers.clear()


# How often the shape heuristic is right when it says each category, measured on the 2,747 training flat lays
# (its own cut-outs; the heuristic learns nothing from them): its confidence, so that a guessed dress or coat is
# asked about and not stated.
HEURISTIC_PRECISION = {"top": 0.81, "bottom": 0.84, "dress": 0.47, "outerwear": 0.31}


def heuristic_prediction(mask: np.ndarray) -> CategoryPrediction:
    """The mask-shape guess, in the same form as a model's prediction."""
    category = guess_category(np.asarray(mask))
    confidence = HEURISTIC_PRECISION[category]
    return CategoryPrediction(category=category, confidence=confidence, backend="heuristic",
                              scores={category: confidence})


def trained_prediction(image: Image.Image, mask: np.ndarray) -> CategoryPrediction:
    """The project's own CNN (`pipeline.category_cnn`), calibrated; BackendUnavailableError when its file is
    missing or damaged."""
    answer = _trained_model().predict(*_reduced(image, np.asarray(mask)))
    category = max(answer.scores, key=answer.scores.get)
    return CategoryPrediction(category=category, confidence=answer.scores[category], backend="trained",
                              scores=answer.scores, garment_type=answer.garment_type[category])


_TRAINED_MAX_SIDE = 320  # the model sees 192 px: only the garment's box is read from a 12 MP photo, reduced


def _reduced(image: Image.Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The garment's box of the photo (RGB array) and of its mask, reduced together to about _TRAINED_MAX_SIDE."""
    if mask.shape[:2] != (image.height, image.width):
        raise InputError(f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.width}x{image.height}.")
    binary = (mask > (127 if mask.dtype != np.bool_ else 0)).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(binary)
    if w == 0 or h == 0:
        raise InputError("The mask is empty: no garment to classify.")
    factor = max(1, max(w, h) // _TRAINED_MAX_SIDE)
    box = (x, y, x + w, y + h)
    reduced = image.reduce(factor, box=box) if factor > 1 else image.crop(box)
    rgb = np.asarray(reduced if reduced.mode == "RGB" else reduced.convert("RGB"))
    small_mask = cv2.resize(binary[y:y + h, x:x + w] * 255, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
    return rgb, small_mask


_trained = None
_trained_lock = threading.Lock()


def _trained_model():
    global _trained
    from pipeline.category_cnn import TrainedCategoryModel

    with _trained_lock:
        if _trained is None:
            _trained = TrainedCategoryModel.load()
        return _trained


def predict_category(image: Image.Image, mask: np.ndarray, backend: str = "auto",
                     model_id: str | None = None) -> CategoryPrediction:
    """The garment's category: "clip" (error if its weights are unavailable), "trained" (the project's own CNN,
    shipped with the code), "heuristic" (mask shape), or "auto": CLIP when its weights load, else the trained
    model, else the heuristic. The prediction says which answered."""
    choice = str(backend).strip().lower()
    if choice not in CATEGORY_BACKENDS:
        raise InputError(f"Unknown category backend {backend!r}; choose one of: {', '.join(CATEGORY_BACKENDS)}.")
    if choice == "heuristic":
        return heuristic_prediction(mask)
    if choice == "clip":
        return load_category_classifier(model_id).predict(image, mask)
    if choice == "trained":
        return trained_prediction(image, mask)
    try:
        classifier = load_category_classifier(model_id)
    except BackendUnavailableError:
        try:
            return trained_prediction(image, mask)
        except BackendUnavailableError:
            return heuristic_prediction(mask)
    return classifier.predict(image, mask)
