"""The category model the project trains itself: MobileNetV2 over the garment cut out on white.

It is trained by `scripts/train_category_model.py`, from ImageNet weights, on the flat-lay photos of
`flatlay-train` (CC0); its weights ship with the code (`pipeline/models/category_cnn.safetensors`, 4.6 MB, model
card beside it) and it runs on the CPU with torch, with no download. It predicts the 8 garment classes of the
dataset; a category's probability is the sum of its classes' (dress -> dress; outwear -> outerwear; pants, shorts,
skirt -> bottom; shirt, longsleeve, t-shirt -> top), after temperature scaling fitted on held-out training
photos, so that a 0.8 means right about 8 times in 10.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.category_input import INPUT_SIDE, garment_square
from pipeline.committed_weights import load_committed
from pipeline.errors import BackendUnavailableError
from pipeline.mobilenet_v2 import FEATURES, IMAGENET_MEAN, IMAGENET_STD, STRIDE, MobileNetV2Features

WEIGHTS_PATH = Path(__file__).resolve().parent / "models" / "category_cnn.safetensors"
CLASSES = ("dress", "longsleeve", "outwear", "pants", "shirt", "shorts", "skirt", "t-shirt")
CLASS_CATEGORY = {"dress": "dress", "outwear": "outerwear", "pants": "bottom", "shorts": "bottom",
                  "skirt": "bottom", "shirt": "top", "longsleeve": "top", "t-shirt": "top"}
# What a listing calls a garment of each class.
CLASS_GARMENT_TYPE = {"dress": "dress", "outwear": "jacket", "pants": "trousers", "shorts": "shorts",
                      "skirt": "skirt", "shirt": "shirt", "longsleeve": "long-sleeve top", "t-shirt": "t-shirt"}


class CategoryCNN(nn.Module):
    """MobileNetV2's features (started from ImageNet, see `pipeline/mobilenet_v2.py`), global average pooling,
    dropout and a linear layer over the classes; the fitted temperature travels with the weights."""

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.backbone = MobileNetV2Features()
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURES, classes))
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of a batch (N, 3, S, S) made by `to_tensor`; S is the side it was trained on."""
        return self.head(self.backbone(batch).mean(dim=(2, 3)))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 3, S, S) float32, normalised as ImageNet's photos were, from uint8 garments on white (N, S, S, 3)."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return normalise(batch)


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) RGB in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


@dataclass(frozen=True)
class TrainedAnswer:
    scores: dict[str, float]        # probability per category: the sum over its classes
    garment_type: dict[str, str]    # per category, the type of its likeliest class ("t-shirt", "skirt")


def answer_from(class_probabilities: np.ndarray) -> TrainedAnswer:
    """Per category, the summed probability of its classes and the type of its likeliest class."""
    totals: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}
    for name, probability in zip(CLASSES, class_probabilities):
        category = CLASS_CATEGORY[name]
        totals[category] = totals.get(category, 0.0) + float(probability)
        best[category] = max(best.get(category, (-1.0, "")), (float(probability), CLASS_GARMENT_TYPE[name]))
    return TrainedAnswer(scores=totals, garment_type={category: kind for category, (_, kind) in best.items()})


class TrainedCategoryModel:
    """The committed CNN, loaded once per process; `predict` takes a photo (RGB array) and its mask."""

    def __init__(self, model: CategoryCNN, source: str, input_side: int = INPUT_SIDE) -> None:
        self.model = model.eval()
        self.source = source
        self.input_side = input_side  # the garment square's side the weights were trained on
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None = None) -> "TrainedCategoryModel":
        """The model in `path` (default: the committed WEIGHTS_PATH); BackendUnavailableError if unusable."""
        path = path or WEIGHTS_PATH
        model = CategoryCNN()
        load_committed(model, path, "The trained category model")
        try:
            input_side = _input_side(path)
        except ValueError as error:
            raise BackendUnavailableError(f"The trained category model {path.name} cannot be read: {error}") from None
        return cls(model, path.name, input_side)

    def predict(self, rgb: np.ndarray, mask: np.ndarray) -> TrainedAnswer:
        """Calibrated probability per category of the garment in `rgb` (any size) under `mask`, and its type."""
        image, _ = garment_square(rgb, mask, self.input_side)
        batch = to_tensor(image[None])
        with self._lock, torch.inference_mode():
            logits = self.model(batch)[0] / self.model.temperature
        return answer_from(torch.softmax(logits, dim=0).numpy())


def _input_side(path: Path) -> int:
    """The input side recorded in the file's metadata by the training script (INPUT_SIDE for a file without)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as opened:
        recorded = (opened.metadata() or {}).get("input_side")
    side = INPUT_SIDE if recorded is None else int(recorded)
    if side < STRIDE or side % STRIDE:
        raise ValueError(f"its input side {side} px is not a multiple of {STRIDE}")
    return side


def describe() -> str:
    """The model card's summary line, for the status panel."""
    card = WEIGHTS_PATH.with_suffix(".json")
    if card.is_file():
        facts = json.loads(card.read_text())
        return f"trained CNN ({facts.get('validation_accuracy', '?')} right on the validation flat lays)"
    return "trained CNN"


assert INPUT_SIDE % STRIDE == 0
