"""Persistence for Resell Studio: the sqlite-utils database and the image file store."""

from storage.database import RecordNotFound, StudioDatabase
from storage.files import FileStore

__all__ = ["FileStore", "RecordNotFound", "StudioDatabase"]
