"""Turning errors into what a seller reads, for every UI event and API endpoint."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from pipeline.errors import StudioError

log = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Any])


def explained(handler: Handler) -> Handler:
    """Shows a StudioError's message to the user as it is; logs anything else and says so plainly."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except StudioError as error:
            raise gr.Error(str(error)) from error
        except Exception as error:
            log.exception("unexpected error in %s", handler.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}); nothing was changed. "
                           "Try again, and report it if it keeps happening.") from error

    return wrapper  # type: ignore[return-value]
