"""Garment attributes without model weights: colour science and names, and a category guessed from the mask's shape.

Both are defaults the seller can correct; `parse_category` and `color_from_hex` validate their edits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from pipeline.errors import InputError
from storage.schema import GARMENT_CATEGORIES

CATEGORIES: tuple[str, ...] = GARMENT_CATEGORIES  # the database checks the same tuple


@dataclass(frozen=True)
class GarmentColor:
    name: str
    hex: str


# Colour names a seller would write in a listing, each with the garment shades it covers (several where a name
# spans light and dark, or a dyed and a faded look, such as denim).
PALETTE: dict[str, tuple[str, ...]] = {
    "black": ("#141414",),
    "charcoal": ("#3c3d40",),
    "dark grey": ("#5a5a5c",),
    "grey": ("#8d8d8f",),
    "light grey": ("#c4c4c6",),
    "white": ("#f7f7f5",),
    "ivory": ("#f4eedc",),
    "cream": ("#eee2c4",),
    "beige": ("#d8c3a0",),
    "camel": ("#c09160",),
    "tan": ("#b98b5e",),
    "khaki": ("#c2b08a",),
    "taupe": ("#8b7b68",),
    "brown": ("#6e4a2e",),
    "chocolate": ("#3f2a1f",),
    "rust": ("#a9471f",),
    "orange": ("#ee7b22",),
    "coral": ("#f2785f",),
    "peach": ("#f6c3a3",),
    "mustard": ("#d5a021",),
    "yellow": ("#f4d635",),
    "olive": ("#6b6b30",),
    "army green": ("#4a4a30",),
    "green": ("#2f8a45",),
    "forest green": ("#1f4a2e",),
    "mint": ("#a9dcc0", "#c0e3d1"),
    "sage": ("#a3b18f",),
    "teal": ("#167a7a",),
    "turquoise": ("#3cc3c0",),
    "light blue": ("#a9c6e4",),
    "denim blue": ("#4d6b91", "#34476a", "#7b95b5"),
    "blue": ("#2a56b8",),
    "royal blue": ("#2c3fa8",),
    "navy": ("#1f2a44", "#232838"),
    "purple": ("#5e3a8c",),
    "lavender": ("#bfaedd",),
    "lilac": ("#c8a2c8",),
    "plum": ("#6a2c55",),
    "burgundy": ("#74182a",),
    "red": ("#c41e2e",),
    "hot pink": ("#e0388b",),
    "pink": ("#ef9fbd",),
    "blush pink": ("#efc4c0",),
    "mauve": ("#b2879a",),
}
HEATHER_GREY = "heather grey"
_GREYS = {"charcoal", "dark grey", "grey", "light grey"}

_WORK_PIXELS = 250_000      # the image is box-reduced to about this many pixels first
_HEATHER_MOTTLE = 6.0       # std of fine lightness detail (L units) above which a grey reads as heather


# ---------------------------------------------------------------- colour science

def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (N, 3) 0-255 values -> CIELAB (D65), float32 (N, 3)."""
    rgb = np.asarray(rgb, dtype=np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (N, 3) -> sRGB uint8 (N, 3), clipped to the gamut."""
    lab = np.asarray(lab, dtype=np.float32).reshape(-1, 1, 3)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB).reshape(-1, 3)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray, lightness_weight: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), vectorised; inputs broadcast over (..., 3).
    `lightness_weight` is the formula's k_L: 2 tolerates lightness differences as textile matching does."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    L1, a1, b1 = np.moveaxis(lab1, -1, 0)
    L2, a2, b2 = np.moveaxis(lab2, -1, 0)

    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0
    g = 0.5 * (1.0 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    chroma_zero = (c1p * c2p) == 0

    dL = L2 - L1
    dC = c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(chroma_zero, 0.0, dh)
    dH = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)

    L_mean = (L1 + L2) / 2.0
    cp_mean = (c1p + c2p) / 2.0
    h_sum = h1p + h2p
    h_mean = np.where(
        np.abs(h1p - h2p) <= 180.0, h_sum / 2.0,
        np.where(h_sum < 360.0, (h_sum + 360.0) / 2.0, (h_sum - 360.0) / 2.0),
    )
    h_mean = np.where(chroma_zero, h_sum, h_mean)

    t = (1.0 - 0.17 * np.cos(np.radians(h_mean - 30.0)) + 0.24 * np.cos(np.radians(2.0 * h_mean))
         + 0.32 * np.cos(np.radians(3.0 * h_mean + 6.0)) - 0.20 * np.cos(np.radians(4.0 * h_mean - 63.0)))
    d_theta = 30.0 * np.exp(-(((h_mean - 275.0) / 25.0) ** 2))
    r_c = 2.0 * np.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
    s_l = 1.0 + 0.015 * (L_mean - 50.0) ** 2 / np.sqrt(20.0 + (L_mean - 50.0) ** 2)
    s_c = 1.0 + 0.045 * cp_mean
    s_h = 1.0 + 0.015 * cp_mean * t
    r_t = -np.sin(np.radians(2.0 * d_theta)) * r_c

    s_l = s_l * lightness_weight
    return np.sqrt((dL / s_l) ** 2 + (dC / s_c) ** 2 + (dH / s_h) ** 2 + r_t * (dC / s_c) * (dH / s_h))


def _hex_to_rgb(value: str) -> tuple[int, int, int]:
    return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def rgb_to_hex(rgb) -> str:
    """(r, g, b) 0-255 -> "#rrggbb"."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


_PALETTE_NAMES = [name for name, shades in PALETTE.items() for _ in shades]
_PALETTE_LAB = srgb_to_lab(np.array([_hex_to_rgb(shade) for shades in PALETTE.values() for shade in shades]))


def nearest_color_name(lab: np.ndarray, lightness_weight: float = 1.0) -> str:
    """The palette name closest (CIEDE2000, with k_L = `lightness_weight`) to one Lab colour."""
    distances = ciede2000(np.asarray(lab, dtype=np.float64)[None, :], _PALETTE_LAB, lightness_weight)
    return _PALETTE_NAMES[int(np.argmin(distances))]


# ---------------------------------------------------------------- dominant colour

def working_copy(image: Image.Image, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box-reduced RGB array, the garment's pixels in it (a boolean mask, slightly eroded) and the surround's
    (well outside the garment, where no edge or shadow of it falls)."""
    mask = np.asarray(mask)
    if mask.shape[:2] != (image.height, image.width):
        raise InputError(f"The mask is {mask.shape[1]}x{mask.shape[0]} but the image is {image.width}x{image.height}.")
    if not mask.any():
        raise InputError("The mask is empty: no garment pixels to measure.")
    factor = max(1, int(np.ceil(np.sqrt(image.width * image.height / _WORK_PIXELS))))
    rgb_image = image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy 12 MP for nothing
    small = rgb_image.reduce(factor) if factor > 1 else rgb_image
    rgb = np.asarray(small)
    small_mask = cv2.resize(mask.astype(np.uint8), small.size, interpolation=cv2.INTER_AREA) >= 128
    margin = max(3, round(0.03 * max(small_mask.shape)))
    surround = ~cv2.dilate(small_mask.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)).astype(bool)
    # Edge pixels blend garment and background; drop them unless the garment is tiny.
    eroded = cv2.erode(small_mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if eroded.sum() >= 200:
        small_mask = eroded
    elif not small_mask.any():
        small_mask = cv2.resize(mask.astype(np.uint8), small.size, interpolation=cv2.INTER_NEAREST) > 0
    return rgb, small_mask, surround


def _lightness_mottle(rgb: np.ndarray, mask: np.ndarray) -> float:
    """How much fine light/dark detail the garment has: std of lightness minus its local mean, inside the mask."""
    lightness = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[..., 0].astype(np.float32) * (100.0 / 255.0)
    detail = lightness - cv2.GaussianBlur(lightness, (0, 0), 2.0)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    values = detail[inner if inner.sum() >= 50 else mask]
    return float(values.std())


def is_heather(name: str, rgb: np.ndarray, mask: np.ndarray) -> bool:
    """Whether a grey garment is flecked light and dark (a heather or marl knit) rather than plain."""
    return name in _GREYS and _lightness_mottle(rgb, mask) >= _HEATHER_MOTTLE


def color_from_hex(value: str) -> GarmentColor:
    """A colour the seller typed or picked, as "#rrggbb" (the "#" may be left out), with its nearest name."""
    text = str(value).strip().lower()
    if not text.startswith("#"):
        text = "#" + text
    if not re.fullmatch(r"#[0-9a-f]{6}", text):
        raise InputError(f"Colour {value!r} is not a hex colour like #1f2a44.")
    lab = srgb_to_lab(np.array([_hex_to_rgb(text)]))[0]
    return GarmentColor(name=nearest_color_name(lab), hex=text)


# ---------------------------------------------------------------- category

def parse_category(value: str) -> str:
    """Validate a category the seller chose, case-insensitive."""
    key = str(value).strip().lower()
    if key not in CATEGORIES:
        raise InputError(f"Unknown category {value!r}; choose one of: {', '.join(CATEGORIES)}.")
    return key


_PROFILE = 100  # the garment's bounding box is resampled to this many rows and columns


@dataclass(frozen=True)
class Silhouette:
    """Shape measurements of a garment mask; lengths are fractions of the bounding box (0-1)."""

    aspect: float         # height / width of the bounding box
    top_width: float      # widest row in the upper part (10-45 % of the height): shoulders plus sleeves
    mid_width: float      # typical row width at 45-65 %: a dress's waist, or a coat's body plus hanging sleeves
    hem_width: float      # typical row width at 75-95 %
    sleeve_end: float     # where the outermost columns end: short sleeves stop high, bodies and legs go down
    crotch: float         # where the centre columns end: trousers stop at the crotch, a hem goes to the bottom
    leg_gap: float        # share of rows in the lower part with background in the middle of the row
    neck_drop: float      # how much lower the top edge is at the centre than beside it (+ neckline, - collar)
    waist_roughness: float  # spread of the top edge over the middle half: a waistband is straight


def measure_silhouette(mask: np.ndarray) -> Silhouette:
    """The shape measurements `guess_category` decides on, from the largest blob of the mask."""
    box, aspect = _normalised_box(mask)
    n = _PROFILE
    rows_on = box.any(axis=1)
    left = np.argmax(box, axis=1)
    right = n - np.argmax(box[:, ::-1], axis=1)
    widths = np.where(rows_on, right - left, 0) / n
    cols_on = box.any(axis=0)
    top_edge = np.where(cols_on, np.argmax(box, axis=0), n).astype(float)
    bottom_edge = np.where(cols_on, n - np.argmax(box[::-1], axis=0), 0).astype(float)
    return Silhouette(
        aspect=aspect,
        top_width=float(widths[10:45].max()),
        mid_width=float(np.median(widths[45:65])),
        hem_width=float(np.median(widths[75:95])),
        sleeve_end=float(np.median(bottom_edge[3:12]) + np.median(bottom_edge[88:97])) / (2 * n),
        crotch=float(np.median(bottom_edge[42:58])) / n,
        leg_gap=float(np.mean([_centre_gap(row) > 0.3 for row in box[60:95]])),
        neck_drop=float(np.median(top_edge[42:58]) - min(np.median(top_edge[22:38]), np.median(top_edge[62:78]))),
        waist_roughness=float(np.std(top_edge[25:75])),
    )


def _normalised_box(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """The largest blob's bounding box resampled to _PROFILE x _PROFILE booleans, and its height / width."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or not mask.any():
        raise InputError("The mask is empty: no garment shape to measure.")
    scale = min(1.0, 400 / max(mask.shape))
    small = mask if scale == 1.0 else cv2.resize(mask.astype(np.uint8), None, fx=scale, fy=scale,
                                                  interpolation=cv2.INTER_AREA)
    binary = (small >= 128 if small.max() > 1 else small > 0).astype(np.uint8)
    if not binary.any():
        binary = (small > 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[largest, :4]
    blob = (labels[y:y + h, x:x + w] == largest).astype(np.uint8) * 255
    box = cv2.resize(blob, (_PROFILE, _PROFILE), interpolation=cv2.INTER_AREA) >= 128
    return box, h / w


def _centre_gap(row: np.ndarray) -> float:
    """Share of background in the middle of a row's extent (between the legs of trousers)."""
    on = np.flatnonzero(row)
    if len(on) < 2:
        return 0.0
    middle = (on[0] + on[-1]) // 2
    span = row[max(on[0], middle - 8):min(on[-1], middle + 8) + 1]
    return float(1.0 - span.mean())


def guess_category(mask: np.ndarray) -> str:
    """A default category from the mask's shape alone; the seller can correct it.

    In order: two legs -> bottom; short sleeves sticking out -> top (dress when long); a long garment ->
    outerwear when its middle is full width (long sleeves hanging beside a straight body), else dress (a waist);
    a short garment with a straight waistband -> bottom (skirt, shorts); anything else -> top.
    """
    shape = measure_silhouette(mask)
    if shape.crotch < 0.85 or shape.leg_gap >= 0.3:
        return "bottom"
    if shape.sleeve_end < 0.65:
        return "dress" if shape.aspect >= 1.2 else "top"
    if shape.aspect >= 1.25:
        return "outerwear" if shape.mid_width >= 0.93 else "dress"
    straight_waist = shape.neck_drop >= 0 and (shape.hem_width > shape.top_width or shape.waist_roughness <= 1.5)
    if shape.aspect < 1.0 and straight_waist:
        return "bottom"
    return "top"
