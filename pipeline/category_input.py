"""The trained category model's input: the garment cut out on white, cropped to its mask and padded square, at
INPUT_SIDE pixels, with its mask. One function, used the same way for training and in the studio."""

from __future__ import annotations

import cv2
import numpy as np

INPUT_SIDE = 192
MARGIN = 0.06  # of the garment's longer side, on each side


def garment_square(rgb: np.ndarray, mask: np.ndarray, side: int = INPUT_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask): uint8 (side, side, 3) garment on white and uint8 (side, side) mask, from an RGB array and
    its garment mask (any size; 255 or True = garment)."""
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(binary)
    if w == 0 or h == 0:
        raise ValueError("the mask is empty")
    square = int(round(max(w, h) * (1 + 2 * MARGIN)))
    canvas = np.full((square, square, 3), 255, np.uint8)
    square_mask = np.zeros((square, square), np.uint8)
    left, top = (square - w) // 2, (square - h) // 2
    crop = binary[y:y + h, x:x + w] > 0
    canvas[top:top + h, left:left + w][crop] = np.asarray(rgb)[y:y + h, x:x + w][crop]
    square_mask[top:top + h, left:left + w] = crop * 255
    size = (side, side)
    return (cv2.resize(canvas, size, interpolation=cv2.INTER_AREA),
            cv2.resize(square_mask, size, interpolation=cv2.INTER_AREA))
