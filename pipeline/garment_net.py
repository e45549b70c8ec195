"""The garment network: a small segmenter the project trains itself, a third opinion beside U-2-Net-p and the
classic background model in the fused cut-out (`pipeline/fusion.py`).

MobileNetV2's features (started from the category model's, which started from ImageNet: see
`pipeline/mobilenet_v2.py`) read at strides 4, 8, 16 and 32 and merged top-down (a light feature pyramid) into a
garment probability at a quarter of the input's side. It was trained by `scripts/train_garment_net.py` on the
2,747 `flatlay-train` photos (CC0) with the fused cut-out's masks as its labels. A network trained on another
model's masks learns what most of them agree on: on the validation flat lays it gives back sleeves, cuffs and
hems that cut-out lost on a bed of their colour, and leaves out floor patches that cut-out kept. The fusion uses it
only where it is sure and disagrees in a large piece, and as far as the colours allow (step 7 of
`pipeline/fusion.py`).

The weights ship with the code (`pipeline/models/garment_net.safetensors`, model card beside it); torch runs them
on the CPU with no download. Without the file the fused cut-out runs as it did before the network existed.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.category_cnn import normalise
from pipeline.committed_weights import load_committed
from pipeline.errors import BackendUnavailableError
from pipeline.mobilenet_v2 import STRIDE, MobileNetV2Features

WEIGHTS_PATH = Path(__file__).resolve().parent / "models" / "garment_net.safetensors"
TAPS = (3, 6, 13, 17)  # MobileNetV2 layers whose outputs are read: strides 4, 8, 16 and 32
TAP_CHANNELS = (24, 32, 96, 320)
WIDTH = 48  # channels of the merged pyramid
INPUT_SIDE = 256  # the photo's longer side as the network reads it


def _conv_bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True))


class GarmentNet(nn.Module):
    """(N, 3, H, W) ImageNet-normalised RGB, H and W multiples of 32 -> garment logits (N, 1, H/4, W/4)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = MobileNetV2Features().features[:TAPS[-1] + 1]
        self.lateral = nn.ModuleList(nn.Conv2d(channels, WIDTH, 1) for channels in TAP_CHANNELS)
        self.smooth = nn.ModuleList(_conv_bn_relu(WIDTH) for _ in TAP_CHANNELS[:-1])
        self.head = nn.Conv2d(WIDTH, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = []
        for index, layer in enumerate(self.backbone):
            x = layer(x)
            if index in TAPS:
                taps.append(x)
        merged = self.lateral[-1](taps[-1])
        for level in range(len(taps) - 2, -1, -1):
            merged = F.interpolate(merged, size=taps[level].shape[2:], mode="bilinear", align_corners=False)
            merged = self.smooth[level](merged + self.lateral[level](taps[level]))
        return self.head(merged)


def photo_batch(rgb: np.ndarray, side: int = INPUT_SIDE) -> tuple[torch.Tensor, tuple[int, int]]:
    """The network's input for an RGB photo: its longer side scaled to `side`, padded (black, right and bottom)
    to multiples of 32; and the scaled photo's (height, width) inside it."""
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
    batch = torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255.0
    batch = F.interpolate(batch, size=scaled, mode="bilinear", antialias=True, align_corners=False)
    batch = F.pad(batch, (0, -scaled[1] % STRIDE, 0, -scaled[0] % STRIDE))
    return normalise(batch), scaled


def probability_of(model: GarmentNet, rgb: np.ndarray, side: int = INPUT_SIDE) -> np.ndarray:
    """Garment probability (float32, 0..1) of every pixel of `rgb` (height, width, 3 uint8)."""
    batch, (height, width) = photo_batch(rgb, side)
    with torch.inference_mode():
        logits = model(batch)
        logits = F.interpolate(logits, size=batch.shape[2:], mode="bilinear", align_corners=False)
        logits = F.interpolate(logits[..., :height, :width], size=rgb.shape[:2], mode="bilinear",
                               align_corners=False)
    return torch.sigmoid(logits)[0, 0].numpy()


class TrainedGarmentNet:
    """The committed network, loaded once per process; `probability` is thread-safe."""

    def __init__(self, model: GarmentNet) -> None:
        self.model = model.eval()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None = None) -> "TrainedGarmentNet":
        """The network in `path` (default: the committed WEIGHTS_PATH); BackendUnavailableError if unusable."""
        model = GarmentNet()
        load_committed(model, path or WEIGHTS_PATH, "The garment network")
        return cls(model)

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        with self._lock:
            return probability_of(self.model, rgb)


_loaded: TrainedGarmentNet | None = None
_load_lock = threading.Lock()


def garment_net() -> TrainedGarmentNet | None:
    """The process's garment network, or None where its file is missing or unreadable (the fused cut-out then
    runs without it)."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            try:
                _loaded = TrainedGarmentNet.load()
            except BackendUnavailableError:
                return None
        return _loaded
