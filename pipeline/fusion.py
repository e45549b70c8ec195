"""The fused cut-out: U-2-Net-p's garment map arbitrated by the classic background model.

Each alone fails in its own way. U-2-Net-p (`pipeline.u2net`) draws clean, exact outlines and ignores white
sheets, floors between trouser legs and reflections, but it keeps hangers, can lose the white stripes of a
striped top or a white hem, fills the gap between an arm and the body, and on a white printed T-shirt may see only
the print. The classic cut-out (`pipeline.cutout`) measures how unlike the background each pixel is, removes
hangers and keeps stripes, but takes in sheet patches and loses garment parts the colour of the floor.

So, at the classic working size, the network's mask is the base and the classic model arbitrates where they differ:
1. when the network's garment is under 40 % of the classic one and lies inside it, the network saw a print,
   not the garment: the classic mask is used (at half, it is the classic model that took in a dark board or
   rug the garment lies on);
2. classic-only parts joined to the network's garment come in when the network gives them some weight (unless they
   are just like the floor around the garment and unlike the garment: the floor between a sleeve and the body), or when
   they are unlike the garment's surroundings and either clearly unlike the background (a white hem) or of the
   garment's colour (a sleeve the network lost); floor glare is neither. A part like something elsewhere around
   the garment (dark folds or clutter on the sheet) still comes in when it sticks out of the network's garment
   like a sleeve or leg: thick, and nearer in colour to the garment beside it than the background around it.
   A part larger than 30 % of the network's garment must have the garment's colour and stay inside the photo
   (a lost trouser leg, not the floor between the legs or the wall behind);
3. where the two masks broadly agree, network-only pixels go where the classic model calls them background and
   the network is unsure, or where they are almost exactly the background's colour (the floor seen between an arm
   and the body); where they disagree widely (a busy rug) the classic model has gone astray and takes nothing;
4. thin network-only parts in the top band of the classic garment or above it lose the pixels unlike the
   garment's main colours (a hanger's bar, clips and hook), unless they are a pair of straps;
5. the classic clean-up: hanger bar and hook, and small bumps of a hanger's colour on the top edge; a part the
   bar and hook rules took off comes back where the garment network is sure of it (a turtleneck's collar or the
   back of a neckline rises above a garment as a hook does);
6. what is left of a hanger whose hook or bar was cut off: the regions of its colour at the top of the garment
   (the clips and bar of a clip hanger gripping a waistband, the wall seen through a collar beside a hanger's
   neck), and a clip hanger's bar lying along the waistband;
7. the garment network (`pipeline.garment_net`), trained on the masks of steps 1-6, where it is sure and
   disagrees in a large piece: such a piece of the mask it calls background goes when it looks like the
   surroundings (a sheet or floor patch kept), unless U-2-Net-p calls it garment and it has the garment's colour;
   such a piece it calls garment beside the mask comes in (a sleeve, cuff or hem both models lost) unless it is a
   smaller piece like the floor or, on a hanger, touches what steps 5-6 removed or rises above the garment. Not on
   a plain studio backdrop, where the classic model is exact;
8. enclosed holes filled unless they look like the background;
9. with the garment network too: pieces of the surroundings in the garment's shade, which neither colour model
   calls background because they are darker or lighter than the rest of the floor (the sheet between a sleeve
   and the body, the floor between the legs or under a cuff). A piece goes when its hue is the colourful
   surroundings' and none of the garment's main colours, and U-2-Net-p calls it background or the garment
   network does (then it must also touch the outline, or U-2-Net-p lean to background), and with it the pixels
   joined to it that are three times closer to the surroundings' colours than to the garment's (its rim along a
   sleeve, which the networks' blurred maps give to the sleeve);
10. `main_garment`, so that no floating piece remains.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from pipeline import cutout
from pipeline.errors import SegmentationError
from pipeline.garment_net import TrainedGarmentNet, garment_net
from pipeline.u2net import probability_map

NETWORK_GARMENT = 0.5  # the network's own threshold (rembg's)
GARMENT_NET_BACKGROUND = 0.15  # the garment network is sure of background below this probability,
GARMENT_NET_GARMENT = 0.85  # of garment above this one,
GARMENT_NET_PART_SHARE = 0.01  # and a disagreement counts when larger than this share of the garment
GARMENT_NET_LIKE_SURROUNDINGS = 0.5  # background kept is within this many sigmas of the surroundings' spread
GARMENT_NET_SURE_OF_HANGER_PART = 0.95  # a part the hanger steps took off comes back at this mean probability,
GARMENT_NET_LEANS_TO_GARMENT = 0.5  # or at this one when it has the garment's colour and no hanger bar was found
GARMENT_NET_LARGE_SHARE = 0.5  # a lost part this large is never taken for a floor wedge
PLAIN_BACKDROP_SHARE = 0.8  # a photo whose border is this share within ... (product shots: 0.89-0.99;
PLAIN_BACKDROP_LEVELS = 6  # ... this many levels of its median colour is on a plain backdrop; flat lays: < 0.6)
PRINT_ONLY_SHARE = 0.4  # network garment under this share of the classic one, and inside it: it saw a print
INSIDE_SHARE = 0.9
JOIN_FRACTION = 0.03  # how close a classic-only part must come to the network's garment, relative to its side
NETWORK_HINT = 0.15  # a classic-only part comes in when the network gives it this probability, or ...
LIKE_SURROUNDINGS = 1.5  # a part this many sigmas inside what the floor around the garment spreads over ...
FLOOR_PART_SHARE = 0.002  # ... and at least this share of the network's garment is floor, whatever the network says
LOST_PART_SHARE = 0.3  # a larger classic-only part must also have the garment's colour
CLEARLY_UNLIKE = 2.0  # ... when it is unlike the surroundings and this many thresholds from the background
TRUSTED_AGREEMENT = 0.75  # below this IoU with the network's mask the classic one takes nothing away
UNSURE = 0.9  # network-only pixels the classic model calls background go below this probability ...
DEEP_BACKGROUND = 0.6  # ... and at any probability closer to the background than this share of the threshold
THIN_SHARE = 0.3  # a part near the top of the garment is thin when an opening keeps less than this share of it
BUMP_FRACTION = 0.04  # bumps are what an opening of this share of the garment's side removes
STRAP_ELONGATION = 2.0  # a bump this many times taller than wide is a strap, not a clip
MAIN_COLOUR_SHARE = 0.1  # a main colour of the garment covers at least this share of it
LIMB_OUTSIDE_SHARE = 0.5  # a lost sleeve or leg lies at least this share outside the network garment's hull,
LIMB_THICKNESS = 0.085  # is at least this thick (widest inscribed radius, relative to the garment's side),
LIMB_RING = 0.3  # and is compared with the garment and background within this share of its side around it
LIMB_MIN_PIXELS = 60
TOP_BAND = 0.15  # the top of a garment where a hanger's bar and clips lie, as a share of its height
SHADE_LIGHTNESS_WEIGHT = 0.3  # step 9 compares colours with lightness weighted down: shade changes it most
SHADE_RING = 10  # pixels around the garment whose colours are its surroundings'
SHADE_CORE = 3  # pixels inside the outline from which the garment's colours are read
SHADE_SURROUNDING_SHARE = 0.05  # a colour of the surroundings covers at least this share of the ring,
SHADE_MIN_CHROMA = 10.0  # and is this colourful (Lab a-b distance from grey): a grey floor's shade is any grey's
SHADE_NEAR = 12.0  # a pixel this close to a colour of the surroundings (lightness weighted) ...
SHADE_CLOSER = 2.0  # ... and this many times closer to it than to every main colour of the garment is theirs
SHADE_U2NET_BACKGROUND = 0.3  # a piece goes when U-2-Net-p's mean there is below this,
SHADE_GARMENT_NET_UNSURE = 0.5  # (pixels the garment network gives this much or more are kept unless it does)
SHADE_GARMENT_NET_BACKGROUND = 0.2  # or the garment network's is below this and the piece touches the outline
SHADE_TOUCH_PIXELS = 3  # (in at least this many pixels) or U-2-Net-p leans to background
SHADE_MIN_SHARE = 0.001  # pieces smaller than this share of the garment are left alone
SHADE_GROW_CLOSER = 3.0  # from a piece that goes, pixels this many times closer to the surroundings go with it


def cut_out_fused(image: Image.Image) -> np.ndarray:
    """Binary garment mask (uint8 (height, width), 255 = garment) of an RGB photo from both cut-outs."""
    width, height = image.size
    small = cutout._downscale(image.convert("RGB") if image.mode != "RGB" else image, cutout.WORK_SIDE)
    return cutout._upscale_mask(cut_out_working_copy(small), (height, width))


def cut_out_working_copy(rgb: np.ndarray, use_garment_net: bool = True,
                         network: TrainedGarmentNet | None = None) -> np.ndarray:
    """Fused garment mask (uint8 0/255) of an RGB photo already at working size, as the studio makes it; without
    step 7 when `use_garment_net` is False; `network`: other weights for it than the committed ones."""
    # U-2-Net-p reads the working copy too: resizing a 12 MP photo to its 320 px input would cost more than the
    # whole cut-out.
    probability = probability_map(Image.fromarray(rgb))
    return fuse_small(rgb, probability, garment_probability_of(rgb, network) if use_garment_net else None)


def garment_probability_of(rgb: np.ndarray, network: TrainedGarmentNet | None = None) -> np.ndarray | None:
    """The garment network's map of an RGB image at working size (`network`, or else the committed one), or None
    where step 7 would not use it: the weights are missing, or the photo is on a plain backdrop
    (`_plain_backdrop`)."""
    if _plain_backdrop(rgb):
        return None
    network = network or garment_net()
    return None if network is None else network.probability(rgb)


def fuse_small(rgb: np.ndarray, probability: np.ndarray, garment_probability: np.ndarray | None = None) -> np.ndarray:
    """Fused garment mask (uint8 0/255) of an RGB image at working size, given U-2-Net-p's map at that size and,
    optionally, the garment network's (`garment_probability_of`; without it, or on a plain backdrop, the
    network's steps are skipped)."""
    if float(rgb.std()) < 2.0:
        raise SegmentationError(cutout.NO_GARMENT_MESSAGE)
    if _plain_backdrop(rgb):
        garment_probability = None
    classic = cutout.judge_background(rgb)
    network = cutout._largest_components(np.where(probability >= NETWORK_GARMENT, 255, 0).astype(np.uint8))
    if not _plausible(classic.mask):
        mask = network
    elif _saw_only_a_print(network, classic.mask):
        mask = classic.mask
    else:
        mask = _arbitrate(rgb, network, classic, probability)
    if not mask.any():
        raise SegmentationError(cutout.NO_GARMENT_MESSAGE)
    before_hanger_steps = mask
    without_hanger = _keep_garment_taken_for_a_hook(rgb, mask, cutout.remove_hanger(mask), garment_probability)
    on_a_hanger = np.count_nonzero(without_hanger) < np.count_nonzero(mask)
    mask = _remove_unlike_bumps(rgb, without_hanger, on_a_hanger)
    mask = _remove_hanger_remains(rgb, mask, _cut_hanger(probability, mask, classic), classic.distance)
    if on_a_hanger:
        mask = _peel_hanger_bar(rgb, mask)
    if garment_probability is not None:
        hanger_removed = (before_hanger_steps > 0) & (mask == 0) if on_a_hanger else None
        mask = _correct_with_garment_net(rgb, mask, garment_probability, probability, hanger_removed)
    mask = cutout._fill_enclosed_holes(cutout._largest_components(mask), classic.background_like)
    if garment_probability is not None:
        mask = _remove_surroundings_in_shade(rgb, mask, probability, garment_probability)
    mask = cutout.main_garment(mask, rgb)
    cutout._check_plausible(mask)
    return mask


def _remove_surroundings_in_shade(rgb: np.ndarray, mask: np.ndarray, probability: np.ndarray,
                                  garment: np.ndarray) -> np.ndarray:
    """`mask` without the pieces of the surroundings in the garment's shade (step 9). `probability` is
    U-2-Net-p's map, `garment` the garment network's."""
    inside = mask > 0
    # Only where a network doubts the garment: elsewhere both call it garment, whatever its colour.
    doubted = inside & ((garment < SHADE_GARMENT_NET_UNSURE) | (probability < SHADE_U2NET_BACKGROUND))
    if not doubted.any():
        return mask
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (3, 3), 0), cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] *= SHADE_LIGHTNESS_WEIGHT
    ring = (cv2.dilate(mask, np.ones((2 * SHADE_RING + 1,) * 2, np.uint8)) > 0) & ~inside
    core = cv2.erode(mask, np.ones((2 * SHADE_CORE + 1,) * 2, np.uint8)) > 0
    if np.count_nonzero(ring) < cutout.MIN_OUTSIDE_PIXELS or np.count_nonzero(core) < cutout.MIN_OUTSIDE_PIXELS:
        return mask
    surroundings, shares = _colour_clusters(lab[ring], 5)
    surroundings = surroundings[(shares >= SHADE_SURROUNDING_SHARE) & (_chroma(surroundings) >= SHADE_MIN_CHROMA)]
    if not len(surroundings):
        return mask
    garment_colours, shares = _colour_clusters(lab[core], 6)
    garment_colours = garment_colours[shares >= MAIN_COLOUR_SHARE]
    near = _nearest_distance(lab[doubted], surroundings)
    theirs = np.zeros_like(inside)
    theirs[doubted] = (near < SHADE_NEAR) & (SHADE_CLOSER * near < _nearest_distance(lab[doubted], garment_colours))
    theirs = cv2.morphologyEx(theirs.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    outside = cv2.dilate((~inside).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    count, labels, stats, _ = cv2.connectedComponentsWithStats(theirs, connectivity=8)
    removed = np.zeros_like(inside)
    for label in range(1, count):
        piece = labels == label
        if (stats[label, cv2.CC_STAT_AREA] >= SHADE_MIN_SHARE * np.count_nonzero(inside)
                and _chroma(lab[piece].mean(axis=0, keepdims=True))[0] >= SHADE_MIN_CHROMA
                and _background_to_a_network(piece, outside, probability, garment)):
            removed |= piece
    if not removed.any():
        return mask
    removed |= _rest_of_the_surroundings(lab, inside & ~removed, removed, surroundings, garment_colours)
    trimmed = mask.copy()
    trimmed[removed] = 0
    return cutout._largest_components(trimmed)


def _rest_of_the_surroundings(lab: np.ndarray, inside: np.ndarray, removed: np.ndarray, surroundings: np.ndarray,
                              garment_colours: np.ndarray) -> np.ndarray:
    """The pixels of `inside` joined to the `removed` pieces through pixels of the surroundings' hue, whatever the
    networks say: the rim of a wedge along a sleeve, which the networks' blurred maps give to the sleeve."""
    near = _nearest_distance(lab[inside], surroundings)
    theirs = np.zeros_like(inside)
    theirs[inside] = (near < SHADE_NEAR) & (SHADE_GROW_CLOSER * near
                                            < _nearest_distance(lab[inside], garment_colours))
    _, labels = cv2.connectedComponents(theirs.astype(np.uint8), connectivity=8)
    beside = cv2.dilate(removed.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    joined = np.unique(labels[beside & theirs])
    return np.isin(labels, joined[joined > 0])


def _background_to_a_network(piece: np.ndarray, outside: np.ndarray, probability: np.ndarray,
                             garment: np.ndarray) -> bool:
    u2net = float(probability[piece].mean())
    if u2net < SHADE_U2NET_BACKGROUND:
        return True
    touches = np.count_nonzero(piece & outside) >= SHADE_TOUCH_PIXELS
    return float(garment[piece].mean()) < SHADE_GARMENT_NET_BACKGROUND and (touches or u2net < NETWORK_GARMENT)


def _colour_clusters(samples: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means centres of colour samples (n, 3) and the share of the samples each covers."""
    samples, labels, centres = cutout._kmeans_colours(samples, clusters)
    return centres, np.bincount(labels, minlength=len(centres)) / len(samples)


def _nearest_distance(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.sqrt(((features[:, None, :] - centres[None]) ** 2).sum(axis=2)).min(axis=1)


def _chroma(lab: np.ndarray) -> np.ndarray:
    """Distance from grey of OpenCV 8-bit Lab colours (n, 3)."""
    return np.hypot(lab[:, 1] - 128.0, lab[:, 2] - 128.0)


def _keep_garment_taken_for_a_hook(rgb: np.ndarray, mask: np.ndarray, trimmed: np.ndarray,
                                   garment: np.ndarray | None) -> np.ndarray:
    """`trimmed` (the mask after the hanger steps' shape rules) with the parts they took off back where the
    garment network says they are garment: a turtleneck's collar, a strap, lace trims or the back of a neckline
    rise above a garment as a hook does. A part comes back where the network is sure of it, or where it leans to
    garment and the part has the garment's colour, unless a hanger's bar was found (then what rises is its
    hook or clips, which the network half takes for a waistband)."""
    if garment is None:
        return trimmed
    removed = (mask > 0) & (trimmed == 0)
    count, labels = cv2.connectedComponents(removed.astype(np.uint8), connectivity=8)
    if count < 2:
        return trimmed
    no_bar = np.array_equal(cutout._remove_hanger_bar(mask), mask)
    distance = _colours_below_top_band(rgb, trimmed) if no_bar else None
    kept = trimmed.copy()
    for index in range(1, count):
        part = labels == index
        belief = float(garment[part].mean())
        leaning = (distance is not None and belief >= GARMENT_NET_LEANS_TO_GARMENT
                   and np.median(distance[part]) < cutout.GARMENT_LIKE_SIGMAS)
        if belief >= GARMENT_NET_SURE_OF_HANGER_PART or leaning:
            kept[part] = 255
    return kept


def _correct_with_garment_net(rgb: np.ndarray, mask: np.ndarray, garment: np.ndarray, network: np.ndarray,
                              hanger_removed: np.ndarray | None) -> np.ndarray:
    """Step 7: large, sure disagreements of the garment network with the mask, settled its way unless the
    colours say otherwise. `hanger_removed`: what the hanger steps took off, for a garment on a hanger."""
    inside = mask > 0
    area = np.count_nonzero(inside)
    corrected = inside.copy()
    for part in _large_parts(inside & (garment < GARMENT_NET_BACKGROUND), area):
        if _background_kept(rgb, inside, part, network):
            corrected &= ~part
    beside = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    for part in _large_parts(~inside & (garment > GARMENT_NET_GARMENT), area):
        if (part & beside).any() and _garment_lost(rgb, inside, part, area, hanger_removed):
            corrected |= part
    return np.where(corrected, 255, 0).astype(np.uint8)


def _plain_backdrop(rgb: np.ndarray) -> bool:
    """A seamless studio backdrop: nearly all of the photo's border within a few levels of its median colour.
    The classic model is exact there, and the garment network, trained on floors, beds and walls, is not
    asked (on the product shots it would take a white hem on white for the backdrop)."""
    border = rgb[cutout._border_band(rgb.shape[:2])].astype(np.float32)
    close = np.abs(border - np.median(border, axis=0)).max(axis=1) <= PLAIN_BACKDROP_LEVELS
    return float(close.mean()) >= PLAIN_BACKDROP_SHARE


def _background_kept(rgb: np.ndarray, garment: np.ndarray, part: np.ndarray, network: np.ndarray) -> bool:
    """A part of the mask the garment network calls background goes when it looks like the garment's
    surroundings, unless it has the garment's colour and U-2-Net-p calls it garment too (a sleeve the colour of
    the wall behind it)."""
    if np.median(_unlike_surroundings(rgb, garment)[part]) > GARMENT_NET_LIKE_SURROUNDINGS:
        return False
    return not (network[part].mean() > NETWORK_GARMENT and _looks_like_garment(rgb, garment & ~part, part))


def _garment_lost(rgb: np.ndarray, garment: np.ndarray, part: np.ndarray, area: int,
                  hanger_removed: np.ndarray | None) -> bool:
    """A part beside the mask the garment network calls garment comes in unless, on a hanger, it rises above
    the garment or touches what the hanger steps removed (the network has seen hangers kept in its labels), or
    it is a smaller piece just like the floor around the garment (a wedge between a sleeve and the body)."""
    if hanger_removed is not None:
        near = cv2.dilate(hanger_removed.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        if (part & near).any() or np.argmax(part.any(axis=1)) < np.argmax(garment.any(axis=1)):
            return False
    if np.count_nonzero(part) < GARMENT_NET_LARGE_SHARE * area:
        return not _like_the_floor(rgb, garment, part, _unlike_surroundings(rgb, garment | part)[part])
    return True


def _large_parts(region: np.ndarray, garment_area: int) -> list[np.ndarray]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    return [labels == index for index in range(1, count)
            if stats[index, cv2.CC_STAT_AREA] > GARMENT_NET_PART_SHARE * garment_area]


def _plausible(mask: np.ndarray) -> bool:
    try:
        cutout._check_plausible(mask)
    except SegmentationError:
        return False
    return True


def _saw_only_a_print(network: np.ndarray, classic: np.ndarray) -> bool:
    network_area = np.count_nonzero(network)
    inside = np.count_nonzero((network > 0) & (classic > 0))
    return network_area < PRINT_ONLY_SHARE * np.count_nonzero(classic) and inside > INSIDE_SHARE * network_area


def _arbitrate(rgb: np.ndarray, network: np.ndarray, classic: cutout.BackgroundVerdict,
               probability: np.ndarray) -> np.ndarray:
    garment = network > 0
    classic_garment = classic.mask > 0
    radius = max(2, int(round(np.sqrt(float(np.count_nonzero(garment))) * JOIN_FRACTION)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near = cv2.dilate(network, kernel) > 0
    network_area = np.count_nonzero(garment)

    count, labels = cv2.connectedComponents((classic_garment & ~garment).astype(np.uint8), connectivity=8)
    unlike = limbs = None
    for label in range(1, count):
        part = labels == label
        if not (part & near).any():
            continue
        if np.median(probability[part]) > NETWORK_HINT:
            # Most such parts are specks on the garment's edge: only a larger one is worth judging (and costs the
            # model of the surroundings).
            speck = np.count_nonzero(part) < FLOOR_PART_SHARE * network_area
            if not speck:
                unlike = _unlike_surroundings(rgb, garment | classic_garment) if unlike is None else unlike
            if speck or not _like_the_floor(rgb, network > 0, part, unlike[part]):
                garment |= part
                continue
        if np.count_nonzero(part) > LOST_PART_SHARE * network_area and not _lost_garment_part(rgb, garment, part):
            continue
        unlike = _unlike_surroundings(rgb, garment | classic_garment) if unlike is None else unlike
        if np.median(unlike[part]) <= 0:
            # Like something somewhere around the garment (dark folds or clutter elsewhere on the sheet): still a
            # sleeve or leg the network lost when it sticks out of the garment like one.
            limbs = _LimbCheck(rgb, network > 0) if limbs is None else limbs
            if _lost_garment_part(rgb, garment, part) and limbs.is_lost_limb(part, garment, classic_garment):
                garment |= part
            continue
        # Unlike the surroundings is not enough (a glare on the floor is too): it must also stand clearly apart
        # from the background (a white hem on white) or have the garment's colour (a dark sleeve the network lost).
        if (np.median(classic.distance[part]) > CLEARLY_UNLIKE * classic.threshold
                or _looks_like_garment(rgb, network > 0, part)):
            garment |= part

    if _agreement(network > 0, classic_garment) >= TRUSTED_AGREEMENT:
        network_only = (network > 0) & ~classic_garment
        doubtful = network_only & ((classic.background_like & (probability < UNSURE))
                                   | (classic.distance < DEEP_BACKGROUND * classic.threshold))
        garment &= ~doubtful
    return _remove_hanger_parts(rgb, np.where(garment, 255, 0).astype(np.uint8), classic_garment)


class _LimbCheck:
    """Whether a classic-only part is a sleeve or leg the network lost: it lies mostly outside the convex hull of
    the network's garment (it sticks out, where a floor wedge between an arm and the body or a strip along a leg
    lies inside or hugs the outline), it is thick (a shadow or a sheet's fold is a strip), and its colour and
    texture are nearer the garment beside it than the background around it."""

    def __init__(self, rgb: np.ndarray, network_garment: np.ndarray):
        hull = np.zeros(network_garment.shape, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(cv2.findNonZero(network_garment.astype(np.uint8))), 1)
        self.hull = hull > 0
        self.side = np.sqrt(float(np.count_nonzero(network_garment)))
        self.features = _flat_features(rgb)

    def is_lost_limb(self, part: np.ndarray, garment: np.ndarray, classic_garment: np.ndarray) -> bool:
        area = np.count_nonzero(part)
        if np.count_nonzero(part & ~self.hull) < LIMB_OUTSIDE_SHARE * area:
            return False
        if cv2.distanceTransform(part.astype(np.uint8), cv2.DIST_L2, 5).max() < LIMB_THICKNESS * self.side:
            return False
        radius = max(3, int(np.sqrt(area) * LIMB_RING))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        around = cv2.dilate(part.astype(np.uint8), kernel) > 0
        background, beside = around & ~(garment | classic_garment), around & garment
        if min(np.count_nonzero(background), np.count_nonzero(beside)) < LIMB_MIN_PIXELS:
            return False
        pixels = self.features[part.ravel()]
        to_garment = cutout._nearest_cluster_distance(pixels, self.features[beside.ravel()])
        to_background = cutout._nearest_cluster_distance(pixels, self.features[background.ravel()])
        return bool(np.median(to_garment) < np.median(to_background))


def _like_the_floor(rgb: np.ndarray, network_garment: np.ndarray, part: np.ndarray, unlike: np.ndarray) -> bool:
    """Whether a classic-only part (more than a speck) is the floor whatever weight the network gives it: just
    like the surroundings (`unlike`: `_unlike_surroundings` of its pixels) and unlike the garment. The network
    fills the gap between a sleeve and the body faintly (0.2 to 0.4), and the classic model takes that floor in
    where the light there differs from the photo's border."""
    return np.median(unlike) <= -LIKE_SURROUNDINGS and not _looks_like_garment(rgb, network_garment, part)


def _lost_garment_part(rgb: np.ndarray, garment: np.ndarray, part: np.ndarray) -> bool:
    """A large classic-only part is a piece the network lost (a trouser leg) only if it has the garment's colour
    and stays inside the photo; a floor board or a wall the classic model took in runs to the photo's edge or
    is of another colour."""
    reaches_edge = part[0].any() or part[-1].any() or part[:, 0].any() or part[:, -1].any()
    return not reaches_edge and _looks_like_garment(rgb, garment, part)


def _looks_like_garment(rgb: np.ndarray, garment: np.ndarray, part: np.ndarray) -> bool:
    distance = _main_colour_distance(rgb, garment)
    return distance is not None and bool(np.median(distance[part]) < cutout.GARMENT_LIKE_SIGMAS)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks: how far the classic cut-out can be trusted to take pixels away
    from the network's (on a busy rug or sheet the classic one goes astray and the network is right)."""
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def _unlike_surroundings(rgb: np.ndarray, either: np.ndarray) -> np.ndarray:
    """Per pixel, how far its colour and texture lie beyond what the surroundings (the pixels outside both
    masks) spread over, in sigmas: positive where it is unlike them. The border's model can be fooled by uneven
    light on a sheet; the pixels right around the garment cannot."""
    flat = _flat_features(rgb)
    outside = ~either
    if np.count_nonzero(outside) < cutout.MIN_OUTSIDE_PIXELS:
        return np.ones(either.shape, np.float32)
    distance = cutout._nearest_cluster_distance(flat, flat[outside.ravel()]).reshape(either.shape)
    return distance - cutout._foreground_threshold(distance, outside)


def _flat_features(rgb: np.ndarray) -> np.ndarray:
    """The background model's colour-and-texture features of every pixel, one row per pixel."""
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2Lab).astype(np.float32)
    features = cutout._pixel_features(lab)
    return features.reshape(-1, features.shape[2]).astype(np.float32)


def _remove_hanger_parts(rgb: np.ndarray, mask: np.ndarray, classic_garment: np.ndarray) -> np.ndarray:
    """`mask` without the thin network-only parts in the top band of the classic garment or above it (a hanger's
    bar, clips and hook, which the classic cut-out removed), unless they are a pair of straps."""
    extra = (mask > 0) & ~classic_garment
    extra[_top_band_end(classic_garment):] = False
    if not extra.any():
        return mask
    radius = max(2, int(round(np.sqrt(float(np.count_nonzero(mask))) * cutout.HOOK_FRACTION)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    thick = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel) > 0
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(extra.astype(np.uint8), connectivity=8)
    thin = [label for label in range(1, count)
            if np.count_nonzero(thick[labels == label]) < THIN_SHARE * stats[label, cv2.CC_STAT_AREA]]
    if not thin:
        return mask
    columns = np.flatnonzero(classic_garment.any(axis=0))
    offsets = centroids[thin, 0] - (columns[0] + columns[-1]) / 2
    if cutout.is_strap_pair(offsets, stats[thin, cv2.CC_STAT_AREA], radius):
        return mask
    parts = np.isin(labels, thin)
    distance = _main_colour_distance(rgb, (mask > 0) & ~parts)
    if distance is None:
        return mask
    # Pixel by pixel: such a part often joins a rim of the garment's own colour to the hanger.
    hanger = cv2.morphologyEx((parts & (distance > cutout.GARMENT_LIKE_SIGMAS)).astype(np.uint8), cv2.MORPH_OPEN,
                              np.ones((2, 2), np.uint8)) > 0
    trimmed = mask.copy()
    trimmed[hanger] = 0
    return cutout._largest_components(trimmed)


def _top_band_end(mask: np.ndarray) -> int:
    """The first row below the top band of a (non-empty) mask: where a hanger's bar, clips and hook end."""
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[0] + int(round(TOP_BAND * (rows[-1] - rows[0]))))


def _colours_below_top_band(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """`_main_colour_distance` to the garment's colours below its top band, where no hanger lies."""
    below = mask > 0
    below[:_top_band_end(mask)] = False
    return _main_colour_distance(rgb, below)


def _main_colour_distance(rgb: np.ndarray, body: np.ndarray,
                          min_pixels: int = cutout.MIN_OUTSIDE_PIXELS) -> np.ndarray | None:
    """Per pixel, the distance in sigmas to the nearest of the garment's main colours (each covering at least
    MAIN_COLOUR_SHARE of `body`); None when `body` is too small to say."""
    if np.count_nonzero(body) < min_pixels:
        return None
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2Lab).astype(np.float32)
    means, inverses, shares = cutout._fit_border_model(lab[body])
    main = shares >= MAIN_COLOUR_SHARE
    flat = lab.reshape(-1, 3)
    return np.stack([cutout._mahalanobis(flat, mean, inverse)
                     for mean, inverse in zip(means[main], inverses[main])]).min(axis=0).reshape(body.shape)


def _remove_unlike_bumps(rgb: np.ndarray, mask: np.ndarray, on_a_hanger: bool) -> np.ndarray:
    """`mask` without the small bumps on the top of the garment whose colour is none of the garment's main
    colours: the clips and hook of a hanger that sit on a waistband or collar, too low to be cut as a hook. Unless
    a hanger's hook or bar was found, only compact bumps are judged: a strap is tall and thin, and a thin strap's
    colour blurs into the background's."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return mask
    radius = max(2, int(round(np.sqrt(float(np.count_nonzero(mask))) * BUMP_FRACTION)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    bumps = (mask > 0) & ~(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel) > 0)
    bumps[_top_band_end(mask):] = False
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bumps.astype(np.uint8), connectivity=8)
    compact = [label for label in range(1, count)
               if on_a_hanger or stats[label, cv2.CC_STAT_HEIGHT] < STRAP_ELONGATION * stats[label, cv2.CC_STAT_WIDTH]]
    if not compact:
        return mask
    distance = _main_colour_distance(rgb, (mask > 0) & ~np.isin(labels, compact))
    if distance is None:
        return mask
    trimmed = mask.copy()
    for label in compact:
        part = labels == label
        if np.median(distance[part]) > cutout.GARMENT_LIKE_SIGMAS:
            trimmed[part] = 0
    return cutout._largest_components(trimmed)


MIN_HANGER_PIXELS = 20  # fewer pixels of a removed hanger than this do not tell its colour
HANGER_RISE = 0.03  # a hanger rises above the garment by at least this share of its height (a strap top less)
HANGER_CORE = 70  # percentile: the hanger's colour is read where it stands out most from the background
HANGER_DELTA_E = 18.0  # a pixel this close to the hanger's colour (CIE76) may be the hanger's ...
HANGER_UNLIKE = 2.0  # ... when it is this many times GARMENT_LIKE_SIGMAS from every colour of the garment;
HANGER_CLOSER = 3.0  # or when it is this many times closer to the hanger's colours than to the garment's
MIN_HANGER_PART = 6  # pixels; smaller specks of the hanger's colour are left alone
MAX_REMAINS_SHARE = 0.06  # what is left of a hanger covers at most this share of the garment


def _cut_hanger(probability: np.ndarray, mask: np.ndarray, classic: cutout.BackgroundVerdict) -> np.ndarray:
    """The pixels of a hanger cut off so far (bool): what the network saw in or above the top band of the
    garment that is no longer in the mask and stands out from the background (its hook, its bar's ends)."""
    cut = (probability >= NETWORK_GARMENT) & (mask == 0) & (classic.distance > classic.threshold)
    cut[_top_band_end(mask):] = False
    return cut


def _remove_hanger_remains(rgb: np.ndarray, mask: np.ndarray, hanger: np.ndarray,
                           background_distance: np.ndarray) -> np.ndarray:
    """`mask` without what is left of a hanger whose hook or bar was cut off (`hanger`: those pixels, bool): in
    the top band, the regions of the hanger's colour and none of the garment's that touch the cut or the
    garment's upper outline (the clips and bar of a clip hanger on a waistband, the rest of a wooden hanger's
    body, the wall seen inside a collar)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not _rises_above(hanger, rows):
        return mask
    band_end = _top_band_end(mask)
    garment_distance = _colours_below_top_band(rgb, mask)
    if garment_distance is None:
        return mask
    hanger = hanger & (garment_distance > cutout.GARMENT_LIKE_SIGMAS)
    if not _rises_above(hanger, rows):
        return mask
    candidate = _hanger_coloured(rgb, mask, hanger, garment_distance, background_distance)
    candidate[band_end:] = False
    remains = _touching(candidate, hanger, mask)
    if not remains.any() or np.count_nonzero(remains) > MAX_REMAINS_SHARE * np.count_nonzero(mask):
        return mask
    trimmed = mask.copy()
    trimmed[remains] = 0
    return cutout._largest_components(trimmed)


def _hanger_coloured(rgb: np.ndarray, mask: np.ndarray, hanger: np.ndarray, garment_distance: np.ndarray,
                     background_distance: np.ndarray) -> np.ndarray:
    """The garment's pixels of the hanger's colour and none of the garment's (bool)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    # A thin hook blends into the wall at working size: its truest colour is where it stands out most.
    core = hanger & (background_distance >= np.percentile(background_distance[hanger], HANGER_CORE))
    colour = np.median(lab[core], axis=0)
    coloured = ((mask > 0) & (np.linalg.norm(lab - colour, axis=2) < HANGER_DELTA_E)
                & (garment_distance > HANGER_UNLIKE * cutout.GARMENT_LIKE_SIGMAS))
    # The hanger's colours as a model too: a grey wall seen through a collar, beside a grey hanger.
    hanger_distance = _main_colour_distance(rgb, hanger, min_pixels=MIN_HANGER_PIXELS)
    if hanger_distance is not None:
        coloured |= ((mask > 0) & (hanger_distance < cutout.GARMENT_LIKE_SIGMAS)
                     & (garment_distance > HANGER_CLOSER * np.maximum(hanger_distance, 1.0)))
    return coloured


def _touching(candidate: np.ndarray, hanger: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The parts of `candidate` (bool), specks left out, that touch the cut hanger or the mask's upper outline."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(candidate.astype(np.uint8), connectivity=8)
    labels[np.isin(labels, np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < MIN_HANGER_PART))] = 0
    outline = np.zeros(mask.shape, bool)
    outline[1:] = (mask[1:] > 0) & (mask[:-1] == 0)
    outline[0] = mask[0] > 0
    near = (cv2.dilate(hanger.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) | (
        cv2.dilate(outline.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    touching = np.unique(labels[near])
    return np.isin(labels, touching[touching > 0])


def _rises_above(hanger: np.ndarray, garment_rows: np.ndarray) -> bool:
    """Whether the pixels of a hanger are enough to tell its colour and rise above the garment as a hook does."""
    hanger_rows = np.flatnonzero(hanger.any(axis=1))
    return (np.count_nonzero(hanger) >= MIN_HANGER_PIXELS
            and garment_rows[0] - hanger_rows[0] >= HANGER_RISE * (garment_rows[-1] - garment_rows[0]))


BAR_ROW_SHARE = 0.6  # a row of the mask is a hanger bar's when this share of it has none of the garment's colours
BAR_PEEL_FRACTION = 0.03  # a bar is at most this share of the garment's height thick


def _peel_hanger_bar(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`mask` without the top rows that are mostly none of the garment's colours: the bar of a clip hanger
    lying along a waistband, which no opening separates from it. Only a thin band is peeled: when the rows of
    other colours go deeper, they are the garment's own band (a striped waistband, a collar)."""
    rows = np.flatnonzero(mask.any(axis=1))
    height = rows[-1] - rows[0] + 1
    distance = _colours_below_top_band(rgb, mask)
    if distance is None:
        return mask
    unlike = (mask > 0) & (distance > cutout.GARMENT_LIKE_SIGMAS)
    share = unlike.sum(axis=1) / np.maximum(1, (mask > 0).sum(axis=1))
    limit = max(2, int(round(BAR_PEEL_FRACTION * height)))
    peeled = 0
    while peeled <= limit and share[rows[0] + peeled] >= BAR_ROW_SHARE:
        peeled += 1
    if peeled == 0 or peeled > limit:
        return mask
    trimmed = mask.copy()
    trimmed[:rows[0] + peeled] = 0
    return cutout._largest_components(trimmed)
