"""Model poses: OpenPose COCO-18 keypoints from the model cards, rendered as ControlNet openpose conditioning images.

Keypoints are normalised 0..1 (x to the right, y down) in a portrait frame of aspect `POSE_ASPECT` (width / height).
`render_pose` keeps the skeleton's proportions on any output size by fitting that frame into the image, centred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np
from PIL import Image

from pipeline.errors import InputError

if TYPE_CHECKING:
    from pipeline.model_cards import ModelCard

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
FRAMINGS: tuple[str, ...] = ("full", "upper", "lower")
POSE_ASPECT = 3 / 4

# The OpenPose body drawing that ControlNet openpose models were trained on (controlnet_aux `draw_bodypose`):
# 17 limbs as 1-based keypoint pairs, 18 colours (RGB) shared by the limbs (dimmed to 60 %) and the joints.
LIMBS: tuple[tuple[int, int], ...] = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
    (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
)
COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
_LIMB_DIM = 0.6
_REFERENCE_SIZE = 512  # OpenPose's stick width of 4 px and joint radius of 4 px are for images of this size

Keypoint = tuple[float, float] | None

# Which framings can show a garment of each category, best first. Lower-body items and dresses need the legs.
_FRAMINGS_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "top": ("upper", "full"),
    "outerwear": ("full", "upper"),  # a coat's length only shows on the whole body
    "bottom": ("full",),
    "dress": ("full",),
}


@dataclass(frozen=True)
class Pose:
    name: str
    framing: str
    keypoints: tuple[Keypoint, ...]
    prompt: str = ""  # words for the prompt, such as "walking towards the camera"


def render_pose(keypoints: Sequence[Sequence[float] | None], width: int, height: int,
                aspect: float | None = POSE_ASPECT) -> Image.Image:
    """The OpenPose image (RGB, black background) of 18 normalised keypoints; `None` points and their limbs are skipped.

    `aspect` is the width / height of the frame the keypoints are normalised in; that frame is fitted into the
    image so the body keeps its proportions. `aspect=None` stretches the keypoints over the whole image instead.
    """
    if len(keypoints) != len(KEYPOINT_NAMES):
        raise ValueError(f"a pose has {len(KEYPOINT_NAMES)} keypoints, not {len(keypoints)}")
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, not {width} x {height}")
    points = keypoints_to_pixels(keypoints, width, height, aspect)
    scale = min(width, height) / _REFERENCE_SIZE
    stick = max(1, round(4 * scale))
    radius = max(1, round(4 * scale))
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for (start, end), color in zip(LIMBS, COLORS):
        _draw_limb(canvas, points[start - 1], points[end - 1], stick, color)
    for point, color in zip(points, COLORS):
        if point is not None:
            cv2.circle(canvas, (round(point[0]), round(point[1])), radius, color, thickness=-1)
    return Image.fromarray(canvas)


def keypoints_to_pixels(keypoints: Sequence[Sequence[float] | None], width: int, height: int,
                        aspect: float | None = POSE_ASPECT) -> list[tuple[float, float] | None]:
    """Where normalised keypoints land in a width x height image, as `render_pose` draws them."""
    if aspect is None:
        frame_w, frame_h, left, top = width, height, 0.0, 0.0
    else:
        frame_h = min(height, width / aspect)
        frame_w = frame_h * aspect
        left, top = (width - frame_w) / 2, (height - frame_h) / 2
    return [None if point is None else (left + point[0] * frame_w, top + point[1] * frame_h) for point in keypoints]


def _draw_limb(canvas: np.ndarray, start: tuple[float, float] | None, end: tuple[float, float] | None,
               stick: int, color: tuple[int, int, int]) -> None:
    if start is None or end is None:
        return
    (x1, y1), (x2, y2) = start, end
    length = math.hypot(x1 - x2, y1 - y2)
    angle = math.degrees(math.atan2(y1 - y2, x1 - x2))
    centre = (round((x1 + x2) / 2), round((y1 + y2) / 2))
    polygon = cv2.ellipse2Poly(centre, (round(length / 2), stick), round(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, [round(c * _LIMB_DIM) for c in color])


def framings_for(category: str) -> tuple[str, ...]:
    """The pose framings that show a garment of `category`, best first."""
    try:
        return _FRAMINGS_BY_CATEGORY[category]
    except KeyError:
        raise InputError(f"Unknown category {category!r}; choose one of: {', '.join(_FRAMINGS_BY_CATEGORY)}.") from None


def poses_for(card: ModelCard, category: str) -> list[Pose]:
    """The card's poses that show a garment of `category`, best framing first, in card order within a framing."""
    framings = framings_for(category)
    return sorted((pose for pose in card.poses if pose.framing in framings),
                  key=lambda pose: framings.index(pose.framing))


def choose_pose(card: ModelCard, category: str, name: str | None = None) -> Pose:
    """The pose to generate `category` on: the named one if given (it must suit the category), else the best framing."""
    suitable = poses_for(card, category)
    if name is not None:
        for pose in suitable:
            if pose.name == name:
                return pose
        known = [pose.name for pose in card.poses]
        if name in known:
            framings = " or ".join(framings_for(category))
            raise InputError(f"Pose {name!r} of {card.name} does not show a {category}; it needs a {framings} pose.")
        raise InputError(f"{card.name} has no pose {name!r}; poses: {', '.join(known) or 'none'}.")
    if not suitable:
        raise InputError(f"{card.name} ({card.id}) has no pose that shows a {category}.")
    return suitable[0]
