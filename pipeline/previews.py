"""Small images for the UI: the cut-out shown over the photo, with the seller's clicks."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

PREVIEW_LONG_SIDE = 1024
OUTLINE_COLOR = (255, 64, 129)
GARMENT_CLICK_COLOR = (0, 200, 83)
BACKGROUND_CLICK_COLOR = (229, 57, 53)


def preview_scale(size: tuple[int, int], long_side: int = PREVIEW_LONG_SIDE) -> float:
    """How much a photo of `size` is shrunk for the preview; divide preview coordinates by it to get photo pixels."""
    return min(1.0, long_side / max(size))


def mask_overlay(image: Image.Image, mask: np.ndarray, points: Sequence[Sequence[float]] = (),
                 long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    """The photo with the background washed out, the cut-out's edge drawn and each click shown as a dot
    (green: garment, red: background), at most `long_side` pixels."""
    scale = preview_scale(image.size, long_side)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    pixels = np.asarray(image.resize(size, Image.Resampling.BILINEAR) if scale < 1 else image, dtype=np.uint8)
    small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA) >= 128
    washed = (pixels * 0.35 + 255 * 0.65).astype(np.uint8)
    preview = np.ascontiguousarray(np.where(small_mask[..., None], pixels, washed))
    contours, _ = cv2.findContours(small_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(2, round(max(size) / 400))
    cv2.drawContours(preview, contours, -1, OUTLINE_COLOR, thickness=thickness)
    for x, y, label in points:
        centre = (int(round(x * scale)), int(round(y * scale)))
        color = GARMENT_CLICK_COLOR if label else BACKGROUND_CLICK_COLOR
        cv2.circle(preview, centre, thickness * 3, color, thickness=-1)
        cv2.circle(preview, centre, thickness * 3, (255, 255, 255), thickness=max(1, thickness // 2))
    return Image.fromarray(preview)


def thumbnail(image: Image.Image, long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    copy = image.copy()
    copy.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
    return copy
