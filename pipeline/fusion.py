"""The fused cut-out: U-2-Net-p's probability map and the classic background model together.

U-2-Net-p (`pipeline.u2net`) is clean where the classic cut-out fails (white sheets beside the garment, floor
between trouser legs, reflections) but keeps hangers and can lose the light stripes of a striped top; the classic
cut-out (`pipeline.cutout`) removes hangers and keeps stripes. Here, at the classic working size:
1. both run: the neural map, the classic background distance and the classic mask (when it finds one),
2. cv2.grabCut decides from seeds: sure garment where both agree it is garment, sure background where both agree
   it is background outside the network's shape closed over small gaps (and on the photo's border), probable garment where only the network says garment or where
   only the classic mask does but the spot lies within the network's garment shape closed over small gaps (a
   stripe, a hole's rim), probable background elsewhere,
3. the classic clean-up: hanger bar and hook removal, enclosed holes filled unless they look like the floor,
4. `main_garment`, so no stray piece remains.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from pipeline import cutout
from pipeline.cutout import (
    NO_GARMENT_MESSAGE, WORK_SIDE, _background_distance, _border_band, _check_plausible, _clean, _downscale,
    _foreground_threshold, _grabcut, _refine_with_surroundings, _upscale_mask, main_garment,
)
from pipeline.errors import SegmentationError
from pipeline.u2net import probability_map

NEURAL_GARMENT = 0.5  # the network's own threshold (rembg's)
NEURAL_SURE = 0.8
NEURAL_BACKGROUND = 0.2
CLOSE_FRACTION = 0.03  # gaps the network leaves inside the garment (stripes), relative to the garment's side
SEED_ERODE = 3
FUSION_ITERATIONS = 3


def cut_out_fused(image: Image.Image) -> np.ndarray:
    """Binary garment mask (uint8 (height, width), 255 = garment) of an RGB photo from both cut-outs."""
    width, height = image.size
    rgb_image = image.convert("RGB") if image.mode != "RGB" else image
    small = _downscale(rgb_image, WORK_SIDE)
    probability = probability_map(rgb_image, (small.shape[1], small.shape[0]))
    return _upscale_mask(fuse_small(small, probability), (height, width))


def _classic_parts(rgb: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
    """The classic background distance, its threshold and the classic mask (None where it finds no garment)."""
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2Lab).astype(np.float32)
    border = _border_band(rgb.shape[:2])
    distance, background_border = _background_distance(lab, border)
    threshold = _foreground_threshold(distance, background_border)
    try:
        mask = _clean(_grabcut(rgb, distance, threshold, background_border), distance < threshold)
        if mask.any():
            mask = _refine_with_surroundings(rgb, lab, mask)
        _check_plausible(mask)
    except SegmentationError:
        mask = None
    return distance, threshold, mask


def fuse_small(rgb: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Fused garment mask (uint8 0/255) of an RGB image at working size, given the network's map at that size."""
    if float(rgb.std()) < 2.0:
        raise SegmentationError(NO_GARMENT_MESSAGE)
    distance, threshold, classic = _classic_parts(rgb)
    classic_fg = classic > 0 if classic is not None else distance > threshold
    neural = probability >= NEURAL_GARMENT
    if not neural.any() and classic is None:
        raise SegmentationError(NO_GARMENT_MESSAGE)

    side = np.sqrt(float(max(np.count_nonzero(neural), 1)))
    radius = max(2, int(round(side * CLOSE_FRACTION)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    neural_shape = cv2.morphologyEx(neural.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    small_kernel = np.ones((2 * SEED_ERODE + 1, 2 * SEED_ERODE + 1), np.uint8)

    seeds = np.full(rgb.shape[:2], cv2.GC_PR_BGD, np.uint8)
    seeds[neural | (classic_fg & neural_shape)] = cv2.GC_PR_FGD
    sure_fg = cv2.erode(((probability >= NEURAL_SURE) & classic_fg).astype(np.uint8), small_kernel) > 0
    # The classic vote for background is its per-pixel score, not its mask: the mask fills necklines and gaps.
    classic_bg = distance < threshold
    sure_bg = cv2.erode(((probability < NEURAL_BACKGROUND) & classic_bg).astype(np.uint8), small_kernel) > 0
    sure_bg &= ~neural_shape
    border = _border_band(rgb.shape[:2])
    sure_bg |= border & (probability < NEURAL_GARMENT)
    seeds[sure_bg] = cv2.GC_BGD
    seeds[sure_fg] = cv2.GC_FGD
    if not ((seeds == cv2.GC_PR_FGD) | (seeds == cv2.GC_FGD)).any() or not (
            (seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD)).any():
        raise SegmentationError(NO_GARMENT_MESSAGE)
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), seeds, None, bgd_model, fgd_model, FUSION_ITERATIONS,
                    cv2.GC_INIT_WITH_MASK)
    except cv2.error as error:
        raise SegmentationError(NO_GARMENT_MESSAGE) from error
    grab = np.where((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)
    background_like = (distance < threshold) & (probability < NEURAL_GARMENT)
    mask = main_garment(_clean(grab, background_like))
    cutout._check_plausible(mask)
    return mask
