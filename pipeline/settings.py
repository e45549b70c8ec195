"""Where things live. The one place for paths and their environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_CARDS_DIR = REPO_ROOT / "model_cards"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    model_cards_dir: Path = DEFAULT_MODEL_CARDS_DIR

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None) -> "Settings":
        """`data_dir` wins over `STUDIO_DATA_DIR`, which wins over `./data`."""
        chosen = data_dir or os.environ.get("STUDIO_DATA_DIR") or DEFAULT_DATA_DIR
        cards = os.environ.get("STUDIO_MODEL_CARDS_DIR") or DEFAULT_MODEL_CARDS_DIR
        return cls(data_dir=Path(chosen).resolve(), model_cards_dir=Path(cards).resolve())

    @property
    def database_path(self) -> Path:
        return self.data_dir / "studio.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"
