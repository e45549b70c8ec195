"""File names for a seller's garments: short, readable slugs from what the garment is ("navy-top")."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

MAX_NAME_LENGTH = 40
UNKNOWN = "garment"


def garment_name(garment: Mapping[str, Any]) -> str:
    """A file-name slug from the garment's listing title ("navy-striped-t-shirt"), or, without one, from its colour
    and category: "navy-top", "navy-garment" when the category is unknown, "garment" when neither is known.
    ASCII, lowercase, hyphens, at most 40 chars."""
    words = garment.get("title") or f"{garment.get('detected_color') or ''} {garment.get('category') or UNKNOWN}"
    ascii_words = unicodedata.normalize("NFKD", words).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_words).strip("-")
    if len(slug) > MAX_NAME_LENGTH:  # cut at a word where there is one
        cut = slug[:MAX_NAME_LENGTH + 1]
        slug = cut.rsplit("-", 1)[0] if "-" in cut else slug[:MAX_NAME_LENGTH]
    return slug or UNKNOWN


def numbered(names: Iterable[str]) -> list[str]:
    """The names made unique in order: the second "navy-top" becomes "navy-top-2", the third "navy-top-3"."""
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name}-{number}"
        taken.add(candidate)
        unique.append(candidate)
    return unique
