"""Generation backends: from a garment photo and its mask to finished output images.

The ghost backend composes the real garment pixels (no model weights). Each backend renders a list of
`OutputSpec`s, one per aspect ratio or marketplace preset, and knows nothing of storage.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from pipeline.errors import InputError
from pipeline.ghost import compose_ghost, natural_long_side
from pipeline.presets import get_marketplace, parse_aspect_ratio, ratio_size

FILE_FORMATS = {"jpeg": ".jpg", "png": ".png"}
JPEG_QUALITY = 95
DEFAULT_ASPECT_RATIOS = ("1:1", "4:5", "3:4")

ProgressCallback = Callable[[float, str], None]


@dataclass(frozen=True)
class OutputSpec:
    """One output image: an aspect ratio, and the marketplace whose exact pixel size it follows, if any."""

    aspect_ratio: str
    marketplace: str | None = None
    width: int | None = None
    height: int | None = None

    def size_for(self, mask: np.ndarray) -> tuple[int, int]:
        if self.width and self.height:
            return self.width, self.height
        return ratio_size(self.aspect_ratio, natural_long_side(mask))


def plan_outputs(aspect_ratios: Sequence[str] = (), marketplaces: Sequence[str] = ()) -> list[OutputSpec]:
    """One spec per requested ratio and marketplace, in that order; all three ratios when nothing is asked for."""
    specs = [OutputSpec(parse_aspect_ratio(ratio)) for ratio in dict.fromkeys(aspect_ratios)]
    for key in dict.fromkeys(marketplaces):
        preset = get_marketplace(key)
        specs.append(OutputSpec(preset.aspect_ratio, preset.key, preset.width, preset.height))
    return specs or [OutputSpec(ratio) for ratio in DEFAULT_ASPECT_RATIOS]


def parse_file_format(value: str) -> str:
    normalised = (value or "").strip().lower().replace("jpg", "jpeg")
    if normalised not in FILE_FORMATS:
        raise InputError(f"Unknown file format {value!r}; choose one of {', '.join(FILE_FORMATS)}.")
    return normalised


def encode_image(image: Image.Image, file_format: str) -> bytes:
    """JPEG at quality 95 (no chroma subsampling) or PNG; never a watermark."""
    buffer = io.BytesIO()
    if file_format == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    else:
        image.save(buffer, "PNG", compress_level=3)
    return buffer.getvalue()


@dataclass(frozen=True)
class RenderedOutput:
    spec: OutputSpec
    image: Image.Image
    image_index: int = 0  # which generated image this is a crop of; crops of one image share it
    seed: int | None = None
    ai_generated: bool = False
    fidelity: Any = None  # pipeline.fidelity.FidelityScore for generated images


class GhostBackend:
    """The invisible-mannequin shot from the real garment pixels."""

    name = "ghost"

    def render(self, image: Image.Image, mask: np.ndarray, specs: Sequence[OutputSpec], background: str,
               progress: ProgressCallback | None = None) -> list[RenderedOutput]:
        outputs = []
        for index, spec in enumerate(specs):
            if progress:
                progress(index / len(specs), f"Composing {spec.marketplace or spec.aspect_ratio}")
            outputs.append(RenderedOutput(spec, compose_ghost(image, mask, spec.size_for(mask), background)))
        if progress:
            progress(1.0, "Done")
        return outputs


def spec_parameters(specs: Sequence[OutputSpec]) -> list[dict]:
    return [asdict(spec) for spec in specs]
