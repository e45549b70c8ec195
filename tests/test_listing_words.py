"""Listing words: colours named after the light's cast is taken out, the pattern word, and the suggested title; stored
per garment, editable, and kept when the seller set them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import garment_photo
from pipeline.colours import cast_gains, listing_colours, photo_color_name
from pipeline.errors import InputError
from pipeline.listing import MAX_TITLE_LENGTH, clean_title, suggest_title
from pipeline.pattern import detect_pattern, parse_pattern
from pipeline.reading import read_garment
from pipeline.studio import Studio
from ui.common import category_question, garment_caption


def garment_on(surround_rgb, garment_rgb, light=(1.0, 1.0, 1.0), size=(600, 800), seed=0):
    """A garment on a plain surround, both seen under a light that scales each channel (a warm bulb: more red)."""
    image, mask = garment_photo(size=size, garment_rgb=garment_rgb, seed=seed)
    pixels = np.asarray(image).astype(np.float32)
    rng = np.random.default_rng(seed)
    surround = np.array(surround_rgb, np.float32) + rng.normal(0, 3, pixels.shape)
    pixels = np.where(mask[..., None], pixels, surround)
    lit = np.clip(pixels * np.array(light, np.float32), 0, 255).astype(np.uint8)
    return Image.fromarray(lit), mask


def patterned(draw, size=(600, 800), base=(235, 235, 232), ink=(30, 40, 70)):
    """A tee-shaped garment on a grey floor whose pixels are `ink` where draw(rows, cols) is true, else `base`."""
    image, mask = garment_photo(size=size, garment_rgb=base)
    pixels = np.asarray(image).copy()
    rows, cols = np.mgrid[0:size[1], 0:size[0]]
    ink_here = mask & draw(rows, cols)
    pixels[ink_here] = ink
    pixels[~mask] = (128, 128, 128)
    return Image.fromarray(pixels), mask


# -- colour names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("lab, denim, name", [
    ((72, 0.5, 1.0), False, "white"),        # a white tee in a phone photo reads about L 70
    ((44, 0.0, 1.0), False, "grey"),
    ((8, 0.3, -0.5), False, "black"),
    ((22, 3.0, -10.0), False, "navy"),       # dark and slightly blue: navy, not charcoal
    ((22, 3.0, -10.0), True, "denim blue"),  # the same blue on trousers: denim
    ((46, 2.0, 16.0), False, "khaki"),
    ((38, 55.0, 30.0), False, "red"),        # a dim red is still red, not burgundy
])
def test_photographed_colours_get_the_names_a_seller_uses(lab, denim, name):
    assert photo_color_name(np.array(lab, float), denim) == name


def test_a_warm_light_is_taken_out_when_the_surround_is_neutral():
    warm = (1.04, 1.0, 0.93)  # a warm bulb; a much stronger tint looks like a beige floor and is left alone
    image, mask = garment_on((200, 200, 200), (236, 236, 234), light=warm)
    rgb = np.asarray(image)
    gains = cast_gains(rgb, ~mask)
    assert gains[0] < 0.99 and gains[2] > 1.05  # less red, more blue
    assert listing_colours(image, mask).color.name == "white"


def test_a_coloured_surround_says_nothing_about_the_light():
    image, mask = garment_on((190, 40, 40), (31, 42, 68))  # a navy tee on a red rug
    np.testing.assert_allclose(cast_gains(np.asarray(image), ~mask), 1.0)
    assert listing_colours(image, mask).color.name == "navy"


def test_broad_stripes_give_a_second_colour_and_the_pattern():
    image, mask = patterned(lambda rows, cols: (rows // 24) % 2 == 0)
    words = listing_colours(image, mask)
    assert {words.color.name, words.secondary.name} == {"navy", "white"}
    assert words.pattern == "striped"


def test_one_colour_has_no_second_colour():
    image, mask = garment_photo(garment_rgb=(196, 30, 46))
    words = listing_colours(image, mask)
    assert words.color.name == "red" and words.secondary is None and words.pattern == "solid"


# -- pattern words --------------------------------------------------------------------------------------


@pytest.mark.parametrize("draw, pattern", [
    (lambda rows, cols: np.zeros_like(rows, bool), "solid"),
    (lambda rows, cols: (rows // 20) % 2 == 0, "striped"),
    (lambda rows, cols: (cols // 20) % 2 == 0, "striped"),
    (lambda rows, cols: ((rows // 24) % 2 == 0) ^ ((cols // 24) % 2 == 0), "checked"),
    (lambda rows, cols: np.hypot((rows % 24) - 12, ((cols + (rows // 24) * 12) % 24) - 12) < 6,
     "print"),  # polka dots all over
    (lambda rows, cols: ((rows // 2) % 2 == 0) ^ ((cols // 2) % 2 == 0),
     "print"),  # a pattern finer than the edges survive a blur: not solid
    (lambda rows, cols: (rows > 260) & (rows < 420) & (cols > 220) & (cols < 380) & ((rows + cols) % 16 < 6),
     "graphic"),  # one block of detail on the chest
])
def test_pattern_words_from_the_garment_pixels(draw, pattern):
    image, mask = patterned(draw)
    assert detect_pattern(np.asarray(image), mask) == pattern


def test_pattern_names_are_checked():
    assert parse_pattern(" Floral ") == "floral"
    with pytest.raises(InputError, match="solid, striped, checked, floral, print, graphic"):
        parse_pattern("tartan")


# -- titles ---------------------------------------------------------------------------------------------


def test_suggested_titles_read_like_listings():
    assert suggest_title("dress", "mint", None, "floral", "dress") == "Mint Floral Dress"
    assert suggest_title("top", "navy", "cream", "striped", "t-shirt") == "Navy & Cream Striped T-Shirt"
    assert suggest_title("outerwear", "black", None, "solid", None) == "Black Jacket"  # the category's noun
    assert suggest_title(None, None) == "Garment"
    assert len(suggest_title("top", "very " * 30 + "red", None, "print", "top")) <= MAX_TITLE_LENGTH


def test_a_sellers_title_is_tidied_and_checked():
    assert clean_title("  Vintage\tLevi's   501\n") == "Vintage Levi's 501"
    with pytest.raises(InputError, match="at most 80 characters"):
        clean_title("x" * 81)
    with pytest.raises(InputError, match="is text"):
        clean_title(501)


def test_the_page_asks_when_the_category_is_uncertain():
    unsure = {"category": "dress", "category_source": "trained", "category_confidence": 0.55,
              "category_alternative": "top"}
    assert category_question(unsure) == "Is this a dress or a top?"
    assert category_question({**unsure, "category_confidence": 0.93}) == "Category"
    assert category_question({**unsure, "category_source": "user"}) == "Category"
    # The closet's caption asks first: a phone's narrow tile cuts the end of "Navy Floral Long-Sleeve Midi ..."
    titled = {**unsure, "status": "segmented", "title": "Navy Floral Long-Sleeve Midi Dress", "detected_color": "navy"}
    assert garment_caption(titled) == "dress? · Navy Floral Long-Sleeve Midi Dress"
    assert garment_caption({**titled, "category_confidence": 0.93}) == "Navy Floral Long-Sleeve Midi Dress"
    assert garment_caption({**titled, "title": None}) == "Dress? · navy"


# -- stored, editable, kept -----------------------------------------------------------------------------


def test_an_upload_stores_the_listing_words(studio: Studio, photo_path):
    garment = studio.upload_garment(photo_path)
    assert garment["detected_color"] == "navy" and garment["pattern"] == "solid"
    assert garment["secondary_color"] is None and garment["color_source"] == "detected"
    assert garment["garment_type"] and garment["category_alternative"] in {"top", "bottom", "dress", "outerwear"}
    assert garment["title"] == f"Navy {garment['garment_type'].title()}" and garment["title_source"] == "detected"


def test_the_colours_read_beside_the_category_are_named_for_its_garment_type(studio: Studio, tmp_path):
    # The studio reads the colours while the category is predicted, then names them for the predicted type:
    # a dull blue pair of trousers is denim, and the stored words are what `listing_colours` says in one call.
    rng = np.random.default_rng(0)
    surround = (np.array((200, 200, 198), float) + rng.normal(0, 3, (800, 600, 3))).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(surround)
    legs = [(190, 120), (410, 120), (440, 700), (330, 700), (300, 330), (270, 700), (160, 700)]
    ImageDraw.Draw(image).polygon(legs, fill=(58, 72, 104))
    path = tmp_path / "dull-blue-trousers.png"
    image.save(path)
    garment = studio.upload_garment(path)
    assert (garment["garment_type"], garment["detected_color"]) == ("trousers", "denim blue")
    direct = listing_colours(studio.garment_image(garment["id"]), studio.garment_mask(garment["id"]), "trousers")
    assert (garment["detected_color_hex"], garment["pattern"]) == (direct.color.hex, direct.pattern)


def test_reading_a_garment_names_its_colours_for_the_type_the_seller_left():
    image, mask = garment_on((200, 200, 198), (58, 72, 104))
    kept_type = read_garment(image, mask, category=False, garment_type="jeans")
    assert kept_type.category is None and kept_type.colours.color.name == "denim blue"
    assert read_garment(image, mask, category=False).colours.color.name == "navy"  # on a shirt
    only_category = read_garment(image, mask, colours=False)
    assert only_category.colours is None and only_category.category.backend == "trained"


def test_the_sellers_words_win_and_survive_a_new_cut_out(studio: Studio, photo_path):
    garment = studio.upload_garment(photo_path)
    edited = studio.update_garment(garment["id"], secondary_color="Cream", pattern="striped")
    assert (edited["secondary_color"], edited["secondary_color_hex"], edited["pattern"]) == ("cream", "#eee2c4",
                                                                                            "striped")
    assert edited["title"] == f"Navy & Cream Striped {garment['garment_type'].title()}"  # follows the attributes
    own = studio.update_garment(garment["id"], title="Vintage navy tee")
    assert own["title"] == "Vintage navy tee" and own["title_source"] == "user"
    assert studio.update_garment(garment["id"], category="dress")["title"] == "Vintage navy tee"
    again = studio.segment_garment(garment["id"])
    assert (again["title"], again["secondary_color"], again["pattern"]) == ("Vintage navy tee", "cream", "striped")
    back = studio.update_garment(garment["id"], title=" ", secondary_color="none")
    assert back["title"] == "Navy Striped Dress" and back["title_source"] == "detected"
    assert back["secondary_color"] is None and back["secondary_color_hex"] is None


def test_bad_listing_words_are_refused_and_nothing_is_stored(studio: Studio, photo_path):
    garment = studio.upload_garment(photo_path)
    for change, message in (({"pattern": "tartan"}, "Unknown pattern"), ({"title": "x" * 200}, "at most 80"),
                            ({"secondary_color": "y" * 60}, "at most 40"), ({"secondary_color": 7}, "is text")):
        with pytest.raises(InputError, match=message):
            studio.update_garment(garment["id"], **change)
    assert studio.get_garment(garment["id"]) == garment
