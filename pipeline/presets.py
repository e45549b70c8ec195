"""Aspect ratios, marketplace presets and background colours: the one place that defines them."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import InputError

# width:height
ASPECT_RATIOS: dict[str, tuple[int, int]] = {"1:1": (1, 1), "4:5": (4, 5), "3:4": (3, 4)}


@dataclass(frozen=True)
class MarketplacePreset:
    key: str
    name: str
    aspect_ratio: str
    width: int
    height: int
    max_photos: int
    notes: str


# Sizes from DESIGN.md's table; "(assumed)" there means nobody has confirmed the marketplace's own number.
MARKETPLACES: dict[str, MarketplacePreset] = {
    preset.key: preset
    for preset in (
        MarketplacePreset("ebay", "eBay", "1:1", 1600, 1600, 24,
                          "Minimum 500 px on the longest side; no borders, text or watermarks."),
        MarketplacePreset("poshmark", "Poshmark", "1:1", 1280, 1280, 16, "Square photos."),
        MarketplacePreset("mercari", "Mercari", "1:1", 1280, 1280, 12, "Square photos."),
        MarketplacePreset("depop", "Depop", "4:5", 1280, 1600, 8, "Portrait 4:5; the first photo is the cover."),
        MarketplacePreset("vinted", "Vinted", "3:4", 1200, 1600, 20, "Portrait 3:4 (4:5 also accepted)."),
        MarketplacePreset("etsy", "Etsy", "4:5", 2000, 2500, 10,
                          "Portrait 4:5 with 2000 px on the shortest side (1:1 also works)."),
        MarketplacePreset("shopify", "Shopify", "1:1", 2048, 2048, 250, "Square 2048 px, Shopify's recommended size."),
    )
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "light grey": (236, 236, 236),
    "warm white": (250, 247, 240),
    "cream": (243, 237, 224),
    "black": (0, 0, 0),
}
DEFAULT_BACKGROUND = "white"


def _choices(options) -> str:
    return ", ".join(options)


def ratio_size(aspect_ratio: str, long_side: int) -> tuple[int, int]:
    """The (width, height) with exactly `aspect_ratio` whose longer side is at most `long_side`.

    The long side is rounded down to a multiple of the ratio's larger term, so the ratio is exact:
    ratio_size("4:5", 1600) == (1280, 1600); ratio_size("3:4", 1602) == (1200, 1600).
    """
    w_term, h_term = ASPECT_RATIOS[parse_aspect_ratio(aspect_ratio)]
    if long_side < max(w_term, h_term):
        raise InputError(f"The long side must be at least {max(w_term, h_term)} px, got {long_side}.")
    unit = long_side // max(w_term, h_term)
    return w_term * unit, h_term * unit


def parse_aspect_ratio(value: str) -> str:
    """Validate an aspect ratio such as "4:5" (spaces are ignored)."""
    key = str(value).replace(" ", "")
    if key not in ASPECT_RATIOS:
        raise InputError(f"Unknown aspect ratio {value!r}; choose one of: {_choices(ASPECT_RATIOS)}.")
    return key


def get_marketplace(key: str) -> MarketplacePreset:
    """The preset for a marketplace key, case-insensitive ("eBay" and "ebay" both work)."""
    preset = MARKETPLACES.get(str(key).strip().lower())
    if preset is None:
        raise InputError(f"Unknown marketplace {key!r}; choose one of: {_choices(MARKETPLACES)}.")
    return preset


def parse_background(value: str) -> str:
    """Validate a background name, case-insensitive."""
    key = str(value).strip().lower().replace("gray", "grey")
    if key not in BACKGROUNDS:
        raise InputError(f"Unknown background {value!r}; choose one of: {_choices(BACKGROUNDS)}.")
    return key
