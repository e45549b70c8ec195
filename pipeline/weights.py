"""Whether model weights can be had here, without loading them: for listing models as available or not."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.errors import BackendUnavailableError
from pipeline.hub import display_source, hub_offline, looks_like_path, probe_hub

logger = logging.getLogger(__name__)

Source = tuple[str, str, str]  # (what, Hub id or folder, a file the checkpoint must have)


def unavailable_reason(sources: list[Source]) -> str | None:
    """None when every source is a local folder, is in the Hugging Face cache, or can be downloaded (the Hub
    answers within seconds); otherwise one sentence saying what is missing."""
    for what, source, filename in sources:
        if Path(source).expanduser().is_dir():
            continue
        if looks_like_path(source):
            logger.warning("The %s folder %s does not exist.", what, Path(source).expanduser().absolute())
            return f"The {what} folder '{display_source(source)}' does not exist."
        if _cached(source, filename):
            continue
        if hub_offline():
            return (f"The {what} '{source}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                    "download it once with network access, or configure a local folder.")
        try:
            probe_hub(source, what)
        except BackendUnavailableError as error:
            return str(error)
    return None


def _cached(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # noqa: BLE001 - a malformed id is simply not cached
        return False
