"""Where things live and which models run. The one place for paths, model ids and their environment variables."""

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
    segmentation_backend: str = "auto"  # auto | classic | sam
    sam_model: str | None = None  # Hub id or folder; None: STUDIO_SAM_MODEL or pipeline.sam.DEFAULT_SAM_MODEL
    category_backend: str = "auto"  # auto | clip | heuristic
    category_model: str | None = None  # None: STUDIO_CATEGORY_MODEL or the default fashion CLIP

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None, *, segmentation_backend: str | None = None,
                 sam_model: str | None = None, category_backend: str | None = None,
                 category_model: str | None = None) -> "Settings":
        """Explicit arguments win over environment variables (STUDIO_*), which win over the defaults."""
        env = os.environ.get
        chosen = data_dir or env("STUDIO_DATA_DIR") or DEFAULT_DATA_DIR
        cards = env("STUDIO_MODEL_CARDS_DIR") or DEFAULT_MODEL_CARDS_DIR
        return cls(
            data_dir=Path(chosen).resolve(),
            model_cards_dir=Path(cards).resolve(),
            segmentation_backend=segmentation_backend or env("STUDIO_SEGMENTATION_BACKEND") or "auto",
            sam_model=sam_model or env("STUDIO_SAM_MODEL") or None,
            category_backend=category_backend or env("STUDIO_CATEGORY_BACKEND") or "auto",
            category_model=category_model or env("STUDIO_CATEGORY_MODEL") or None,
        )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "studio.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"
