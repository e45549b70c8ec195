"""The OpenPose renderer and the choice of pose per garment category."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.model_cards import ModelCard, load_model_cards
from pipeline.poses import COLORS, KEYPOINT_NAMES, LIMBS, Pose, choose_pose, poses_for, render_pose
from pipeline.settings import DEFAULT_MODEL_CARDS_DIR

SIENNA = next(card for card in load_model_cards(DEFAULT_MODEL_CARDS_DIR) if card.id == "mod_01")
STANDING = SIENNA.poses[0]


def _pixels(keypoints, width=300, height=400, **options) -> np.ndarray:
    return np.asarray(render_pose(keypoints, width, height, **options))


def _limb_colour(start: str, end: str) -> np.ndarray:
    pair = (KEYPOINT_NAMES.index(start) + 1, KEYPOINT_NAMES.index(end) + 1)
    return np.round(np.array(COLORS[LIMBS.index(pair)]) * 0.6)


def test_renders_rgb_at_the_requested_size_on_black():
    for width, height in ((768, 1024), (1024, 1024), (64, 96)):
        image = render_pose(STANDING.keypoints, width, height)
        assert image.mode == "RGB" and image.size == (width, height)
        pixels = np.asarray(image)
        assert (pixels[0, 0] == 0).all() and (pixels[-1, -1] == 0).all()
        assert 0.002 < (pixels.any(axis=2)).mean() < 0.2  # a thin skeleton on a black background


def test_limbs_are_drawn_in_the_openpose_colours_where_they_are():
    points = [None] * 18
    points[KEYPOINT_NAMES.index("neck")] = (0.5, 0.2)
    points[KEYPOINT_NAMES.index("r_hip")] = (0.5, 0.8)
    pixels = _pixels(points, 300, 400, aspect=None)
    midway = pixels[200, 150]
    assert (midway == _limb_colour("neck", "r_hip")).all()
    assert (pixels[80, 150] == COLORS[KEYPOINT_NAMES.index("neck")]).all()  # the joint on top, full colour
    assert not pixels[:, :120].any() and not pixels[:, 181:].any()


def test_missing_points_and_their_limbs_are_skipped():
    full = _pixels(STANDING.keypoints)
    points = list(STANDING.keypoints)
    left_wrist = KEYPOINT_NAMES.index("l_wrist")
    x, y = points[left_wrist]
    points[left_wrist] = None
    without = _pixels(points)
    column, row = round(x * 300), round(y * 400)
    assert full[row, column].any() and not without[row, column].any()
    assert without.any(axis=2).sum() < full.any(axis=2).sum()
    assert not _pixels([None] * 18).any()


def test_stick_width_scales_with_the_image():
    small = _pixels(STANDING.keypoints, 384, 512).any(axis=2).mean()
    large = _pixels(STANDING.keypoints, 768, 1024).any(axis=2).mean()
    assert large == pytest.approx(small, rel=0.25)  # the same share of the image, so thicker sticks


def test_square_images_keep_the_body_proportions():
    portrait = np.argwhere(_pixels(STANDING.keypoints, 300, 400).any(axis=2))
    square = np.argwhere(_pixels(STANDING.keypoints, 400, 400).any(axis=2))
    portrait_ratio = np.ptp(portrait[:, 0]) / np.ptp(portrait[:, 1])
    square_ratio = np.ptp(square[:, 0]) / np.ptp(square[:, 1])
    assert square_ratio == pytest.approx(portrait_ratio, rel=0.05)
    assert abs(square[:, 1].mean() - 200) < 20  # centred


def test_rendering_is_deterministic():
    assert (_pixels(STANDING.keypoints) == _pixels(STANDING.keypoints)).all()


def test_wrong_number_of_points_is_refused():
    with pytest.raises(ValueError, match="18 keypoints"):
        render_pose([(0.5, 0.5)] * 17, 100, 100)


def test_choose_pose_follows_the_category():
    for card in load_model_cards(DEFAULT_MODEL_CARDS_DIR):
        if card.kind != "persona":
            continue
        assert choose_pose(card, "bottom").framing == "full"
        assert choose_pose(card, "dress").framing == "full"
        assert choose_pose(card, "outerwear").framing == "full"
        assert choose_pose(card, "top").framing in ("upper", "full")
    assert choose_pose(SIENNA, "top").framing == "upper"  # she has a waist-up pose: tops show more detail


def _card(*poses: Pose) -> ModelCard:
    return ModelCard(id="mod_99", name="Test", kind="persona", backend="diffusion", poses=poses)


def test_choose_pose_by_name_and_its_errors():
    upper = Pose("waist up", "upper", STANDING.keypoints)
    full = Pose("standing", "full", STANDING.keypoints)
    card = _card(upper, full)
    assert choose_pose(card, "top", name="standing") == full
    assert [pose.name for pose in poses_for(card, "top")] == ["waist up", "standing"]
    assert poses_for(card, "dress") == [full]
    with pytest.raises(InputError, match="does not show a dress"):
        choose_pose(card, "dress", name="waist up")
    with pytest.raises(InputError, match="no pose 'sitting'"):
        choose_pose(card, "top", name="sitting")
    with pytest.raises(InputError, match="no pose that shows a bottom"):
        choose_pose(_card(upper), "bottom")
    with pytest.raises(InputError, match="Unknown category"):
        choose_pose(card, "hat")
