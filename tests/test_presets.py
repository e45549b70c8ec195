import pytest

from pipeline.errors import InputError
from pipeline.presets import (
    ASPECT_RATIOS,
    BACKGROUNDS,
    DEFAULT_BACKGROUND,
    MARKETPLACES,
    get_marketplace,
    parse_aspect_ratio,
    parse_background,
    ratio_size,
)


def has_ratio(width: int, height: int, aspect_ratio: str) -> bool:
    ratio_w, ratio_h = ASPECT_RATIOS[aspect_ratio]
    return width * ratio_h == height * ratio_w


@pytest.mark.parametrize("key", sorted(MARKETPLACES))
def test_every_marketplace_size_has_exactly_its_ratio(key):
    preset = MARKETPLACES[key]
    assert preset.key == key
    assert preset.aspect_ratio in ASPECT_RATIOS
    assert has_ratio(preset.width, preset.height, preset.aspect_ratio)
    assert preset.max_photos > 0 and preset.name


@pytest.mark.parametrize("key, size", [
    ("ebay", (1600, 1600)), ("poshmark", (1280, 1280)), ("mercari", (1280, 1280)), ("depop", (1280, 1600)),
    ("vinted", (1200, 1600)), ("etsy", (2000, 2500)), ("shopify", (2048, 2048)),
])
def test_marketplace_sizes_follow_the_design_table(key, size):
    preset = get_marketplace(key)
    assert (preset.width, preset.height) == size


@pytest.mark.parametrize("aspect_ratio", sorted(ASPECT_RATIOS))
@pytest.mark.parametrize("long_side", [800, 1000, 1023, 1280, 1597, 1600, 2048])
def test_ratio_size_is_exact_and_keeps_the_long_side(aspect_ratio, long_side):
    width, height = ratio_size(aspect_ratio, long_side)
    assert has_ratio(width, height, aspect_ratio)
    assert long_side - max(ASPECT_RATIOS[aspect_ratio]) < max(width, height) <= long_side
    assert height >= width  # all ratios are square or portrait


def test_ratio_size_examples():
    assert ratio_size("1:1", 1600) == (1600, 1600)
    assert ratio_size("4:5", 1600) == (1280, 1600)
    assert ratio_size("3:4", 1600) == (1200, 1600)
    assert ratio_size("3:4", 1602) == (1200, 1600)


def test_parse_aspect_ratio_accepts_spaces_and_refuses_others():
    assert parse_aspect_ratio("4:5") == "4:5"
    assert parse_aspect_ratio(" 3 : 4 ") == "3:4"
    for bad in ("16:9", "square", "", "5:4"):
        with pytest.raises(InputError) as caught:
            parse_aspect_ratio(bad)
        assert all(choice in str(caught.value) for choice in ASPECT_RATIOS)


def test_ratio_size_refuses_unknown_ratio_and_tiny_sides():
    with pytest.raises(InputError, match="1:1"):
        ratio_size("2:3", 1000)
    with pytest.raises(InputError):
        ratio_size("4:5", 3)


def test_get_marketplace_is_case_insensitive_and_lists_keys_when_unknown():
    assert get_marketplace("eBay").name == "eBay"
    assert get_marketplace(" ETSY ").key == "etsy"
    with pytest.raises(InputError) as caught:
        get_marketplace("amazon")
    assert all(key in str(caught.value) for key in MARKETPLACES)


def test_backgrounds_are_rgb_and_white_is_default():
    assert DEFAULT_BACKGROUND == "white" and BACKGROUNDS["white"] == (255, 255, 255)
    for rgb in BACKGROUNDS.values():
        assert len(rgb) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in rgb)
    assert parse_background("Light Gray") == "light grey"
    with pytest.raises(InputError) as caught:
        parse_background("purple")
    assert all(name in str(caught.value) for name in BACKGROUNDS)


def test_the_database_accepts_exactly_these_aspect_ratios():
    from storage.schema import ASPECT_RATIOS as STORED_RATIOS

    assert tuple(ASPECT_RATIOS) == STORED_RATIOS
