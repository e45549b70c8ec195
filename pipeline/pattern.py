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
_SOLID_BELOW = 0.1          # share of the inside with detail below which a garment is plain
_ONE_WAY = 0.5              # orientation agreement (0..1) of the detail above which it runs one way: stripes
_TWO_WAYS = 0.45            # agreement of the doubled orientation above which it runs two ways at right angles
_GRAPHIC_SHARE = 0.45       # a graphic's detail covers less than this share of the inside, in one block


@dataclass(frozen=True)
class PatternFeatures:
    detail: float           # share of the garment's inside with sharp detail
    one_way: float          # how much the detail's orientations agree (stripes: near 1)
    two_ways: float         # how much they agree modulo 90 degrees (checks: high, with one_way low)
    spread: float           # share of the inside within reach of detail (a graphic: small; all-over: near 1)


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
        return "solid"
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
    if count < 20:
        return PatternFeatures(detail=detail, one_way=0.0, two_ways=0.0, spread=0.0)
    angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # gradient direction, modulo 180 degrees
    weights = strength[edges]
    doubled = np.exp(2j * angle[edges])
    one_way = float(np.abs((weights * doubled).sum()) / weights.sum())
    two_ways = float(np.abs((weights * doubled ** 2).sum()) / weights.sum())
    reach = max(3, _SIDE // 16)
    near_detail = cv2.dilate(edges.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)).astype(bool)
    spread = float((near_detail & inside).sum() / inside_count)
    return PatternFeatures(detail=detail, one_way=one_way, two_ways=two_ways, spread=spread)


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
