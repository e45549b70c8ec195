"""Hugging Face ZeroGPU support: `spaces.GPU` where the `spaces` package is there, a no-op everywhere else.

`app.py` imports `spaces` before anything touches CUDA (ZeroGPU requires that order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

GPU_SECONDS = 120
Function = TypeVar("Function", bound=Callable)


def on_gpu(function: Function, duration: int = GPU_SECONDS) -> Function:
    """`function` wrapped to get a ZeroGPU slot for up to `duration` seconds, or unchanged off ZeroGPU."""
    try:
        import spaces
    except ImportError:
        return function
    return spaces.GPU(duration=duration)(function)
