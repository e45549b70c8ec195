"""Colour naming (CIEDE2000 in CIELAB) and the category heuristic."""
import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.attributes import (
    CATEGORIES,
    GarmentColor,
    ciede2000,
    color_from_hex,
    guess_category,
    parse_category,
    srgb_to_lab,
)
from pipeline.colours import dominant_color
from pipeline.errors import InputError

# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula", Table 1 (pairs 1-4, 7, 13-17, 19, 21-26, 35,
# 36, 42, 45): they exercise the hue wrap-around and mean-hue branches.
SHARMA_PAIRS = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.4900, -0.0010), (50.0, -2.4900, 0.0009), 7.1792),
    ((50.0, 2.4900, -0.0010), (50.0, -2.4900, 0.0010), 7.1792),
    ((50.0, 2.4900, -0.0010), (50.0, -2.4900, 0.0011), 7.2195),
    ((50.0, 2.4900, -0.0010), (50.0, -2.4900, 0.0012), 7.2195),
    ((50.0, -0.0010, 2.4900), (50.0, 0.0009, -2.4900), 4.8045),
    ((50.0, -0.0010, 2.4900), (50.0, 0.0011, -2.4900), 4.7461),
    ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_matches_sharma_reference_pairs_both_ways():
    first = np.array([p[0] for p in SHARMA_PAIRS])
    second = np.array([p[1] for p in SHARMA_PAIRS])
    expected = np.array([p[2] for p in SHARMA_PAIRS])
    np.testing.assert_allclose(ciede2000(first, second), expected, atol=1e-4)
    np.testing.assert_allclose(ciede2000(second, first), expected, atol=1e-4)


def test_ciede2000_broadcasts_and_is_zero_for_identical_colours():
    lab = np.array([[50.0, 10.0, -10.0], [80.0, 0.0, 0.0]])
    assert ciede2000(lab, lab).tolist() == [0.0, 0.0]
    assert ciede2000(lab[0], lab).shape == (2,)


# ------------------------------------------------------------------ dominant colour

def garment_photo(rgb, background=(40, 170, 60), size=(480, 360), noise=0.0, seed=0):
    """A photo with a garment-shaped blob of `rgb` on `background`, and its mask."""
    height, width = size[1], size[0]
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (width // 2, height // 2), (width // 3, height // 3), 0, 0, 360, 255, -1)
    pixels = np.empty((height, width, 3), np.float32)
    pixels[:] = background
    pixels[mask > 0] = rgb
    if noise:
        pixels += np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), mask


def delta_e(hex_a: str, hex_b: str) -> float:
    rgb = [[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in (hex_a, hex_b)]
    lab = srgb_to_lab(np.array(rgb))
    return float(ciede2000(lab[0], lab[1]))


@pytest.mark.parametrize("truth, name", [
    ("#1f2a44", "navy"), ("#74182a", "burgundy"), ("#f8f8f6", "white"), ("#121212", "black"),
    ("#6b6b30", "olive"), ("#c19162", "camel"), ("#a9c6e4", "light blue"), ("#d6a022", "mustard"),
    ("#eec5c1", "blush pink"), ("#4d6b91", "denim blue"), ("#c0b285", "khaki"),
])
@pytest.mark.parametrize("noise", [0.0, 6.0])
def test_dominant_colour_of_a_patch_is_named_and_close(truth, name, noise):
    rgb = tuple(int(truth[i:i + 2], 16) for i in (1, 3, 5))
    color = dominant_color(*garment_photo(rgb, noise=noise))
    assert isinstance(color, GarmentColor)
    assert color.name == name
    assert delta_e(color.hex, truth) < 2.5


def test_background_outside_the_mask_never_matters():
    navy = (31, 42, 68)
    results = {dominant_color(*garment_photo(navy, background=bg, noise=4.0))
               for bg in [(255, 255, 255), (0, 0, 0), (200, 30, 30), (31, 42, 200)]}
    assert len(results) == 1 and results.pop().name == "navy"


def test_largest_colour_wins_over_a_print():
    image, mask = garment_photo((116, 24, 42), noise=3.0)
    pixels = np.asarray(image).copy()
    pixels[::6, :][mask[::6, :] > 0] = (245, 245, 245)  # white stripes on a third of the garment
    pixels[1::6, :][mask[1::6, :] > 0] = (245, 245, 245)
    assert dominant_color(Image.fromarray(pixels), mask).name == "burgundy"


def test_fine_light_dark_mottling_in_grey_reads_as_heather_grey():
    rng = np.random.default_rng(1)
    image, mask = garment_photo((140, 140, 142), noise=1.0)
    pixels = np.asarray(image).astype(np.float32)
    fleck = np.kron(rng.choice([-28.0, 0.0, 28.0], size=(180, 240)), np.ones((2, 2)))[..., None]
    pixels[mask > 0] += fleck[mask > 0]
    mottled = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    assert dominant_color(mottled, mask).name == "heather grey"
    assert dominant_color(image, mask).name == "grey"


def test_dominant_colour_refuses_an_empty_or_mismatched_mask():
    image, mask = garment_photo((31, 42, 68))
    with pytest.raises(InputError):
        dominant_color(image, np.zeros_like(mask))
    with pytest.raises(InputError):
        dominant_color(image, mask[:100])


def test_dominant_colour_of_a_12_megapixel_photo():
    image, mask = garment_photo((31, 42, 68), size=(4000, 3000), noise=5.0)
    assert dominant_color(image, mask).name == "navy"  # timing: benchmarks/upload_to_crops.py


def test_color_from_hex_names_a_user_colour_and_validates():
    assert color_from_hex("#1F2A44") == GarmentColor("navy", "#1f2a44")
    assert color_from_hex("800020").name == "burgundy"
    for bad in ("#12345", "navy", "#gggggg", "", "#1f2a44ff"):
        with pytest.raises(InputError, match="#"):
            color_from_hex(bad)


# ------------------------------------------------------------------ category

def test_parse_category_validates_and_lists_choices():
    assert parse_category(" Dress ") == "dress"
    with pytest.raises(InputError) as caught:
        parse_category("hat")
    assert all(c in str(caught.value) for c in CATEGORIES)


def silhouette(*polygons, size=(600, 700)):
    mask = np.zeros((size[1], size[0]), np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.array(polygon, np.int32)], 255)
    return mask


T_SHIRT = [(230, 100), (370, 100), (480, 160), (530, 260), (440, 300), (420, 270), (420, 520),
           (180, 520), (180, 270), (160, 300), (70, 260), (120, 160)]
TROUSERS = [(200, 60), (400, 60), (430, 640), (330, 640), (300, 280), (270, 640), (170, 640)]
A_LINE_DRESS = [(250, 40), (350, 40), (370, 200), (360, 320), (470, 660), (130, 660), (240, 320), (230, 200)]
SHORTS = [(150, 200), (450, 200), (480, 480), (320, 480), (300, 330), (280, 480), (120, 480)]
SKIRT = [(210, 200), (390, 200), (470, 500), (130, 500)]


@pytest.mark.parametrize("polygon, category", [
    (T_SHIRT, "top"), (TROUSERS, "bottom"), (A_LINE_DRESS, "dress"), (SHORTS, "bottom"), (SKIRT, "bottom"),
])
def test_guess_category_on_synthetic_silhouettes(polygon, category):
    assert guess_category(silhouette(polygon)) == category


def test_guess_category_ignores_specks_and_scale():
    mask = silhouette(T_SHIRT)
    mask[5:15, 5:15] = 255  # a speck of floor in the mask
    assert guess_category(mask) == "top"
    big = cv2.resize(mask, None, fx=5, fy=5, interpolation=cv2.INTER_NEAREST)
    assert guess_category(big) == "top"
    assert guess_category(silhouette(TROUSERS) // 255) == "bottom"  # a 0/1 mask works too


def test_guess_category_refuses_an_empty_mask():
    with pytest.raises(InputError):
        guess_category(np.zeros((50, 50), np.uint8))
