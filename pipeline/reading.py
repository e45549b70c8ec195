"""What the studio reads of a cut-out garment for its listing: the category and the colour words.

The colours are measured on the CPU pool while the category is predicted on the calling thread: measuring is the
slow part and does not need the category; only the colour's name does (a dull blue is "denim blue" on trousers).
torch stays on the calling thread: on a pool thread, its OpenMP team slowed the ghost shapes composed there later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.category_model import CategoryPrediction, predict_category
from pipeline.colours import ColourReading, ListingColours
from pipeline.workers import CPU_THREADS


@dataclass(frozen=True)
class GarmentReading:
    category: CategoryPrediction | None  # None when it was not asked for (the seller's category stands)
    colours: ListingColours | None       # None when they were not asked for (the seller's colour stands)


def read_garment(image: Image.Image, mask: np.ndarray, category_backend: str = "auto",
                 category_model: str | None = None, *, category: bool = True, colours: bool = True,
                 garment_type: str | None = None) -> GarmentReading:
    """The category (see `predict_category`) and the colour words (see `listing_colours`) of the garment under
    `mask`, each unless its flag is false. The colours are named for the predicted garment type or, when the
    category is not predicted, for `garment_type`."""
    measuring = CPU_THREADS.submit(ColourReading.of, image, mask) if colours else None
    prediction = predict_category(image, mask, category_backend, category_model) if category else None
    if prediction is not None:
        garment_type = prediction.garment_type
    named = measuring.result().named(garment_type) if measuring is not None else None
    return GarmentReading(category=prediction, colours=named)
