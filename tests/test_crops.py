"""Marketplace crops of generated photos."""

import numpy as np
import pytest
from PIL import Image

from pipeline.crops import crop_to_shape, points_box


def marked(width: int, height: int, dot: tuple[int, int]) -> Image.Image:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[dot[1] - 5:dot[1] + 5, dot[0] - 5:dot[0] + 5] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize("ratio, size", [("1:1", (1600, 1600)), ("4:5", (1280, 1600)), ("3:4", (1200, 1600))])
def test_crops_have_the_exact_size(ratio, size):
    assert crop_to_shape(marked(768, 1024, (384, 512)), ratio, size).size == size


def test_the_crop_follows_the_focus_and_stays_inside():
    image = marked(1600, 768, (1500, 384))
    crop = np.asarray(crop_to_shape(image, "1:1", (768, 768), focus=(1450, 300, 1550, 460)))
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert 600 < xs.mean() < 768  # the window slides right as far as the edge allows; the dot is kept
    crop = np.asarray(crop_to_shape(image, "1:1", (768, 768)))
    assert crop[..., 0].max() < 128  # centred on the whole image, the dot at x=1500 falls outside


def test_points_box_ignores_missing_points():
    assert points_box([None, (100, 10), (50, 90), None]) == (50, 10, 100, 90)
    assert points_box([None, None]) is None
