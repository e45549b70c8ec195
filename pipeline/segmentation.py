"""Segmentation backends: which one cuts the garment out, and why.

`classic` needs no weights (`pipeline.cutout`). `sam` (Segment Anything through transformers) arrives with its own
issue; until then asking for it explicitly is an error, and `auto` uses `classic`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.cutout import cut_out
from pipeline.errors import BackendUnavailableError, InputError

SEGMENTATION_BACKENDS = ("auto", "classic", "sam")


@dataclass(frozen=True)
class Segmentation:
    mask: np.ndarray  # uint8 (height, width), 255 = garment
    backend: str


class ClassicSegmenter:
    """Colour and texture cut-out that works without model weights."""

    name = "classic"

    def segment(self, image: Image.Image) -> Segmentation:
        return Segmentation(mask=cut_out(image), backend=self.name)


def get_segmenter(backend: str = "auto") -> ClassicSegmenter:
    """The segmenter for `backend`; raises a clear error for a backend that cannot run here."""
    if backend not in SEGMENTATION_BACKENDS:
        raise InputError(f"Unknown segmentation backend {backend!r}; choose one of {', '.join(SEGMENTATION_BACKENDS)}.")
    if backend == "sam":
        raise BackendUnavailableError(
            "The SAM backend is not part of this version yet; use the 'classic' or 'auto' backend."
        )
    return ClassicSegmenter()


def describe_segmentation_backend() -> str:
    """One line for the UI: which backend `auto` uses and why."""
    return "Cut-out: classic (no model weights needed). SAM segmentation is not installed in this version."
