"""Where things live and which models run. The one place for paths, model ids and their environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_CARDS_DIR = REPO_ROOT / "model_cards"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    model_cards_dir: Path = DEFAULT_MODEL_CARDS_DIR
    segmentation_backend: str = "auto"  # auto | classic | fused | sam
    sam_model: str | None = None  # Hub id or folder; None: STUDIO_SAM_MODEL or pipeline.sam.DEFAULT_SAM_MODEL
    category_backend: str = "auto"  # auto | clip | heuristic
    category_model: str | None = None  # None: STUDIO_CATEGORY_MODEL or the default fashion CLIP
    # On-model photos (pipeline.diffusion): a family's default checkpoints, each replaceable by a Hub id or folder.
    diffusion_family: str = "sdxl"  # one of pipeline.families.FAMILIES
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
    auth: str = "none"  # none | password | huggingface: see resolve_auth


    @classmethod
    def from_env(cls, data_dir: str | os.PathLike | None = None, *, segmentation_backend: str | None = None,
                 sam_model: str | None = None, category_backend: str | None = None,
                 category_model: str | None = None, auth: str | None = None,
                 **diffusion: str | bool | None) -> "Settings":
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
            auth=resolve_auth(auth),
            **_diffusion_settings(diffusion),
        )

    @property
    def database_path(self) -> Path:
        return self.data_dir / "studio.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"


AUTH_MODES = ("none", "password", "huggingface")
TRUE_WORDS = ("1", "true", "yes")


def resolve_auth(explicit: str | None = None) -> str:
    """How sellers sign in, the same for every entry point (the CLI, `python app.py`, `gradio app.py`, the
    module-level `demo`): `explicit` (the CLI's --auth / --accounts), else STUDIO_AUTH, else STUDIO_ACCOUNTS=1
    (password), else `huggingface` on a Space and `none` elsewhere. On a Space `none` is only ever what its owner
    asked for by name. Serving checks the result (`check_auth`); commands that do not serve ignore it."""
    env = os.environ.get
    if explicit or env("STUDIO_AUTH"):
        return (explicit or env("STUDIO_AUTH") or "").strip().lower()
    if (env("STUDIO_ACCOUNTS") or "").lower() in TRUE_WORDS:
        return "password"
    return "huggingface" if env("SPACE_ID") else "none"


def check_auth(mode: str) -> None:
    """Refuses a sign-in mode that would not keep sellers apart here: an unknown one, and `huggingface` off a
    Space, where Gradio signs every visitor in as the owner of the machine's HF token."""
    if mode not in AUTH_MODES:
        raise SettingsError(f"Unknown sign-in mode {mode!r} (STUDIO_AUTH or --auth); choose one of "
                            f"{', '.join(AUTH_MODES)}.")
    if mode == "huggingface" and not on_a_space():
        raise SettingsError(
            "Sign in with Hugging Face works only on a Hugging Face Space: elsewhere Gradio signs every visitor in "
            "as the owner of this machine's HF token, so all of them would share one studio. Use --auth password "
            "(STUDIO_AUTH=password) here, with accounts made by `resell-studio users add`.")
    if mode == "huggingface" and not os.environ.get("OAUTH_CLIENT_ID"):
        raise SettingsError(
            "This Space has no Hugging Face sign-in: add `hf_oauth: true` to the front matter of its README.md, or "
            "set STUDIO_AUTH=password (accounts with email and password), or STUDIO_AUTH=none to let every visitor "
            "share one studio.")


def on_a_space() -> bool:
    """Running on a Hugging Face Space, as Gradio decides it (which also picks its real or its mock OAuth)."""
    return os.environ.get("SYSTEM") == "spaces" and bool(os.environ.get("SPACE_ID"))


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
                value = (value or "").lower() in TRUE_WORDS
        if value is not None:
            values[name] = value
    return values
