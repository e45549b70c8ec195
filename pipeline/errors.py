"""Errors whose message a seller can act on. Anything else is a bug and is logged with its traceback."""


class StudioError(Exception):
    """Base class: the message is shown to the user as it is."""


class InputError(StudioError):
    """The uploaded file or a parameter cannot be used; nothing was stored."""


class NotFoundError(StudioError):
    """No garment, generation, output or virtual model with that id."""


class BackendUnavailableError(StudioError):
    """A backend was asked for whose weights or device are not available here."""


class SegmentationError(StudioError):
    """No garment could be separated from the background; the message says why."""


class QuotaExceededError(StudioError):
    """A plan limit would be passed; the message says which limit, what is used, and when it resets."""
