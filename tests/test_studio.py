"""The studio service through a real data directory: database file, image files, jobs."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.errors import BackendUnavailableError, InputError, NotFoundError
from pipeline.presets import MARKETPLACES
from pipeline.settings import Settings
from pipeline.studio import Studio
from storage.database import INTERRUPTED_JOB_MESSAGE

from conftest import files_under, garment_photo


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_upload_stores_the_original_and_a_cut_out(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    assert garment["status"] == "segmented" and garment["error_message"] is None
    assert garment["original_filename"] == "navy tee.jpg"
    assert garment["segmentation_backend"] == "fused"  # the default on a CPU
    stored = studio.file_path(garment["original_image_url"])
    assert stored.read_bytes() == photo_path.read_bytes()
    assert "navy" not in stored.name  # named by id, never after the upload
    mask = np.asarray(Image.open(studio.file_path(garment["mask_image_url"])).convert("L"))
    assert mask.shape == (800, 600) and set(np.unique(mask)) <= {0, 255}
    _, truth = garment_photo()
    assert iou(mask > 0, truth) > 0.9
    assert garment["detected_color"] == "navy"
    assert garment["category"] == "top"
    assert not garment["original_image_url"].startswith("/")


def test_a_refused_upload_stores_nothing(studio, tmp_path, settings):
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_text("hello")
    before = files_under(settings.files_dir)
    with pytest.raises(InputError):
        studio.upload_garment(bad)
    assert studio.list_garments() == []
    assert files_under(settings.files_dir) == before


def test_a_photo_without_a_garment_is_recorded_as_failed(studio, tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (640, 480), (200, 200, 200)).save(blank)
    garment = studio.upload_garment(blank)
    assert garment["status"] == "failed"
    assert "garment" in garment["error_message"].lower()
    assert garment["mask_image_url"] is None
    with pytest.raises(InputError, match="no usable cut-out"):
        studio.generate(garment["id"])


def test_seller_corrections_are_stored(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    updated = studio.update_garment(garment["id"], category="outerwear", color_name="Midnight  Navy")
    assert (updated["category"], updated["detected_color"]) == ("outerwear", "midnight navy")
    updated = studio.update_garment(garment["id"], color_hex="#800020")
    assert updated["detected_color_hex"] == "#800020" and updated["detected_color"] == "burgundy"
    with pytest.raises(InputError, match="top"):
        studio.update_garment(garment["id"], category="shoes")
    with pytest.raises(InputError):
        studio.update_garment(garment["id"], color_hex="navy")
    with pytest.raises(InputError, match="Nothing to change"):
        studio.update_garment(garment["id"])
    assert studio.segment_garment(garment["id"])["category"] == "outerwear"  # a correction survives re-cutting


def test_ghost_generation_makes_every_requested_shape(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    job = studio.generate(garment["id"], "ghost_01", aspect_ratios=["1:1", "4:5", "3:4"],
                          marketplaces=["ebay", "depop", "vinted"], wait=True)
    assert job["status"] == "completed", job["error_message"]
    assert job["started_at"] and job["completed_at"] and job["backend"] == "ghost"
    assert job["parameters"]["background"] == "white" and job["parameters"]["file_format"] == "jpeg"
    outputs = {(o["marketplace"] or o["aspect_ratio"]): o for o in job["outputs"]}
    assert set(outputs) == {"1:1", "4:5", "3:4", "ebay", "depop", "vinted"}
    for key in ("ebay", "depop", "vinted"):
        preset = MARKETPLACES[key]
        with Image.open(studio.file_path(outputs[key]["image_url"])) as image:
            assert image.size == (preset.width, preset.height) and image.format == "JPEG"
    for ratio, (w, h) in {"1:1": (1, 1), "4:5": (4, 5), "3:4": (3, 4)}.items():
        output = outputs[ratio]
        assert output["width"] * h == output["height"] * w
    with Image.open(studio.file_path(outputs["ebay"]["image_url"])) as image:
        corner = image.getpixel((5, 5))
    assert all(channel >= 250 for channel in corner)


def test_png_output_and_background_choice(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    job = studio.generate(garment["id"], aspect_ratios=["1:1"], background="black", file_format="png", wait=True)
    with Image.open(studio.file_path(job["outputs"][0]["image_url"])) as image:
        assert image.format == "PNG"
        assert max(image.convert("RGB").getpixel((3, 3))) <= 5


@pytest.mark.parametrize("kwargs, message", [
    ({"aspect_ratios": ["16:9"]}, "1:1"),
    ({"marketplaces": ["amazon"]}, "ebay"),
    ({"background": "plaid"}, "white"),
    ({"file_format": "gif"}, "jpeg"),
])
def test_bad_generation_parameters_are_explained_and_store_nothing(studio, photo_path, kwargs, message):
    garment = studio.upload_garment(photo_path)
    with pytest.raises(InputError, match=message):
        studio.generate(garment["id"], **kwargs)
    assert studio.list_generations(garment["id"]) == []


def test_persona_models_need_the_diffusion_backend(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    models = {m["id"]: m for m in studio.virtual_models()}
    assert {"mod_01", "mod_02", "ghost_01"} <= set(models)
    assert models["ghost_01"]["available"] and not models["mod_01"]["available"]
    assert "diffusion" in models["mod_01"]["unavailable_reason"]
    with pytest.raises(BackendUnavailableError, match="Sienna"):
        studio.generate(garment["id"], "mod_01")
    with pytest.raises(NotFoundError, match="ghost_01"):
        studio.generate(garment["id"], "mod_99")


def test_unknown_ids_are_not_found(studio):
    for call in (lambda: studio.get_garment("nope"), lambda: studio.get_generation("nope"),
                 lambda: studio.set_favorite("nope", True), lambda: studio.download("nope"),
                 lambda: studio.generate("nope")):
        with pytest.raises(NotFoundError):
            call()


def test_another_model_reuses_the_stored_mask(studio, photo_path, monkeypatch):
    garment = studio.upload_garment(photo_path)
    first = studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)

    def must_not_segment(*args, **kwargs):
        raise AssertionError("the stored mask should be reused")

    monkeypatch.setattr("pipeline.segmentation.cut_out", must_not_segment)
    second = studio.generate(garment["id"], aspect_ratios=["4:5"], background="light grey", wait=True)
    assert second["status"] == "completed"
    assert studio.get_garment(garment["id"])["mask_image_url"] == garment["mask_image_url"]
    assert first["id"] != second["id"]
    assert [g["id"] for g in studio.list_generations(garment["id"])] == [second["id"], first["id"]]


def test_favourite_and_download_are_counted(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    output = studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)["outputs"][0]
    assert studio.set_favorite(output["id"], True)["is_favorite"] == 1
    path, after = studio.download(output["id"])
    assert path.is_file() and after["download_count"] == 1
    assert [o["id"] for o in studio.list_favorites()] == [output["id"]]


def test_a_failing_job_is_failed_with_a_message_and_leaves_no_files(studio, photo_path, settings):
    garment = studio.upload_garment(photo_path)
    os.remove(studio.file_path(garment["mask_image_url"]))
    outputs_before = files_under(settings.files_dir / "outputs")
    job = studio.generate(garment["id"], wait=True)
    assert job["status"] == "failed" and job["error_message"]
    assert job["outputs"] == []
    assert files_under(settings.files_dir / "outputs") == outputs_before


def test_jobs_do_not_block_the_caller(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    job = studio.generate(garment["id"])
    assert job["status"] in ("pending", "processing", "completed")
    finished = studio.wait_for_generation(job["id"], timeout=60)
    assert finished["status"] == "completed" and finished["progress"] == 1.0


def test_restart_recovers_interrupted_and_queued_jobs(settings, photo_path):
    studio = Studio.open(settings)
    garment = studio.upload_garment(photo_path)
    # What a crash leaves: one job mid-run, one still queued, and a file written but never recorded.
    interrupted = studio.database.create_generation(garment["id"], "ghost_01", "ghost", parameters={})
    studio.database.start_generation(interrupted["id"])
    queued = studio.database.create_generation(
        garment["id"], "ghost_01", "ghost",
        parameters={"outputs": [{"aspect_ratio": "1:1", "marketplace": None, "width": None, "height": None}],
                    "background": "white", "file_format": "jpeg"})
    orphan = studio.files.write("outputs", b"half a job", ".jpg")
    an_hour_ago = time.time() - 3600
    os.utime(studio.file_path(orphan), (an_hour_ago, an_hour_ago))
    studio.close()

    restarted = Studio.open(settings)
    try:
        failed = restarted.get_generation(interrupted["id"])
        assert failed["status"] == "failed" and failed["error_message"] == INTERRUPTED_JOB_MESSAGE
        rerun = restarted.wait_for_generation(queued["id"], timeout=60)
        assert rerun["status"] == "completed" and len(rerun["outputs"]) == 1
        assert not restarted.files.exists(orphan)
        assert [g["id"] for g in restarted.list_garments()] == [garment["id"]]
    finally:
        restarted.close()


def test_a_second_process_on_the_same_data_dir_does_not_recover(settings, photo_path):
    owner = Studio.open(settings)
    garment = owner.upload_garment(photo_path)
    running = owner.database.create_generation(garment["id"], "ghost_01", "ghost", parameters={})
    owner.database.start_generation(running["id"])
    guest = Studio.open(settings)
    try:
        assert guest.get_generation(running["id"])["status"] == "processing"
    finally:
        guest.close()
        owner.close()


def test_recovery_beside_another_live_process_fails_only_jobs_of_gone_processes(settings, photo_path):
    import subprocess
    import sys

    from storage.locks import this_worker

    first = Studio.open(settings)
    garment = first.upload_garment(photo_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    crashed, live = (first.database.create_generation(garment["id"], "ghost_01", "ghost", parameters={})
                     for _ in range(2))
    first.database.start_generation(crashed["id"], f"{this_worker().rpartition(':')[0]}:{gone.stdout.strip()}")
    first.database.start_generation(live["id"], this_worker())  # e.g. `resell-studio generate` still running
    guest = Studio.open(settings)  # another studio process keeps the directory open
    first.close()
    owner = Studio.open(settings)  # the next owner is not alone, so it must tell the jobs apart
    try:
        assert owner.get_generation(crashed["id"])["error_message"] == INTERRUPTED_JOB_MESSAGE
        assert owner.get_generation(live["id"])["status"] == "processing"
    finally:
        owner.close()
        guest.close()


def test_clicks_refine_the_cut_out_and_are_stored(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    before = np.asarray(Image.open(studio.file_path(garment["mask_image_url"])).convert("L")) > 0
    # floor marked as garment, shirt as background; the floor's tap finds no edge on the open floor, and the dot
    # it could add would float apart from the garment, so it adds nothing
    floor_point, shirt_point = (30.0, 30.0, 1), (300.0, 500.0, 0)
    assert not before[30, 30] and before[500, 300]
    preview = studio.preview_refinement(garment["id"], [floor_point, shirt_point], backend="classic")
    assert preview.mask[30, 30] == 0 and preview.mask[500, 300] == 0
    assert np.count_nonzero(before & ~(preview.mask > 0)) > 0
    assert studio.get_garment(garment["id"])["mask_image_url"] == garment["mask_image_url"]  # a preview stores nothing

    refined = studio.refine_garment(garment["id"], [floor_point, shirt_point], backend="classic")
    assert refined["mask_points"] == [[30.0, 30.0, 1], [300.0, 500.0, 0]]
    assert refined["segmentation_backend"] == "classic"
    stored = np.asarray(Image.open(studio.file_path(refined["mask_image_url"])).convert("L"))
    assert np.array_equal(stored > 127, preview.mask > 0)
    assert not studio.files.exists(garment["mask_image_url"])  # the replaced mask is gone


def test_the_review_picture_and_its_note_share_one_refinement_per_tap(studio, photo_path, monkeypatch):
    from ui.review import shown_mask

    garment = studio.upload_garment(photo_path)
    taps = [[300.0, 500.0, 0]]
    expected = studio.preview_refinement(garment["id"], taps).mask
    refinements = []
    refine = studio.preview_refinement
    monkeypatch.setattr(studio, "preview_refinement", lambda *args: refinements.append(args) or refine(*args))
    mask = shown_mask(studio, garment["id"], taps)
    assert refinements == []  # nothing is computed before the page needs it
    assert np.array_equal(mask(), expected) and np.array_equal(mask(), expected)
    assert len(refinements) == 1
    stored = shown_mask(studio, garment["id"], [])()  # no taps: the stored cut-out, no refinement
    assert np.array_equal(stored > 0, studio.garment_mask(garment["id"]) > 0) and len(refinements) == 1


@pytest.mark.parametrize("points, message", [
    ([[10, 10]], "label"), ([[5000, 10, 1]], "outside"), ([[10, 10, 7]], "label"), ([["a", 1, 1]], "label"),
])
def test_bad_clicks_are_explained(studio, photo_path, points, message):
    garment = studio.upload_garment(photo_path)
    with pytest.raises(InputError, match=message):
        studio.refine_garment(garment["id"], points, backend="classic")


def test_sam_asked_for_without_weights_is_an_error_not_a_silent_fallback(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    with pytest.raises(BackendUnavailableError, match="SAM"):
        studio.segment_garment(garment["id"], backend="sam")
    assert studio.get_garment(garment["id"])["segmentation_backend"] == "fused"


def test_category_source_follows_who_set_it(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    assert garment["category_source"] == "trained"  # no CLIP weights offline: the shipped model
    edited = studio.update_garment(garment["id"], category="dress")
    assert (edited["category_source"], edited["category_confidence"]) == ("user", None)
    assert studio.segment_garment(garment["id"])["category"] == "dress"


def test_export_puts_the_real_cut_out_first_and_counts_downloads(studio, photo_path):
    import zipfile

    garment = studio.upload_garment(photo_path)
    with pytest.raises(InputError, match="Nothing to export"):
        studio.export_garment(garment["id"])
    job = studio.generate(garment["id"], aspect_ratios=["1:1", "4:5"], wait=True)
    studio.set_favorite(job["outputs"][1]["id"], True)
    with zipfile.ZipFile(studio.export_garment(garment["id"])) as archive:
        assert archive.namelist() == ["01-ghost_01-1x1-1.jpg", "02-ghost_01-4x5-1.jpg"]
    with zipfile.ZipFile(studio.export_garment(garment["id"], favorites_only=True)) as archive:
        assert archive.namelist() == ["01-ghost_01-4x5-1.jpg"]
    assert [o["download_count"] for o in studio.get_generation(job["id"])["outputs"]] == [1, 2]


def test_the_preferred_model_is_stored_for_the_seller(studio):
    assert studio.preferred_model_id() is None
    assert studio.set_preferred_model("mod_02") == {"preferred_model_id": "mod_02"}
    assert studio.preferred_model_id() == "mod_02"
    with pytest.raises(NotFoundError):
        studio.set_preferred_model("mod_99")


def test_jobs_do_not_show_which_host_and_process_ran_them(studio, photo_path):
    garment = studio.upload_garment(photo_path)
    job = studio.generate(garment["id"], aspect_ratios=["1:1"], wait=True)
    assert studio.database.get_generation(job["id"])["worker"]
    assert "worker" not in job and "worker" not in studio.list_generations()[0]


# -- warming up ---------------------------------------------------------------------------------------------------

def test_after_the_warm_up_the_first_upload_tries_no_model_again(tmp_path, photo_path, monkeypatch):
    from pipeline import category_model

    # A CLIP id no other test has tried: the warm-up is what finds out that its weights are missing.
    settings = Settings.from_env(tmp_path / "data", category_model="resell-studio-tests/warm-up-clip")
    studio = Studio.open(settings)
    try:
        assert studio.warm_up().startswith("the fused cut-out and the trained category model, loaded in")

        def must_not_run(*args, **kwargs):
            raise AssertionError("the upload tried to load CLIP again")

        monkeypatch.setattr(category_model, "ClipCategoryClassifier", must_not_run)
        garment = studio.upload_garment(photo_path)
        assert (garment["segmentation_backend"], garment["category_source"]) == ("fused", "trained")
    finally:
        studio.close()


def test_a_model_that_cannot_load_is_reported_by_the_warm_up_not_raised(tmp_path):
    settings = Settings.from_env(tmp_path / "data", category_backend="clip",
                                 category_model="resell-studio-tests/warm-up-missing-clip")
    studio = Studio.open(settings)
    try:
        report = studio.warm_up()
        assert report.startswith("not ready: ") and "warm-up-missing-clip" in report
    finally:
        studio.close()
