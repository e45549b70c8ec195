"""The closet's thumbnail of a garment: its cut-out on white, small, as JPEG."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from pipeline.category_model import garment_on_white

THUMBNAIL_LONG_SIDE = 320
THUMBNAIL_QUALITY = 85


def thumbnail_jpeg(image: Image.Image, mask: np.ndarray | None = None) -> bytes:
    """The garment cut out on white (or the whole photo when `mask` is None or empty), THUMBNAIL_LONG_SIDE px on
    its long side, as JPEG bytes."""
    picture = image if image.mode == "RGB" else image.convert("RGB")
    if mask is not None and np.asarray(mask).any():
        picture = garment_on_white(*_garment_region(picture, np.asarray(mask)))
    scale = THUMBNAIL_LONG_SIDE / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    buffer = io.BytesIO()
    picture.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0).save(buffer, "JPEG", quality=THUMBNAIL_QUALITY)
    return buffer.getvalue()


def _garment_region(image: Image.Image, mask: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """The photo and mask cropped to the garment and, for a large garment, reduced to about twice the thumbnail's
    size, so a 12-megapixel photo is never copied whole."""
    binary = (mask > (127 if mask.dtype != np.bool_ and mask.max() > 1 else 0)).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(binary)
    factor = max(1, max(w, h) // (2 * THUMBNAIL_LONG_SIDE))
    box = (x, y, x + w, y + h)
    cropped = image.reduce(factor, box=box) if factor > 1 else image.crop(box)
    region = cv2.resize(binary[y:y + h, x:x + w], cropped.size, interpolation=cv2.INTER_NEAREST)
    return cropped, region.astype(bool)
