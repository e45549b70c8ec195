"""Shared fixtures: real data directories, real image files, a real studio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("STUDIO_BACKUP_REPO", None)  # tests never restore from or push to a Hub dataset
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pipeline.settings import Settings  # noqa: E402
from tiny_models import tiny_clip_folder, tiny_diffusion, tiny_sam_folder  # noqa: E402,F401  (shared fixtures)
from tiny_edit_models import tiny_flux2_klein_folder, tiny_qwen_edit_folder  # noqa: E402,F401


def tshirt_polygon(width: int, height: int) -> list[tuple[float, float]]:
    """A T-shirt outline filling the middle of a width x height frame. Its body is under twice as long as it is
    wide, as a T-shirt's is: the category model reads a longer one as a dress."""
    points = [(0.38, 0.18), (0.62, 0.18), (0.80, 0.26), (0.88, 0.42), (0.75, 0.46), (0.70, 0.40), (0.70, 0.72),
              (0.30, 0.72), (0.30, 0.40), (0.25, 0.46), (0.12, 0.42), (0.20, 0.26)]
    return [(x * width, y * height) for x, y in points]


def garment_photo(size: tuple[int, int] = (600, 800), garment_rgb: tuple[int, int, int] = (31, 42, 68),
                  seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    """A navy T-shirt on a light wood-like floor with noise, and its true mask (bool)."""
    width, height = size
    rng = np.random.default_rng(seed)
    rows = np.arange(height)[:, None]
    planks = 200 + 18 * np.sin(rows / max(1, height / 40)) + rng.normal(0, 6, (height, width))
    floor = np.stack([planks, planks * 0.85, planks * 0.65], axis=-1).clip(0, 255).astype(np.uint8)
    truth = Image.new("L", size, 0)
    ImageDraw.Draw(truth).polygon(tshirt_polygon(width, height), fill=255)
    mask = np.asarray(truth) > 0
    cloth = np.array(garment_rgb, dtype=float) + rng.normal(0, 4, (height, width, 3))
    pixels = np.where(mask[..., None], cloth.clip(0, 255).astype(np.uint8), floor)
    return Image.fromarray(pixels), mask


@pytest.fixture
def offline_sam(monkeypatch: pytest.MonkeyPatch):
    """The Hub offline, no SAM model chosen by the environment, and no SAM segmenter kept from another test."""
    from pipeline import sam

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(sam.SAM_MODEL_ENV, raising=False)
    sam.forget_sam_segmenters()
    yield
    sam.forget_sam_segmenters()


@pytest.fixture
def photo_path(tmp_path: Path) -> Path:
    image, _ = garment_photo()
    path = tmp_path / "navy tee.jpg"
    image.save(path, quality=92)
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(tmp_path / "data")


@pytest.fixture
def studio(settings: Settings):
    from pipeline.studio import Studio

    studio = Studio.open(settings)
    yield studio
    studio.close()


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def tiny_diffusion_settings(base: Settings, tiny) -> Settings:
    """`base` with the tiny diffusion stack as its on-model checkpoints (local folders, no Hub)."""
    import dataclasses

    models = tiny.models
    return dataclasses.replace(
        base, diffusion_family=models.family, base_model=models.base_model, controlnet=models.controlnet,
        ip_adapter=models.ip_adapter, ip_adapter_subfolder=models.ip_adapter_subfolder,
        ip_adapter_weight_name=models.ip_adapter_weight_name, image_encoder=models.image_encoder,
        image_encoder_subfolder=models.image_encoder_subfolder, diffusion_device="cpu")


@pytest.fixture
def diffusion_studio(settings: Settings, tiny_diffusion):
    from pipeline.studio import Studio

    studio = Studio.open(tiny_diffusion_settings(settings, tiny_diffusion))
    yield studio
    studio.close()


@pytest.fixture
def as_if_on_a_space(monkeypatch):
    """Gradio's real OAuth routes, as a Space with `hf_oauth: true` has them (nothing here calls the Hub)."""
    from gradio import oauth

    from pipeline import settings as settings_module

    monkeypatch.setattr(oauth, "get_space", lambda: "resell/studio")
    monkeypatch.setattr(settings_module, "on_a_space", lambda: True)  # as Gradio's check above, for the studio's
    for name, value in {"OAUTH_CLIENT_ID": "client", "OAUTH_CLIENT_SECRET": "secret",
                        "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": "https://huggingface.co"}.items():
        monkeypatch.setattr(oauth, name, value)
        monkeypatch.setenv(name, value)
