"""Prompts for on-model photos, built from the model card, the garment's category and colour, and the pose.

The garment itself reaches the pipeline as the IP-Adapter image; the text only names its kind and colour, dresses the
rest of the body in plain pieces that cannot be mistaken for it, and never adds prints, logos or details of its own.
The person and the garment come first, so they survive CLIP's 77-token limit.
"""

from __future__ import annotations

import re

from pipeline.errors import InputError
from pipeline.model_cards import ModelCard
from pipeline.poses import Pose

# Nouns a seller may name a garment by, per category; the first is the default. Plural nouns take no article.
GARMENT_NOUNS: dict[str, tuple[str, ...]] = {
    "top": ("top", "t-shirt", "shirt", "blouse", "sweater", "jumper", "hoodie", "sweatshirt", "tank top",
            "polo shirt", "cardigan"),
    "bottom": ("trousers", "jeans", "skirt", "shorts", "leggings", "joggers", "chinos", "mini skirt", "midi skirt"),
    "dress": ("dress", "mini dress", "midi dress", "maxi dress", "slip dress", "shirt dress", "jumpsuit"),
    "outerwear": ("jacket", "coat", "blazer", "denim jacket", "leather jacket", "puffer jacket", "trench coat",
                  "parka", "gilet"),
}
_PLURAL_NOUNS = {"trousers", "jeans", "shorts", "leggings", "joggers", "chinos"}

# Plain companion pieces in a colour far from the garment's, so the garment's region stays unambiguous.
_LIGHT_COLOURS = {"white", "ivory", "cream", "off-white", "light grey", "heather grey", "beige", "khaki", "sand",
                  "stone"}
_NEUTRAL_COLOURS = _LIGHT_COLOURS | {"camel", "tan", "taupe", "grey"}

_FRAMING_WORDS = {
    "full": "full-body shot, head to toe",
    "upper": "waist-up shot",
    "lower": "lower-body shot, waist to feet",
}
_PHOTO_WORDS = "professional fashion e-commerce photo, high detail"

QUALITY_NEGATIVES = ("lowres, blurry, jpeg artifacts, bad anatomy, deformed hands, extra fingers, extra limbs, "
                     "distorted face, cropped head")
FIDELITY_NEGATIVES = ("logo, text, watermark, different colour garment, colour shift, extra garments, "
                      "layered clothing, accessories covering the garment")
_FRAMING_NEGATIVES = {"full": "cropped feet, cut off legs", "upper": "", "lower": ""}

_COLOR_NAME = re.compile(r"^[a-z][a-z -]{0,29}$")


def build_prompt(card: ModelCard, category: str, color_name: str, pose: Pose,
                 garment_noun: str | None = None) -> tuple[str, str]:
    """(prompt, negative prompt) for `card` wearing a garment of `category` and colour `color_name` in `pose`.

    `garment_noun` narrows the category ("skirt" for a bottom); it must be one of `GARMENT_NOUNS[category]`.
    The same inputs always give the same prompts.
    """
    if card.kind != "persona":
        raise InputError(f"{card.name} ({card.id}) is not a persona; it has no prompt.")
    noun = _garment_noun(category, garment_noun)
    color = _color_words(color_name)
    parts = [
        _FRAMING_WORDS[pose.framing],
        card.person_prompt,
        f"wearing {_garment_phrase(category, noun, color)}",
        pose.prompt,
        card.style_prompt,
        _PHOTO_WORDS,
    ]
    return _join(parts), negative_prompt(card, pose)


def build_edit_prompt(card: ModelCard, category: str, color_name: str, pose: Pose, with_person: bool = True,
                      with_pose_image: bool = False, garment_noun: str | None = None) -> tuple[str, str]:
    """(instruction, negative prompt) for the multi-reference editing families. The images come in the order
    person (when `with_person`), garment, pose (when `with_pose_image`); the instruction names them by number and
    asks for the garment exactly as it is, since its pixels are right there."""
    if card.kind != "persona":
        raise InputError(f"{card.name} ({card.id}) is not a persona; it has no prompt.")
    noun = _garment_noun(category, garment_noun)
    garment = _garment_phrase(category, noun, _color_words(color_name))
    number = 1
    if with_person:
        who = "the person in image 1"
        number = 2
    else:
        who = card.person_prompt
    parts = [f"{who[0].upper()}{who[1:]} wearing the exact garment from image {number} ({garment})",
             "keep the garment's colour, pattern, print, logos and text exactly as in that image"]
    if with_pose_image:
        parts.append(f"in the pose of the skeleton in image {number + 1}")
    parts += [_FRAMING_WORDS[pose.framing], pose.prompt, card.style_prompt, _PHOTO_WORDS]
    return _join(parts), negative_prompt(card, pose)


VOLUME_GHOST_NEGATIVES = ("person, skin, face, hands, mannequin, hanger, props, different colour garment, extra "
                          "garments, text, watermark")


def volume_ghost_prompt(category: str, color_name: str, garment_noun: str | None = None) -> tuple[str, str]:
    """(instruction, negative) for the 3D ghost: the flat cut-out in image 1 given a worn shape, nobody in it."""
    noun = _garment_noun(category, garment_noun)
    garment = _with_article(f"{_color_words(color_name)} {noun}".strip(), plural=noun in _PLURAL_NOUNS)
    parts = [f"Turn the flat garment in image 1 ({garment}) into a ghost-mannequin product photo",
             "the same garment as if worn by an invisible mannequin, with natural volume and drape, the inside of "
             "the back neckline showing", "no person, no mannequin",
             "keep the garment's colour, pattern, print, logos and text exactly as in image 1",
             "centred on a plain white background, soft even studio light", _PHOTO_WORDS]
    return _join(parts), _join([QUALITY_NEGATIVES, VOLUME_GHOST_NEGATIVES])


def persona_photo_prompt(card: ModelCard) -> tuple[str, str]:
    """(prompt, negative) for a persona's reference photo: the person, head to toe, in a plain outfit that no
    garment will be confused with, facing the camera in plain, even studio light."""
    if card.kind != "persona":
        raise InputError(f"{card.name} ({card.id}) is not a persona; it has no reference photo.")
    parts = [_FRAMING_WORDS["full"], card.person_prompt, "wearing a plain white t-shirt and plain light grey trousers",
             "standing straight, arms relaxed at the sides, facing the camera", "plain light grey studio backdrop",
             "soft even studio light", _PHOTO_WORDS]
    return _join(parts), _join([QUALITY_NEGATIVES, _FRAMING_NEGATIVES["full"], card.negative_prompt])


def negative_prompt(card: ModelCard, pose: Pose) -> str:
    """Quality and garment-fidelity negatives, the framing's, and the card's own."""
    return _join([QUALITY_NEGATIVES, FIDELITY_NEGATIVES, _FRAMING_NEGATIVES[pose.framing], card.negative_prompt])


def _garment_noun(category: str, noun: str | None) -> str:
    if category not in GARMENT_NOUNS:
        raise InputError(f"Unknown category {category!r}; choose one of: {', '.join(GARMENT_NOUNS)}.")
    allowed = GARMENT_NOUNS[category]
    if noun is None:
        return allowed[0]
    noun = noun.strip().lower()
    if noun not in allowed:
        raise InputError(f"A {category} can be called {', '.join(allowed)}; not {noun!r}.")
    return noun


def _color_words(color_name: str) -> str:
    """The colour as prompt words: lower case, letters, spaces and hyphens only (it is user-editable text)."""
    color = " ".join((color_name or "").lower().split())
    if not color:
        return ""
    if not _COLOR_NAME.match(color):
        raise InputError(f"Colour {color_name!r} should be a plain colour name such as 'navy' or 'light grey'.")
    return color


def _garment_phrase(category: str, noun: str, color: str) -> str:
    garment = _with_article(f"{color} {noun}".strip(), plural=noun in _PLURAL_NOUNS)
    if category == "top":
        return f"{garment} with plain {'black' if color in _NEUTRAL_COLOURS else 'beige'} trousers"
    if category == "bottom":
        return f"{garment} with a plain {'black' if color in _LIGHT_COLOURS else 'white'} t-shirt"
    if category == "outerwear":
        return f"{garment} over a plain {'black' if color in _LIGHT_COLOURS else 'white'} t-shirt"
    return garment


def _with_article(words: str, plural: bool) -> str:
    if plural:
        return words
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _join(parts: list[str]) -> str:
    return ", ".join(part.strip().strip(",") for part in parts if part and part.strip())
