"""Listing words: the title the studio suggests from a garment's attributes, and the seller's own title, checked.

    >>> suggest_title("dress", "mint", None, "floral", "dress")
    'Mint Floral Dress'
    >>> suggest_title("top", "navy", "cream", "striped", "t-shirt")
    'Navy & Cream Striped T-Shirt'
"""

from __future__ import annotations

from pipeline.errors import InputError

MAX_TITLE_LENGTH = 80  # eBay's limit, the shortest of the marketplaces
# What a garment is called when only its category is known.
CATEGORY_NOUNS = {"top": "top", "bottom": "bottoms", "dress": "dress", "outerwear": "jacket"}


def suggest_title(category: str | None, color: str | None, secondary_color: str | None = None,
                  pattern: str | None = None, garment_type: str | None = None) -> str:
    """A title from what the studio knows: colours, pattern (a solid colour is not worth a word) and the garment
    type, or its category's noun when the type is unknown. Title case, at most MAX_TITLE_LENGTH characters."""
    words = []
    if color:
        words.append(f"{color} & {secondary_color}" if secondary_color else color)
    if pattern and pattern != "solid":
        words.append(pattern)
    words.append(garment_type or category_noun(category))
    return _shortened(_title_case(" ".join(words)))


def category_noun(category: str | None) -> str:
    """What a garment of `category` is called when its type is not known ("jacket" for outerwear)."""
    return CATEGORY_NOUNS.get(category or "", "garment")


def listing_noun(garment: dict) -> str:
    """The garment's type as a listing names it: the type seen ("t-shirt"), or its category's noun when the
    seller changed the category, which makes the type seen meaningless."""
    return garment.get("garment_type") or category_noun(garment.get("category"))


def clean_title(value: object) -> str:
    """A title the seller typed: one line, single spaces, their own capitals; InputError when too long or not
    text. An empty result means "no title of my own"."""
    if not isinstance(value, str):
        raise InputError(f"A title is text such as 'Navy Striped T-Shirt', not {value!r}.")
    # control characters (and lone surrogates) become spaces, and runs of spaces one
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
    if len(text) > MAX_TITLE_LENGTH:
        raise InputError(f"A title can be at most {MAX_TITLE_LENGTH} characters long (marketplaces cut longer "
                         f"ones); this one has {len(text)}.")
    return text


def _title_case(text: str) -> str:
    return " ".join(word if word == "&" else "-".join(part[:1].upper() + part[1:] for part in word.split("-"))
                    for word in text.split())


def _shortened(text: str) -> str:
    if len(text) <= MAX_TITLE_LENGTH:
        return text
    return text[:MAX_TITLE_LENGTH + 1].rsplit(" ", 1)[0]
