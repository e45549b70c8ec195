"""End to end: the real Gradio server, driven through gradio_client as a program would."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from app import StudioAPI, create_demo, launch_options
from pipeline.presets import MARKETPLACES


@pytest.fixture
def client(studio):
    demo = create_demo(studio)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=None,
                            **launch_options(studio))
    try:
        yield Client(url, verbose=False, download_files=str(studio.settings.data_dir.parent / "downloads"))
    finally:
        demo.close()


def test_the_api_lists_exactly_the_public_endpoints(client):
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert endpoints == {f"/{name}" for name in StudioAPI.ENDPOINTS}


def test_the_whole_flow_through_the_api(client, photo_path, tmp_path):
    garment = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
    assert garment["status"] == "segmented" and garment["detected_color"] == "navy"
    assert garment["original_filename"] == "navy tee.jpg"

    again = client.predict(garment["id"], "classic", api_name="/segment_garment")
    assert again["status"] == "segmented" and again["segmentation_backend"] == "classic"

    edited = client.predict(garment["id"], "outerwear", "", "#1f2a44", api_name="/update_garment")
    assert edited["category"] == "outerwear" and edited["detected_color_hex"] == "#1f2a44"

    models = {m["id"]: m for m in client.predict(api_name="/virtual_models")}
    assert models["ghost_01"]["available"] and not models["mod_02"]["available"]

    job = client.predict(garment["id"], "ghost_01", ["1:1"], ["ebay", "depop"], "white", "jpeg", False,
                         api_name="/generate")
    assert job["status"] in ("pending", "processing", "completed")
    deadline = time.monotonic() + 60
    while job["status"] in ("pending", "processing") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = client.predict(job["id"], api_name="/generation")
    assert job["status"] == "completed", job["error_message"]
    shapes = {o["marketplace"] or o["aspect_ratio"]: o for o in job["outputs"]}
    assert set(shapes) == {"1:1", "ebay", "depop"}

    ebay = shapes["ebay"]
    starred = client.predict(ebay["id"], True, api_name="/set_favorite")
    assert starred["is_favorite"] == 1
    downloaded = client.predict(ebay["id"], api_name="/download")
    with Image.open(downloaded) as image:
        assert image.size == (MARKETPLACES["ebay"].width, MARKETPLACES["ebay"].height)
    job = client.predict(job["id"], api_name="/generation")
    assert {o["id"]: o for o in job["outputs"]}[ebay["id"]]["download_count"] == 1

    assert [g["id"] for g in client.predict(50, 0, api_name="/list_garments")] == [garment["id"]]
    assert [g["id"] for g in client.predict(garment["id"], 50, 0, api_name="/list_generations")] == [job["id"]]
    presets = {p["key"]: p for p in client.predict(api_name="/marketplaces")}
    assert presets["ebay"]["width"] == 1600


def test_errors_reach_the_caller_as_plain_messages(client, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    with pytest.raises(Exception, match="JPEG, PNG, WebP or HEIC"):
        client.predict(handle_file(str(text)), api_name="/upload_garment")
    with pytest.raises(Exception, match="No garment with id"):
        client.predict("missing", api_name="/segment_garment")
    with pytest.raises(Exception, match="No output image"):
        client.predict("../../studio.db", api_name="/download")
    # the app keeps serving after refusals
    assert client.predict(api_name="/list_garments") == []


def test_generate_can_wait_for_the_result(client, photo_path):
    garment = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
    job = client.predict(garment["id"], "ghost_01", ["3:4"], [], "cream", "png", True, api_name="/generate")
    assert job["status"] == "completed" and job["outputs"][0]["aspect_ratio"] == "3:4"


def run_python(code: str, cwd, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    environment.pop("STUDIO_DATA_DIR", None)
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=120)


def test_importing_the_app_does_no_work(tmp_path):
    result = run_python("import app", tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # no data directory, no database


def test_demo_is_there_for_spaces(tmp_path):
    result = run_python("import app; print(type(app.demo).__name__)", tmp_path,
                        STUDIO_DATA_DIR=str(tmp_path / "space-data"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("Blocks")
    assert (tmp_path / "space-data" / "studio.db").is_file()


@pytest.fixture
def sam_studio(tmp_path, tiny_sam_folder, tiny_clip_folder):
    from pipeline.settings import Settings
    from pipeline.studio import Studio

    settings = Settings.from_env(tmp_path / "sam-data", segmentation_backend="sam", sam_model=str(tiny_sam_folder),
                                 category_backend="clip", category_model=str(tiny_clip_folder))
    studio = Studio.open(settings)
    yield studio
    studio.close()


def test_refine_with_sam_through_the_api(sam_studio, photo_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    demo = create_demo(sam_studio)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(sam_studio))
    try:
        client = Client(url, verbose=False)
        garment = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
        assert garment["segmentation_backend"] == "sam"  # never silently the classic cut-out
        assert garment["category_source"] == "clip" and 0 < garment["category_confidence"] <= 1

        points = [[300, 450, 1], [40, 40, 0], [560, 760, 1]]
        refined = client.predict(garment["id"], points, api_name="/refine_garment")
        assert refined["segmentation_backend"] == "sam" and refined["status"] == "segmented"
        assert refined["mask_points"] == [[300.0, 450.0, 1], [40.0, 40.0, 0], [560.0, 760.0, 1]]
        mask = Image.open(sam_studio.file_path(refined["mask_image_url"])).convert("L")
        assert mask.size == (600, 800)
        assert mask.getpixel((300, 450)) == 255 and mask.getpixel((560, 760)) == 255
        assert mask.getpixel((40, 40)) == 0

        sam = sam_studio._segmenter(None)
        assert sam.name == "sam" and sam.encoder_runs == 1  # upload and refinement shared one image embedding
        with pytest.raises(Exception, match="outside"):
            client.predict(garment["id"], [[9000, 1, 1]], api_name="/refine_garment")
    finally:
        demo.close()


def test_on_model_generation_through_the_api(diffusion_studio, photo_path):
    demo = create_demo(diffusion_studio)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(diffusion_studio))
    try:
        client = Client(url, verbose=False)
        garment = client.predict(handle_file(str(photo_path)), api_name="/upload_garment")
        job = client.predict(garment_id=garment["id"], model_id="mod_03", aspect_ratios=["4:5"], wait=True,
                             batch_size=2, seed=99, steps=2, width=256, height=256, api_name="/generate")
        assert job["status"] == "completed", job["error_message"]
        assert job["parameters"]["seeds"] == [99, 100] and len(job["outputs"]) == 2
        assert all(o["is_ai_generated"] == 1 and o["fidelity_delta_e"] is not None for o in job["outputs"])

        again = client.predict(generation_id=job["id"], wait=True, seed=5, api_name="/rerun_generation")
        assert again["rerun_of"] == job["id"] and again["parameters"]["seeds"] == [5, 6]
        assert again["prompt_used"] == job["prompt_used"]
        with pytest.raises(Exception, match="already ended"):
            client.predict(job["id"], api_name="/cancel_generation")
        with pytest.raises(Exception, match="up to 2 images per job, not 12"):
            client.predict(garment_id=garment["id"], model_id="mod_03", batch_size=12, api_name="/generate")
        usage = client.predict(api_name="/usage")
        assert usage["plan"]["name"] == "free" and usage["generations_today"] == 2
    finally:
        demo.close()


def test_a_whole_closet_through_the_api(client, studio, tmp_path):
    """What the page's "Add photos", "Make photos for the whole closet" and "Zip" do, as a program does them."""
    import csv
    import io
    import zipfile

    from conftest import garment_photo

    paths = []
    for name, colour, seed in [("navy tee", (31, 42, 68), 0), ("red tee", (170, 30, 40), 1)]:
        paths.append(tmp_path / f"{name}.jpg")
        garment_photo(garment_rgb=colour, seed=seed)[0].save(paths[-1], quality=92)
    (tmp_path / "notes.jpg").write_text("not a photo")
    closet = client.predict([handle_file(str(p)) for p in [*paths, tmp_path / "notes.jpg"]],
                            api_name="/upload_garments")
    assert [g["original_filename"] for g in closet["garments"]] == ["navy tee.jpg", "red tee.jpg"]
    assert [r["filename"] for r in closet["refused"]] == ["notes.jpg"]
    assert "JPEG, PNG, WebP or HEIC" in closet["refused"][0]["error"]

    assert client.predict(["vinted", "ebay"], api_name="/set_preferred_marketplaces") == ["vinted", "ebay"]
    assert studio.preferred_marketplaces() == ["vinted", "ebay"]
    made = client.predict("ghost_01", ["ebay"], api_name="/generate_closet")
    assert made["skipped"] == [] and [job["status"] for job in made["jobs"]] == ["completed", "completed"]
    assert {job["garment_id"] for job in made["jobs"]} == {g["id"] for g in closet["garments"]}

    archive = zipfile.ZipFile(client.predict("ebay", api_name="/export_marketplace"))
    photos = sorted(name for name in archive.namelist() if name.endswith(".jpg"))
    names = {g["id"]: g["title"].lower().replace(" ", "-") for g in closet["garments"]}
    assert sorted(g["title"].split()[0] for g in closet["garments"]) == ["Navy", "Red"]
    assert photos == sorted(f"{name}/{name}-ebay-1.jpg" for name in names.values()), photos
    rows = list(csv.DictReader(io.StringIO(archive.read("listing.csv").decode())))
    assert sorted(row["color"] for row in rows) == ["navy", "red"]
    with pytest.raises(Exception, match="Make photos for Depop first"):
        client.predict("depop", api_name="/export_marketplace")
    starred = made["jobs"][0]["outputs"][0]["id"]
    client.predict(starred, True, api_name="/set_favorite")
    [favourite] = client.predict(api_name="/list_favorites")
    assert favourite["id"] == starred and favourite["garment_id"] == made["jobs"][0]["garment_id"]


def test_a_built_app_loads_its_models_before_the_first_upload(tmp_path, monkeypatch):
    import threading

    from app import build
    from pipeline.settings import Settings
    from pipeline.studio import Studio

    warmed = threading.Event()
    monkeypatch.setattr(Studio, "warm_up", lambda self: warmed.set())  # what it loads: tests/test_studio.py
    studio, _ = build(Settings.from_env(tmp_path / "data"))
    try:
        assert warmed.wait(timeout=30)
    finally:
        studio.close()
