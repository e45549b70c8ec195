"""Garment fidelity: does the garment in an output photo still have the real garment's colour, and its pattern?

The garment region of a generated on-model photo is the body band its category covers (from the model card's
OpenPose keypoints) intersected with the person's silhouette; its dominant colour is compared with the garment's
own colour in CIEDE2000. Outputs above FIDELITY_THRESHOLD are flagged in the UI ("colour may differ from the item"):
a seller gets "not as described" claims when the photo's colour is not the item's.

The pattern check compares the same region with the cut-out by the pattern detector (`pipeline.pattern`, no
weights): a plain garment that came back printed, a print that came back plain, or stripes that became checks are
flagged too ("pattern may differ from the item"), with a 0-1 similarity of how much sharp detail each has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageColor

from pipeline.attributes import ciede2000, color_from_hex, parse_category, srgb_to_lab
from pipeline.colours import dominant_color
from pipeline.cutout import cut_out
from pipeline.errors import InputError, SegmentationError
from pipeline.pattern import PatternFeatures, classify, pattern_features
from pipeline.poses import keypoints_to_pixels

# CIEDE2000 of about 1 is a just-noticeable difference side by side, and 2-5 shows only when two colours sit next
# to each other; a listing photo and the parcel never do, and the phone photo the garment's colour comes from is
# itself a few units off (white balance, shade). Around 10, two colours read as different colours to a shopper,
# which is what a "not as described" claim is about. Measured: the same colour rendered 15 % darker or lighter
# (generator lighting) is 6-8, under the flag; neighbouring listing colours (navy / royal blue, burgundy / red,
# beige / camel) are 15-17, over it.
FIDELITY_THRESHOLD = 10.0

# OpenPose COCO-18 keypoint indices.
NECK, R_SHOULDER, L_SHOULDER = 1, 2, 5
R_HIP, R_KNEE, R_ANKLE = 8, 9, 10
L_HIP, L_KNEE, L_ANKLE = 11, 12, 13

BAND_WIDEN = 0.15          # each side, as a share of the band's keypoint width (sleeves, loose fits)
MIN_HALF_WIDTH = 0.2       # half width at least this share of the band's height (a side-on pose)
BOTTOM_WIDEN = 0.35        # trousers and skirts reach past the hip joints more than tops past the shoulders
MIN_OVERLAP_SHARE = 0.05   # below this share of the band on the silhouette, the segmentation missed: use the band
MAX_SKIN_SHARE = 0.5       # skin-like pixels are dropped only while a minority (a beige garment is "skin-like")
MIN_REGION_PIXELS = 64
CENTRAL_BOX = (0.3, 0.2, 0.7, 0.8)  # left, top, right, bottom share of the frame: where a centred subject is


@dataclass(frozen=True)
class FidelityScore:
    delta_e: float      # CIEDE2000 between the garment's colour and the garment region's colour in the output
    output_hex: str     # the colour measured in the output
    flagged: bool       # delta_e > FIDELITY_THRESHOLD


@dataclass(frozen=True)
class PatternScore:
    garment_pattern: str  # the cut-out's pattern word
    output_pattern: str   # the output region's
    similarity: float     # 0..1: how alike the share of sharp detail is (1: the same)
    flagged: bool         # the pattern was lost, invented or changed kind


_PATTERN_FLOOR = 0.05  # detail shares below this are all "plain" for the similarity
_ALL_OVER = {"print", "floral", "graphic"}  # words a detector may swap for the same printed garment


def garment_pattern(image: Image.Image, mask: np.ndarray) -> PatternFeatures:
    """The cut-out's pattern measurements, once per job."""
    return pattern_features(np.asarray(image.convert("RGB")), np.asarray(mask) > 0)


def pattern_score(garment: PatternFeatures, output: Image.Image, region: np.ndarray) -> PatternScore:
    """How the pattern of the garment region in `output` compares with the garment's own."""
    measured = pattern_features(np.asarray(output.convert("RGB")), _binary_region(region, output.size) > 0)
    before, after = classify(garment), classify(measured)
    low, high = sorted((max(garment.detail, _PATTERN_FLOOR), max(measured.detail, _PATTERN_FLOOR)))
    changed_kind = before != after and not {before, after} <= _ALL_OVER
    return PatternScore(garment_pattern=before, output_pattern=after, similarity=round(low / high, 3),
                        flagged=changed_kind)


def garment_region(output: Image.Image, category: str, keypoints: Sequence | None = None,
                   segmenter=None, pose_aspect: float | None = None) -> np.ndarray:
    """uint8 mask (255 = garment) of where a garment of `category` is in an output photo.

    `keypoints`: OpenPose COCO-18 points normalised to 0..1 ((x, y) or (x, y, confidence); None when missing).
    `pose_aspect`: width / height of the frame they are normalised in, fitted centred into the output as
    `pipeline.poses.render_pose` does (pass `poses.POSE_ASPECT` for model-card poses); None = the whole output.
    Without keypoints (or without the ones the category needs) the whole foreground is the region; when the
    foreground cannot be segmented either, the centre of the frame is.
    """
    category = parse_category(category)
    width, height = output.size
    band = None
    if keypoints is not None:
        band = _body_band(category, _to_pixels(keypoints, width, height, pose_aspect), width, height)
    foreground = _foreground(output, segmenter)
    if foreground is None:
        region = band if band is not None else _central_box(width, height)
    elif band is None:
        region = foreground
    else:
        region = band & foreground
        if np.count_nonzero(region) < MIN_OVERLAP_SHARE * np.count_nonzero(band):
            region = band
    return np.where(_without_skin(output, region), 255, 0).astype(np.uint8)


def fidelity_score(garment_hex: str, output: Image.Image, region: np.ndarray) -> FidelityScore:
    """How far the region's dominant colour in `output` is from the garment's colour `garment_hex`."""
    garment = color_from_hex(garment_hex)
    mask = _binary_region(region, output.size)
    measured = dominant_color(output, mask)
    delta = round(float(ciede2000(_lab(garment.hex), _lab(measured.hex))), 2)
    return FidelityScore(delta_e=delta, output_hex=measured.hex, flagged=delta > FIDELITY_THRESHOLD)


# ---------------------------------------------------------------- body band from the pose

Pixel = tuple[float, float]


def _to_pixels(keypoints: Sequence, width: int, height: int, aspect: float | None) -> list[Pixel | None]:
    """Keypoints in output pixels, placed as `render_pose` draws them; missing or undetected ones as None."""
    if aspect is not None and not (isinstance(aspect, (int, float)) and aspect > 0):
        raise InputError(f"The pose aspect must be a positive width / height ratio, got {aspect!r}.")
    return keypoints_to_pixels([_point(point, index) for index, point in enumerate(keypoints)], width, height, aspect)


def _point(point, index: int) -> Pixel | None:
    if point is None:
        return None
    try:
        x, y = float(point[0]), float(point[1])
        confidence = float(point[2]) if len(point) > 2 and point[2] is not None else 1.0
    except (TypeError, ValueError, IndexError):
        raise InputError(f"Keypoint {index} is {point!r}; expected (x, y) normalised to 0..1, or None.") from None
    if not (np.isfinite(x) and np.isfinite(y)) or confidence <= 0 or x < 0 or y < 0:
        return None  # OpenPose writes undetected joints as (0, 0, 0) or negatives
    return x, y


def _points(pixels: list[Pixel | None], indices: Sequence[int]) -> list[Pixel]:
    return [pixels[i] for i in indices if i < len(pixels) and pixels[i] is not None]


def _body_band(category: str, pixels: list[Pixel | None], width: int, height: int) -> np.ndarray | None:
    """Boolean mask of the rectangle of the body the category covers; None when its keypoints are missing."""
    shoulders = _points(pixels, (R_SHOULDER, L_SHOULDER)) or _points(pixels, (NECK,))
    hips = _points(pixels, (R_HIP, L_HIP))
    knees = _points(pixels, (R_KNEE, L_KNEE))
    ankles = _points(pixels, (R_ANKLE, L_ANKLE))
    widen = BAND_WIDEN
    if category in ("top", "outerwear"):
        upper, lower, spread = shoulders, hips, shoulders + hips
    elif category == "bottom":
        upper, lower, spread, widen = hips, ankles or knees, hips + knees + ankles, BOTTOM_WIDEN
    else:  # dress: knee length covers minis to maxis without counting the legs of a short dress
        upper, lower, spread = shoulders, knees or ankles, shoulders + hips + knees
    if not upper or not lower:
        return None
    top = min(y for _, y in upper)
    bottom = max(y for _, y in lower)
    if bottom - top < 2:
        return None
    xs = [x for x, _ in spread]
    half = max((max(xs) - min(xs)) * (0.5 + widen), MIN_HALF_WIDTH * (bottom - top))
    centre = (max(xs) + min(xs)) / 2
    band = np.zeros((height, width), bool)
    band[_clip(top, height):_clip(bottom, height) + 1, _clip(centre - half, width):_clip(centre + half, width) + 1] \
        = True
    return band if band.any() else None


def _clip(value: float, size: int) -> int:
    return int(np.clip(round(value), 0, size - 1))


def _central_box(width: int, height: int) -> np.ndarray:
    left, top, right, bottom = CENTRAL_BOX
    box = np.zeros((height, width), bool)
    box[round(top * height):round(bottom * height), round(left * width):round(right * width)] = True
    return box


# ---------------------------------------------------------------- silhouette and skin

def _foreground(output: Image.Image, segmenter) -> np.ndarray | None:
    """The person (or ghost garment) as a boolean mask; None when it cannot be separated from the background."""
    try:
        mask = segmenter.segment(output).mask if segmenter is not None else cut_out(output)
    except SegmentationError:
        return None
    mask = np.asarray(mask)
    if mask.shape[:2] != (output.height, output.width):
        mask = cv2.resize(mask.astype(np.uint8), output.size, interpolation=cv2.INTER_NEAREST)
    foreground = mask > (127 if mask.max() > 1 else 0)
    return foreground if foreground.any() else None


def _skin_like(rgb: np.ndarray) -> np.ndarray:
    """Clearly skin-coloured pixels: the classic YCrCb skin box (Chai & Ngan), kept narrow."""
    ycrcb = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycrcb[..., 0], ycrcb[..., 1], ycrcb[..., 2]
    return (y > 60) & (cr >= 138) & (cr <= 173) & (cb >= 77) & (cb <= 127)


def _without_skin(output: Image.Image, region: np.ndarray) -> np.ndarray:
    """Drop bare arms, necks and legs from the region, unless they are most of it (then it is the garment's
    own colour, e.g. beige or blush, and the dominant colour copes with the rest)."""
    skin = region & _skin_like(np.asarray(output.convert("RGB")))
    total = np.count_nonzero(region)
    kept = total - np.count_nonzero(skin)
    if total == 0 or kept < MIN_REGION_PIXELS or kept < (1 - MAX_SKIN_SHARE) * total:
        return region
    return region & ~skin


# ---------------------------------------------------------------- colour

def _binary_region(region: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(region)
    width, height = size
    if mask.ndim != 2 or mask.shape != (height, width):
        raise InputError(f"The garment region is shaped {mask.shape} but the output is {width}x{height}.")
    binary = mask > (127 if mask.dtype != np.bool_ and mask.max() > 1 else 0)
    if not binary.any():
        raise InputError("The garment region is empty: there is no garment in the output to measure.")
    return np.where(binary, 255, 0).astype(np.uint8)


def _lab(hex_colour: str) -> np.ndarray:
    return srgb_to_lab(np.array([ImageColor.getrgb(hex_colour)]))[0]
