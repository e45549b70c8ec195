"""Loading weights from a local folder or the Hugging Face Hub, local cache first, never hanging.

The policy `pipeline.sam`, `pipeline.category_model` and `pipeline.diffusion` follow: a folder is loaded as it
is; a Hub id is first looked up in the local cache only; the network is tried only when `HF_HUB_OFFLINE` is not set
(read at call time), after a quick reachability probe, with short per-request timeouts. Every failure becomes one
`BackendUnavailableError` sentence.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
import threading
from typing import Generic, Hashable, TypeVar

from pipeline.errors import BackendUnavailableError

HUB_PROBE_TIMEOUT_S = 5.0
HUB_DOWNLOAD_TIMEOUT_S = 20

__all__ = ["LoadedOnce", "display_source", "first_line", "hub_offline", "load_local_first", "looks_like_path",
           "probe_hub", "redact_paths", "short_hub_timeouts"]

logger = logging.getLogger(__name__)


def hub_offline() -> bool:
    from huggingface_hub import constants

    # The env var is read again because huggingface_hub reads it only once, at import.
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def looks_like_path(model_id: str) -> bool:
    # A Hub id is "name" or "owner/name"; anything else that names a place on disk is a folder.
    return (
        Path(model_id).expanduser().exists() or model_id.startswith((".", "/", "~"))
        or model_id.count("/") > 1 or "\\" in model_id or os.path.isabs(model_id)
    )


class short_hub_timeouts:
    """Temporarily lower huggingface_hub's per-request timeouts (it reads them from module constants)."""

    def __enter__(self) -> None:
        from huggingface_hub import constants

        self._saved = (constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT)
        constants.HF_HUB_ETAG_TIMEOUT = min(constants.HF_HUB_ETAG_TIMEOUT, HUB_DOWNLOAD_TIMEOUT_S)
        constants.HF_HUB_DOWNLOAD_TIMEOUT = min(constants.HF_HUB_DOWNLOAD_TIMEOUT, HUB_DOWNLOAD_TIMEOUT_S)

    def __exit__(self, *exc_info) -> None:
        from huggingface_hub import constants

        constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT = self._saved


def display_source(source: str) -> str:
    """How a model source is named to users: a Hub id as it is, a local folder by its own name only (the
    server's paths are for the operator's log, not for users)."""
    if not looks_like_path(source):
        return source
    folder = Path(source).expanduser()
    return folder.name or folder.resolve().name or "the root folder"


# An absolute POSIX or Windows path, not the "//" of a URL nor the "/" inside "owner/name" or "and/or".
_ABSOLUTE_PATH = re.compile(r"(?<![\w/:.~-])(?:[A-Za-z]:)?[/\\][^\s'\"()\[\]<>,;]+")


def redact_paths(message: str, source: str = "") -> str:
    """`message` without absolute paths: the local folder `source` (and files in it) shown by its display name,
    any other path by its last part."""
    if source and looks_like_path(source):
        folder = Path(source).expanduser()
        for form in sorted({str(folder.absolute()), str(folder.resolve())}, key=len, reverse=True):
            message = message.replace(form, display_source(source))
    return _ABSOLUTE_PATH.sub(lambda match: "…/" + re.split(r"[/\\]", match.group().rstrip("/\\"))[-1], message)


def first_line(error: BaseException, source: str = "") -> str:
    """The first line of an error's text, for a one-sentence message; paths redacted (see `redact_paths`)."""
    text = str(error).strip().splitlines()
    return redact_paths(text[0] if text else type(error).__name__, source)[:300]

Loaded = TypeVar("Loaded")


def probe_hub(repo_id: str, what: str) -> None:
    """Fail within seconds when `repo_id` cannot be reached, instead of the downloader's minute of retries."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=HUB_PROBE_TIMEOUT_S)
    except GatedRepoError as error:
        raise BackendUnavailableError(
            f"The {what} '{repo_id}' is gated on the Hugging Face Hub; log in with an account that has access."
        ) from error
    except RepositoryNotFoundError as error:
        raise BackendUnavailableError(
            f"There is no {what} '{repo_id}' on the Hugging Face Hub (nor a local folder of that name)."
        ) from error
    except Exception as error:  # noqa: BLE001 - connection, DNS, proxy, timeout errors all mean "unreachable"
        raise BackendUnavailableError(
            f"The {what} '{repo_id}' is not in the local Hugging Face cache and the Hub cannot be reached "
            f"({first_line(error)}); download it once with network access, or pass a local folder."
        ) from error


def load_local_first(what: str, source: str, load: Callable[[bool], Loaded], flag: str = "") -> Loaded:
    """`load(local_files_only)` for a folder or a Hub id, by the policy above; `what` names it in messages."""
    if looks_like_path(source):
        folder = Path(source).expanduser()
        if not folder.exists():
            logger.warning("The %s folder %s does not exist.", what, folder.absolute())
            raise BackendUnavailableError(f"The {what} folder '{display_source(source)}' does not exist.")
        try:
            return load(True)
        except BackendUnavailableError:
            raise
        except Exception as error:  # noqa: BLE001 - a broken checkpoint fails in many ways; one sentence for the user
            logger.warning("The %s in %s cannot be loaded: %s", what, folder.absolute(), error)
            raise BackendUnavailableError(f"The {what} in the folder '{display_source(source)}' cannot be loaded "
                                          f"({first_line(error, source)}).") from error
    try:
        return load(True)
    except BackendUnavailableError:
        raise
    except Exception as error:  # noqa: BLE001 - not (completely) in the cache: try the Hub below
        cached_error = error
    if hub_offline():
        raise BackendUnavailableError(
            f"The {what} '{source}' is not available offline (HF_HUB_OFFLINE is set) and not in the local Hugging "
            f"Face cache; download it once with network access, or pass a local folder{f' with {flag}' if flag else ''}."
        ) from cached_error
    probe_hub(source, what)
    logger.info("Downloading the %s %s from the Hugging Face Hub (first use).", what, source)
    try:
        with short_hub_timeouts():
            return load(False)
    except BackendUnavailableError:
        raise
    except Exception as error:  # noqa: BLE001 - any download failure is "weights unavailable" for the user
        raise BackendUnavailableError(
            f"The {what} '{source}' could not be downloaded from the Hugging Face Hub ({first_line(error)})."
        ) from error


class LoadedOnce(Generic[Loaded]):
    """One loaded model per key per process, shared by every thread. A failed load is remembered and its error
    raised again at once, so a missing model costs one attempt per process, not one per photo. Loads of
    different keys do not wait for each other."""

    def __init__(self, what: str):
        self.what = what
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._known: dict[Hashable, Loaded | BackendUnavailableError] = {}

    def get(self, key: Hashable, load: Callable[[], Loaded]) -> Loaded:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            known = self._known.get(key)
            if known is None:
                try:
                    known = load()
                except BackendUnavailableError as error:
                    known = error
                except Exception as error:  # noqa: BLE001 - e.g. out of memory moving to the device
                    logger.exception("The %s %s could not be loaded", self.what, key)
                    known = BackendUnavailableError(f"The {self.what} could not be loaded: {first_line(error)}")
                self._known[key] = known
        if isinstance(known, BackendUnavailableError):
            raise BackendUnavailableError(str(known))
        return known

    def clear(self) -> None:
        """Forget every loaded model and failure (tests; or to retry after the network came back)."""
        with self._lock:
            self._known.clear()
