"""The ghost (invisible-mannequin) product shot from the real garment pixels: no model weights.

Every garment gets the same framing: its bounding box is scaled to fill FILL of the canvas width or height,
whichever limits first, and centred, so a seller's whole closet looks consistent. The edge is feathered about
a pixel at output scale, edge colours are taken from inside the garment (no halo of the floor it lay on), and a
soft, faint shadow sits slightly below it. A small garment that must be enlarged is resampled with Lanczos on its
colours premultiplied by the mask, so neither the floor nor Lanczos' ringing leaves a ring at its edge, which
stays crisp (`ghost_framing` says by how much a garment is enlarged).
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from pipeline.errors import InputError
from pipeline.presets import BACKGROUNDS, parse_background

FILL = 0.82                 # share of the canvas width or height the garment's bounding box fills
FEATHER_SIGMA = 0.8         # edge softness in output pixels
MAX_FEATHER_SIGMA = 1.5     # however much a garment is enlarged, its edge stays this crisp
SHADOW_OPACITY = 0.22       # darkening under the garment's centre
SHADOW_BLUR = 0.025         # shadow blur sigma, as a share of the garment's longer side
SHADOW_OFFSET = 0.012       # shadow drop, as a share of the garment's height
SHADOW_SCALE = 4            # the shadow is blurred at 1/SHADOW_SCALE size: same look, much faster
_PAD = 4                    # output pixels around the garment kept for feathering
_SPREAD = 15                # window (px) over which interior colours are spread onto the edge
_MIN_WEIGHT = 1e-3          # enlarged-mask weight below which a colour is not divided out


def compose_ghost(image: Image.Image, mask: np.ndarray, size: tuple[int, int],
                  background: str = "white") -> Image.Image:
    """An RGB image of exactly `size` (width, height): the garment centred on `background` with a soft shadow."""
    background_rgb = BACKGROUNDS[parse_background(background)]
    width, height = _check_size(size)
    binary = _binary_mask(image, mask)
    x, y, w, h = cv2.boundingRect(binary)
    scale = _fill_scale(w, h, width, height)

    pad = int(np.ceil(_PAD / scale))
    box = (max(0, x - pad), max(0, y - pad), min(image.width, x + w + pad), min(image.height, y + h + pad))
    rgb, alpha, inner = _garment_at_scale(image, binary, box, scale)

    # Where the garment's bounding box lands on the canvas, centred; the padded crop is offset from it.
    left = round((width - w * scale) / 2) - round((x - box[0]) * scale)
    top = round((height - h * scale) / 2) - round((y - box[1]) * scale)

    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = background_rgb
    _apply_shadow(canvas, background_rgb, alpha, left, top, h * scale, max(w, h) * scale)
    _paste(canvas, _decontaminate(rgb, inner, _spread_window(scale)), alpha, left, top)
    return Image.fromarray(canvas, "RGB")


def ghost_framing(mask: np.ndarray, size: tuple[int, int]) -> tuple[int, float]:
    """The garment's long side in the photo (its mask's bounding box), and the factor `compose_ghost` scales it
    by for an output of `size`: above 1 the garment's pixels are enlarged."""
    binary = _as_binary(np.asarray(mask))
    if not binary.any():
        raise InputError("The mask is empty: there is no garment to place.")
    width, height = _check_size(size)
    _, _, w, h = cv2.boundingRect(binary)
    return max(w, h), _fill_scale(w, h, width, height)


def _fill_scale(w: int, h: int, width: int, height: int) -> float:
    return FILL * min(width / w, height / h)


def natural_long_side(mask: np.ndarray, cap: int = 1600, floor: int = 800) -> int:
    """Output long side for a ratio-only output: the garment's own size over the framing fill, in [floor, cap].

    A garment 1000 px long in the photo gives about 1220 px, so the ghost shot is never upscaled needlessly.
    """
    binary = _as_binary(np.asarray(mask))
    if not binary.any():
        raise InputError("The mask is empty: there is no garment to place.")
    _, _, w, h = cv2.boundingRect(binary)
    return int(min(cap, max(floor, round(max(w, h) / FILL))))


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"Output size must be (width, height), got {size!r}.") from None
    if width < 16 or height < 16:
        raise InputError(f"Output size {width}x{height} is too small; both sides must be at least 16 px.")
    return width, height


def _as_binary(mask: np.ndarray) -> np.ndarray:
    """uint8 0/255 mask from 0/255 (threshold 128), 0/1 or boolean input."""
    if mask.ndim != 2:
        raise InputError(f"The mask must be a single-channel image, got shape {mask.shape}.")
    if mask.dtype == np.bool_:
        return mask.view(np.uint8) * np.uint8(255)
    if mask.dtype != np.uint8:
        mask = np.clip(mask, 0, 255).astype(np.uint8)
    threshold = 127 if cv2.minMaxLoc(mask)[1] > 1 else 0
    return cv2.threshold(mask, threshold, 255, cv2.THRESH_BINARY)[1]


def _binary_mask(image: Image.Image, mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape[:2] != (image.height, image.width):
        raise InputError(f"The mask is {mask.shape[1]}x{mask.shape[0]} but the photo is {image.width}x{image.height}.")
    binary = _as_binary(mask)
    if not cv2.countNonZero(binary):
        raise InputError("The mask is empty: there is no garment to place.")
    return binary


def _garment_at_scale(image: Image.Image, binary: np.ndarray, box: tuple[int, int, int, int],
                      scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The garment's box resized by `scale`: RGB (uint8), feathered alpha (float32 0-1) and its solid interior."""
    x0, y0, x1, y1 = box
    out_size = (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale)))
    coverage = binary[y0:y1, x0:x1]
    if scale < 1:
        # An integer box reduction straight from the full photo (no full-size copy), then area resampling.
        factor = max(1, int(1 / scale))
        source = image if image.mode == "RGB" else image.convert("RGB")
        if factor > 1:
            reduced = source.reduce(factor, box=box)
            coverage = np.asarray(Image.fromarray(binary).reduce(factor, box=box))
        else:
            reduced = source.crop(box)
        rgb = cv2.resize(np.asarray(reduced), out_size, interpolation=cv2.INTER_AREA)
        coverage = cv2.resize(coverage, out_size, interpolation=cv2.INTER_AREA)
    else:
        rgb = _enlarge_premultiplied(np.asarray(image.crop(box).convert("RGB")), coverage, out_size)
        # Enlarging: round off the source pixel staircase before it is magnified.
        coverage = cv2.resize(cv2.GaussianBlur(coverage, (0, 0), 0.7), out_size, interpolation=cv2.INTER_LINEAR)
    solid = cv2.threshold(coverage, 127, 1.0, cv2.THRESH_BINARY)[1].astype(np.float32)
    # Eroding one pixel before feathering keeps the blended rim inside the garment, away from the old background.
    solid = cv2.erode(solid, np.ones((3, 3), np.uint8))
    alpha = cv2.GaussianBlur(solid, (0, 0), min(max(FEATHER_SIGMA, 0.4 * scale), MAX_FEATHER_SIGMA))
    inner = cv2.erode((coverage >= 250).astype(np.uint8), np.ones((3, 3), np.uint8))
    return rgb, alpha, inner


def _enlarge_premultiplied(rgb: np.ndarray, coverage: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Lanczos enlargement of the colours weighted by the mask, then divided by the enlarged mask: the old
    background has no weight, so it cannot ring or bleed into the garment's edge as a dark or light halo."""
    alpha = coverage.astype(np.float32) / 255
    weighted = cv2.resize(rgb.astype(np.float32) * alpha[..., None], out_size, interpolation=cv2.INTER_LANCZOS4)
    weight = cv2.resize(alpha, out_size, interpolation=cv2.INTER_LANCZOS4)
    colour = weighted / np.maximum(weight, _MIN_WEIGHT)[..., None]
    # Far outside the garment the ratio means nothing (alpha is 0 there); keep it in range.
    return np.clip(colour + 0.5, 0, 255).astype(np.uint8)


def _spread_window(scale: float) -> int:
    """The spread window grows with enlargement: the rim left outside `inner` is about a source pixel wide."""
    return max(_SPREAD, 2 * int(np.ceil(2 * scale)) + 1)


def _decontaminate(rgb: np.ndarray, inner: np.ndarray, window: int = _SPREAD) -> np.ndarray:
    """Replace colours near the edge, which mix in the old background, with colours spread from the interior."""
    # Integer window sums cost less than float blurs (16 bits hold 255 x 15 x 15); only the edge pixels are divided.
    depth = cv2.CV_16U if 255 * window * window <= np.iinfo(np.uint16).max else cv2.CV_32S
    inside = inner.astype(np.uint8)
    count = cv2.boxFilter(inside, depth, (window, window), normalize=False)
    edge = (inside == 0) & (count > 0)
    if not edge.any():
        return rgb
    total = cv2.boxFilter(rgb * inside[..., None], depth, (window, window), normalize=False)
    out = rgb.copy()
    spread = total[edge].astype(np.float32) / count[edge][:, None].astype(np.float32)
    out[edge] = np.clip(spread + 0.5, 0, 255).astype(np.uint8)
    return out


def _window(canvas_shape: tuple[int, int], left: int, top: int, patch_shape: tuple[int, int]):
    """Matching slices of canvas and patch for a patch placed at (left, top), clipped to the canvas."""
    height, width = canvas_shape
    ph, pw = patch_shape
    cx0, cy0 = max(0, left), max(0, top)
    cx1, cy1 = min(width, left + pw), min(height, top + ph)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    return (slice(cy0, cy1), slice(cx0, cx1)), (slice(cy0 - top, cy1 - top), slice(cx0 - left, cx1 - left))


def _paste(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, left: int, top: int) -> None:
    window = _window(canvas.shape[:2], left, top, alpha.shape)
    if window is None:
        return
    target, source = window
    weight = np.ascontiguousarray(alpha[source])
    canvas[target] = cv2.blendLinear(np.ascontiguousarray(rgb[source]), canvas[target], weight, 1.0 - weight)


def _apply_shadow(canvas: np.ndarray, background_rgb: tuple[int, int, int], alpha: np.ndarray, left: int,
                  top: int, garment_height: float, garment_side: float) -> None:
    """Darken the background under a blurred, slightly lowered copy of the garment's alpha.

    The shadow and the shaded background are made at 1/SHADOW_SCALE size and enlarged: it is blurry anyway.
    """
    small_size = (max(1, alpha.shape[1] // SHADOW_SCALE), max(1, alpha.shape[0] // SHADOW_SCALE))
    small = cv2.resize(alpha, small_size, interpolation=cv2.INTER_AREA)
    sigma = max(0.5, SHADOW_BLUR * garment_side / SHADOW_SCALE)
    margin = int(np.ceil(3 * sigma))
    small = cv2.copyMakeBorder(small, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=0)
    shadow = cv2.GaussianBlur(small, (0, 0), sigma) * SHADOW_OPACITY
    shaded = np.float32(background_rgb) * (1.0 - shadow[..., None])
    shaded = np.clip(shaded + 0.5, 0, 255).astype(np.uint8)  # far from the garment this is exactly the background
    full_size = (shaded.shape[1] * SHADOW_SCALE, shaded.shape[0] * SHADOW_SCALE)
    shaded = cv2.resize(shaded, full_size, interpolation=cv2.INTER_LINEAR)
    drop = round(SHADOW_OFFSET * garment_height)
    offset = margin * SHADOW_SCALE
    window = _window(canvas.shape[:2], left - offset, top - offset + drop, shaded.shape[:2])
    if window is None:
        return
    target, source = window
    canvas[target] = shaded[source]
