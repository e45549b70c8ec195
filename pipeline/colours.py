"""A garment's colours in the words of a listing: the main colour, a second one where it is clearly there, and the
pattern, judged from the garment's own pixels after taking the light's colour cast out.

The floor, bed or wall around the garment is the evidence of the light: when it is close to neutral, its tint is
the light's, and the garment's pixels are corrected by the same amount (a von Kries scaling in linear RGB), so a
white shirt under a warm bulb is named white, not cream. A clearly coloured surround (a red rug, a wooden floor)
says nothing about the light and leaves the pixels as they are.

Fabric in a phone photo reads darker and greyer than the seller sees it (matte cloth, indoor light, shadow), so
the nearest swatch of a palette of true colours misnames the commonest garments: a white tee comes out light grey,
navy comes out charcoal. `photo_color_name` therefore names the low-chroma region, where this matters, by regions
of lightness, chroma and hue (in the manner of the ISCC-NBS colour names), and the rest by the nearest palette
swatch after an exposure correction, with lightness weighted half as textile colour matching does (k_L = 2).
Measured on 48 labelled flat lays and checked on 48 more: benchmarks/colour_naming.py, BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from pipeline.attributes import (
    HEATHER_GREY,
    GarmentColor,
    ciede2000,
    is_heather,
    lab_to_srgb,
    nearest_color_name,
    rgb_to_hex,
    srgb_to_lab,
    working_copy,
)
from pipeline.pattern import detect_pattern

_CLUSTERS = 6
_MAX_SAMPLES = 20_000
_SAME_COLOUR_DE = 10.0        # clusters this close (CIEDE2000) are one colour
_SHADE_CHROMA_DE = 7.0        # ...and so are clusters that differ in lightness only (a fold's shadow)
_SHADE_LIGHTNESS = 28.0
_SHADE_NEUTRAL_CHROMA = 10.0
_SECONDARY_SHARE = 0.12       # a second colour covers at least this share of the garment
_SECONDARY_DE = 15.0          # and is at least this far from the main colour

_FLAT_BELOW = 4.0            # Lab change per pixel: pixels sharper than this are a pattern's blended edges
_FLAT_KEEP = 0.3             # ...left out of the colours unless fewer than this share of the garment is flat
_EXPOSURE = 1.2              # photographed lightness -> the fabric's, for naming by the palette
_NEUTRAL_CHROMA = 6.0        # below this chroma a colour is named white, grey or black by its lightness
_WARM_NEUTRAL_CHROMA = 4.5  # ...and below this for yellowish and greenish hues, which are earth tones above it
_BLUE_HUES = (250.0, 320.0)  # hue angles (degrees, CIELAB) of navy, denim and dull blues
_EARTH_HUES = (60.0, 210.0)  # hue angles of khaki, beige, sage, olive and army green
DENIM_TYPES = frozenset({"trousers", "jeans", "shorts"})  # dull blue ones of these are denim

_CAST_NEUTRAL_CHROMA = 6.0    # a surround at most this colourful is neutral: its whole tint is the light's
_CAST_MAX_CHROMA = 16.0       # above this it is a coloured surface and tells nothing about the light
_MAX_GAIN = 1.35              # no channel is scaled by more than this (or less than its inverse)


@dataclass(frozen=True)
class ListingColours:
    color: GarmentColor                 # the main colour
    secondary: GarmentColor | None      # a second colour over a good part of the garment, else None
    pattern: str                        # one of GARMENT_PATTERNS


def dominant_color(image: Image.Image, mask: np.ndarray) -> GarmentColor:
    """The largest colour under the mask, as photographed (no correction for the light), named. The fidelity
    check measures outputs with it."""
    rgb, garment, _ = working_copy(image, mask)
    return _named(colour_groups(rgb[garment])[0][0], rgb, garment)


def _named(lab: np.ndarray, rgb: np.ndarray, garment: np.ndarray) -> GarmentColor:
    name = nearest_color_name(lab)
    if is_heather(name, rgb, garment):
        name = HEATHER_GREY
    return GarmentColor(name=name, hex=rgb_to_hex(lab_to_srgb(lab)[0]))


def listing_colours(image: Image.Image, mask: np.ndarray, garment_type: str | None = None) -> ListingColours:
    """The garment's main colour, second colour and pattern, named the way a seller writes them. `garment_type`
    ("jeans", "t-shirt"; None when unknown) lets a dull blue pair of trousers be called denim."""
    return ColourReading.of(image, mask).named(garment_type)


@dataclass(frozen=True)
class ColourReading:
    """What `listing_colours` measures of the garment's pixels, before naming: the slow part, which does not need
    the garment's type, so it can run while the category is still being predicted."""

    corrected: np.ndarray                    # the working copy with the light's colour cast taken out
    garment: np.ndarray                      # the garment's pixels in it
    groups: list[tuple[np.ndarray, float]]   # (Lab centre, share) per colour, largest first
    pattern: str

    @classmethod
    def of(cls, image: Image.Image, mask: np.ndarray) -> ColourReading:
        rgb, garment, surround = working_copy(image, mask)
        corrected = without_colour_cast(rgb, surround)
        groups = colour_groups(_flat_pixels(corrected, garment))
        return cls(corrected, garment, groups, detect_pattern(corrected, garment))

    def named(self, garment_type: str | None = None) -> ListingColours:
        main_lab = self.groups[0][0]
        name = photo_color_name(main_lab, garment_type in DENIM_TYPES)
        if is_heather(name, self.corrected, self.garment):
            name = HEATHER_GREY
        color = GarmentColor(name=name, hex=rgb_to_hex(lab_to_srgb(main_lab)[0]))
        return ListingColours(color=color, secondary=_secondary(self.groups, color), pattern=self.pattern)


def photo_color_name(lab: np.ndarray, denim: bool = False) -> str:
    """The listing name of a colour as measured (CIELAB) in a phone photo of fabric; `denim` names dull blues
    denim blue."""
    lightness, a, b = (float(v) for v in lab)
    chroma = float(np.hypot(a, b))
    hue = float(np.degrees(np.arctan2(b, a)) % 360.0)
    blue_from = 3.0 if 25 <= lightness < 40 else 5.0  # a mid-dark garment's slight blue is navy, not grey
    if _BLUE_HUES[0] <= hue <= _BLUE_HUES[1] and chroma >= blue_from and lightness < 62 and (lightness < 40 or chroma < 15):
        if denim:
            return "denim blue"
        return "navy" if lightness < 40 else "blue"
    warm = _EARTH_HUES[0] <= hue <= _EARTH_HUES[1]
    # light colours read greyer still; dull yellows and greens are earth tones sooner than they are greys
    neutral_below = _NEUTRAL_CHROMA + max(0.0, lightness - 50.0) * 0.1 if not warm else _WARM_NEUTRAL_CHROMA
    if chroma < neutral_below:
        for floor, name in ((66, "white"), (50, "light grey"), (36, "grey"), (24, "dark grey")):
            if lightness >= floor:
                return name
        return "black"
    if warm and chroma < 20 and lightness < 72:  # the earth tones: greener ones sage and olive, yellower khaki
        if lightness < 35:
            return "army green"
        if hue >= 95:
            return "sage" if chroma < 12 else "olive"
        return "khaki" if lightness < 55 else "beige"
    exposed = np.array([min(100.0, lightness * _EXPOSURE), a, b])
    name = nearest_color_name(exposed, lightness_weight=2.0)
    return "blue" if name == "denim blue" and not denim else name  # denim is a fabric: jeans, not a blue shirt


def _flat_pixels(rgb: np.ndarray, garment: np.ndarray) -> np.ndarray:
    """The garment's pixels away from sharp detail: a fine check or print blends its colours at its edges."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    smooth = cv2.GaussianBlur(lab, (0, 0), 1.0)
    squared = sum(cv2.Sobel(smooth[..., c], cv2.CV_32F, dx, 1 - dx, ksize=3) ** 2 for c in range(3) for dx in (0, 1))
    flat = garment & (np.sqrt(squared) / 8.0 < _FLAT_BELOW)
    return rgb[flat] if flat.sum() >= _FLAT_KEEP * garment.sum() else rgb[garment]


# ---------------------------------------------------------------- the light's colour cast

def _to_linear(rgb: np.ndarray) -> np.ndarray:
    values = rgb.astype(np.float32) / 255.0
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    values = np.clip(linear, 0.0, 1.0)
    values = np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def cast_gains(rgb: np.ndarray, surround: np.ndarray) -> np.ndarray:
    """Per-channel gains (linear RGB) that make the surround neutral, in full when it is nearly neutral, fading to
    none as it gets more colourful; ones when there is no usable surround."""
    pixels = rgb[surround]
    if len(pixels) < 500:
        return np.ones(3, np.float32)
    lightness = srgb_to_lab(pixels)[:, 0]
    usable = pixels[(lightness > 25) & (pixels.max(axis=1) < 250)]  # not black, not blown out
    if len(usable) < 500:
        return np.ones(3, np.float32)
    mean = _to_linear(usable).mean(axis=0)
    lab = srgb_to_lab(_to_srgb(mean[None]))[0]
    chroma = float(np.hypot(lab[1], lab[2]))
    strength = float(np.clip((_CAST_MAX_CHROMA - chroma) / (_CAST_MAX_CHROMA - _CAST_NEUTRAL_CHROMA), 0.0, 1.0))
    gains = np.clip(mean.mean() / np.maximum(mean, 1e-6), 1 / _MAX_GAIN, _MAX_GAIN)
    return (gains ** strength).astype(np.float32)


def without_colour_cast(rgb: np.ndarray, surround: np.ndarray) -> np.ndarray:
    """The image with the light's tint, as the surround shows it, taken out (see `cast_gains`)."""
    gains = cast_gains(rgb, surround)
    if np.allclose(gains, 1.0, atol=1e-3):
        return rgb
    return _to_srgb(_to_linear(rgb) * gains)


# ---------------------------------------------------------------- colour groups

def colour_groups(pixels_rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(Lab centre, share of the pixels) per colour, largest first: Lab k-means clusters grouped where they are one
    colour in light and shade."""
    if len(pixels_rgb) > _MAX_SAMPLES:
        pixels_rgb = pixels_rgb[np.linspace(0, len(pixels_rgb) - 1, _MAX_SAMPLES).astype(np.int64)]
    lab = srgb_to_lab(pixels_rgb)
    k = min(_CLUSTERS, len(lab))
    cv2.setRNGSeed(12345)  # k-means++ seeding: same photo, same answer
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 20, 0.2)
    _, labels, centres = cv2.kmeans(lab, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k).astype(np.float64)
    groups = []
    unassigned = [int(i) for i in np.argsort(-counts)]
    while unassigned:
        seed = unassigned[0]
        members = [i for i in unassigned if _one_colour(centres[seed], centres[i])]
        unassigned = [i for i in unassigned if i not in members]
        total = counts[members].sum()
        centre = (centres[members] * counts[members, None]).sum(axis=0) / total
        groups.append((centre, float(total / counts.sum())))
    return sorted(groups, key=lambda group: -group[1])


def _one_colour(first: np.ndarray, second: np.ndarray) -> bool:
    if ciede2000(first, second) <= _SAME_COLOUR_DE:
        return True
    # a fold's shadow: the same hue (or, for whites and greys, near no hue at all: shade is often warmer or
    # cooler than the lit part), darker or lighter
    same_hue = np.hypot(*(first[1:] - second[1:])) <= _SHADE_CHROMA_DE
    both_neutral = max(np.hypot(*first[1:]), np.hypot(*second[1:])) <= _SHADE_NEUTRAL_CHROMA
    return bool((same_hue or both_neutral) and abs(first[0] - second[0]) <= _SHADE_LIGHTNESS)


def _secondary(groups: list[tuple[np.ndarray, float]], main: GarmentColor) -> GarmentColor | None:
    main_lab = groups[0][0]
    for lab, share in groups[1:]:
        if share < _SECONDARY_SHARE:
            break
        if ciede2000(main_lab, lab) >= _SECONDARY_DE:
            name = photo_color_name(lab)
            if name != main.name:
                return GarmentColor(name=name, hex=rgb_to_hex(lab_to_srgb(lab)[0]))
    return None
