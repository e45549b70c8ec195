"""Prompts per garment category and model card: the garment's kind and colour, the person, the framing."""

from __future__ import annotations

import re

import pytest

from pipeline.errors import InputError
from pipeline.model_cards import load_model_cards
from pipeline.poses import choose_pose
from pipeline.prompts import GARMENT_NOUNS, build_prompt
from pipeline.settings import DEFAULT_MODEL_CARDS_DIR

CARDS = {card.id: card for card in load_model_cards(DEFAULT_MODEL_CARDS_DIR)}
PERSONAS = [card for card in CARDS.values() if card.kind == "persona"]
SIENNA = CARDS["mod_01"]


def _prompt(card, category, colour="navy", **options):
    return build_prompt(card, category, colour, choose_pose(card, category), **options)


@pytest.mark.parametrize(("category", "expected"), [
    ("top", "wearing a navy top with plain beige trousers"),
    ("bottom", "wearing navy trousers with a plain white t-shirt"),
    ("dress", "wearing a navy dress"),
    ("outerwear", "wearing a navy jacket over a plain white t-shirt"),
])
def test_prompt_follows_the_category(category, expected):
    prompt, _ = _prompt(SIENNA, category)
    assert expected in prompt
    assert SIENNA.person_prompt in prompt and SIENNA.style_prompt in prompt
    assert "e-commerce photo" in prompt


def test_framing_words_match_the_pose():
    assert _prompt(SIENNA, "dress")[0].startswith("full-body shot, head to toe")
    assert _prompt(SIENNA, "top")[0].startswith("waist-up shot")
    walking = SIENNA.pose("walking")
    assert "walking towards the camera" in build_prompt(SIENNA, "bottom", "black", walking)[0]


def test_every_card_and_category_names_the_colour_and_stays_short():
    for card in PERSONAS:
        for category in GARMENT_NOUNS:
            prompt, negative = _prompt(card, category, "forest green")
            assert "forest green" in prompt and card.person_prompt in prompt
            assert len(prompt.split()) < 60
            assert len(re.findall(r"\w+|[^\w\s]", prompt)) <= 75  # about CLIP's 77 tokens
            # the garment comes early, before any truncation would reach it
            assert prompt.index("wearing") < len(prompt) // 2
            assert card.negative_prompt in negative


def test_negative_prompt_guards_the_garment():
    _, negative = _prompt(CARDS["mod_05"], "dress")
    for words in ("logo", "text", "watermark", "different colour garment", "extra garments", "deformed hands",
                  "cropped feet"):
        assert words in negative
    assert negative.endswith(CARDS["mod_05"].negative_prompt)
    assert "cropped feet" not in _prompt(SIENNA, "top")[1]  # a waist-up pose has no feet


def test_prompt_never_adds_prints_or_logos():
    for card in PERSONAS:
        for category in GARMENT_NOUNS:
            prompt, _ = _prompt(card, category, "red")
            assert not re.search(r"\b(logo|print|printed|pattern|graphic|text|stripe|floral)\b", prompt)


def test_companion_pieces_never_share_the_garments_colour():
    assert "plain black t-shirt" in _prompt(SIENNA, "bottom", "white")[0]
    assert "plain black trousers" in _prompt(SIENNA, "top", "beige")[0]
    assert "plain black t-shirt" in _prompt(SIENNA, "outerwear", "cream")[0]


def test_garment_nouns_and_articles():
    assert "wearing an olive skirt with" in _prompt(SIENNA, "bottom", "olive", garment_noun="skirt")[0]
    assert "wearing black jeans with" in _prompt(SIENNA, "bottom", "black", garment_noun="Jeans")[0]
    assert "wearing a coat over" in _prompt(SIENNA, "outerwear", "", garment_noun="coat")[0]
    with pytest.raises(InputError, match="A top can be called"):
        _prompt(SIENNA, "top", garment_noun="skirt")


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="plain colour name"):
        _prompt(SIENNA, "top", "red, with a big logo")
    with pytest.raises(InputError, match="Unknown category"):
        build_prompt(SIENNA, "hat", "red", SIENNA.poses[0])
    with pytest.raises(InputError, match="not a persona"):
        build_prompt(CARDS["ghost_01"], "top", "red", SIENNA.poses[0])


def test_prompts_are_deterministic():
    assert _prompt(CARDS["mod_06"], "dress", "Light  Blue") == _prompt(CARDS["mod_06"], "dress", "light blue")
