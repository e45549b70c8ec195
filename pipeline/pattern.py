"""The pattern word of a listing (solid, striped, checked, floral, print, graphic) from the garment's pixels.

No weights: the decision reads how much sharp light-dark or colour detail the garment's inside has, how that
detail is oriented (local structure-tensor orientation: stripes run one way, checks two ways at right angles,
prints every way) and where it sits (a graphic is one block of detail on a plain garment). Telling flowers from
other all-over prints needs a learned model; the detector says "print" for both and the seller can say "floral".
Thresholds were chosen on 48 labelled flat lays and checked on 48 more (benchmarks/colour_naming.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.errors import InputError
from storage.schema import GARMENT_PATTERNS

PATTERNS: tuple[str, ...] = GARMENT_PATTERNS  # the database checks the same tuple

_SIDE = 400                 # the garment's box is resampled so its long side has this many pixels
_EDGE_STRENGTH = 6.0        # Lab lightness/colour change per pixel (after light blur) that counts as pattern detail
_SOLID_BELOW = 0.14         # share of the inside with detail below which a garment is plain...
_FINE_FROM = 4.0            # ...unless its texture at the pixel scale is this strong (L units): a fine check or print
_FINE_CHECKED = 0.7         # a fine pattern whose pixel-scale orientation agrees this much modulo 90 degrees...
_FINE_STRIPED = 0.85        # ...while not all one way (coherence below this) is checked
_ONE_WAY = 0.5              # orientation agreement (0..1) of the detail above which it runs one way: stripes
_TWO_WAYS = 0.45            # agreement of the doubled orientation above which it runs two ways at right angles
_GRAPHIC_SHARE = 0.45       # a graphic's detail covers less than this share of the inside, in one block


@dataclass(frozen=True)
class PatternFeatures:
    detail: float           # share of the garment's inside with sharp detail
    one_way: float          # how much the detail's orientations agree (stripes: near 1)
    two_ways: float         # how much they agree modulo 90 degrees (checks: high, with one_way low)
    spread: float           # share of the inside within reach of detail (a graphic: small; all-over: near 1)
    fine: float             # mean pixel-scale lightness texture (L units): what a print too fine to resolve leaves
    fine_two_ways: float    # orientation agreement modulo 90 degrees of that texture (fine checks: high)
    fine_coherence: float   # how much that texture runs one way locally (fine stripes: near 1)


def parse_pattern(value: str) -> str:
    """Validate a pattern the seller chose, case-insensitive."""
    key = str(value).strip().lower()
    if key not in PATTERNS:
        raise InputError(f"Unknown pattern {value!r}; choose one of: {', '.join(PATTERNS)}.")
    return key


def detect_pattern(rgb: np.ndarray, garment: np.ndarray) -> str:
    """The pattern word for the garment under the boolean mask `garment` of `rgb`."""
    return classify(pattern_features(rgb, garment))


def classify(features: PatternFeatures) -> str:
    if features.detail < _SOLID_BELOW:
        if features.fine < _FINE_FROM:
            return "solid"
        checks = features.fine_two_ways >= _FINE_CHECKED and features.fine_coherence < _FINE_STRIPED
        return "checked" if checks else "print"
    if features.spread < _GRAPHIC_SHARE:
        return "graphic"
    if features.one_way >= _ONE_WAY:
        return "striped"
    if features.two_ways >= _TWO_WAYS:
        return "checked"
    return "print"


def pattern_features(rgb: np.ndarray, garment: np.ndarray) -> PatternFeatures:
    """Measurements of the garment's inside (the mask eroded, so its outline and seams at the edge do not count)."""
    box_rgb, inside = _garment_box(rgb, garment)
    lab = cv2.cvtColor(box_rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    smooth = cv2.GaussianBlur(lab, (0, 0), 1.0)
    gx = np.stack([cv2.Sobel(smooth[..., c], cv2.CV_32F, 1, 0, ksize=3) / 8.0 for c in range(3)])
    gy = np.stack([cv2.Sobel(smooth[..., c], cv2.CV_32F, 0, 1, ksize=3) / 8.0 for c in range(3)])
    # colour-aware structure tensor: sums over the three Lab channels
    jxx, jyy, jxy = (gx * gx).sum(0), (gy * gy).sum(0), (gx * gy).sum(0)
    strength = np.sqrt(jxx + jyy)
    edges = (strength >= _EDGE_STRENGTH) & inside
    count = int(edges.sum())
    inside_count = max(1, int(inside.sum()))
    detail = count / inside_count
    fine = _fine_texture(lab[..., 0], inside)
    if count < 20:
        return PatternFeatures(detail, 0.0, 0.0, 0.0, *fine)
    angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # gradient direction, modulo 180 degrees
    weights = strength[edges]
    doubled = np.exp(2j * angle[edges])
    one_way = float(np.abs((weights * doubled).sum()) / weights.sum())
    two_ways = float(np.abs((weights * doubled ** 2).sum()) / weights.sum())
    reach = max(3, _SIDE // 16)
    near_detail = cv2.dilate(edges.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)).astype(bool)
    spread = float((near_detail & inside).sum() / inside_count)
    return PatternFeatures(detail, one_way, two_ways, spread, *fine)


def _fine_texture(lightness: np.ndarray, inside: np.ndarray) -> tuple[float, float, float]:
    """(strength, orientation agreement modulo 90 degrees, local coherence) of the lightness texture left after a
    light blur is taken away: the pixel-scale texture of a pattern finer than the edges above resolve."""
    residual = lightness - cv2.GaussianBlur(lightness, (0, 0), 1.5)
    gx = cv2.Sobel(residual, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(residual, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (cv2.GaussianBlur(product, (0, 0), 3.0) for product in (gx * gx, gy * gy, gx * gy))
    weights = np.sqrt(jxx + jyy)[inside]
    if weights.sum() <= 0:
        return 0.0, 0.0, 0.0
    quadrupled = np.exp(2j * np.arctan2(2 * jxy, jxx - jyy)[inside])  # 4x the orientation angle
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2)[inside] / (jxx + jyy)[inside].clip(1e-6)
    return (float(np.abs(residual[inside]).mean()), float(np.abs((weights * quadrupled).sum()) / weights.sum()),
            float((coherence * weights).sum() / weights.sum()))


def _garment_box(rgb: np.ndarray, garment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The garment's bounding box resampled to _SIDE on its long side, and its inside (eroded) there."""
    ys, xs = np.nonzero(garment)
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    scale = _SIDE / max(bottom - top, right - left)
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    box = cv2.resize(rgb[top:bottom, left:right], size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(garment[top:bottom, left:right].astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    inside = cv2.erode((mask >= 128).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    return box, inside
