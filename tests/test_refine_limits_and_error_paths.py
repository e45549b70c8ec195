"""Issue 10: refinement clicks are capped, and model errors name a local folder without the server's path."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest

from conftest import tiny_diffusion_settings
from pipeline.diffusion import forget_diffusion_backends
from pipeline.errors import InputError
from pipeline.on_model import OnModelOptions
from pipeline import segmentation

GARMENT_BODY = (300, 500)  # inside the T-shirt of the 600 x 800 test photo


@pytest.fixture
def garment(studio, photo_path):
    return studio.upload_garment(photo_path, backend="classic")


@pytest.fixture(autouse=True)
def no_remembered_diffusion_failures():
    forget_diffusion_backends()
    yield
    forget_diffusion_backends()


def clicks(count: int) -> list[list[int]]:
    x, y = GARMENT_BODY
    return [[x + index % 40, y + index % 50, 1] for index in range(count)]


class Tripwire(list):
    """Clicks that fail the test if anything looks at one of them: too many must be refused by their count alone
    (the old code parsed 200,000 of them first, 8.5 s of CPU)."""

    def __iter__(self):
        raise AssertionError("per-click work began before the count was checked")

    def __getitem__(self, index):
        raise AssertionError("per-click work began before the count was checked")


@pytest.mark.parametrize("action", ["refine_garment", "preview_refinement"])
def test_too_many_clicks_are_refused_fast_and_nothing_is_stored(studio, garment, action):
    before = studio.database.get_garment(garment["id"])
    with pytest.raises(InputError) as refused:
        getattr(studio, action)(garment["id"], Tripwire(clicks(200_000)), backend="classic")
    assert str(refused.value) == (f"At most {segmentation.MAX_CLICKS} clicks refine a cut-out; you sent 200000. "
                                  "Undo some clicks, or Reset and start again.")
    after = studio.database.get_garment(garment["id"])
    assert after["mask_points"] == before["mask_points"]
    assert after["mask_image_url"] == before["mask_image_url"]


def test_exactly_max_clicks_is_accepted(studio, garment):
    refined = studio.refine_garment(garment["id"], clicks(segmentation.MAX_CLICKS), backend="classic")
    assert refined["status"] == "segmented"
    assert len(studio.database.get_garment(garment["id"])["mask_points"]) == segmentation.MAX_CLICKS


def test_points_that_are_not_a_list_are_refused_with_a_short_message(studio, garment):
    with pytest.raises(InputError, match="Points are a list of") as refused:
        studio.refine_garment(garment["id"], "1,2,1;" * 200_000, backend="classic")
    assert len(str(refused.value)) < 200


def assert_no_server_path(text: str, *folders: Path) -> None:
    for folder in folders:
        assert str(folder) not in text and str(folder.resolve()) not in text, text
    assert "secret" not in text, text


def test_a_missing_local_base_model_is_named_without_its_path(settings, tiny_diffusion, tmp_path, caplog):
    from pipeline.studio import Studio

    missing = tmp_path / "secret" / "sdxl"
    configured = dataclasses.replace(tiny_diffusion_settings(settings, tiny_diffusion), base_model=str(missing))
    studio = Studio.open(configured)
    try:
        with caplog.at_level(logging.WARNING):
            reasons = [model["unavailable_reason"] for model in studio.virtual_models()
                       if not model["available"] and model["kind"] == "persona"]
            status = studio.backend_status()["generation"]
    finally:
        studio.close()
    assert reasons and set(reasons) == {"The base model folder 'sdxl' does not exist."}
    assert "unavailable: The base model folder 'sdxl' does not exist." in status
    assert_no_server_path(status, tmp_path)
    assert str(missing) in caplog.text


def test_a_job_failing_to_load_a_broken_local_folder_names_it_without_its_path(
        settings, tiny_diffusion, tmp_path, photo_path, caplog):
    from pipeline.studio import Studio

    broken = tmp_path / "secret" / "sd15"
    shutil.copytree(tiny_diffusion.models.base_model, broken)
    for weights in (broken / "unet").glob("diffusion_pytorch_model.*"):
        weights.write_bytes(b"not a safetensors file")
    configured = dataclasses.replace(tiny_diffusion_settings(settings, tiny_diffusion), base_model=str(broken))
    studio = Studio.open(configured)
    try:
        assert all(model["available"] for model in studio.virtual_models() if model["kind"] == "persona")  # looks fine
        garment = studio.upload_garment(photo_path, backend="classic")
        with caplog.at_level(logging.WARNING):
            job = studio.generate(garment["id"], "mod_01", aspect_ratios=["1:1"], wait=True,
                                  options=OnModelOptions(width=256, height=256, steps=2))
        stored = studio.get_generation(job["id"])
    finally:
        studio.close()
    assert stored["status"] == "failed"
    message = stored["error_message"]
    assert "'sd15'" in message and "base model" in message
    assert_no_server_path(message, tmp_path, tiny_diffusion.folder)
    assert str(broken) in caplog.text
