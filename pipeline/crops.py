"""Marketplace crops of a generated photo: the largest window of the wanted shape, centred on the model."""

from __future__ import annotations

from PIL import Image

from pipeline.presets import ASPECT_RATIOS

Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels


def crop_to_shape(image: Image.Image, aspect_ratio: str, size: tuple[int, int], focus: Box | None = None
                  ) -> Image.Image:
    """The largest `aspect_ratio` window inside `image`, centred on `focus` (the whole image when None) as far as
    the edges allow, resized to exactly `size`."""
    ratio_w, ratio_h = ASPECT_RATIOS[aspect_ratio]
    width, height = image.size
    crop_w = min(width, height * ratio_w / ratio_h)
    crop_h = crop_w * ratio_h / ratio_w
    left, top, right, bottom = focus or (0, 0, width, height)
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    x0 = min(max(centre_x - crop_w / 2, 0), width - crop_w)
    y0 = min(max(centre_y - crop_h / 2, 0), height - crop_h)
    window = (round(x0), round(y0), round(x0 + crop_w), round(y0 + crop_h))
    return image.crop(window).resize(size, Image.Resampling.LANCZOS)


def crop_enlargement(image_size: tuple[int, int], aspect_ratio: str, size: tuple[int, int]) -> float:
    """How much `crop_to_shape` enlarges the image's pixels to reach `size` (below 1: it reduces them)."""
    ratio_w, ratio_h = ASPECT_RATIOS[aspect_ratio]
    width, height = image_size
    return size[0] / min(width, height * ratio_w / ratio_h)


def points_box(points: list[tuple[float, float] | None]) -> Box | None:
    """The box around the points that are there (pose keypoints in pixels), or None."""
    visible = [point for point in points if point is not None]
    if not visible:
        return None
    xs, ys = [x for x, _ in visible], [y for _, y in visible]
    return min(xs), min(ys), max(xs), max(ys)
