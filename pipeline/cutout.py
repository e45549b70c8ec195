"""Classical garment cut-out: a binary mask of the garment in a phone or product photo, no model weights.

The heavy work runs on a copy whose long side is WORK_SIDE pixels:
1. a background model from the border of the photo: clusters of Lab colour plus local texture, without the
   clusters that are denser in the centre than on the border (the garment touching an edge),
2. a per-pixel "unlike the background" score: Mahalanobis distance to the nearest background cluster,
3. cv2.grabCut initialised from that score,
4. clean-up: the main component(s), an opening sized to the garment, hanger hooks sticking up above the
   garment removed, enclosed holes filled unless they look like the background.
The mask is then upsampled and its edge re-thresholded at full size.

The seller's clicks correct a mask (`refine_with_clicks`): each adds or removes the region around it that follows
colour and stops at edges, never a fixed disc. `stray_regions` points out the parts of a mask not joined to the
garment, and `main_garment` keeps the garment with what lies close to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from pipeline.errors import SegmentationError

WORK_SIDE = 320
BORDER_FRACTION = 0.04
BORDER_CLUSTERS = 6
GRABCUT_ITERATIONS = 2
GARMENT_DENSITY_RATIO = 1.0
MAX_BORDER_SAMPLES = 4000
MIN_COLOUR_SIGMA = 1.0
TEXTURE_WEIGHT = 0.5
BACKGROUND_SIGMAS = 3.0
MIN_FOREGROUND_SIGMAS = 2.5
MAX_FOREGROUND_SIGMAS = 6.0
BORDER_PERCENTILE = 99.0
SPREAD_FACTOR = 1.3
SMALL_HOLE_FRACTION = 0.01
OPENING_FRACTION = 0.03
HOOK_FRACTION = 0.08
STRAP_SIZE_SHARE = 0.3
BAR_BAND_FRACTION = 0.15
BAR_THICKNESS_FRACTION = 0.06
BAR_MIN_WIDTH_FRACTION = 0.15
SURE_FACTOR = 2.0
MIN_AREA_FRACTION = 0.02
MAX_AREA_FRACTION = 0.97
EDGE_SOFTNESS = 0.8
RING_FRACTION = 0.03
MIN_OUTSIDE_PIXELS = 200
MIN_KEPT_SHARE = 0.6
SIZEABLE_PART_SHARE = 0.005
GARMENT_LIKE_SIGMAS = 3.5
ENCLOSED_RATIO = 4.0
ENCLOSED_SHARE = 0.03
MIN_FLOOR_CONTACT_SHARE = 0.005

NO_GARMENT_MESSAGE = (
    "No garment found: photograph the garment on a plain surface that contrasts with it, "
    "with some background visible around it."
)


def cut_out(image: Image.Image) -> np.ndarray:
    """Binary garment mask of an RGB photo: uint8 array shaped (height, width) of the image, 255 = garment, 0 = background."""
    width, height = image.size
    small = _downscale(image.convert("RGB") if image.mode != "RGB" else image, WORK_SIDE)
    return _upscale_mask(segment_small(small), (height, width))


def segment_small(rgb: np.ndarray) -> np.ndarray:
    """Garment mask (uint8 0/255) of an RGB image already at working size."""
    if float(rgb.std()) < 2.0:
        raise SegmentationError(NO_GARMENT_MESSAGE)
    mask = judge_background(rgb).mask
    _check_plausible(mask)
    return mask


@dataclass(frozen=True)
class BackgroundVerdict:
    """What the background model says of an image at working size."""

    distance: np.ndarray  # each pixel's distance from the background, in sigmas
    threshold: float  # distance beyond which a pixel is unlike the background
    mask: np.ndarray  # the classic cut-out (uint8, 255 = garment; may be empty or implausible)

    @property
    def background_like(self) -> np.ndarray:
        return self.distance < self.threshold


def judge_background(rgb: np.ndarray) -> BackgroundVerdict:
    """The background model of an RGB image at working size and the classic cut-out it gives."""
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2Lab).astype(np.float32)
    border = _border_band(rgb.shape[:2])
    distance, background_border = _background_distance(lab, border)
    threshold = _foreground_threshold(distance, background_border)
    try:
        mask = _clean(_grabcut(rgb, distance, threshold, background_border), distance < threshold)
    except SegmentationError:
        mask = np.zeros(rgb.shape[:2], np.uint8)
    if mask.any():
        mask = main_garment(_refine_with_surroundings(rgb, lab, mask), rgb)
    return BackgroundVerdict(distance, threshold, mask)


def _downscale(image: Image.Image, side: int) -> np.ndarray:
    width, height = image.size
    scale = side / max(height, width)
    if scale >= 1.0:
        return np.array(image)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(image.resize(size, Image.Resampling.BOX, reducing_gap=2.0))


def _border_band(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    band = max(3, int(round(BORDER_FRACTION * min(height, width))))
    border = np.zeros(shape, bool)
    border[:band] = border[-band:] = True
    border[:, :band] = border[:, -band:] = True
    return border


def _local_std(channel: np.ndarray, size: int) -> np.ndarray:
    mean = cv2.blur(channel, (size, size))
    mean_sq = cv2.blur(channel * channel, (size, size))
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def _pixel_features(lab: np.ndarray) -> np.ndarray:
    texture = _local_std(lab[:, :, 0], 7)[:, :, None]
    return np.concatenate([lab, texture * TEXTURE_WEIGHT], axis=2)


def _kmeans_colours(samples: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means of colour samples (n, channels), at most MAX_BORDER_SAMPLES of them drawn with a fixed seed, so a
    photo always gives the same answer: the samples used, each one's cluster, and the cluster centres."""
    if len(samples) > MAX_BORDER_SAMPLES:
        samples = samples[np.random.default_rng(0).choice(len(samples), MAX_BORDER_SAMPLES, replace=False)]
    samples = samples.astype(np.float32, copy=False)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)
    _, labels, centres = cv2.kmeans(samples, min(clusters, len(samples)), None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    return samples, labels.ravel(), centres


def _fit_border_model(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clusters of the border pixels (k-means, then each cluster's covariance): means, inverse covariances, shares."""
    samples, labels, means = _kmeans_colours(samples, BORDER_CLUSTERS)
    clusters = len(means)
    floor = np.eye(samples.shape[1]) * MIN_COLOUR_SIGMA**2
    inverses, shares = [], []
    for index in range(clusters):
        members = samples[labels == index].astype(np.float64)
        covariance = np.cov(members, rowvar=False) if len(members) > samples.shape[1] else np.zeros_like(floor)
        inverses.append(np.linalg.inv(covariance + floor))
        shares.append(len(members) / len(samples))
    return means, np.stack(inverses).astype(np.float32), np.array(shares)


def _mahalanobis(features: np.ndarray, mean: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    centred = features - mean
    # The matrix product first: a three-operand einsum does not use BLAS and is ten times slower.
    return np.sqrt(np.maximum(np.einsum("ij,ij->i", centred @ inverse, centred), 0.0))


def _background_distance(lab: np.ndarray, border: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mahalanobis distance of each pixel to the nearest background cluster of the border pixels (Lab colour plus
    texture), and which border pixels are background-like."""
    features = _pixel_features(lab)
    flat = features.reshape(-1, features.shape[2]).astype(np.float32)
    means, inverses, _ = _fit_border_model(flat[border.ravel()])
    distances = np.stack([_mahalanobis(flat, mean, inverse) for mean, inverse in zip(means, inverses)])
    distances = distances.reshape(len(means), *lab.shape[:2])
    keep = _background_clusters(distances, border)
    distance = distances[keep].min(axis=0)
    return distance, border & (distance < BACKGROUND_SIGMAS)


def _background_clusters(distances: np.ndarray, border: np.ndarray) -> np.ndarray:
    """Which border clusters are background: a cluster denser in the centre of the photo than on its border is the
    garment touching an edge (garments are centred), not background."""
    height, width = border.shape
    centre = np.zeros_like(border)
    centre[height // 4 : height - height // 4, width // 4 : width - width // 4] = True
    nearest = distances.argmin(axis=0)
    matched = distances.min(axis=0) < BACKGROUND_SIGMAS
    ratios = []
    for index in range(len(distances)):
        members = matched & (nearest == index)
        border_density = np.count_nonzero(members & border) / np.count_nonzero(border)
        centre_density = np.count_nonzero(members & centre) / np.count_nonzero(centre)
        ratios.append(centre_density / max(border_density, 1e-6))
    ratios = np.array(ratios)
    keep = ratios < GARMENT_DENSITY_RATIO
    keep[ratios.argmin()] = True
    keep &= ~_enclosed_by_garment(distances, keep)
    keep[ratios.argmin()] = True
    return keep


def _enclosed_by_garment(distances: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Which kept clusters are mostly surrounded by garment-like pixels: a shaded part of a garment touching an
    edge (its edge pixels blend garment and floor) borders the garment far more than it borders the other
    background clusters, while a floor or sheet colour borders its neighbouring background colours. Such a
    garment part still meets the floor where it leaves the photo; a colour that meets no other background colour
    at all (a stripe of a blanket framed by dark seams) is too ambiguous and stays background."""
    masked = np.where(keep[:, None, None], distances, np.inf)
    labels = np.where(masked.min(axis=0) < BACKGROUND_SIGMAS, masked.argmin(axis=0), -1)
    enclosed = np.zeros(len(distances), bool)
    pairs = [(labels[:, :-1], labels[:, 1:]), (labels[:, 1:], labels[:, :-1]),
             (labels[:-1], labels[1:]), (labels[1:], labels[:-1])]
    for index in np.flatnonzero(keep):
        garment = sum(np.count_nonzero((a == index) & (b == -1)) for a, b in pairs)
        other = sum(np.count_nonzero((a == index) & (b >= 0) & (b != index)) for a, b in pairs)
        enclosed[index] = (garment >= ENCLOSED_RATIO * other and garment >= ENCLOSED_SHARE * labels.size
                           and other >= MIN_FLOOR_CONTACT_SHARE * labels.size)
    return enclosed


def _foreground_threshold(distance: np.ndarray, border: np.ndarray) -> float:
    """Distance beyond which a pixel is unlike the background: just past the spread of the border's background
    pixels, kept within sane limits (a white top on a white studio background is only a few sigmas away)."""
    spread = float(np.percentile(distance[border], BORDER_PERCENTILE)) if border.any() else MAX_FOREGROUND_SIGMAS
    return float(np.clip(spread * SPREAD_FACTOR, MIN_FOREGROUND_SIGMAS, MAX_FOREGROUND_SIGMAS))


def _grabcut(rgb: np.ndarray, distance: np.ndarray, threshold: float, border: np.ndarray) -> np.ndarray:
    mask = np.where(distance > threshold, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    sure = cv2.erode((distance > threshold * SURE_FACTOR).astype(np.uint8), np.ones((5, 5), np.uint8))
    mask[sure > 0] = cv2.GC_FGD
    mask[border] = cv2.GC_BGD
    if not (mask == cv2.GC_PR_FGD).any():
        raise SegmentationError(NO_GARMENT_MESSAGE)
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    try:
        cv2.grabCut(bgr, mask, None, bgd_model, fgd_model, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    except cv2.error as error:
        raise SegmentationError(NO_GARMENT_MESSAGE) from error
    return np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)


def _refine_with_surroundings(rgb: np.ndarray, lab: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Second pass whose background model is every pixel outside the first mask, not just the border: the floor
    inside the photo can differ from the border (uneven light, another plank colour, a glare spot). It may only
    remove parts of the first mask that do not look like the rest of the garment."""
    features = _pixel_features(lab)
    flat = features.reshape(-1, features.shape[2]).astype(np.float32)
    ring = max(2, int(round(np.sqrt(float(np.count_nonzero(first))) * RING_FRACTION)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))
    outside = cv2.dilate(first, kernel) == 0
    if np.count_nonzero(outside) < MIN_OUTSIDE_PIXELS:
        return first
    distance = _nearest_cluster_distance(flat, flat[outside.ravel()]).reshape(lab.shape[:2])
    threshold = _foreground_threshold(distance, outside)
    refined = _clean(_grabcut_inside(rgb, first, cv2.erode(first, kernel) > 0, outside, distance, threshold),
                     distance < threshold)
    # A collapse means the outside model swallowed the garment (its colour is also on the floor): keep pass one.
    if np.count_nonzero(refined) < MIN_KEPT_SHARE * np.count_nonzero(first):
        return first
    return _restore_garment_like(flat, first, refined)


def _nearest_cluster_distance(flat: np.ndarray, samples: np.ndarray) -> np.ndarray:
    means, inverses, _ = _fit_border_model(samples)
    return np.stack([_mahalanobis(flat, mean, inverse) for mean, inverse in zip(means, inverses)]).min(axis=0)


def _grabcut_inside(rgb: np.ndarray, first: np.ndarray, core: np.ndarray, outside: np.ndarray,
                    distance: np.ndarray, threshold: float) -> np.ndarray:
    mask = np.where((first > 0) & (distance > threshold), cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    sure = cv2.erode((distance > threshold * SURE_FACTOR).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    mask[core & sure] = cv2.GC_FGD
    mask[outside] = cv2.GC_BGD
    if not ((mask == cv2.GC_PR_FGD) | (mask == cv2.GC_FGD)).any():
        return first
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, mask, None, bgd_model, fgd_model, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    return np.where((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)


def _restore_garment_like(flat: np.ndarray, first: np.ndarray, refined: np.ndarray) -> np.ndarray:
    """Put back the sizeable parts the second pass removed whose colour matches the kept garment (a dark sleeve
    on a dark floor, the far half of a white shirt): only floor, glare or a hanger bar unlike the garment goes."""
    removed = ((first > 0) & (refined == 0)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(removed, connectivity=8)
    sizeable = 1 + np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= SIZEABLE_PART_SHARE * np.count_nonzero(first))
    if not len(sizeable):
        return refined
    garment_distance = _nearest_cluster_distance(flat, flat[(refined > 0).ravel()]).reshape(first.shape)
    restored = refined.copy()
    for label in sizeable:
        part = labels == label
        if np.median(garment_distance[part]) < GARMENT_LIKE_SIGMAS:
            restored[part] = 255
    return restored


def _largest_components(mask: np.ndarray, keep_ratio: float = 0.25) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= areas.max() * keep_ratio)
    return np.where(np.isin(labels, keep), 255, 0).astype(np.uint8)


def _fill_enclosed_holes(mask: np.ndarray, background_like: np.ndarray) -> np.ndarray:
    """Fill holes enclosed by the garment, except large ones that look like the background (the floor seen
    between an arm and the body)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.bitwise_not(mask), connectivity=4)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small = np.count_nonzero(mask) * SMALL_HOLE_FRACTION
    background_share = np.bincount(labels.ravel(), weights=background_like.ravel(), minlength=count)
    filled = mask.copy()
    for label in range(1, count):
        area = stats[label, cv2.CC_STAT_AREA]
        if label in edge_labels or (area > small and background_share[label] > area * 0.5):
            continue
        filled[labels == label] = 255
    return filled


def _clean(mask: np.ndarray, background_like: np.ndarray) -> np.ndarray:
    mask = _largest_components(mask)
    if not mask.any():
        return mask
    garment_side = np.sqrt(float(np.count_nonzero(mask)))
    radius = max(2, int(round(garment_side * OPENING_FRACTION)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = remove_hanger(_largest_components(mask))
    return _fill_enclosed_holes(mask, background_like)


def remove_hanger(mask: np.ndarray) -> np.ndarray:
    """`mask` without a hanger's bar and hook. A pair of straps rising either side of the neck (a camisole, a
    tank top) is not a hook and stays, with the band between them."""
    above = _PartsAbove(mask)
    if is_strap_pair(above.offsets, above.areas, above.radius):
        return mask
    return _remove_hooks(_remove_hanger_bar(mask))


def _remove_hanger_bar(mask: np.ndarray) -> np.ndarray:
    """Drop thin horizontal strips in the top band of the garment (the bar of a clip hanger): what a vertical
    opening taller than the bar is thick removes there. Sleeves and waistbands are much thicker than a bar."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return mask
    garment_height = rows[-1] - rows[0] + 1
    length = max(3, int(round(garment_height * BAR_THICKNESS_FRACTION)))
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((length, 1), np.uint8))
    band_end = rows[0] + int(round(garment_height * BAR_BAND_FRACTION))
    thin = cv2.bitwise_and(mask, cv2.bitwise_not(opened))
    thin[band_end:] = 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(thin, connectivity=8)
    # A bar overhangs: background lies right under it. The slivers the opening shaves off a sloping shoulder
    # lie on the garment.
    overhang = np.zeros_like(mask)
    overhang[:-1] = (thin[:-1] > 0) & (mask[1:] == 0)
    overhang_columns = np.bincount(labels.ravel(), weights=(overhang > 0).ravel(), minlength=count)
    columns = np.flatnonzero(mask.any(axis=0))
    long_enough = stats[:, cv2.CC_STAT_WIDTH] >= BAR_MIN_WIDTH_FRACTION * len(columns)
    overhanging = overhang_columns >= 0.5 * stats[:, cv2.CC_STAT_WIDTH]
    bars = 1 + np.flatnonzero((long_enough & overhanging)[1:])
    if not len(bars):
        return mask
    trimmed = mask.copy()
    trimmed[np.isin(labels, bars)] = 0
    return _largest_components(trimmed)


class _PartsAbove:
    """The narrow parts of a mask that stick up above its body (what a large opening removes and that reaches
    above the top of what it keeps), with each part's horizontal offset from the body's centre."""

    def __init__(self, mask: np.ndarray) -> None:
        self.radius = max(2, int(round(np.sqrt(float(np.count_nonzero(mask))) * HOOK_FRACTION)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.radius + 1, 2 * self.radius + 1))
        body = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        rows, columns = np.flatnonzero(body.any(axis=1)), np.flatnonzero(body.any(axis=0))
        self.labels = np.zeros(mask.shape, np.int32)
        self.parts = np.zeros(0, np.int64)
        self.areas = self.offsets = np.zeros(0)
        if not len(rows):
            return
        residue = cv2.bitwise_and(mask, cv2.bitwise_not(body))
        _, self.labels, stats, centroids = cv2.connectedComponentsWithStats(residue, connectivity=8)
        self.parts = 1 + np.flatnonzero(stats[1:, cv2.CC_STAT_TOP] < rows[0] - self.radius // 2)
        self.areas = stats[self.parts, cv2.CC_STAT_AREA]
        self.offsets = centroids[self.parts, 0] - (columns[0] + columns[-1]) / 2


def is_strap_pair(offsets: np.ndarray, areas: np.ndarray, side: float) -> bool:
    """Whether parts above a garment's body, at these horizontal offsets from its centre and of these areas, are
    a pair of straps: the sizeable ones lie on both sides of the centre (beyond `side`) and none, however small,
    in the middle. A hanger's hook is one part near the middle (or, off centre, a single one); a clip hanger's
    clips come with its hook between them."""
    if len(offsets) < 2 or (np.abs(offsets) <= side).any():
        return False
    sizeable = offsets[areas >= STRAP_SIZE_SHARE * areas.max()]
    return bool((sizeable < -side).any() and (sizeable > side).any())


def _remove_hooks(mask: np.ndarray) -> np.ndarray:
    """Drop narrow parts that stick up above the body of the garment (a hanger hook and the bit of wall it
    encloses)."""
    above = _PartsAbove(mask)
    if not len(above.parts):
        return mask
    trimmed = mask.copy()
    trimmed[np.isin(above.labels, above.parts)] = 0
    return _largest_components(trimmed)


def _check_plausible(mask: np.ndarray) -> None:
    area = np.count_nonzero(mask) / mask.size
    if area < MIN_AREA_FRACTION or area > MAX_AREA_FRACTION:
        raise SegmentationError(NO_GARMENT_MESSAGE)


def _upscale_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Full-size mask: the small mask is softened, upsampled bilinearly and thresholded, which gives a smooth
    edge at full resolution for the price of one resize."""
    height, width = shape
    if mask.shape == (height, width):
        return mask
    soft = cv2.GaussianBlur(mask, (0, 0), EDGE_SOFTNESS)
    soft = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
    _, binary = cv2.threshold(soft, 127, 255, cv2.THRESH_BINARY)
    return binary


# ---------------------------------------------------------------------------------------------- click refinement

REFINE_WORKING_SIDE = 480
SEED_RADIUS_FRACTION = 0.015
SEED_DELTA_E = 15.0
MIN_SEED_SIGMA = 4.0
EDGE_MIN = 6.0
EDGE_FACTOR = 3.0
EDGE_PERCENTILE = 90.0
MIN_INSIDE_PIXELS = 12
REACH_FRACTION = 0.35
RIM_PIXELS = 2
# (edge threshold factor, colour match in sigmas), tried in turn while the region runs away
STRICTNESS = ((1.0, 3.5), (0.5, 3.0), (0.25, 2.5))
MAX_REMOVED_SHARE = 0.5
CUT_APART_SHARE = 0.01
MIN_MODEL_PIXELS = 50
COMMON_COLOUR_SHARE = 0.1
OTHER_KIND_SIGMAS = 3.0
BAND_KERNEL = np.ones((5, 5), np.uint8)


def refine_with_clicks(image: Image.Image, mask: np.ndarray,
                       points: Sequence[tuple[float, float, int]]) -> np.ndarray:
    """`mask` (uint8, 255 = garment) after the seller's clicks, in order, as (x, y, label) in photo pixels:
    a garment click (label 1) adds the region around it, a background click (label 0) removes it. The region
    follows colour and stops at edges (`_ClickImage.click_region`), so it never spills across the garment's
    border. Where regions overlap, the later click wins; the clicked pixel takes the click's label.
    A piece left apart from the garment goes (`_ClickImage.loose_pieces`), tapped pixel and all, unless the
    seller tapped it and the tap did more than add a dot around itself (it found no edge, or only pixels like the
    background): such a dot apart from the garment would float in every photo."""
    if not len(points):
        return mask.copy()
    work = _ClickImage(image)
    current = work.to_small(mask)
    labels = np.full(current.shape, -1, np.int8)
    keeping = []  # the garment taps that keep their piece even apart from the garment
    for x, y, label in points:
        region, only_a_dot = work.click_region(x, y, current, garment=bool(label))
        current[region] = bool(label)
        labels[region] = label
        if label and not only_a_dot:
            keeping.append((x, y, label))
    refined = mask.copy()
    refined[work.to_full(labels == 1)] = 255
    refined[work.to_full(labels == 0)] = 0
    for x, y, label in points:
        refined[min(int(y), mask.shape[0] - 1), min(int(x), mask.shape[1] - 1)] = 255 if label else 0
    # Last, so that a dropped dot leaves no tapped pixel floating either.
    refined[work.to_full(work.loose_pieces(refined, keeping))] = 0
    return refined


class _ClickImage:
    """The photo at refinement size: smoothed CIELAB colour and its gradient."""

    def __init__(self, image: Image.Image) -> None:
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        self.full_size = image.size
        small = np.ascontiguousarray(_downscale(rgb, REFINE_WORKING_SIDE))
        self.rgb = small
        self.scale = small.shape[1] / image.width
        smooth = cv2.bilateralFilter(small, 5, 30, 5)
        self.lab = cv2.cvtColor(smooth.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
        self.gradient = _gradient_magnitude(self.lab)

    def loose_pieces(self, mask: np.ndarray, points: Sequence[tuple[float, float, int]]) -> np.ndarray:
        """The parts of `mask` (full size) that `main_garment` drops, at refinement size: a blob a click left
        apart from the garment goes unless it is close and like it, or one of `points` tapped it as garment."""
        current = self.to_small(mask)
        clicked = np.zeros(current.shape, bool)
        for x, y, label in points:
            if label:
                clicked[self.small_point(x, y)] = True
        kept = main_garment(current.astype(np.uint8), self.rgb, keep=clicked) > 0
        # One pixel more, so that no rim of a dropped piece survives the enlargement to full size.
        return (cv2.dilate((current & ~kept).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~kept

    def small_point(self, x: float, y: float) -> tuple[int, int]:
        """(row, column) at refinement size of photo pixel (x, y)."""
        height, width = self.lab.shape[:2]
        return min(int(y * self.scale), height - 1), min(int(x * self.scale), width - 1)

    def to_small(self, mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask, self.lab.shape[1::-1], interpolation=cv2.INTER_AREA) >= 128

    def to_full(self, region: np.ndarray) -> np.ndarray:
        if region.shape[::-1] == self.full_size:
            return region
        soft = cv2.resize(region.astype(np.uint8) * 255, self.full_size, interpolation=cv2.INTER_LINEAR)
        return soft >= 128

    def click_region(self, x: float, y: float, current: np.ndarray, garment: bool) -> tuple[np.ndarray, bool]:
        """What a click at photo pixel (x, y) sets in the mask so far (`current`, bool; refinement size),
        given the click's kind: the pixels of the region joined to the click whose colour matches the click's
        side of any edge, without crossing an edge stronger than the texture there. A region whose change runs
        away (`_runs_away`) found no edge that bounds it: it is grown again, stricter, and at worst kept to the
        click's close surroundings. Pixels whose colour is common in the other kind stay as they were (a white
        sheet's colour in the white stripes of a shirt), except in a part not joined to the garment. Also
        whether a garment click added only a dot: nothing beyond its close surroundings."""
        height, width = current.shape
        cy, cx = self.small_point(x, y)
        # With no cut-out at all, a garment click says where the whole garment is.
        reach = max(4, round(REACH_FRACTION * max(height, width))) if current.any() else max(height, width)
        window = (slice(max(0, cy - reach), cy + reach + 1), slice(max(0, cx - reach), cx + reach + 1))
        seed = (cy - window[0].start, cx - window[1].start)
        radius = max(2, round(SEED_RADIUS_FRACTION * max(height, width)))
        near = cv2.circle(np.zeros(current.shape, np.uint8), (cx, cy), radius, 1, thickness=-1) > 0
        lab, gradient = self.lab[window], self.gradient[window]
        distance, edge = _seed_model(lab, gradient, near[window], seed)
        frame = _frame(window, current.shape, photo_edges=garment)
        changeable, detached = _changeable(current, (cy, cx), garment)
        region = np.zeros(current.shape, bool)
        for edge_factor, sigmas in STRICTNESS:
            region[window] = _grow(distance < sigmas, gradient < edge * edge_factor, seed)
            region &= changeable | (current == garment)
            if not _runs_away(region & changeable, current, garment, window, frame):
                break
        else:
            region &= near
        change = region & changeable
        if not detached:  # a part off the garment goes whatever its colour
            change &= ~(self._like_other_kind(current, change, garment) & ~near)
        only_a_dot = garment and not current[cy, cx] and not (change & ~near).any()
        # With the region's pixels just around it, so that at full size the change reaches its true edge.
        return change | (region & (cv2.dilate(change.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)), only_a_dot

    def _like_other_kind(self, current: np.ndarray, change: np.ndarray, garment: bool) -> np.ndarray:
        """Which pixels of `change` have a colour that makes up a good share of the other kind: the background
        for a garment click, the rest of the garment for a background click (both away from the mask's edge)."""
        like = np.zeros(current.shape, bool)
        mask = current.astype(np.uint8)
        kernel = np.ones((5, 5), np.uint8)
        other = (cv2.dilate(mask, kernel) == 0) if garment else (cv2.erode(mask, kernel) > 0)
        samples = self.lab[other & ~change]
        if not change.any() or len(samples) < MIN_MODEL_PIXELS:
            return like
        means, inverses, shares = _fit_border_model(samples)
        common = shares >= COMMON_COLOUR_SHARE
        flat = self.lab[change]
        distance = np.stack([_mahalanobis(flat, mean, inverse)
                             for mean, inverse in zip(means[common], inverses[common])]).min(axis=0)
        like[change] = distance < OTHER_KIND_SIGMAS
        return like


def _changeable(mask: np.ndarray, point: tuple[int, int], garment: bool) -> tuple[np.ndarray, bool]:
    """The pixels a click at `point` may change: the background for a garment click, the garment for a
    background click, and for a background click on a part not joined to the main garment only that part;
    and whether it is such a part."""
    if garment or not mask[point]:
        return mask != garment, False
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if labels[point] == 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax()):
        return mask.copy(), False
    return labels == labels[point], True


def _runs_away(change: np.ndarray, current: np.ndarray, garment: bool, window: tuple[slice, slice],
               frame: np.ndarray) -> bool:
    """Whether a click's change to the mask found no edge to bound it: it reaches out of the click's window (a
    garment click's also the photo's edge: the floor goes on there, a garment seldom does), or a background
    click's would take half the garment or cut it in pieces. A thin band along the border (the cut-out a pixel
    or two off) may run on."""
    core = cv2.morphologyEx(change[window].astype(np.uint8), cv2.MORPH_OPEN, BAND_KERNEL) > 0
    if (core & frame).any():
        return True
    if garment:
        return False
    return np.count_nonzero(change) > MAX_REMOVED_SHARE * np.count_nonzero(current) or _cuts_apart(current, change)


def _cuts_apart(mask: np.ndarray, removed: np.ndarray) -> bool:
    """Whether taking `removed` out of `mask` detaches more than a speck from its main part (the navy stripes
    of a shirt whose white stripes went)."""
    return _detached_area(mask & ~removed) - _detached_area(mask) > CUT_APART_SHARE * np.count_nonzero(mask)


def _detached_area(mask: np.ndarray) -> int:
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    return int(areas.sum() - areas.max()) if len(areas) else 0


def _gradient_magnitude(lab: np.ndarray) -> np.ndarray:
    """Colour change per pixel (CIELAB units), from the Sobel derivatives of each channel."""
    squared = np.zeros(lab.shape[:2], np.float32)
    for channel in cv2.split(lab):
        dx = cv2.Sobel(channel, cv2.CV_32F, 1, 0, ksize=3) / 8
        dy = cv2.Sobel(channel, cv2.CV_32F, 0, 1, ksize=3) / 8
        squared += dx * dx + dy * dy
    return np.sqrt(squared)


def _seed_model(lab: np.ndarray, gradient: np.ndarray, near: np.ndarray,
                seed: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Each pixel's colour distance (in sigmas) to the pixels around the click, and the gradient that counts as
    an edge there. Only the surrounding pixels close in colour to the clicked one count, so a click beside the
    border models its own side; their spread lets shading and texture match and sets the edge strength."""
    side = near & (np.linalg.norm(lab - lab[seed], axis=2) < SEED_DELTA_E)
    # Modelled away from the side's own border where there is room: on a part a few pixels thin (a hanger's
    # bar) every side pixel touches the border, whose blend and gradient would count as the part's own colour
    # spread and texture, and let the region cross into anything darker or lighter beside it.
    inside = cv2.erode(side.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if np.count_nonzero(inside) >= MIN_INSIDE_PIXELS:
        side = inside
    samples = lab[side].astype(np.float64)
    covariance = np.cov(samples, rowvar=False) if len(samples) > 3 else np.zeros((3, 3))
    inverse = np.linalg.inv(covariance + np.eye(3) * MIN_SEED_SIGMA**2).astype(np.float32)
    distance = _mahalanobis(lab.reshape(-1, 3), samples.mean(axis=0).astype(np.float32), inverse)
    texture = float(np.percentile(gradient[side], EDGE_PERCENTILE))
    return distance.reshape(lab.shape[:2]), max(EDGE_MIN, EDGE_FACTOR * texture)


def _grow(match: np.ndarray, smooth: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """The matching, edge-free pixels 4-connected to the seed, plus the matching pixels of the edge beside them
    (the edge's own pixels on the seed's side)."""
    allowed = match & smooth
    allowed[seed] = True
    _, components = cv2.connectedComponents(allowed.astype(np.uint8), connectivity=4)
    region = components == components[seed]
    rim = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=RIM_PIXELS) > 0
    return region | (rim & match)


def _frame(window: tuple[slice, slice], photo_shape: tuple[int, int], photo_edges: bool) -> np.ndarray:
    """The outermost pixels of the window (bool, window-sized); the sides that are the photo's own edges count
    only if `photo_edges`."""
    height, width = photo_shape
    top, bottom = window[0].start, min(window[0].stop, height)
    left, right = window[1].start, min(window[1].stop, width)
    frame = np.zeros((bottom - top, right - left), bool)
    frame[0] |= photo_edges or top > 0
    frame[-1] |= photo_edges or bottom < height
    frame[:, 0] |= photo_edges or left > 0
    frame[:, -1] |= photo_edges or right < width
    return frame


# ------------------------------------------------------------------------------------------------ detached parts

SPECK_SHARE = 0.001
ATTACHED_SHARE = 0.01
ATTACHED_GAP_FRACTION = 0.05

Box = tuple[int, int, int, int]


def stray_regions(mask: np.ndarray) -> list[Box]:
    """Boxes (x0, y0, x1, y1; x1 and y1 exclusive, in mask pixels) around the parts of the mask not joined to
    the main garment (its largest connected part), largest first. Specks under SPECK_SHARE of the garment's
    area are left out."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if count <= 2:
        return []
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = int(areas.argmax())
    parts = [label for label in np.argsort(-areas) if label != main and areas[label] >= SPECK_SHARE * areas[main]]
    return [_box(stats[1 + label]) for label in parts]


def main_garment(mask: np.ndarray, rgb: np.ndarray | None = None, keep: np.ndarray | None = None) -> np.ndarray:
    """The mask's largest connected part, with the detached parts close to it and big enough to belong to it
    (a belt, a strap): within ATTACHED_GAP_FRACTION of the garment's size and at least ATTACHED_SHARE of its
    area, and, given the image (`rgb`, the mask's size), like the garment in colour. A part holding a pixel of
    `keep` (bool; the seller's garment clicks) stays whatever it is. uint8, 255 = garment."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, np.uint8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    main = 1 + int(areas.argmax())
    if count == 2:
        return np.where(labels == main, 255, 0).astype(np.uint8)
    gap = max(2, round(ATTACHED_GAP_FRACTION * np.sqrt(areas.max())))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    reach = cv2.dilate((labels == main).astype(np.uint8), kernel) > 0
    near = [label for label in np.unique(labels[reach])
            if label and stats[label, cv2.CC_STAT_AREA] >= ATTACHED_SHARE * areas.max()]
    if rgb is not None and len(near) > 1:
        near = [label for label in near if label == main or _looks_like(rgb, labels == main, labels == label)]
    clicked = np.unique(labels[keep & (labels > 0)]) if keep is not None else []
    return np.where(np.isin(labels, [*near, *clicked]), 255, 0).astype(np.uint8)


def _looks_like(rgb: np.ndarray, garment: np.ndarray, part: np.ndarray) -> bool:
    """Whether most of `part` has a colour and texture of the garment's (within GARMENT_LIKE_SIGMAS)."""
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2Lab).astype(np.float32)
    features = _pixel_features(lab)
    samples = features[garment].astype(np.float32)
    distance = _nearest_cluster_distance(features[part].astype(np.float32), samples)
    return bool(np.median(distance) < GARMENT_LIKE_SIGMAS)


def _box(stat: np.ndarray) -> Box:
    x, y = int(stat[cv2.CC_STAT_LEFT]), int(stat[cv2.CC_STAT_TOP])
    return x, y, x + int(stat[cv2.CC_STAT_WIDTH]), y + int(stat[cv2.CC_STAT_HEIGHT])
