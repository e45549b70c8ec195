"""The shipped model cards load, validate and cover a diverse range of people; broken cards fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.model_cards import DATABASE_COLUMNS, ModelCardError, load_model_card, load_model_cards
from pipeline.poses import KEYPOINT_NAMES
from pipeline.settings import DEFAULT_MODEL_CARDS_DIR

CARDS = load_model_cards(DEFAULT_MODEL_CARDS_DIR)
PERSONAS = [card for card in CARDS if card.kind == "persona"]


def test_shipped_cards_keep_the_seeds_three():
    by_id = {card.id: card for card in CARDS}
    assert (by_id["mod_01"].name, by_id["mod_01"].gender, by_id["mod_01"].body_type) == ("Sienna", "Female", "Athletic")
    assert by_id["mod_01"].ethnicity == "Mediterranean" and by_id["mod_01"].style_tags == ["Streetwear", "Urban"]
    assert (by_id["mod_02"].name, by_id["mod_02"].gender, by_id["mod_02"].ethnicity) == ("Alex", "Non-binary", "East Asian")
    assert by_id["ghost_01"].kind == "ghost" and by_id["ghost_01"].backend == "ghost" and not by_id["ghost_01"].poses


def test_database_row_has_exactly_the_seed_columns():
    for card in CARDS:
        row = card.database_row()
        assert tuple(row) == DATABASE_COLUMNS == ("id", "name", "kind", "gender", "body_type", "ethnicity",
                                                  "style_tags", "backend")
        json.dumps(row)  # storable as it is


def test_every_persona_has_prompts_and_a_full_body_pose():
    assert len(PERSONAS) >= 8
    for card in PERSONAS:
        assert card.backend == "diffusion" and card.person_prompt and card.style_prompt and card.age
        assert any(pose.framing == "full" for pose in card.poses), card.id
        assert len(card.poses) >= 2, card.id
        for pose in card.poses:
            assert len(pose.keypoints) == len(KEYPOINT_NAMES)
            assert all(0 <= v <= 1 for point in pose.keypoints if point for v in point)


def test_cards_cover_genders_body_types_ages_and_ethnicities():
    genders = {card.gender for card in PERSONAS}
    body_types = {card.body_type for card in PERSONAS}
    assert len(genders) >= 2 and {"Female", "Male", "Non-binary"} <= genders
    assert {"Plus-size", "Petite"} <= body_types
    assert any(int(card.age[:-1]) >= 50 for card in PERSONAS)
    assert len({card.ethnicity for card in PERSONAS}) >= 4


def _front_pose(card_id: str):
    card = next(card for card in PERSONAS if card.id == card_id)
    return next(pose for pose in card.poses if pose.framing == "full")


def _width(pose, left: int, right: int) -> float:
    return pose.keypoints[right][0] - pose.keypoints[left][0]


def test_keypoints_follow_the_body_type():
    plus, petite, slim = _front_pose("mod_05"), _front_pose("mod_04"), _front_pose("mod_02")
    r_hip, l_hip, r_ankle = (KEYPOINT_NAMES.index(name) for name in ("r_hip", "l_hip", "r_ankle"))
    assert _width(plus, r_hip, l_hip) > _width(slim, r_hip, l_hip) * 1.3
    neck = KEYPOINT_NAMES.index("neck")
    leg = lambda pose: pose.keypoints[r_ankle][1] - pose.keypoints[r_hip][1]  # noqa: E731
    height = lambda pose: pose.keypoints[r_ankle][1] - pose.keypoints[neck][1]  # noqa: E731
    assert leg(petite) < leg(slim) and height(petite) < height(slim)


# ------------------------------------------------------------------ broken cards

PERSONA = {
    "id": "mod_99", "name": "Test", "kind": "persona", "backend": "diffusion", "gender": "Female",
    "body_type": "Slim", "ethnicity": "Nordic", "age": "30s", "style_tags": ["Casual"],
    "person_prompt": "a 30-year-old woman", "style_prompt": "studio photo",
    "poses": [{"name": "front", "framing": "full", "keypoints": [[0.5, 0.1 + i * 0.04] for i in range(18)]}],
}


def _write(folder: Path, card: dict | str, name: str = "mod_99.json") -> Path:
    path = folder / name
    path.write_text(card if isinstance(card, str) else json.dumps(card), encoding="utf-8")
    return path


def _with(**changes) -> dict:
    return {**PERSONA, **changes}


def _with_pose(**changes) -> dict:
    return _with(poses=[{**PERSONA["poses"][0], **changes}])


def test_a_valid_persona_loads(tmp_path):
    card = load_model_card(_write(tmp_path, PERSONA))
    assert card.poses[0].name == "front" and card.poses[0].keypoints[0] == (0.5, 0.1)


@pytest.mark.parametrize(("card", "message"), [
    ("{not json", "cannot read the card"),
    ("[]", "a card is a JSON object"),
    (_with(colour="red"), "field 'colour': unknown field"),
    (_with(name=""), "field 'name': missing or empty"),
    (_with(kind="robot"), "field 'kind': must be one of ghost, persona"),
    (_with(backend="ghost"), "field 'backend': a persona card runs on 'diffusion'"),
    (_with(person_prompt=""), "field 'person_prompt': a persona card needs it"),
    (_with(age="thirty"), "field 'age': must be an age bracket"),
    (_with(poses=[]), "field 'poses': a persona card needs it"),
    (_with(style_tags="Casual"), "field 'style_tags': must be a list"),
    (_with_pose(framing="half"), "poses[0].framing: must be one of full, upper, lower"),
    (_with_pose(keypoints=[[0.5, 0.5]] * 17), "poses[0].keypoints: needs 18 points in OpenPose COCO-18 order"),
    (_with_pose(keypoints=[[0.5, 0.5]] * 17 + [[0.5, 1.2]]), "poses[0].keypoints[17] (l_ear): values must lie within 0..1"),
    (_with_pose(keypoints=[[0.5, 0.5]] * 17 + [[0.5]]), "poses[0].keypoints[17] (l_ear): must be [x, y] or null"),
    (_with_pose(framing="upper"), "at least one \"full\" framing pose"),
    (_with_pose(keypoints=[[0.5, 0.5]] * 10 + [None, [0.5, 0.5], [0.5, 0.5], None] + [[0.5, 0.5]] * 4),
     "a 'full' pose must show r_ankle or l_ankle"),
    (_with(poses=[PERSONA["poses"][0]] * 2), "pose names must be unique; repeated: front"),
    ({"id": "mod_99", "name": "G", "kind": "ghost", "backend": "ghost", "poses": []}, "only persona cards"),
])
def test_broken_cards_name_the_file_and_the_problem(tmp_path, card, message):
    with pytest.raises(ModelCardError) as error:
        load_model_card(_write(tmp_path, card))
    assert str(error.value).startswith("mod_99.json: ")
    assert message in str(error.value)


def test_file_must_be_named_after_the_id(tmp_path):
    with pytest.raises(ModelCardError, match=r"other\.json: field 'id': the file must be named after .*mod_99\.json"):
        load_model_card(_write(tmp_path, PERSONA, "other.json"))


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ModelCardError, match="no model cards"):
        load_model_cards(tmp_path)
