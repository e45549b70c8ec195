"""Errors whose message a seller can act on. Anything else is a bug and is logged with its traceback."""

import errno
import sqlite3


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


class SettingsError(StudioError):
    """The studio's settings cannot be used as they are (an unknown or unsafe sign-in mode, ...); the message says
    what to set instead. The studio refuses to start rather than serve unsafely."""


class StorageError(StudioError):
    """The data directory could not be written (disk full, read-only, no permission); what was being saved was
    not kept, and the studio goes on serving once the disk is fixed."""


DISK_FULL_MESSAGE = ("The studio's disk is full, so this was not saved. Free some space (or delete garments you no "
                     "longer need), then try again.")
READ_ONLY_MESSAGE = ("The studio's data folder is read-only, so this was not saved. Make it writable again, then "
                     "try again.")
NO_PERMISSION_MESSAGE = ("The studio may not write to its data folder (permission denied), so this was not saved. "
                         "Give it write access, then try again.")

_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_PERM = 13, 8, 3  # SQLite result codes


def storage_error(error: BaseException) -> StorageError | None:
    """The one place that turns a failed write to the data directory into a message a seller can act on: an
    OSError (ENOSPC, EDQUOT, EROFS, EACCES, EPERM) from the file store, or SQLite's "database or disk is full" and
    "attempt to write a readonly database". None for anything else, which stays a bug to log."""
    if isinstance(error, StorageError):
        return error
    message = None
    if isinstance(error, OSError):
        message = {errno.ENOSPC: DISK_FULL_MESSAGE, errno.EDQUOT: DISK_FULL_MESSAGE, errno.EROFS: READ_ONLY_MESSAGE,
                   errno.EACCES: NO_PERMISSION_MESSAGE, errno.EPERM: NO_PERMISSION_MESSAGE}.get(error.errno)
    elif isinstance(error, sqlite3.OperationalError):
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one
        text = str(error).lower()
        if code == _SQLITE_FULL or "disk is full" in text:
            message = DISK_FULL_MESSAGE
        elif code == _SQLITE_READONLY or "readonly database" in text:
            message = READ_ONLY_MESSAGE
        elif code == _SQLITE_PERM:
            message = NO_PERMISSION_MESSAGE
    return StorageError(message) if message else None
