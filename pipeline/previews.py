"""Small images for the UI: the garment cut out as it will be used (with what is detached from it boxed and the
seller's clicks ringed), the cut-out's edge over the photo, and the photo itself. Preview pixels are photo
pixels times `preview_scale`, so the UI maps a click on any of them back to the photo."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from pipeline.cutout import stray_regions
from pipeline.errors import InputError

PREVIEW_LONG_SIDE = 1024
OUTLINE_COLOR = (255, 64, 129)
GARMENT_CLICK_COLOR = (0, 200, 83)
BACKGROUND_CLICK_COLOR = (229, 57, 53)
STRAY_COLOR = (255, 0, 255)
CHECKER_LIGHT = (255, 255, 255)
CHECKER_DARK = (228, 228, 228)
BACKGROUNDS = ("checkerboard", "white")


def preview_scale(size: tuple[int, int], long_side: int = PREVIEW_LONG_SIDE) -> float:
    """How much a photo of `size` is shrunk for the preview; divide preview coordinates by it to get photo pixels."""
    return min(1.0, long_side / max(size))


def cutout_preview(image: Image.Image, mask: np.ndarray, background: str = "checkerboard",
                   points: Sequence[Sequence[float]] = (), long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    """The garment cut out, on a light checkerboard or white, as it will be used: a patch of floor in the mask
    shows as floor. Parts not joined to the garment (`stray_regions`) are boxed in magenta, and each click
    (x, y, label in photo pixels) is a ring that leaves the clicked pixels visible (green: garment, red:
    background). At most `long_side` pixels, scaled by `preview_scale`."""
    if background not in BACKGROUNDS:
        raise InputError(f"The cut-out is shown on {' or '.join(BACKGROUNDS)}, not {background!r}.")
    scale = preview_scale(image.size, long_side)
    pixels, inside = _scaled(image, mask, scale)
    preview = np.ascontiguousarray(np.where(inside[..., None], pixels, _backdrop(inside.shape, background)))
    thickness = _thickness(inside.shape)
    for x0, y0, x1, y1 in stray_regions(mask):
        pad = 2 * thickness
        cv2.rectangle(preview, (int(x0 * scale) - pad, int(y0 * scale) - pad),
                      (int(np.ceil(x1 * scale)) + pad, int(np.ceil(y1 * scale)) + pad), STRAY_COLOR, thickness)
    _draw_clicks(preview, points, scale, thickness, filled=False)
    return Image.fromarray(preview)


def mask_overlay(image: Image.Image, mask: np.ndarray, points: Sequence[Sequence[float]] = (),
                 long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    """The photo with the background washed out, the cut-out's edge drawn and each click shown as a dot
    (green: garment, red: background), at most `long_side` pixels."""
    scale = preview_scale(image.size, long_side)
    pixels, inside = _scaled(image, mask, scale)
    washed = (pixels * 0.35 + 255 * 0.65).astype(np.uint8)
    preview = np.ascontiguousarray(np.where(inside[..., None], pixels, washed))
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = _thickness(inside.shape)
    cv2.drawContours(preview, contours, -1, OUTLINE_COLOR, thickness=thickness)
    _draw_clicks(preview, points, scale, thickness, filled=True)
    return Image.fromarray(preview)


def thumbnail(image: Image.Image, long_side: int = PREVIEW_LONG_SIDE) -> Image.Image:
    """The photo at most `long_side` pixels, at the scale of the other previews."""
    copy = image.copy()
    copy.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
    return copy


def _scaled(image: Image.Image, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo's RGB pixels and the mask (bool) at preview scale."""
    mask = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    pixels = np.asarray(rgb.resize(size, Image.Resampling.BILINEAR) if scale < 1 else rgb, dtype=np.uint8)
    inside = cv2.resize(mask, size, interpolation=cv2.INTER_AREA) >= 128 if scale < 1 else mask >= 128
    return pixels, inside


def _backdrop(shape: tuple[int, int], background: str) -> np.ndarray:
    height, width = shape
    if background == "white":
        return np.full((height, width, 3), CHECKER_LIGHT, np.uint8)
    cell = max(8, round(max(shape) / 64))
    dark = ((np.arange(height)[:, None] // cell + np.arange(width)[None, :] // cell) % 2).astype(bool)
    return np.where(dark[..., None], np.array(CHECKER_DARK, np.uint8), np.array(CHECKER_LIGHT, np.uint8))


def _thickness(shape: tuple[int, int]) -> int:
    return max(2, round(max(shape) / 400))


def _draw_clicks(preview: np.ndarray, points: Sequence[Sequence[float]], scale: float, thickness: int,
                 filled: bool) -> None:
    """Each click as a dot, or as a ring around the clicked pixels; a thin white edge keeps it visible on any
    colour."""
    radius = thickness * 3
    for x, y, label in points:
        centre = (int(round(x * scale)), int(round(y * scale)))
        color = GARMENT_CLICK_COLOR if label else BACKGROUND_CLICK_COLOR
        edge = max(1, thickness // 2)
        if filled:
            cv2.circle(preview, centre, radius, color, thickness=-1)
            cv2.circle(preview, centre, radius, (255, 255, 255), thickness=edge)
        else:
            cv2.circle(preview, centre, radius + thickness, (255, 255, 255), thickness=edge)
            cv2.circle(preview, centre, radius, color, thickness=thickness)
