"""Virtual model cards: one JSON file per model in `model_cards/`, named after the card's id.

A persona card describes a person for the diffusion backend: who they are (`person_prompt`, `age`), the photo style
(`style_prompt`), extra negatives, and one or more poses as OpenPose COCO-18 keypoints (see `pipeline.poses`).
A ghost card is the exact-pixel cut-out and has no prompts or poses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.poses import FRAMINGS, KEYPOINT_NAMES, Pose

MODEL_KINDS = ("ghost", "persona")
# The backends each kind of card may run on: a ghost is the exact cut-out ("ghost"), or the 3D ghost made by an
# editing family ("diffusion"); a persona always runs on diffusion.
BACKENDS = {"ghost": ("ghost", "diffusion"), "persona": ("diffusion",)}
DATABASE_COLUMNS = ("id", "name", "kind", "gender", "body_type", "ethnicity", "style_tags", "backend")
_REQUIRED = ("id", "name", "kind", "backend")
_TEXT = ("name", "gender", "body_type", "ethnicity", "description", "age", "person_prompt", "style_prompt",
         "negative_prompt")
_PERSONA_ONLY = ("age", "person_prompt", "style_prompt", "negative_prompt", "poses")
_PERSONA_REQUIRED = ("gender", "body_type", "ethnicity", "age", "person_prompt", "style_prompt", "poses")
CARD_FIELDS = (*DATABASE_COLUMNS, "description", *_PERSONA_ONLY)
POSE_FIELDS = ("name", "framing", "keypoints", "prompt")
_AGE = re.compile(r"^[1-9]0s$")  # an age bracket: "20s", "60s"
_ID = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class ModelCard:
    id: str
    name: str
    kind: str
    backend: str
    gender: str | None = None
    body_type: str | None = None
    ethnicity: str | None = None
    style_tags: list[str] = field(default_factory=list)
    description: str = ""
    age: str | None = None
    person_prompt: str = ""
    style_prompt: str = ""
    negative_prompt: str = ""
    poses: tuple[Pose, ...] = ()

    def database_row(self) -> dict[str, Any]:
        """The `virtual_models` row (the seed's columns)."""
        return {column: getattr(self, column) for column in DATABASE_COLUMNS}

    @property
    def is_volume_ghost(self) -> bool:
        """The 3D ghost: the flat cut-out given a worn shape by an editing family (no person, no pose)."""
        return self.kind == "ghost" and self.backend == "diffusion"

    def pose(self, name: str) -> Pose:
        for pose in self.poses:
            if pose.name == name:
                return pose
        raise KeyError(f"{self.id} has no pose {name!r}")


class ModelCardError(ValueError):
    pass


def load_model_card(path: Path) -> ModelCard:
    """Reads and validates one card; any problem raises ModelCardError naming the file and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelCardError(f"{path.name}: cannot read the card ({error})") from error
    return _parse_card(data, _Context(path.name))


def load_model_cards(folder: str | Path) -> list[ModelCard]:
    """Every card in `folder`, sorted by id."""
    paths = sorted(Path(folder).glob("*.json"))
    if not paths:
        raise ModelCardError(f"no model cards (*.json) in {folder}")
    return [load_model_card(path) for path in paths]


@dataclass(frozen=True)
class _Context:
    file_name: str

    def error(self, location: str, problem: str) -> ModelCardError:
        return ModelCardError(f"{self.file_name}: {location}: {problem}")


def _parse_card(data: Any, context: _Context) -> ModelCard:
    if not isinstance(data, dict):
        raise ModelCardError(f"{context.file_name}: a card is a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - set(CARD_FIELDS))
    if unknown:
        raise context.error(f"field {unknown[0]!r}", f"unknown field; known fields: {', '.join(CARD_FIELDS)}")
    for name in _REQUIRED:
        if not data.get(name):
            raise context.error(f"field {name!r}", "missing or empty")
    _check_identity(data, context)
    for name in _TEXT:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise context.error(f"field {name!r}", f"must be text, not {json.dumps(data[name])}")
    _check_style_tags(data.get("style_tags", []), context)
    if data["kind"] == "persona":
        poses = _check_persona(data, context)
    else:
        present = [name for name in _PERSONA_ONLY if name in data]
        if present:
            raise context.error(f"field {present[0]!r}", "only persona cards have prompts and poses")
        poses = ()
    return ModelCard(**{**data, "poses": poses})


def _check_identity(data: dict, context: _Context) -> None:
    if not isinstance(data["id"], str) or not _ID.match(data["id"]):
        raise context.error("field 'id'", f"must be lowercase letters, digits and _, not {json.dumps(data['id'])}")
    if data["id"] != Path(context.file_name).stem:
        raise context.error("field 'id'", f"the file must be named after the card's id ({data['id']}.json)")
    kind = data["kind"]
    if kind not in MODEL_KINDS:
        raise context.error("field 'kind'", f"must be one of {', '.join(MODEL_KINDS)}, not {json.dumps(kind)}")
    if data["backend"] not in BACKENDS[kind]:
        allowed = " or ".join(repr(backend) for backend in BACKENDS[kind])
        raise context.error("field 'backend'", f"a {kind} card runs on {allowed}, not {json.dumps(data['backend'])}")


def _check_style_tags(tags: Any, context: _Context) -> None:
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag.strip() for tag in tags):
        raise context.error("field 'style_tags'", f"must be a list of non-empty texts, not {json.dumps(tags)}")


def _check_persona(data: dict, context: _Context) -> tuple[Pose, ...]:
    for name in _PERSONA_REQUIRED:
        if not data.get(name):
            raise context.error(f"field {name!r}", "a persona card needs it (missing or empty)")
    if not _AGE.match(data["age"]):
        raise context.error("field 'age'", f"must be an age bracket such as \"20s\" or \"60s\", not {json.dumps(data['age'])}")
    raw_poses = data["poses"]
    if not isinstance(raw_poses, list):
        raise context.error("field 'poses'", "must be a list of poses")
    poses = tuple(_parse_pose(raw, context, f"poses[{index}]") for index, raw in enumerate(raw_poses))
    names = [pose.name for pose in poses]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise context.error("field 'poses'", f"pose names must be unique; repeated: {', '.join(duplicates)}")
    if not any(pose.framing == "full" for pose in poses):
        raise context.error("field 'poses'", "a persona needs at least one \"full\" framing pose "
                                             "(bottoms and dresses are shown on the whole body)")
    return poses


def _parse_pose(raw: Any, context: _Context, location: str) -> Pose:
    if not isinstance(raw, dict):
        raise context.error(location, "a pose is an object with name, framing and keypoints")
    unknown = sorted(set(raw) - set(POSE_FIELDS))
    if unknown:
        raise context.error(f"{location}.{unknown[0]}", f"unknown field; known fields: {', '.join(POSE_FIELDS)}")
    name, framing = raw.get("name"), raw.get("framing")
    if not isinstance(name, str) or not name.strip():
        raise context.error(f"{location}.name", "missing or empty")
    if framing not in FRAMINGS:
        raise context.error(f"{location}.framing", f"must be one of {', '.join(FRAMINGS)}, not {json.dumps(framing)}")
    prompt = raw.get("prompt", "")
    if not isinstance(prompt, str):
        raise context.error(f"{location}.prompt", "must be text")
    keypoints = _parse_keypoints(raw.get("keypoints"), context, f"{location}.keypoints")
    pose = Pose(name=name, framing=framing, keypoints=keypoints, prompt=prompt)
    _check_framing(pose, context, location)
    return pose


def _parse_keypoints(raw: Any, context: _Context, location: str) -> tuple[tuple[float, float] | None, ...]:
    if not isinstance(raw, list) or len(raw) != len(KEYPOINT_NAMES):
        count = len(raw) if isinstance(raw, list) else "no list"
        raise context.error(location, f"needs {len(KEYPOINT_NAMES)} points in OpenPose COCO-18 order "
                                      f"({', '.join(KEYPOINT_NAMES)}), got {count}")
    points = []
    for index, point in enumerate(raw):
        where = f"{location}[{index}] ({KEYPOINT_NAMES[index]})"
        if point is None:
            points.append(None)
            continue
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)):
            raise context.error(where, f"must be [x, y] or null, not {json.dumps(point)}")
        if not all(0.0 <= v <= 1.0 for v in point):
            raise context.error(where, f"values must lie within 0..1 (normalised to the image), not {point}")
        points.append((float(point[0]), float(point[1])))
    return tuple(points)


# Points a framing must show: a full-body pose the neck and the feet, so lower-body items and dresses fit on it.
_FRAMING_NEEDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "full": (("neck",), ("r_ankle", "l_ankle")),
    "upper": (("neck",), ("r_shoulder", "l_shoulder")),
    "lower": (("r_hip", "l_hip"), ("r_ankle", "l_ankle")),
}


def _check_framing(pose: Pose, context: _Context, location: str) -> None:
    for alternatives in _FRAMING_NEEDS[pose.framing]:
        if all(pose.keypoints[KEYPOINT_NAMES.index(name)] is None for name in alternatives):
            raise context.error(f"{location}.keypoints", f"a {pose.framing!r} pose must show "
                                                         f"{' or '.join(alternatives)}, which is null")
