"""On-model photos through the studio service with the tiny random diffusion stack (offline, CPU)."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from conftest import files_under
from pipeline.disclosure import TRAINED_ALGORITHMIC_MEDIA, read_digital_source_type
from pipeline.errors import BackendUnavailableError, InputError
from pipeline.on_model import OnModelOptions

TINY = dict(width=256, height=256, steps=2)


def generate(studio, garment_id, wait=True, **options):
    return studio.generate(garment_id, "mod_01", aspect_ratios=["1:1", "3:4"], marketplaces=["depop"], wait=wait,
                           options=OnModelOptions(**{**TINY, **options}))


def test_personas_are_available_with_local_weights(diffusion_studio):
    models = {m["id"]: m for m in diffusion_studio.virtual_models()}
    assert models["mod_01"]["available"] and models["mod_05"]["available"]
    assert "available" in diffusion_studio.backend_status()["generation"]


def test_an_on_model_job_end_to_end(diffusion_studio, photo_path):
    garment = diffusion_studio.upload_garment(photo_path)
    job = generate(diffusion_studio, garment["id"], batch_size=2, seed=1234)
    assert job["status"] == "completed", job["error_message"]
    assert job["backend"] == "diffusion" and job["batch_size"] == 2 and job["seed"] == 1234
    assert "navy" in job["prompt_used"] and job["prompt_used"] == job["parameters"]["prompt"]
    assert job["negative_prompt"] and job["parameters"]["seeds"] == [1234, 1235]
    assert job["model_ids"]["base_model"].endswith("base")
    assert len(job["outputs"]) == 2 * 3  # two images, three shapes each
    for output in job["outputs"]:
        data = diffusion_studio.file_path(output["image_url"]).read_bytes()
        assert read_digital_source_type(data) == TRAINED_ALGORITHMIC_MEDIA
        assert output["is_ai_generated"] == 1 and output["seed"] in (1234, 1235)
        assert output["fidelity_delta_e"] is not None and output["fidelity_flagged"] in (0, 1)
        with Image.open(diffusion_studio.file_path(output["image_url"])) as image:
            assert image.size == (output["width"], output["height"])
    depop = [o for o in job["outputs"] if o["marketplace"] == "depop"]
    assert {(o["width"], o["height"]) for o in depop} == {(1280, 1600)}


def test_the_same_seed_gives_the_same_photo_and_a_rerun_is_recorded(diffusion_studio, photo_path):
    garment = diffusion_studio.upload_garment(photo_path)
    first = generate(diffusion_studio, garment["id"], seed=7)
    again = diffusion_studio.generate(garment["id"], "mod_01", aspect_ratios=["1:1", "3:4"],
                                      marketplaces=["depop"], wait=True, rerun_of=first["id"],
                                      options=OnModelOptions(**TINY, seed=7))
    assert again["rerun_of"] == first["id"]
    for a, b in zip(first["outputs"], again["outputs"]):
        with Image.open(diffusion_studio.file_path(a["image_url"])) as one, \
                Image.open(diffusion_studio.file_path(b["image_url"])) as two:
            assert one.tobytes() == two.tobytes()


def test_ghost_outputs_carry_no_ai_mark(diffusion_studio, photo_path):
    garment = diffusion_studio.upload_garment(photo_path)
    job = diffusion_studio.generate(garment["id"], "ghost_01", aspect_ratios=["1:1"], wait=True)
    output = job["outputs"][0]
    assert output["is_ai_generated"] == 0
    assert read_digital_source_type(diffusion_studio.file_path(output["image_url"]).read_bytes()) is None


def test_bad_options_are_refused_before_anything_is_queued(diffusion_studio, photo_path):
    garment = diffusion_studio.upload_garment(photo_path)
    with pytest.raises(InputError, match="Batch size must be between 1 and 4"):
        generate(diffusion_studio, garment["id"], batch_size=0)
    with pytest.raises(InputError):
        generate(diffusion_studio, garment["id"], pose="cartwheel")
    assert diffusion_studio.list_generations(garment["id"]) == []


def test_cancelling_a_running_job_leaves_it_failed_and_keeps_no_files(diffusion_studio, photo_path, settings,
                                                                      monkeypatch):
    garment = diffusion_studio.upload_garment(photo_path)
    backend = diffusion_studio._diffusion_backend()
    first_step_done = threading.Event()
    real_generate = backend.generate

    def generate_slowly(request, progress=None, should_cancel=None):
        def report(fraction, message):
            first_step_done.set()
            progress(fraction, message)

        def cancelled_after_a_pause():  # each step takes a moment, so the cancel lands mid-run
            time.sleep(0.05)
            return should_cancel()

        return real_generate(request, report, cancelled_after_a_pause)

    monkeypatch.setattr(backend, "generate", generate_slowly)
    job = generate(diffusion_studio, garment["id"], wait=False, steps=20)
    assert first_step_done.wait(60)
    diffusion_studio.cancel_generation(job["id"])
    finished = diffusion_studio.wait_for_generation(job["id"], timeout=120)
    assert finished["status"] == "failed" and finished["error_message"] == "Cancelled."
    assert finished["outputs"] == [] and files_under(settings.files_dir / "outputs") == []


def test_missing_weights_make_personas_unavailable_with_the_reason(settings, photo_path, monkeypatch):
    import dataclasses

    from pipeline.studio import Studio

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    studio = Studio.open(dataclasses.replace(settings, base_model="no-such-org/no-such-model"))
    try:
        models = {m["id"]: m for m in studio.virtual_models()}
        assert not models["mod_01"]["available"]
        assert "no-such-org/no-such-model" in models["mod_01"]["unavailable_reason"]
        garment = studio.upload_garment(photo_path)
        with pytest.raises(BackendUnavailableError, match="HF_HUB_OFFLINE"):
            studio.generate(garment["id"], "mod_01")
    finally:
        studio.close()


def test_rerun_repeats_the_stored_parameters_or_changes_some(diffusion_studio, photo_path):
    garment = diffusion_studio.upload_garment(photo_path)
    first = generate(diffusion_studio, garment["id"], seed=11)
    same = diffusion_studio.rerun_generation(first["id"], wait=True)
    changed = diffusion_studio.rerun_generation(first["id"], wait=True, seed=12, prompt="a plain test prompt")
    assert same["parameters"]["seeds"] == [11] and same["prompt_used"] == first["prompt_used"]
    assert same["rerun_of"] == first["id"] and changed["rerun_of"] == first["id"]
    assert changed["parameters"]["seeds"] == [12] and changed["prompt_used"] == "a plain test prompt"
    with Image.open(diffusion_studio.file_path(first["outputs"][0]["image_url"])) as one, \
            Image.open(diffusion_studio.file_path(same["outputs"][0]["image_url"])) as two:
        assert one.tobytes() == two.tobytes()
    with pytest.raises(InputError, match="Unknown parameters"):
        diffusion_studio.rerun_generation(first["id"], colour="red")


def test_export_orders_real_cut_outs_before_generated_photos(diffusion_studio, photo_path):
    import zipfile

    garment = diffusion_studio.upload_garment(photo_path)
    generate(diffusion_studio, garment["id"])
    diffusion_studio.generate(garment["id"], "ghost_01", aspect_ratios=["1:1"], wait=True)
    with zipfile.ZipFile(diffusion_studio.export_garment(garment["id"])) as archive:
        names = archive.namelist()
    assert names[0].startswith("01-ghost_01") and all("mod_01" in name for name in names[1:])
