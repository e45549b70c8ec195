"""Loading the weights the studio ships with its code (`pipeline/models/*.safetensors`) into their model."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from pipeline.errors import BackendUnavailableError


def load_committed(model: nn.Module, path: Path, what: str) -> None:
    """Loads `path` into `model`, floating-point tensors as float32. BackendUnavailableError, one sentence naming
    `what` ("The garment network"), when the file is missing or is not weights of this model."""
    if not path.is_file():
        raise BackendUnavailableError(f"{what} {path.name} is missing; reinstall the studio.")
    try:
        from safetensors.torch import load_file
    except ImportError as error:
        raise BackendUnavailableError(f"safetensors is not installed: {error}") from None
    try:
        model.load_state_dict({name: tensor.float() if tensor.is_floating_point() else tensor
                               for name, tensor in load_file(str(path)).items()})
    except Exception as error:  # a damaged or foreign file: one sentence, not a traceback
        raise BackendUnavailableError(f"{what} {path.name} cannot be read: {error}") from None
