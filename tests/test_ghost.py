"""The ghost compositor: framing, edges, shadow, background, sizes."""
import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline import ghost
from pipeline.errors import InputError
from pipeline.ghost import FILL, compose_ghost, natural_long_side
from pipeline.presets import ASPECT_RATIOS, BACKGROUNDS, ratio_size

NAVY = (31, 42, 68)
FLOOR = (60, 190, 70)  # a loud green floor: any halo of it would show


def tee_photo(size=(900, 700), scale=1.0, offset=(0, 0), colour=NAVY, floor=FLOOR):
    """A flat-lay photo of a T-shirt shape (off centre, scaled) on a coloured floor, and its mask."""
    width, height = size
    points = np.array([(-70, -200), (70, -200), (180, -140), (230, -40), (140, 0), (120, -30), (120, 220),
                       (-120, 220), (-120, -30), (-140, 0), (-230, -40), (-180, -140)], np.float32)
    points = points * scale + (width / 2 + offset[0], height / 2 + offset[1])
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = floor
    pixels[mask > 0] = colour
    return Image.fromarray(pixels), mask


def garment_box(output: Image.Image, background: str = "white", threshold: float = 100.0):
    """Bounding box (x0, y0, x1, y1) of pixels far from the background colour: the garment, not its faint shadow."""
    pixels = np.asarray(output).astype(np.float32)
    distance = np.linalg.norm(pixels - BACKGROUNDS[background], axis=2)
    ys, xs = np.nonzero(distance > threshold)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("aspect_ratio", sorted(ASPECT_RATIOS))
def test_output_has_exactly_the_requested_size(aspect_ratio):
    image, mask = tee_photo()
    for long_side in (800, 1000, 1600):
        size = ratio_size(aspect_ratio, long_side)
        output = compose_ghost(image, mask, size)
        assert output.size == size and output.mode == "RGB"
    assert compose_ghost(image, mask, (2000, 2500)).size == (2000, 2500)  # Etsy, enlarging


@pytest.mark.parametrize("size", [(1000, 1000), (800, 1000), (750, 1000)])
def test_garment_is_centred_with_even_margins(size):
    image, mask = tee_photo(offset=(-150, 60))  # off centre in the photo
    x0, y0, x1, y1 = garment_box(compose_ghost(image, mask, size))
    width, height = size
    assert abs(x0 - (width - x1)) <= 2
    assert abs(y0 - (height - y1)) <= 2


def test_same_framing_fill_for_garments_of_different_sizes():
    fills = []
    for scale in (0.5, 1.4):
        image, mask = tee_photo(size=(1400, 1100), scale=scale)
        x0, y0, x1, y1 = garment_box(compose_ghost(image, mask, (1000, 1000)))
        fills.append(max((x1 - x0) / 1000, (y1 - y0) / 1000))
    assert fills[0] == pytest.approx(FILL, abs=0.01)
    assert fills[1] == pytest.approx(FILL, abs=0.01)


@pytest.mark.parametrize("background", sorted(BACKGROUNDS))
def test_background_is_exactly_the_chosen_colour_away_from_the_garment(background):
    image, mask = tee_photo()
    output = np.asarray(compose_ghost(image, mask, (800, 1000), background))
    x0, y0, x1, y1 = garment_box(Image.fromarray(output), background, threshold=20.0 if background != "black" else 30.0)
    away = np.ones(output.shape[:2], bool)
    away[max(0, y0 - 40):y1 + 60, max(0, x0 - 40):x1 + 40] = False  # the garment and its shadow
    assert (output[away] == BACKGROUNDS[background]).all()


def test_garment_colour_is_preserved_and_no_floor_halo():
    image, mask = tee_photo(colour=(150, 40, 50))
    output = np.asarray(compose_ghost(image, mask, (1000, 1000))).astype(int)
    centre = output[500, 500]
    assert np.abs(centre - (150, 40, 50)).max() <= 2
    greenish = (output[..., 1] > output[..., 0] + 25) & (output[..., 1] > output[..., 2] + 25)
    assert not greenish.any()


def test_garment_edge_is_anti_aliased():
    image, mask = tee_photo()
    output = np.asarray(compose_ghost(image, mask, (1000, 1000))).astype(np.float32)
    # Along the diagonal shoulder edge there are in-between values, not only garment and background.
    distance = np.linalg.norm(output - (255, 255, 255), axis=2)
    full = np.linalg.norm(np.float32(NAVY) - 255)
    partial = (distance > 0.2 * full) & (distance < 0.8 * full)
    assert partial.sum() > 200


def test_shadow_is_present_soft_and_faint():
    image, mask = tee_photo()
    output = np.asarray(compose_ghost(image, mask, (1000, 1000))).astype(np.float32)
    x0, y0, x1, y1 = garment_box(Image.fromarray(output.astype(np.uint8)))
    column = output[y1 + 2:y1 + 80, (x0 + x1) // 2].mean(axis=1)  # below the hem, centre
    assert column.min() < 250  # a shadow is there
    assert column.min() > 255 * 0.65  # but faint
    assert (np.diff(column) >= -0.5).all()  # it fades out monotonically ...
    assert np.abs(np.diff(column)).max() < 12  # ... as a gradient, not a hard edge
    assert column[-1] == 255


def test_large_photo_gives_capped_outputs():
    image, mask = tee_photo(size=(4000, 3000), scale=5.5)
    long_side = natural_long_side(mask)
    outputs = [compose_ghost(image, mask, ratio_size(ratio, long_side)) for ratio in ("1:1", "4:5", "3:4")]
    assert [o.size for o in outputs] == [(1600, 1600), (1280, 1600), (1200, 1600)]  # timing: benchmarks/


def test_natural_long_side_follows_the_garment_and_is_clamped():
    _, small = tee_photo(scale=0.5)
    assert natural_long_side(small) == 800
    _, huge = tee_photo(size=(4000, 3000), scale=5.0)
    assert natural_long_side(huge) == 1600
    _, medium = tee_photo(size=(1600, 1200), scale=2.2)
    x, y, w, h = cv2.boundingRect(medium)
    assert natural_long_side(medium) == round(max(w, h) / FILL)
    assert natural_long_side(medium, cap=900) == 900


def test_refuses_empty_mask_unknown_background_and_bad_sizes():
    image, mask = tee_photo()
    with pytest.raises(InputError, match="empty"):
        compose_ghost(image, np.zeros_like(mask), (800, 800))
    with pytest.raises(InputError) as caught:
        compose_ghost(image, mask, (800, 800), "tartan")
    assert all(name in str(caught.value) for name in BACKGROUNDS)
    with pytest.raises(InputError):
        compose_ghost(image, mask[:10], (800, 800))
    with pytest.raises(InputError):
        compose_ghost(image, mask, (0, 800))
    with pytest.raises(InputError):
        natural_long_side(np.zeros_like(mask))


def test_accepts_non_rgb_photos_and_boolean_masks():
    image, mask = tee_photo()
    output = compose_ghost(image.convert("RGBA"), mask > 0, (600, 750), "cream")
    assert output.mode == "RGB" and output.size == (600, 750)


def small_tee(colour, floor, scale):
    """A T-shirt only `scale` times the usual size: it must be enlarged several times for a 1600 px output."""
    return tee_photo(size=(int(560 * scale) + 40, int(520 * scale) + 40), scale=scale, colour=colour, floor=floor)


def edge_ring(output: Image.Image, colour, background: str) -> int:
    """How far (in levels, per channel) any pixel near the garment goes beyond both the garment's colour and the
    background's: a ring darker or lighter than both. 0 for a clean edge."""
    pixels = np.asarray(output).astype(int)
    low = np.minimum(colour, BACKGROUNDS[background])
    high = np.maximum(colour, BACKGROUNDS[background])
    garment = (np.linalg.norm(pixels - colour, axis=2) < 60).astype(np.uint8)
    near = cv2.dilate(garment, np.ones((81, 81), np.uint8)).astype(bool)
    return int(max((low - pixels)[near].max(), (pixels - high)[near].max(), 0))


RING_CASES = [((0, 0, 0), "white"),          # a dark floor would ring darker than both garment and white
              ((255, 255, 255), "black")]    # a light floor would ring lighter than both garment and black


@pytest.mark.parametrize("floor, background", RING_CASES)
@pytest.mark.parametrize("scale", [0.3, 1.0])  # enlarged about 9.4 and 2.8 times
def test_an_enlarged_garment_has_no_halo(floor, background, scale, monkeypatch):
    grey = (128, 128, 128)
    image, mask = small_tee(grey, floor, scale)
    assert edge_ring(compose_ghost(image, mask, (1600, 1600), background), grey, background) <= 2
    # What the old code did: Lanczos on the plain colours, so the floor rang into the garment's edge.
    monkeypatch.setattr(ghost, "_enlarge_premultiplied",
                        lambda rgb, coverage, size: cv2.resize(rgb, size, interpolation=cv2.INTER_LANCZOS4))
    assert edge_ring(compose_ghost(image, mask, (1600, 1600), background), grey, background) >= 8


def test_an_enlarged_garment_keeps_a_crisp_edge():
    image, mask = small_tee((128, 128, 128), (250, 250, 250), 0.3)
    output = np.asarray(compose_ghost(image, mask, (1600, 1600), "black")).astype(float)
    row = output[1000, :800, 0] / 128  # across the body's left side; black shows no shadow
    assert ((row > 0.1) & (row < 0.9)).sum() <= 4  # the old feather, growing with the enlargement, took 13 px


@pytest.mark.parametrize("window", [15, 41])  # 16-bit window sums, and 32-bit ones past what 16 bits hold
def test_edge_colours_are_the_mean_of_the_interior_around_them(window):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)
    inner = np.zeros((120, 100), np.uint8)
    inner[30:90, 25:75] = 1
    out = ghost._decontaminate(rgb, inner, window)
    # The same mean with float blurs, as the compositor computed it before.
    weight = cv2.blur(inner.astype(np.float32), (window, window))
    spread = cv2.blur((rgb * inner[..., None]).astype(np.float32), (window, window))
    edge = (inner == 0) & (weight > 0)
    expected = np.clip(spread[edge] / weight[edge][:, None] + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(out[edge].astype(int) - expected).max() <= 1
    assert (out[~edge] == rgb[~edge]).all()
