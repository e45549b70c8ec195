"""Small images for the UI: the cut-out shown over the photo."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

PREVIEW_LONG_SIDE = 1024
OUTLINE_COLOR = (255, 64, 129)


def mask_overlay(image: Image.Image, mask: np.ndarray, long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    """The photo with the background washed out and the cut-out's edge drawn, at most `long_side` pixels."""
    scale = min(1.0, long_side / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    pixels = np.asarray(image.resize(size, Image.Resampling.BILINEAR) if scale < 1 else image, dtype=np.uint8)
    small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA) >= 128
    washed = (pixels * 0.35 + 255 * 0.65).astype(np.uint8)
    preview = np.where(small_mask[..., None], pixels, washed)
    contours, _ = cv2.findContours(small_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    preview = np.ascontiguousarray(preview)
    cv2.drawContours(preview, contours, -1, OUTLINE_COLOR, thickness=max(2, round(max(size) / 400)))
    return Image.fromarray(preview)


def thumbnail(image: Image.Image, long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    copy = image.copy()
    copy.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
    return copy
