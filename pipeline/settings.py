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
    # On-model photos (pipeline.diffusion): a family's default checkpoints, each replaceable by a Hub id or folder.
    diffusion_family: str = "sdxl"  # sdxl | sd15
    base_model: str | None = None
    controlnet: str | None = None
    ip_adapter: str | None = None
    ip_adapter_subfolder: str | None = None
    ip_adapter_weight_name: str | None = None
    image_encoder: str | None = None
    image_encoder_subfolder: str | None = None
    lora: str | None = None
    lora_weight_name: str | None = None
    diffusion_device: str | None = None  # None: CUDA, else Apple MPS, else CPU
    cpu_offload: bool = False
    vae_tiling: bool = False

    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None, *, segmentation_backend: str | None = None,
                 sam_model: str | None = None, category_backend: str | None = None,
                 category_model: str | None = None, **diffusion: str | bool | None) -> "Settings":
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
            **_diffusion_settings(diffusion),
        )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "studio.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"


DIFFUSION_ENV = {
    "diffusion_family": "STUDIO_DIFFUSION_FAMILY", "base_model": "STUDIO_BASE_MODEL",
    "controlnet": "STUDIO_CONTROLNET", "ip_adapter": "STUDIO_IP_ADAPTER",
    "ip_adapter_subfolder": "STUDIO_IP_ADAPTER_SUBFOLDER", "ip_adapter_weight_name": "STUDIO_IP_ADAPTER_WEIGHT",
    "image_encoder": "STUDIO_IMAGE_ENCODER", "image_encoder_subfolder": "STUDIO_IMAGE_ENCODER_SUBFOLDER",
    "lora": "STUDIO_LORA", "lora_weight_name": "STUDIO_LORA_WEIGHT", "diffusion_device": "STUDIO_DIFFUSION_DEVICE",
    "cpu_offload": "STUDIO_CPU_OFFLOAD", "vae_tiling": "STUDIO_VAE_TILING",
}
FLAGS = {"cpu_offload", "vae_tiling"}


def _diffusion_settings(explicit: dict) -> dict:
    unknown = set(explicit) - set(DIFFUSION_ENV)
    if unknown:
        raise TypeError(f"unknown settings: {sorted(unknown)}")
    values = {}
    for name, variable in DIFFUSION_ENV.items():
        value = explicit.get(name)  # "" is a real value: a flat folder has no IP-Adapter subfolder
        if value is None:
            value = os.environ.get(variable) or None
            if name in FLAGS:
                value = (value or "").lower() in ("1", "true", "yes")
        if value is not None:
            values[name] = value
    return values
