"""The multi-reference editing families (FLUX.2 [klein], Qwen-Image-Edit) behind the same job system as SDXL:
tiny random pipelines built from configs, saved to a folder and loaded by the studio's own loader offline."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app import create_demo, launch_options
from conftest import garment_photo
from pipeline.diffusion import forget_diffusion_backends, models_from
from pipeline.edit_diffusion import EditBackend
from pipeline.errors import InputError
from pipeline.on_model import on_model_options
from pipeline.settings import Settings
from pipeline.studio import Studio
from test_cli import run
from tiny_edit_models import qwen_vae_reference_area

PERSONA = "mod_03"
SMALL = {"steps": 2, "width": 256, "height": 256}


@pytest.fixture
def tiny_edit_folders(tiny_flux2_klein_folder: Path, tiny_qwen_edit_folder: Path) -> dict[str, Path]:
    return {"flux2-klein": tiny_flux2_klein_folder, "qwen-edit": tiny_qwen_edit_folder}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forget_diffusion_backends()
    with qwen_vae_reference_area():  # Qwen resizes every reference to 1 MP for its VAE: seconds each on a CPU
        yield
    forget_diffusion_backends()


def edit_studio(settings: Settings, family: str, folders: dict[str, Path]) -> Studio:
    return Studio.open(dataclasses.replace(settings, diffusion_family=family, base_model=str(folders[family]),
                                           diffusion_device="cpu"))


def person_photo(path: Path) -> Path:
    image = Image.new("RGB", (300, 600), (200, 200, 205))
    image.paste((180, 140, 120), (120, 40, 180, 110))   # a head
    image.paste((40, 40, 45), (95, 110, 205, 560))      # a dark outfit
    image.save(path)
    return path


@pytest.mark.parametrize("family", ["flux2-klein", "qwen-edit"])
def test_a_whole_on_model_job_with_an_editing_family(settings, tiny_edit_folders, photo_path, tmp_path, family):
    studio = edit_studio(settings, family, tiny_edit_folders)
    try:
        assert all(model["available"] for model in studio.virtual_models())
        garment = studio.upload_garment(photo_path)
        job = studio.generate(garment["id"], PERSONA, ["4:5"], [], wait=True,
                              options=on_model_options(batch_size=2, seed=7, **SMALL))
        assert job["status"] == "completed", job["error_message"]
        assert job["backend"] == "diffusion" and job["model_ids"]["family"] == family
        assert job["parameters"]["seeds"] == [7, 8] and len(job["outputs"]) == 2
        assert all(output["is_ai_generated"] == 1 for output in job["outputs"])
        assert job["prompt_used"].startswith("The person in image 1 wearing the exact garment from image 2")
        assert ("skeleton in image 3" in job["prompt_used"]) == (family == "qwen-edit")  # Qwen reads the pose

        # the persona's reference photo was made once, from the card's own seed, and is reused for the next garment
        reference = studio.persona_photo(PERSONA)
        assert reference["source"] == "generated" and reference["family"] == family
        with Image.open(studio.file_path(reference["image_url"])) as picture:
            assert picture.size == (896, 1152)  # the family's full-body size
        other = garment_photo(garment_rgb=(170, 30, 40), seed=3)[0]
        other.save(tmp_path / "red tee.jpg")
        second = studio.upload_garment(tmp_path / "red tee.jpg")
        assert studio.generate(second["id"], PERSONA, ["1:1"], [], wait=True,
                               options=on_model_options(seed=1, **SMALL))["status"] == "completed"
        assert studio.persona_photo(PERSONA) == reference

        again = studio.rerun_generation(job["id"], wait=True)
        assert again["status"] == "completed" and again["parameters"]["seeds"] == [7, 8]
        first_pixels = Image.open(studio.file_path(job["outputs"][0]["image_url"])).tobytes()
        assert Image.open(studio.file_path(again["outputs"][0]["image_url"])).tobytes() == first_pixels
    finally:
        studio.close()


def test_the_sellers_own_model_photo_is_used_and_private(settings, tiny_edit_folders, photo_path, tmp_path):
    studio = edit_studio(settings, "flux2-klein", tiny_edit_folders)
    try:
        own = studio.set_persona_photo(PERSONA, person_photo(tmp_path / "me.png"))
        assert own["source"] == "user" and "owner_id" not in own
        garment = studio.upload_garment(photo_path)
        job = studio.generate(garment["id"], PERSONA, ["1:1"], [], wait=True, options=on_model_options(**SMALL))
        assert job["status"] == "completed", job["error_message"]
        assert studio.persona_photo(PERSONA) == own  # not replaced by a made one

        remade = studio.make_persona_photo(PERSONA, seed=5)
        assert remade["source"] == "generated" and remade["seed"] == 5
        assert not studio.files.exists(own["image_url"])  # the replaced photo's file is gone
        studio.forget_persona_photo(PERSONA)
        with pytest.raises(InputError, match="first on-model photo makes one"):
            studio.persona_photo(PERSONA)
        with pytest.raises(InputError, match="not a persona"):
            studio.persona_photo("ghost_01")
        (tmp_path / "notes.txt").write_text("not a photo")
        with pytest.raises(InputError, match="JPEG, PNG"):
            studio.set_persona_photo(PERSONA, tmp_path / "notes.txt")
    finally:
        studio.close()


def test_persona_photos_belong_to_the_editing_families(studio):
    with pytest.raises(InputError, match="flux2-klein and qwen-edit"):
        studio.persona_photo(PERSONA)


def test_the_references_go_in_as_the_instruction_names_them(tiny_edit_folders):
    from pipeline.on_model import diffusion_request, plan_on_model
    from pipeline.model_cards import load_model_cards

    card = next(card for card in load_model_cards(Path(__file__).parents[1] / "model_cards") if card.id == PERSONA)
    image, mask = garment_photo(size=(120, 160))
    person = Image.new("RGB", (64, 128), "grey")
    for family, count in (("flux2-klein", 2), ("qwen-edit", 3)):
        backend = EditBackend(models_from(family, base_model=str(tiny_edit_folders[family])), device="cpu")
        plan = plan_on_model(card, "top", "navy", on_model_options(seed=1, **SMALL), family)
        references = backend.references(diffusion_request(plan, image, mask.astype("uint8") * 255, person))
        assert len(references) == count and references[0] is not None and references[0].size == (64, 128)


@pytest.mark.parametrize("family", ["flux2-klein", "qwen-edit"])
def test_an_editing_family_through_the_api(settings, tiny_edit_folders, photo_path, tmp_path, family):
    studio = edit_studio(settings, family, tiny_edit_folders)
    demo = create_demo(studio)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(studio))
    try:
        client = Client(url, verbose=False)
        garment = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
        job = client.predict(garment_id=garment["id"], model_id=PERSONA, aspect_ratios=["4:5"], wait=True, seed=3,
                             api_name="/generate", **SMALL)
        assert job["status"] == "completed", job["error_message"]
        reference = client.predict(PERSONA, api_name="/persona_photo")
        with Image.open(reference) as picture:
            assert picture.format == "PNG"
        own = client.predict(PERSONA, handle_file(str(person_photo(tmp_path / "me.png"))),
                             api_name="/set_persona_photo")
        assert own["source"] == "user"
        again = client.predict(garment_id=garment["id"], model_id=PERSONA, wait=True, seed=4, api_name="/generate",
                               **SMALL)
        assert again["status"] == "completed", again["error_message"]
    finally:
        demo.close()
        studio.close()


@pytest.mark.parametrize("family", ["flux2-klein", "qwen-edit"])
def test_an_editing_family_from_the_command_line(tmp_path, photo_path, tiny_edit_folders, family):
    result = run("generate", str(photo_path), "--model", PERSONA, "--family", family,
                 "--base-model", str(tiny_edit_folders[family]), "--device", "cpu", "--steps", "2",
                 "--width", "256", "--height", "256", "--seed", "3", "--ratios", "1:1", "--out", "photos",
                 "--data-dir", "d", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "diffusion" and "image 2" in report["prompt"]
    (output,) = report["outputs"]
    assert output["seed"] == 3 and output["ai_generated"] and (tmp_path / output["file"]).is_file()


def test_sizes_and_steps_the_pipelines_cannot_make_are_refused(tiny_edit_folders):
    from pipeline.on_model import diffusion_request, plan_on_model
    from pipeline.model_cards import load_model_cards

    card = next(card for card in load_model_cards(Path(__file__).parents[1] / "model_cards") if card.id == PERSONA)
    image, mask = garment_photo(size=(120, 160))
    backend = EditBackend(models_from("qwen-edit", base_model=str(tiny_edit_folders["qwen-edit"])), device="cpu")
    for options, message in ((dict(steps=2, width=264, height=256), "multiples of 16 pixels (got 264 x 256)"),
                             (dict(steps=1, width=256, height=256), "at least 2 steps")):
        plan = plan_on_model(card, "top", "navy", on_model_options(seed=1, **options), "qwen-edit")
        with pytest.raises(InputError, match=re.escape(message)):
            backend.generate(diffusion_request(plan, image, mask.astype("uint8") * 255))


@pytest.mark.parametrize("family", ["flux2-klein", "qwen-edit"])
def test_the_3d_ghost_through_an_editing_family(settings, tiny_edit_folders, photo_path, family):
    studio = edit_studio(settings, family, tiny_edit_folders)
    try:
        assert {m["id"]: m["available"] for m in studio.virtual_models()}["ghost_3d"]
        garment = studio.upload_garment(photo_path)
        job = studio.generate(garment["id"], "ghost_3d", ["1:1"], [], wait=True,
                              options=on_model_options(seed=2, **SMALL))
        assert job["status"] == "completed", job["error_message"]
        assert job["prompt_used"].startswith("Turn the flat garment in image 1 (a navy top)")
        assert job["parameters"]["pose"] == "" and job["outputs"][0]["is_ai_generated"] == 1
        with pytest.raises(InputError, match="first on-model photo makes one"):  # nobody's photo was made
            studio.persona_photo("mod_01")
        plan = studio.get_generation(job["id"])["parameters"]
        assert (plan["width"], plan["height"]) == (256, 256)
    finally:
        studio.close()


def test_the_3d_ghost_needs_an_editing_family(studio, photo_path):
    ghost = {m["id"]: m for m in studio.virtual_models()}["ghost_3d"]
    assert not ghost["available"] and "needs an image-editing family" in ghost["unavailable_reason"]
    garment = studio.upload_garment(photo_path)
    with pytest.raises(Exception, match="3D ghost needs an image-editing family"):
        studio.generate(garment["id"], "ghost_3d", ["1:1"], [])
