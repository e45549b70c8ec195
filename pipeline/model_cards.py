"""Virtual model cards: one JSON file per model in `model_cards/`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODEL_KINDS = ("ghost", "persona")
CARD_FIELDS = ("id", "name", "kind", "gender", "body_type", "ethnicity", "style_tags", "backend", "description")


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

    def database_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("description")
        return row


class ModelCardError(ValueError):
    pass


def load_model_card(path: Path) -> ModelCard:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelCardError(f"{path.name}: cannot read the card ({error})") from error
    unknown = set(data) - set(CARD_FIELDS)
    missing = {"id", "name", "kind", "backend"} - set(data)
    if unknown or missing:
        raise ModelCardError(f"{path.name}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
    if data["kind"] not in MODEL_KINDS:
        raise ModelCardError(f"{path.name}: kind must be one of {MODEL_KINDS}, not {data['kind']!r}")
    if data["id"] != path.stem:
        raise ModelCardError(f"{path.name}: the file must be named after the card's id ({data['id']}.json)")
    return ModelCard(**data)


def load_model_cards(folder: str | Path) -> list[ModelCard]:
    """Every card in `folder`, sorted by id."""
    paths = sorted(Path(folder).glob("*.json"))
    if not paths:
        raise ModelCardError(f"no model cards (*.json) in {folder}")
    return [load_model_card(path) for path in paths]
