"""Garment fidelity on drawn on-model photos of known colours: region per category, score, flag."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import garment_photo
from pipeline.colours import dominant_color
from pipeline.cutout import cut_out
from pipeline.errors import InputError, SegmentationError
from pipeline.fidelity import FIDELITY_THRESHOLD, FidelityScore, fidelity_score, garment_region
from pipeline.ghost import compose_ghost
from pipeline.segmentation import Segmentation

SIZE = (400, 600)
SKIN = (224, 172, 140)
RED_TOP = "#c41e2e"
DENIM_TROUSERS = "#4d6b91"

# OpenPose COCO-18, normalised: nose, neck, right arm (3), left arm (3), right leg (3), left leg (3), eyes, ears.
POSE = [(0.5, 0.12), (0.5, 0.2),
        (0.38, 0.22), (0.33, 0.36), (0.32, 0.5),
        (0.62, 0.22), (0.67, 0.36), (0.68, 0.5),
        (0.43, 0.5), (0.44, 0.71), (0.44, 0.92),
        (0.57, 0.5), (0.56, 0.71), (0.56, 0.92),
        None, None, None, None]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def on_model_photo(top: str = RED_TOP, trousers: str = DENIM_TROUSERS, shade: float = 1.0,
                   seed: int = 0) -> Image.Image:
    """A person-like figure on a light studio background: skin head, neck and arms, a top, trousers."""
    width, height = SIZE
    image = Image.new("RGB", SIZE, (238, 236, 232))
    draw = ImageDraw.Draw(image)
    box = lambda l, t, r, b: (l * width, t * height, r * width, b * height)  # noqa: E731
    shaded = tuple(int(min(255, c * shade)) for c in _rgb(top))
    draw.ellipse(box(0.43, 0.06, 0.57, 0.18), fill=SKIN)
    draw.rectangle(box(0.47, 0.17, 0.53, 0.21), fill=SKIN)
    draw.rectangle(box(0.295, 0.22, 0.355, 0.52), fill=SKIN)
    draw.rectangle(box(0.645, 0.22, 0.705, 0.52), fill=SKIN)
    draw.rectangle(box(0.36, 0.2, 0.64, 0.53), fill=shaded)
    draw.rectangle(box(0.39, 0.53, 0.49, 0.94), fill=_rgb(trousers))
    draw.rectangle(box(0.51, 0.53, 0.61, 0.94), fill=_rgb(trousers))
    noise = np.random.default_rng(seed).normal(0, 3, (height, width, 3))
    return Image.fromarray((np.asarray(image) + noise).clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return on_model_photo()


class _Fixed:
    """A segmenter that returns one precomputed mask: the cut-out of `photo`, computed once for speed."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask

    def segment(self, image: Image.Image) -> Segmentation:
        return Segmentation(mask=self.mask, backend="test")


@pytest.fixture(scope="module")
def person(photo) -> _Fixed:
    return _Fixed(cut_out(photo))


def _at(mask: np.ndarray, x: float, y: float) -> bool:
    return bool(mask[int(y * SIZE[1]), int(x * SIZE[0])])


def test_right_colour_scores_small_and_a_different_colour_is_flagged(photo):
    region = garment_region(photo, "top", POSE)
    same = fidelity_score(RED_TOP, photo, region)
    assert isinstance(same, FidelityScore)
    assert same.delta_e < 2.0 and not same.flagged
    different = fidelity_score("#2f8a45", photo, region)  # green listed, red shown
    assert different.delta_e > FIDELITY_THRESHOLD and different.flagged


def test_threshold_separates_lighting_from_a_neighbouring_colour():
    darker = on_model_photo(shade=0.85)
    region = garment_region(darker, "top", POSE)  # the default cut-out, on another photo
    assert not fidelity_score(RED_TOP, darker, region).flagged     # the same red, rendered 15 % darker
    assert fidelity_score("#74182a", darker, region).flagged       # burgundy listed, red shown
    assert fidelity_score("#1f2a44", on_model_photo(top="#2c3fa8"), region).flagged  # navy listed, royal shown


def test_region_follows_the_category(photo, person):
    top = garment_region(photo, "top", POSE, person)
    bottom = garment_region(photo, "bottom", POSE, person)
    assert _at(top, 0.5, 0.35) and not _at(top, 0.45, 0.8)
    assert _at(bottom, 0.45, 0.8) and not _at(bottom, 0.5, 0.35)
    assert not _at(top, 0.5, 0.12) and not _at(bottom, 0.5, 0.12)   # the head is in neither
    assert fidelity_score(DENIM_TROUSERS, photo, bottom).delta_e < 2.0
    assert fidelity_score(RED_TOP, photo, bottom).flagged
    assert fidelity_score(RED_TOP, photo, garment_region(photo, "outerwear", POSE, person)).delta_e < 2.0


def test_dress_band_runs_from_shoulders_to_knees():
    dress = on_model_photo(top="#5e3a8c", trousers="#5e3a8c")
    region = garment_region(dress, "dress", POSE)
    assert _at(region, 0.5, 0.3) and _at(region, 0.45, 0.65) and not _at(region, 0.45, 0.85)
    assert fidelity_score("#5e3a8c", dress, region).delta_e < 2.0


def test_bare_arms_do_not_vote_but_a_skin_coloured_garment_stays(photo, person):
    region = garment_region(photo, "top", POSE, person)
    assert _at(region, 0.5, 0.35) and not _at(region, 0.35, 0.35)   # the bare arm is inside the widened band
    beige = on_model_photo(top="#d8c3a0")
    beige_region = garment_region(beige, "top", POSE, person)  # same figure, same silhouette
    assert _at(beige_region, 0.5, 0.35) and _at(beige_region, 0.35, 0.35)  # skin-like majority: all kept
    assert fidelity_score("#d8c3a0", beige, beige_region).delta_e < 3.0


def test_without_keypoints_the_whole_foreground_is_the_region(photo):
    region = garment_region(photo, "top", None)
    assert _at(region, 0.5, 0.35) and _at(region, 0.45, 0.8)
    assert not _at(region, 0.1, 0.1) and not _at(region, 0.9, 0.9)


def test_missing_keypoints_fall_back(photo, person):
    no_ankles = [None if i in (10, 13) else p for i, p in enumerate(POSE)]
    to_knees = garment_region(photo, "bottom", no_ankles, person)
    assert _at(to_knees, 0.45, 0.65) and not _at(to_knees, 0.45, 0.85)
    no_hips = [None if i in (8, 11) else p for i, p in enumerate(POSE)]
    np.testing.assert_array_equal(garment_region(photo, "bottom", no_hips, person),
                                  garment_region(photo, "bottom", None, person))
    undetected = [(0.0, 0.0, 0.0) if i in (8, 11) else p for i, p in enumerate(POSE)]  # OpenPose's "not found"
    np.testing.assert_array_equal(garment_region(photo, "top", undetected, person),
                                  garment_region(photo, "top", None, person))


class _LeftHalf:
    def segment(self, image: Image.Image) -> Segmentation:
        mask = np.zeros((image.height, image.width), np.uint8)
        mask[:, : image.width // 2] = 255
        return Segmentation(mask=mask, backend="test")


class _Failing:
    def segment(self, image: Image.Image) -> Segmentation:
        raise SegmentationError("nothing here")


def test_a_given_segmenter_is_used_and_its_failure_leaves_the_band(photo):
    left = garment_region(photo, "top", POSE, segmenter=_LeftHalf())
    assert _at(left, 0.4, 0.35) and not _at(left, 0.6, 0.35)
    band = garment_region(photo, "top", POSE, segmenter=_Failing())
    assert _at(band, 0.4, 0.35) and _at(band, 0.6, 0.35) and not _at(band, 0.5, 0.8)
    assert fidelity_score(RED_TOP, photo, band).delta_e < 2.0


def test_keypoints_in_a_pose_frame_fitted_into_a_wider_output(photo):
    everything = _Fixed(np.full((SIZE[1], SIZE[0]), 255, np.uint8))
    narrow = garment_region(photo, "top", POSE, everything)
    wide_photo = Image.new("RGB", (SIZE[0] + 500, SIZE[1]), (238, 236, 232))
    wide_photo.paste(photo, (250, 0))
    wide_everything = _Fixed(np.full((SIZE[1], SIZE[0] + 500), 255, np.uint8))
    wide = garment_region(wide_photo, "top", POSE, wide_everything, pose_aspect=SIZE[0] / SIZE[1])
    np.testing.assert_array_equal(wide[:, 250:250 + SIZE[0]], narrow)
    assert not wide[:, :250].any() and not wide[:, 250 + SIZE[0]:].any()
    with pytest.raises(InputError):
        garment_region(photo, "top", POSE, everything, pose_aspect=0)


def test_ghost_shot_of_the_real_pixels_scores_about_zero():
    image, truth = garment_photo(garment_rgb=(150, 40, 60))
    garment_hex = dominant_color(image, truth.astype(np.uint8) * 255).hex
    ghost = compose_ghost(image, truth, (800, 1000))
    score = fidelity_score(garment_hex, ghost, cut_out(ghost))
    assert score.delta_e < 1.5 and not score.flagged
    assert fidelity_score(garment_hex, ghost, garment_region(ghost, "top")).delta_e < 1.5


def test_bad_inputs_are_input_errors(photo, person):
    region = garment_region(photo, "top", POSE, person)
    with pytest.raises(InputError):
        fidelity_score("not a colour", photo, region)
    with pytest.raises(InputError):
        fidelity_score(RED_TOP, photo, np.zeros_like(region))
    with pytest.raises(InputError):
        fidelity_score(RED_TOP, photo, region[:-1])
    with pytest.raises(InputError):
        garment_region(photo, "hat", POSE)
    with pytest.raises(InputError):
        garment_region(photo, "top", [(0.5, 0.1), (0.5, 0.2), "x"] + [None] * 15)


def test_boolean_region_and_hex_without_hash_are_accepted(photo, person):
    region = garment_region(photo, "top", POSE, person) > 0
    assert fidelity_score(RED_TOP.lstrip("#"), photo, region).delta_e < 2.0


def test_a_print_lost_or_invented_in_the_output_is_flagged():
    from pipeline.fidelity import garment_pattern, pattern_score
    from test_listing_words import patterned

    stripes = lambda rows, cols: (rows // 20) % 2 == 0  # noqa: E731
    plain = lambda rows, cols: np.zeros_like(rows, bool)  # noqa: E731
    striped_image, striped_mask = patterned(stripes)
    plain_image, plain_mask = patterned(plain)
    region = striped_mask.astype(np.uint8) * 255  # the outputs here are the same shape as the garments

    kept = pattern_score(garment_pattern(striped_image, striped_mask), striped_image, region)
    assert (kept.garment_pattern, kept.output_pattern, kept.flagged) == ("striped", "striped", False)
    assert kept.similarity == 1.0
    lost = pattern_score(garment_pattern(striped_image, striped_mask), plain_image, region)
    assert (lost.output_pattern, lost.flagged) == ("solid", True) and lost.similarity < 0.5
    invented = pattern_score(garment_pattern(plain_image, plain_mask), striped_image, region)
    assert invented.flagged and invented.garment_pattern == "solid"
